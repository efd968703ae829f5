//! The account's email and the codes sent to it: confirming the address, changing it,
//! resetting a forgotten password. Each code is mailed when a relay is configured and is
//! always readable on the box with `perch account codes`; the log says that a code is
//! waiting and where it went, never the code itself.

use std::net::IpAddr;

use super::codes::{CodeState, Purpose};
use super::{AccountError, Accounts};
use crate::store::account::{self, Account};

/// What a code is for, as the owner reads it in a mail subject and in the log.
fn what(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::ConfirmEmail => "confirm your email address",
        Purpose::UpdateEmail => "change your email address",
        Purpose::ResetPassword => "reset your password",
        Purpose::DeleteAccount => "delete your account",
        Purpose::Invite => "move an account to this server",
    }
}

/// Same address, ignoring the case of ASCII letters (how the reference compares them).
fn same_address(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Accounts<'_> {
    async fn the_account(&self) -> Result<Account, AccountError> {
        self.store
            .read(account::get_account)
            .await?
            .ok_or(AccountError::NoSuchAccount)
    }

    /// Makes `code` known to the owner: mailed to `to` when there is a relay and an address
    /// (in the background: a slow relay never holds a request), and a log line either way.
    fn deliver(&self, subject_what: &str, ttl_min: i64, code: &str, to: Option<&str>) {
        let host = self.config.hostname.clone();
        let to = to.filter(|_| self.mailer.configured()).map(str::to_owned);
        let Some(to) = to else {
            tracing::info!(
                "a code to {subject_what} is waiting (valid {ttl_min} min): \
                 `sudo perch account codes` shows it"
            );
            return;
        };
        let mailer = self.mailer.clone();
        let subject = format!("Your code to {subject_what}");
        let body = format!(
            "Someone, probably you, asked the personal data server {host} for a code to \
             {subject_what}.\n\nThe code is:\n\n    {code}\n\nIt is valid for {ttl_min} \
             minutes and can be used once. If you did not ask for it, ignore this message: \
             nothing changes without the code.\n"
        );
        let subject_what = subject_what.to_owned();
        tokio::spawn(async move {
            match mailer.send(&to, &subject, &body).await {
                Ok(()) => tracing::info!(
                    "a code to {subject_what} was mailed to {to} (also shown by \
                     `sudo perch account codes`)"
                ),
                Err(e) => tracing::warn!(
                    "mailing a code to {subject_what} to {to} failed: {e}; \
                     `sudo perch account codes` shows it"
                ),
            }
        });
    }

    /// A new code for `purpose`, delivered to the account's email.
    pub async fn issue_code(&self, purpose: Purpose) -> Result<String, AccountError> {
        let acct = self.the_account().await?;
        let code = self.new_code(purpose).await?;
        self.deliver(
            what(purpose),
            purpose.ttl() / 60,
            &code,
            acct.email.as_deref(),
        );
        Ok(code)
    }

    /// A new code for `signPlcOperation`, delivered like the others.
    pub async fn issue_plc_code(&self) -> Result<String, AccountError> {
        let acct = self.the_account().await?;
        let code = self.new_plc_code().await?;
        self.deliver(
            "sign a change to your identity (a PLC operation)",
            super::codes::PLC_TOKEN_SECS / 60,
            &code,
            acct.email.as_deref(),
        );
        Ok(code)
    }

    /// `requestEmailConfirmation`.
    pub async fn request_email_confirmation(&self) -> Result<(), AccountError> {
        let acct = self.the_account().await?;
        if acct.email.is_none() {
            return Err(AccountError::Invalid(
                "the account has no email address; set one first".into(),
            ));
        }
        self.issue_code(Purpose::ConfirmEmail).await.map(|_| ())
    }

    /// `confirmEmail`: the address must be the account's, the code its confirmation code.
    pub async fn confirm_email(&self, email: &str, code: &str) -> Result<(), AccountError> {
        let acct = self.the_account().await?;
        if !acct
            .email
            .as_deref()
            .is_some_and(|e| same_address(e, email))
        {
            return Err(AccountError::InvalidEmail);
        }
        self.spend(Purpose::ConfirmEmail, code).await?;
        let at = crate::clock::datetime_now();
        self.writer
            .exec(move |c, _| account::set_email_confirmed(c, &at))
            .await?;
        tracing::info!("the account's email address is confirmed");
        Ok(())
    }

    /// `requestEmailUpdate`: whether a code is needed (the current address is confirmed),
    /// in which case one is sent to it.
    pub async fn request_email_update(&self) -> Result<bool, AccountError> {
        let acct = self.the_account().await?;
        if acct.email.is_none() || acct.email_confirmed_at.is_none() {
            return Ok(false);
        }
        self.issue_code(Purpose::UpdateEmail).await?;
        Ok(true)
    }

    /// `updateEmail`: a confirmed address changes only with the code sent to it; the new
    /// address starts unconfirmed.
    pub async fn update_email(&self, email: &str, code: Option<&str>) -> Result<(), AccountError> {
        let email = email.trim().to_owned();
        if !crate::mail::is_valid_address(&email) {
            return Err(AccountError::Invalid(format!(
                "{email:?} is not an email address"
            )));
        }
        let acct = self.the_account().await?;
        if acct.email.is_some() && acct.email_confirmed_at.is_some() {
            let code = code.ok_or(AccountError::CodeRequired)?;
            self.spend(Purpose::UpdateEmail, code).await?;
        }
        self.writer
            .exec(move |c, _| account::set_email(c, &email))
            .await?;
        tracing::info!("the account's email address was changed");
        Ok(())
    }

    /// `requestPasswordReset`: a code goes to the account's address if `email` is it.
    /// The answer is the same either way, so the endpoint says nothing about the address;
    /// one code a minute at most, so it cannot flood the owner's mailbox.
    pub async fn request_password_reset(
        &self,
        ip: IpAddr,
        email: &str,
    ) -> Result<(), AccountError> {
        let acct = self.the_account().await?;
        if !acct
            .email
            .as_deref()
            .is_some_and(|e| same_address(e, email))
        {
            tracing::info!(
                "password reset asked from {ip} for an address that is not the account's"
            );
            return Ok(());
        }
        let recent = self.pending_codes().await?.iter().any(|c| {
            c.purpose == Purpose::ResetPassword.as_str()
                && c.expires_at - Purpose::ResetPassword.ttl() > crate::clock::unix_secs() - 60
        });
        if recent {
            tracing::info!("password reset asked from {ip} again within a minute: no new code");
            return Ok(());
        }
        tracing::info!("password reset asked from {ip}");
        self.issue_code(Purpose::ResetPassword).await.map(|_| ())
    }

    /// `resetPassword`: with the code, a new password (the same rule as everywhere); every
    /// session and connected app is signed out. Attempts count against the login limiter,
    /// so the code cannot be guessed.
    pub async fn reset_password(
        &self,
        ip: IpAddr,
        code: &str,
        password: &str,
    ) -> Result<(), AccountError> {
        super::check_password_rule(password)?;
        let attempt = self.attempt(ip, "password reset")?;
        match self.spend(Purpose::ResetPassword, code).await {
            Ok(()) => attempt.succeeded(),
            Err(e) => {
                attempt.failed();
                return Err(e);
            }
        }
        self.set_password(password, false).await?;
        tracing::warn!("the account password was reset with an emailed code (from {ip})");
        Ok(())
    }

    /// Uses up a code, as the error the caller should see when it is not valid.
    async fn spend(&self, purpose: Purpose, code: &str) -> Result<(), AccountError> {
        match self.take_code(purpose, code).await? {
            CodeState::Valid => Ok(()),
            CodeState::Expired => Err(AccountError::ExpiredCode),
            CodeState::Unknown => Err(AccountError::InvalidCode),
        }
    }
}
