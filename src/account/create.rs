//! Creating the one account: keys, the DID (did:plc registered at the PLC
//! directory, or did:web on this host), the password hash, and the repo's
//! first commit; changing its password.

use std::sync::Arc;

use super::{AccountError, Accounts, other};
use crate::identity::plc::{self, directory::Directory};
use crate::keys::{self, KeyDir};
use crate::store::account::{self, Account};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DidMethod {
    Plc,
    Web,
}

/// The new account's password: as typed, or already hashed by the owner.
#[derive(Clone)]
pub enum NewPassword {
    Plain(String),
    /// An argon2id PHC string (checked with [`crate::auth::check_password_hash`]).
    Hash(String),
}

impl Accounts<'_> {
    /// Create the account. Safe to re-run after a failure: keys persist and
    /// PLC signing is deterministic, so a retry registers the same DID.
    pub async fn create(
        &self,
        handle: &str,
        password: &str,
        email: Option<String>,
        method: DidMethod,
    ) -> Result<Account, AccountError> {
        self.create_with(
            handle,
            NewPassword::Plain(password.to_owned()),
            email,
            method,
        )
        .await
    }

    pub async fn create_with(
        &self,
        handle: &str,
        password: NewPassword,
        email: Option<String>,
        method: DidMethod,
    ) -> Result<Account, AccountError> {
        crate::syntax::validate_handle(handle).map_err(|e| AccountError::Invalid(e.to_string()))?;
        let handle = crate::syntax::normalize_handle(handle);
        if let Some(a) = self.store.read(account::get_account).await? {
            return Err(AccountError::Exists(a.did));
        }
        let hash = match password {
            NewPassword::Plain(pw) => self.hasher.hash(pw).await?,
            NewPassword::Hash(phc) => {
                crate::auth::check_password_hash(&phc)
                    .map_err(|e| AccountError::Invalid(e.to_string()))?;
                phc
            }
        };
        let did = match method {
            DidMethod::Web => crate::identity::web_did(
                &self.config.hostname,
                self.config.listen.port(),
                self.config.dev,
            ),
            DidMethod::Plc => self.register_plc(&handle).await?,
        };
        let acct = Account {
            did: did.clone(),
            handle: handle.clone(),
            email,
            email_confirmed_at: None,
            password_hash: hash,
            status: account::AccountStatus::Active,
            created_at: crate::clock::datetime_now(),
        };
        let row = acct.clone();
        self.writer
            .exec(move |c, _| account::create_account(c, &row))
            .await?;
        self.writer
            .create_repo(did, handle, Arc::clone(self.repo_key))
            .await?;
        Ok(acct)
    }

    /// Sign a genesis operation with our rotation key and submit it.
    async fn register_plc(&self, handle: &str) -> Result<String, AccountError> {
        let directory = Directory::new(self.net, &self.config.plc_url).map_err(|_| {
            AccountError::Invalid(
                "no plc_url configured: set plc_url (or PERCH_PLC_URL), or use --did-method web"
                    .into(),
            )
        })?;
        let keydir = KeyDir::open(&self.config.data_dir).map_err(other)?;
        let rotation = keydir
            .keypair_or_create(keys::ROTATION_KEY)
            .map_err(other)?;
        let op = plc::Operation::genesis(
            vec![rotation.did_key()],
            &self.repo_key.did_key(),
            handle,
            &self.config.public_url(),
        )
        .map_err(|e| AccountError::Plc(e.to_string()))?;
        let signed = plc::sign(op, &rotation);
        let did = plc::did_for_genesis(&signed).map_err(|e| AccountError::Plc(e.to_string()))?;
        directory
            .submit(&did, &signed)
            .await
            .map_err(|e| AccountError::Plc(e.to_string()))?;
        Ok(did)
    }

    /// Change the account password and end every session (app passwords' included): refresh
    /// tokens, and with them every access token (each names its session). With
    /// `revoke_app_passwords`, the app passwords themselves go too.
    pub async fn set_password(
        &self,
        password: &str,
        revoke_app_passwords: bool,
    ) -> Result<(), AccountError> {
        let hash = self.hasher.hash(password.to_owned()).await?;
        self.writer
            .exec(move |c, _| {
                account::set_password_hash(c, &hash)?;
                if revoke_app_passwords {
                    for p in account::list_app_passwords(c)? {
                        account::delete_app_password(c, &p.name)?;
                    }
                }
                // Apps signed in over OAuth and browsers signed in to its pages too.
                crate::store::oauth::delete_all_grants(c)?;
                account::delete_all_refresh_tokens(c)
            })
            .await?;
        Ok(())
    }
}
