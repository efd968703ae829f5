//! Creating the one account: keys, the DID (did:plc registered at the PLC
//! directory, or did:web on this host), the password hash, and the repo's
//! first commit.

use std::sync::Arc;

use hyper::Method;
use rand_core::OsRng;

use crate::app::App;
use crate::identity::plc;
use crate::keys::{self, KeyDir};
use crate::store::account::{self, Account};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DidMethod {
    Plc,
    Web,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account already exists on this server ({0})")]
    Exists(String),
    #[error("PLC directory: {0}")]
    Plc(String),
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> AccountError {
    AccountError::Other(e.to_string())
}

/// Create the account. Safe to re-run after a failure: keys persist and
/// PLC signing is deterministic, so a retry registers the same DID.
/// The new account's password: as typed, or already hashed by the owner.
#[derive(Clone)]
pub enum NewPassword {
    Plain(String),
    /// An argon2id PHC string (checked with [`crate::auth::check_password_hash`]).
    Hash(String),
}

pub async fn create(
    app: &Arc<App>,
    handle: &str,
    password: &str,
    email: Option<String>,
    method: DidMethod,
) -> Result<Account, AccountError> {
    create_with(
        app,
        handle,
        NewPassword::Plain(password.to_owned()),
        email,
        method,
    )
    .await
}

pub async fn create_with(
    app: &Arc<App>,
    handle: &str,
    password: NewPassword,
    email: Option<String>,
    method: DidMethod,
) -> Result<Account, AccountError> {
    crate::syntax::validate_handle(handle).map_err(|e| AccountError::Invalid(e.to_string()))?;
    let handle = crate::syntax::normalize_handle(handle);
    if let Some(a) = app.account().await.map_err(other)? {
        return Err(AccountError::Exists(a.did));
    }
    let hash = match password {
        NewPassword::Plain(pw) => {
            tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw, &mut OsRng))
                .await
                .map_err(other)?
                .map_err(|e| AccountError::Invalid(e.to_string()))?
        }
        NewPassword::Hash(phc) => {
            crate::auth::check_password_hash(&phc)
                .map_err(|e| AccountError::Invalid(e.to_string()))?;
            phc
        }
    };
    let did = match method {
        DidMethod::Web => crate::api::identity::web_did(
            &app.config.hostname,
            app.config.listen.port(),
            app.config.dev,
        ),
        DidMethod::Plc => register_plc(app, &handle).await?,
    };
    let acct = Account {
        did: did.clone(),
        handle: handle.clone(),
        email,
        email_confirmed_at: None,
        password_hash: hash,
        status: "active".into(),
        created_at: crate::syntax::format_datetime_millis(crate::api::repo::unix_now() * 1000),
    };
    let row = acct.clone();
    app.writer
        .exec(move |c, _| account::create_account(c, &row))
        .await
        .map_err(other)?;
    app.writer
        .create_repo(did, handle, Arc::clone(&app.repo_key))
        .await
        .map_err(other)?;
    Ok(acct)
}

/// Sign a genesis operation with our rotation key and submit it.
async fn register_plc(app: &App, handle: &str) -> Result<String, AccountError> {
    let plc_url = app.config.plc_url.trim_end_matches('/');
    if plc_url.is_empty() {
        return Err(AccountError::Invalid(
            "no plc_url configured: set plc_url (or PERCH_PLC_URL), or use --did-method web".into(),
        ));
    }
    let keydir = KeyDir::open(&app.config.data_dir).map_err(other)?;
    let rotation = keydir
        .keypair_or_create(keys::ROTATION_KEY)
        .map_err(other)?;
    let op = plc::Operation::genesis(
        vec![rotation.did_key()],
        &app.repo_key.did_key(),
        handle,
        &app.config.public_url(),
    )
    .map_err(|e| AccountError::Plc(e.to_string()))?;
    let signed = plc::sign(op, &rotation);
    let did = plc::did_for_genesis(&signed).map_err(|e| AccountError::Plc(e.to_string()))?;
    let (status, body) = app
        .net
        .json(
            Method::POST,
            &format!("{plc_url}/{did}"),
            Some(&signed.to_json()),
        )
        .await
        .map_err(|e| AccountError::Plc(e.to_string()))?;
    if !status.is_success() {
        return Err(AccountError::Plc(format!(
            "{} answered {status}: {}",
            plc_url,
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    Ok(did)
}

/// Change the account password (and end every session).
pub async fn set_password(app: &Arc<App>, password: &str) -> Result<(), AccountError> {
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw, &mut OsRng))
        .await
        .map_err(other)?
        .map_err(|e| AccountError::Invalid(e.to_string()))?;
    app.writer
        .exec(move |c, _| {
            account::set_password_hash(c, &hash)?;
            account::delete_all_refresh_tokens(c)
        })
        .await
        .map_err(other)
}
