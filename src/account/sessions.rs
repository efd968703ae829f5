//! Sessions: password login (behind the login limiter), refresh with rotation, logout, and
//! the check every authenticated request makes.
//!
//! A session is a refresh-token row; its access tokens name it (`sid`), so ending the
//! session ends them too. A rotated refresh token keeps working for a grace period, so a
//! client that lost the answer to its refresh is not logged out.

use std::net::IpAddr;

use rand_core::OsRng;

use super::{AccountError, Accounts};
use crate::auth::permissions::Permissions;
use crate::auth::{self, AuthError, Scope};
use crate::hasher::DUMMY_PHC;
use crate::store::account::{self, Account, AccountStatus, RefreshToken};

/// A rotated refresh token keeps working this long (reference: 2 h).
const REFRESH_GRACE_SECS: i64 = 2 * 60 * 60;

/// Who is calling, as an access token says and the session table confirms.
pub struct Session {
    pub did: String,
    pub handle: String,
    /// For a password session, what the password was; an OAuth session counts as an app
    /// password's here and is judged by its `permissions`.
    pub scope: Scope,
    /// What an OAuth grant allows (None: a password or app-password session).
    pub permissions: Option<Permissions>,
}

impl Session {
    /// Account management needs the main password's session, not an app password's (nor an
    /// app's over OAuth, unless a permission says otherwise: the caller checks those).
    pub fn is_full(&self) -> bool {
        self.permissions.is_none() && !self.scope.is_app_password()
    }
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A session made or renewed: the account as it is now, what the session may do, its
/// tokens.
pub struct LoggedIn {
    pub account: Account,
    pub scope: Scope,
    pub tokens: Tokens,
}

fn token_error(e: AuthError) -> AccountError {
    match e {
        AuthError::Expired => AccountError::Expired,
        _ => AccountError::InvalidToken,
    }
}

/// A password attempt admitted by the login limiter, settled as failed or succeeded; one
/// dropped unsettled stays spent, which fails safe.
pub(super) struct Attempt<'a, 'b> {
    accounts: &'b Accounts<'a>,
    ip: IpAddr,
    what: &'static str,
}

impl Accounts<'_> {
    fn limiter<T>(&self, f: impl FnOnce(&mut auth::LoginLimiter) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update; the limiter's state is
        // still usable, and refusing every login would lock the owner out.
        let mut guard = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Every check of the account password that a caller without a session can trigger
    /// (login, account deletion) takes an attempt from the one limiter first.
    pub(super) fn attempt(
        &self,
        ip: IpAddr,
        what: &'static str,
    ) -> Result<Attempt<'_, '_>, AccountError> {
        let now = crate::clock::unix_millis().max(0) as u64;
        if let Err(retry) = self.limiter(|l| l.check(ip, now)) {
            tracing::warn!("{what} from {ip} refused: too many failed attempts");
            return Err(AccountError::RateLimited(retry.0));
        }
        Ok(Attempt {
            accounts: self,
            ip,
            what,
        })
    }

    /// Logs in with the account password or an app password. The same hashes are checked
    /// whether or not the identifier (handle, DID or email) is right — a dummy when there is
    /// no account — so the time taken says nothing about the identifier.
    pub async fn login(
        &self,
        ip: IpAddr,
        identifier: &str,
        password: String,
    ) -> Result<LoggedIn, AccountError> {
        let attempt = self.attempt(ip, "login")?;
        let acct = self.store.read(account::get_account).await?;
        let matches = acct.as_ref().is_some_and(|acct| {
            let id = identifier.trim().to_ascii_lowercase();
            let id = id.strip_prefix('@').unwrap_or(&id);
            id == acct.handle
                || identifier.trim() == acct.did
                || acct
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(id))
        });
        let mut hashes = vec![
            acct.as_ref()
                .map_or(DUMMY_PHC.to_owned(), |a| a.password_hash.clone()),
        ];
        let mut app_passwords = vec![];
        if auth::looks_like_app_password(&password) && acct.is_some() {
            app_passwords = self.store.read(account::list_app_passwords).await?;
            hashes.extend(app_passwords.iter().map(|p| p.password_hash.clone()));
        }
        let found = self.hasher.verify_any(password, hashes).await?;
        let found = match found.filter(|_| matches) {
            None => None,
            Some(0) => Some((Scope::Access, None)),
            Some(i) => app_passwords.into_iter().nth(i - 1).map(|ap| {
                let scope = if ap.privileged {
                    Scope::AppPassPrivileged
                } else {
                    Scope::AppPass
                };
                (scope, Some(ap.name))
            }),
        };
        let (Some((scope, app_password)), Some(account)) = (found, acct) else {
            attempt.failed();
            return Err(AccountError::InvalidLogin);
        };
        attempt.succeeded();
        if account.status == AccountStatus::Takendown {
            return Err(AccountError::Takendown);
        }
        let tokens = self.issue(&account.did, scope, app_password).await?;
        Ok(LoggedIn {
            account,
            scope,
            tokens,
        })
    }

