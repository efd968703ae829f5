//! The owner's page session: a browser signed in with the account password. It is an
//! ordinary session (a refresh-token row, so `set-password`, `reset-password` and signing out
//! everywhere end it too) whose refresh token the browser keeps in an HttpOnly cookie; it
//! lasts a week at most, and a form token derived from it (HMAC under the server secret)
//! ties every form to it.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AccountError, Accounts};
use crate::auth::{self, Scope};
use crate::store::account::{self, Account, AccountStatus};

/// How long a sign-in to the page lasts.
pub const OWNER_SESSION_SECS: i64 = 7 * 24 * 3600;

/// A signed-in page: the account as it is now, and the form token of this session.
pub struct OwnerSession {
    pub account: Account,
    /// When this sign-in began (unix seconds).
    pub since: i64,
    pub form_token: String,
    /// The session's id (its refresh token's `jti`), which passkey challenges are bound to.
    pub(super) jti: String,
}

impl OwnerSession {
    /// Whether a form carried this session's form token (compared in constant time).
    pub fn form_ok(&self, given: &str) -> bool {
        let want = self.form_token.as_bytes();
        !want.is_empty() && crate::crypto::same_secret(want, given.as_bytes())
    }
}

impl Accounts<'_> {
    /// Signs in to the page with the account password (never an app password), behind the
    /// login limiter: the token for the cookie.
    pub async fn owner_sign_in(
        &self,
        ip: IpAddr,
        password: String,
    ) -> Result<String, AccountError> {
        let acct = self
            .check_owner_password(ip, "owner page sign-in", password)
            .await?;
        self.owner_token(&acct).await
    }

    /// A new page session for `acct` (after the password or a passkey): the cookie's token.
    pub(super) async fn owner_token(&self, acct: &Account) -> Result<String, AccountError> {
        if acct.status == AccountStatus::Takendown {
            return Err(AccountError::Takendown);
        }
        Ok(self.issue(&acct.did, Scope::Access, None).await?.refresh)
    }

    /// The page session behind a cookie's token: genuine, younger than a week, not rotated
    /// away (someone used it at `refreshSession`) or ended, of this account.
    pub async fn owner_session(&self, token: &str) -> Result<OwnerSession, AccountError> {
        let now = crate::clock::unix_secs();
        let claims = auth::verify_refresh(self.jwt_secret, token, self.service_did, now, false)
            .map_err(|_| AccountError::InvalidToken)?;
        if now - claims.iat > OWNER_SESSION_SECS {
            return Err(AccountError::Expired);
        }
        let jti = claims.jti.clone();
        let (acct, row) = self
            .store
            .read(move |c| {
                Ok((
                    account::get_account(c)?,
                    account::get_refresh_token(c, &jti)?,
                ))
            })
            .await?;
        let account = acct
            .filter(|a| a.did == claims.sub)
            .ok_or(AccountError::InvalidToken)?;
        match row {
            Some(r) if r.next_jti.is_none() && r.app_password_name.is_none() => {}
            _ => return Err(AccountError::Revoked),
        }
        if account.status == AccountStatus::Takendown {
            return Err(AccountError::Takendown);
        }
        Ok(OwnerSession {
            account,
            since: claims.iat,
            form_token: self.owner_form_token(&claims.jti),
            jti: claims.jti,
        })
    }

    fn owner_form_token(&self, jti: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.jwt_secret) else {
            return String::new();
        };
        mac.update(b"perch owner page form\n");
        mac.update(jti.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Changes the password from the page: the current one again (behind the login limiter),
    /// the rule for the new one, then every session ends (apps and other browsers too) and
    /// this browser gets a new one: its cookie's token.
    pub async fn owner_change_password(
        &self,
        ip: IpAddr,
        current: String,
        new: &str,
    ) -> Result<String, AccountError> {
        super::check_password_rule(new)?;
        let acct = self
            .check_owner_password(ip, "password change", current)
            .await?;
        self.set_password(new, false).await?;
        tracing::warn!("the account password was changed on the owner's page; every session ended");
        self.owner_token(&acct).await
    }

    /// Deletes the account from the page: the password again (behind the login limiter),
    /// then what `perch account delete` does. The blob CIDs whose files the caller removes.
    pub async fn owner_delete(
        &self,
        ip: IpAddr,
        password: String,
    ) -> Result<Vec<String>, AccountError> {
        self.check_owner_password(ip, "account deletion", password)
            .await?;
        self.delete_by_owner().await
    }

    /// Ends every other session: apps signed in with the password or an app password, and
    /// other browsers on this page (OAuth apps are signed out one by one, or all by a
    /// password change). How many ended.
    pub async fn owner_sign_out_others(
        &self,
        session: &OwnerSession,
    ) -> Result<usize, AccountError> {
        let keep = session.jti.clone();
        let n = self
            .writer
            .exec(move |c, _| account::delete_sessions_except(c, &keep))
            .await?;
        tracing::info!("{n} other sessions signed out from the owner's page");
        Ok(n)
    }

    /// Live sessions: with the account password, and with app passwords.
    pub async fn session_counts(&self) -> Result<(u64, u64), AccountError> {
        let now = crate::clock::unix_secs();
        Ok(self
            .store
            .read(move |c| account::count_sessions(c, now))
            .await?)
    }

    /// Deactivates the account from the page, after the password again.
    pub async fn owner_deactivate(
        &self,
        ip: IpAddr,
        password: String,
    ) -> Result<bool, AccountError> {
        self.check_owner_password(ip, "account deactivation", password)
            .await?;
        self.deactivate().await
    }
}
