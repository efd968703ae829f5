//! One-time codes the owner reads on the box (there is no mail server): for signing a PLC
//! operation, for moving an account here (an invite), for deleting the account.

use rand_core::{OsRng, RngCore};

use super::Accounts;
use crate::store::StoreError;
use crate::store::account;

/// A code for signing PLC operations lives an hour.
pub const PLC_TOKEN_SECS: i64 = 3600;
/// A code from `perch account invite` lives a week.
pub const INVITE_SECS: i64 = 7 * 24 * 3600;
/// A `requestAccountDelete` code lives 15 minutes.
pub const DELETE_SECS: i64 = 15 * 60;

/// What a one-time code is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Lets a migration tool create the account here (`createAccount` with a DID).
    Invite,
    /// `deleteAccount`.
    DeleteAccount,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Invite => "invite",
            Purpose::DeleteAccount => "delete_account",
        }
    }

    fn ttl(self) -> i64 {
        match self {
            Purpose::Invite => INVITE_SECS,
            Purpose::DeleteAccount => DELETE_SECS,
        }
    }
}

/// What happened to a PLC code that was handed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlcCode {
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

impl Accounts<'_> {
    /// A new code for `purpose`, stored until it expires or is used.
    pub async fn new_code(&self, purpose: Purpose) -> Result<String, StoreError> {
        let code = new_code();
        let c = code.clone();
        let now = crate::clock::unix_secs();
        self.writer
            .exec(move |db, _| {
                account::insert_action_token(db, purpose.as_str(), &c, now + purpose.ttl(), now)
            })
            .await?;
        Ok(code)
    }

    /// Whether `code` is a live code for `purpose` (without using it up).
    pub async fn code_is_valid(&self, purpose: Purpose, code: &str) -> Result<bool, StoreError> {
        let code = code.to_owned();
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
    pub async fn take_plc_code(&self, code: &str) -> Result<PlcCode, StoreError> {
        let code = code.to_owned();
        let now = crate::clock::unix_secs();
        let taken = self
            .writer
            .exec(move |db, _| account::take_plc_token(db, &code, now))
            .await?;
        Ok(match taken {
            None => PlcCode::Unknown,
            Some(true) => PlcCode::Expired,
            Some(false) => PlcCode::Valid,
        })
    }
}