    /// A new session for `did` (after a login, or for an account just created here).
    pub async fn issue(
        &self,
        did: &str,
        scope: Scope,
        app_password: Option<String>,
    ) -> Result<Tokens, AccountError> {
        let t = crate::clock::unix_secs();
        let jti = auth::new_jti(&mut OsRng);
        let access = auth::mint_access(self.jwt_secret, did, self.service_did, scope, &jti, t);
        let refresh = auth::mint_refresh(self.jwt_secret, did, self.service_did, &jti, t);
        let row = RefreshToken {
            jti,
            app_password_name: app_password,
            expires_at: t + auth::tokens::REFRESH_LIFETIME_SECS,
            next_jti: None,
            rotated_at: None,
        };
        self.writer
            .exec(move |c, _| {
                account::delete_expired_refresh_tokens(c, t)?;
                account::insert_refresh_token(c, &row)
            })
            .await?;
        Ok(Tokens { access, refresh })
    }

    /// Renews a session from its refresh token, rotating it: the old token stays good for a
    /// grace period (and hands out the same successor), then dies.
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoggedIn, AccountError> {
        let t = crate::clock::unix_secs();
        let claims =
            auth::verify_refresh(self.jwt_secret, refresh_token, self.service_did, t, false)
                .map_err(token_error)?;
        let account = self
            .store
            .read(account::get_account)
            .await?
            .filter(|a| a.did == claims.sub)
            .ok_or(AccountError::InvalidToken)?;
        if account.status == AccountStatus::Takendown {
            return Err(AccountError::Takendown);
        }
        let old = claims.jti.clone();
        let jti = claims.jti;
        let (row, app_passwords) = self
            .store
            .read(move |c| {
                Ok((
                    account::get_refresh_token(c, &jti)?,
                    account::list_app_passwords(c)?,
                ))
            })
            .await?;
        let row = row.ok_or(AccountError::Revoked)?;
        let scope = match &row.app_password_name {
            None => Scope::Access,
            Some(name) => match app_passwords.into_iter().find(|p| &p.name == name) {
                Some(p) if p.privileged => Scope::AppPassPrivileged,
                Some(_) => Scope::AppPass,
                None => return Err(AccountError::Revoked),
            },
        };
        let next_jti = match (&row.next_jti, row.rotated_at) {
            (Some(next), Some(at)) if t - at <= REFRESH_GRACE_SECS => next.clone(),
            (Some(_), _) => return Err(AccountError::Revoked),
            (None, _) => {
                let next = auth::new_jti(&mut OsRng);
                let new_row = RefreshToken {
                    jti: next.clone(),
                    app_password_name: row.app_password_name.clone(),
                    expires_at: t + auth::tokens::REFRESH_LIFETIME_SECS,
                    next_jti: None,
                    rotated_at: None,
                };
                let n2 = next.clone();
                self.writer
                    .exec(move |c, _| {
                        account::insert_refresh_token(c, &new_row)?;
                        account::rotate_refresh_token(c, &old, &n2, t)
                    })
                    .await?;
                next
            }
        };
        let did = &account.did;
        let tokens = Tokens {
            access: auth::mint_access(self.jwt_secret, did, self.service_did, scope, &next_jti, t),
            refresh: auth::mint_refresh(self.jwt_secret, did, self.service_did, &next_jti, t),
        };
        Ok(LoggedIn {
            account,
            scope,
            tokens,
        })
    }

