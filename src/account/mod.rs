//! The account service: the one account's life (creation, password, deletion), its
//! sessions (password login behind the login limiter, refresh with rotation, logout, and the
//! check every authenticated request makes), app passwords, and the one-time codes the
//! owner reads on the box.
//!
//! [`Accounts`] borrows only the parts it needs; `App::accounts` hands one out. Errors are
//! [`AccountError`], turned into XRPC errors in `xrpc::error`.

mod app_passwords;
pub mod codes;
mod create;
mod delete;
mod email;
mod handle;
mod owner;
mod passkeys;
mod sessions;
mod status;

use std::sync::{Arc, Mutex};

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::crypto::Keypair;
use crate::hasher::{HashError, Hasher};
use crate::net::Net;
use crate::store::{Store, StoreError};
use crate::writer::Writer;

pub use crate::store::account::PendingCode;
pub use app_passwords::NewAppPassword;
pub use codes::{CodeState, Purpose};
pub use create::{DidMethod, NewPassword};
pub use owner::{OWNER_SESSION_SECS, OwnerSession};
pub use passkeys::{AssertionForm, MAX_PASSKEYS, Registration, SignIn};
pub use sessions::{LoggedIn, Session, Tokens};

/// What the account service works with.
pub struct Accounts<'a> {
    pub config: &'a Config,
    pub store: &'a Arc<Store>,
    pub writer: &'a Writer,
    pub hasher: &'a Hasher,
    pub limiter: &'a Mutex<LoginLimiter>,
    pub net: &'a Net,
    pub repo_key: &'a Arc<Keypair>,
    pub jwt_secret: &'a [u8; 32],
    /// This server's DID, the audience of its sessions.
    pub service_did: &'a str,
    /// Where the owner's codes are mailed (when a relay is configured).
    pub mailer: &'a crate::mail::Mailer,
    /// Handle lookups (the DNS server to ask).
    pub handles: &'a crate::identity::handles::HandleResolver,
}

/// The fewest characters a new account password may have: one rule for `init`, first boot,
/// `account create`, `set-password`, `reset-password` and `resetPassword`.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Whether `password` may become the account password.
pub fn check_password_rule(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bad input (a handle, a password, a name), in words for the person who gave it.
    #[error("{0}")]
    Invalid(String),
    #[error("an account already exists on this server ({0})")]
    Exists(String),
    #[error("an app password named {0:?} already exists")]
    NameTaken(String),
    #[error("{0}")]
    InvalidHandle(String),
    #[error("PLC directory: {0}")]
    Plc(String),
    /// The login limiter refuses this address for now: retry after that many seconds.
    #[error("too many failed attempts; retry in {0} s")]
    RateLimited(u64),
    /// Every password thread is busy and the queue is full.
    #[error("too many sign-in attempts at once")]
    Busy,
    #[error("Invalid identifier or password")]
    InvalidLogin,
    /// A genuine token whose only fault is its age.
    #[error("Token has expired")]
    Expired,
    /// A session that was ended (logout, password change, app password revoked).
    #[error("Token has been revoked")]
    Revoked,
    /// A malformed, forged or misdirected token.
    #[error("Token could not be verified")]
    InvalidToken,
    #[error("Account has been taken down")]
    Takendown,
    /// A one-time code that is unknown, used or expired.
    #[error("the code is unknown, used or expired")]
    InvalidCode,
    /// A one-time code that was right but is too old.
    #[error("the code has expired; ask for a new one")]
    ExpiredCode,
    /// The action needs a code (a confirmed email changes only with one).
    #[error("a code is required: ask for one first")]
    CodeRequired,
    /// The email given is not the account's.
    #[error("that is not the account's email address")]
    InvalidEmail,
    #[error("no such account")]
    NoSuchAccount,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

impl From<HashError> for AccountError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AccountError::Busy,
            HashError::Auth(a) => AccountError::Invalid(a.to_string()),
            HashError::Gone => AccountError::Other(e.to_string()),
        }
    }
}

fn other(e: impl std::fmt::Display) -> AccountError {
    AccountError::Other(e.to_string())
}
