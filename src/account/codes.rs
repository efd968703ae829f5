//! One-time codes: for signing a PLC operation, moving an account here (an invite),
//! deleting the account, confirming or changing its email, resetting its password. They
//! are mailed where a relay is configured (`email.rs`) and always shown on the box by
//! `perch account codes`; the log only says that one is waiting.

use rand_core::{OsRng, RngCore};

use super::Accounts;
use crate::store::StoreError;
use crate::store::account;

/// A code for signing PLC operations lives an hour.
pub const PLC_TOKEN_SECS: i64 = 3600;
/// A code from `perch account invite` lives a week.
pub const INVITE_SECS: i64 = 7 * 24 * 3600;
/// A `requestAccountDelete` code lives 15 minutes, as do the email and password-reset ones.
pub const DELETE_SECS: i64 = 15 * 60;
/// Email confirmation, email change and password reset codes.
pub const EMAIL_SECS: i64 = 15 * 60;

/// What a one-time code is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Lets a migration tool create the account here (`createAccount` with a DID).
    Invite,
    /// `deleteAccount`.
    DeleteAccount,
    /// `confirmEmail`.
    ConfirmEmail,
    /// `updateEmail` of a confirmed email.
    UpdateEmail,
    /// `resetPassword`.
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Invite => "invite",
            Purpose::DeleteAccount => "delete_account",
            Purpose::ConfirmEmail => "confirm_email",
            Purpose::UpdateEmail => "update_email",
            Purpose::ResetPassword => "reset_password",
        }
    }

    pub(super) fn ttl(self) -> i64 {
        match self {
            Purpose::Invite => INVITE_SECS,
            Purpose::DeleteAccount => DELETE_SECS,
            Purpose::ConfirmEmail | Purpose::UpdateEmail | Purpose::ResetPassword => EMAIL_SECS,
        }
    }
}

/// What a code handed in turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeState {
    Valid,
    Expired,
    Unknown,
}

/// `XXXXX-XXXXX`: 40 random bits, easy to read out and type.
fn new_code() -> String {
    let mut b = [0u8; 5];
    OsRng.fill_bytes(&mut b);
    let raw: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("{}-{}", &raw[..5], &raw[5..])
}

/// A code as typed or pasted: spaces around it and lower case forgiven.
pub(super) fn typed(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

impl Accounts<'_> {
    /// A new code for `purpose`, stored until it expires or is used. It replaces the earlier
    /// codes for the same purpose, except invites (the owner may hand out several).
    pub async fn new_code(&self, purpose: Purpose) -> Result<String, StoreError> {
        let code = new_code();
        let c = code.clone();
        let now = crate::clock::unix_secs();
        self.writer
            .exec(move |db, _| {
                if purpose != Purpose::Invite {
                    account::delete_action_tokens(db, purpose.as_str())?;
                }
                account::insert_action_token(db, purpose.as_str(), &c, now + purpose.ttl(), now)
            })
            .await?;
        Ok(code)
    }

    /// Uses up a code for `purpose`: valid, expired (and gone), or unknown.
    pub async fn take_code(&self, purpose: Purpose, code: &str) -> Result<CodeState, StoreError> {
        let code = typed(code);
        let now = crate::clock::unix_secs();
        self.writer
            .exec(move |db, _| {
                Ok(
                    match account::take_action_token_state(db, purpose.as_str(), &code, now)? {
                        None => CodeState::Unknown,
                        Some(true) => CodeState::Expired,
                        Some(false) => CodeState::Valid,
                    },
                )
            })
            .await
    }

    /// The codes waiting to be used, for `perch account codes`.
    pub async fn pending_codes(&self) -> Result<Vec<account::PendingCode>, StoreError> {
        let now = crate::clock::unix_secs();
        self.store
            .read(move |db| account::pending_codes(db, now))
            .await
    }

    /// Whether `code` is a live code for `purpose` (without using it up).
    pub async fn code_is_valid(&self, purpose: Purpose, code: &str) -> Result<bool, StoreError> {
        let code = typed(code);
        let now = crate::clock::unix_secs();
        self.store
            .read(move |db| account::action_token_valid(db, purpose.as_str(), &code, now))
            .await
    }

    /// A new code for `signPlcOperation`.
    pub async fn new_plc_code(&self) -> Result<String, StoreError> {
        let code = new_code();
        let c = code.clone();
        let expires = crate::clock::unix_secs() + PLC_TOKEN_SECS;
        self.writer
            .exec(move |db, _| account::insert_plc_token(db, &c, expires))
            .await?;
        Ok(code)
    }

    /// Uses up a PLC code.
    pub async fn take_plc_code(&self, code: &str) -> Result<CodeState, StoreError> {
        let code = typed(code);
        let now = crate::clock::unix_secs();
        let taken = self
            .writer
            .exec(move |db, _| account::take_plc_token(db, &code, now))
            .await?;
        Ok(match taken {
            None => CodeState::Unknown,
            Some(true) => CodeState::Expired,
            Some(false) => CodeState::Valid,
        })
    }
}