    /// Ends the session of a refresh token (an expired one too) and every token rotated
    /// into or out of it.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AccountError> {
        let claims = auth::verify_refresh(
            self.jwt_secret,
            refresh_token,
            self.service_did,
            crate::clock::unix_secs(),
            true,
        )
        .map_err(token_error)?;
        let jti = claims.jti;
        self.writer
            .exec(move |c, _| account::delete_session(c, &jti))
            .await?;
        Ok(())
    }

    /// The session behind an access token: a valid token for this server's account, in a
    /// session that has not ended, of an account that is not taken down.
    pub async fn authenticate(&self, access_token: &str) -> Result<Session, AccountError> {
        let claims = auth::verify_access(
            self.jwt_secret,
            access_token,
            self.service_did,
            crate::clock::unix_secs(),
        )
        .map_err(token_error)?;
        // Tokens from before sessions were named: the client refreshes and gets a named one.
        let session = claims.session.ok_or(AccountError::Expired)?;
        let (acct, live) = self
            .store
            .read(move |c| {
                Ok((
                    account::get_account(c)?,
                    account::get_refresh_token(c, &session)?.is_some(),
                ))
            })
            .await?;
        let acct = acct
            .filter(|a| a.did == claims.sub)
            .ok_or(AccountError::InvalidToken)?;
        if !live {
            return Err(AccountError::Revoked);
        }
        if acct.status == AccountStatus::Takendown {
            return Err(AccountError::Takendown);
        }
        Ok(Session {
            did: acct.did,
            handle: acct.handle,
            scope: claims.scope,
            permissions: None,
        })
    }

    /// Checks the account's own password (never an app password) for a sign-in outside
    /// XRPC (the OAuth sign-in page), behind the login limiter.
    pub async fn check_owner_password(
        &self,
        ip: IpAddr,
        what: &'static str,
        password: String,
    ) -> Result<Account, AccountError> {
        let acct = self
            .store
            .read(account::get_account)
            .await?
            .ok_or(AccountError::NoSuchAccount)?;
        self.check_password(ip, what, &acct, password, async { Ok(()) })
            .await?;
        Ok(acct)
    }

    /// Checks the account password of `acct` for an action without a session (account
    /// deletion), behind the login limiter.
    pub(super) async fn check_password(
        &self,
        ip: IpAddr,
        what: &'static str,
        acct: &Account,
        password: String,
        before: impl std::future::Future<Output = Result<(), AccountError>>,
    ) -> Result<(), AccountError> {
        let attempt = self.attempt(ip, what)?;
        // Whatever must hold before the password is even hashed (a valid code): a failure
        // there counts as a failed attempt too.
        if let Err(e) = before.await {
            attempt.failed();
            return Err(e);
        }
        if self
            .hasher
            .verify(password, acct.password_hash.clone())
            .await?
        {
            attempt.succeeded();
            Ok(())
        } else {
            attempt.failed();
            Err(AccountError::InvalidLogin)
        }
    }
}

impl Attempt<'_, '_> {
    /// A wrong password or code: counts against the address and the account.
    pub(super) fn failed(self) {
        tracing::warn!("{} from {} failed: wrong credentials", self.what, self.ip);
        let now = crate::clock::unix_millis().max(0) as u64;
        self.accounts.limiter(|l| l.record_failure(self.ip, now));
    }

    pub(super) fn succeeded(self) {
        let now = crate::clock::unix_millis().max(0) as u64;
        self.accounts.limiter(|l| l.record_success(self.ip, now));
    }
}
