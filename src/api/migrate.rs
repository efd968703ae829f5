//! Moving an account to this server with the standard flow (any migration tool works):
//! `createAccount` with the existing DID and a service-auth token from the old server,
//! `importRepo`, blobs by `uploadBlob` (`listMissingBlobs` says which), `activateAccount`
//! once the DID document points here; and `deactivateAccount` for leaving.

use std::sync::Arc;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{AccountAction, AccountAttr, Permit, now, require_user};
use crate::app::App;
use crate::auth::Scope;
use crate::crypto::PublicKey;
use crate::crypto::jwt::Jwt;
use crate::repo::car::CarLimits;
use crate::repo::export::{Expected, load_repo_car_for};
use crate::store::account::{self, Account};
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

type HandlerResult = Result<XrpcResponse, XrpcError>;

/// Largest repo CAR `importRepo` accepts. A repo with 100,000 posts is about 60 MB.
pub const IMPORT_LIMIT: usize = 512 * 1024 * 1024;

const CREATE_ACCOUNT_LXM: &str = "com.atproto.server.createAccount";

fn unauthorized(error: &'static str, m: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::UNAUTHORIZED, error, m)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountInput {
    did: Option<String>,
    handle: String,
    email: Option<String>,
    password: Option<String>,
    invite_code: Option<String>,
}

/// Checks a service-auth token minted by the account's current PDS: issuer = `did`, audience
/// = this server, method = createAccount, not expired, signed by the DID document's key.
async fn verify_migration_token(app: &App, req: &XrpcRequest, did: &str) -> Result<(), XrpcError> {
    // The reference's words when the token is missing or speaks for another DID.
    let missing = || {
        unauthorized(
            "AuthenticationRequired",
            format!("Missing auth to create account with did: {did}"),
        )
    };
    let token = super::auth::bearer(req).map_err(|_| missing())?;
    let jwt = Jwt::decode(token).map_err(|_| unauthorized("BadJwt", "malformed token"))?;
    let claim = |k: &str| jwt.claims.get(k).and_then(Value::as_str);
    if claim("iss") != Some(did) {
        return Err(missing());
    }
    let aud_ok =
        claim("aud").is_some_and(|a| a.split('#').next() == Some(app.service_did.as_str()));
    if !aud_ok {
        return Err(unauthorized(
            "BadJwtAudience",
            "token audience is not this server",
        ));
    }
    if claim("lxm") != Some(CREATE_ACCOUNT_LXM) {
        return Err(unauthorized(
            "BadJwtLexiconMethod",
            "token is not for createAccount",
        ));
    }
    crate::crypto::jwt::check_times(&jwt.claims, now(), 5)
        .map_err(|_| unauthorized("JwtExpired", "token expired"))?;
    let doc = app
        .did_document_fresh(did)
        .await
        .map_err(|e| XrpcError::lexicon("UnresolvableDid", e.to_string()))?;
    let key_str = crate::identity::resolve::signing_key(&doc).ok_or_else(|| {
        XrpcError::lexicon("IncompatibleDidDoc", "DID document has no #atproto key")
    })?;
    let key = PublicKey::from_did_key(&key_str).map_err(|e| {
        XrpcError::lexicon(
            "IncompatibleDidDoc",
            format!("DID document's #atproto key {key_str} is unusable: {e}"),
        )
    })?;
    jwt.verify_es(&key).map_err(|_| {
        unauthorized(
            "BadJwtSignature",
            "token signature does not match the DID's key",
        )
    })
}

/// `com.atproto.server.createAccount` with an existing DID: the account arrives deactivated
/// with an empty repo (so `checkAccountStatus` has a commit to name from the start, as the
/// reference's has); `importRepo` and `activateAccount` complete the move. This server
/// holds one account, so it is refused once one exists; and since a fresh box sits on the
/// internet before its owner moves in, it takes a one-time invite code from
/// `perch account invite` (which `perch migrate in` mints for itself).
pub async fn create_account(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let input: CreateAccountInput = req.json(JSON_LIMIT).await?;
    let Some(did) = input.did else {
        return Err(XrpcError::invalid_request(
            "this server's account is created on the server itself (perch init); \
             createAccount here only accepts an existing DID moving in",
        ));
    };
    crate::syntax::validate_did(&did).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    crate::syntax::validate_handle(&input.handle)
        .map_err(|e| XrpcError::lexicon("InvalidHandle", e.to_string()))?;
    let handle = crate::syntax::normalize_handle(&input.handle);
    let password = input
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| XrpcError::lexicon("InvalidPassword", "a password is required"))?;
    if let Some(a) = app.account().await? {
        return Err(XrpcError::invalid_request(format!(
            "this server already holds an account ({}); it serves one account only",
            a.did
        )));
    }
    let invite = input.invite_code.filter(|c| !c.is_empty()).ok_or_else(|| {
        XrpcError::lexicon(
            "InvalidInviteCode",
            "an invite code is required: run `perch account invite` on the server",
        )
    })?;
    verify_migration_token(&app, &req, &did).await?;
    let hash = match app.hasher.hash(password).await {
        Err(crate::hasher::HashError::Auth(e)) => {
            return Err(XrpcError::lexicon("InvalidPassword", e.to_string()));
        }
        other => other?,
    };
    let acct = Account {
        did: did.clone(),
        handle,
        email: input.email,
        email_confirmed_at: None,
        password_hash: hash,
        status: account::AccountStatus::Deactivated,
        created_at: crate::syntax::format_datetime_millis(now() * 1000),
    };
    let created = app
        .writer
        .create_moving_account(acct.clone(), Arc::clone(&app.repo_key), invite, now())
        .await?;
    if !created {
        return Err(XrpcError::lexicon(
            "InvalidInviteCode",
            "the invite code is unknown, used or expired",
        ));
    }
    let tokens = app.accounts().issue(&did, Scope::Access, None).await?;
    let done = crate::account::LoggedIn {
        account: acct,
        scope: Scope::Access,
        tokens,
    };
    let mut body = super::server::session_body(&app, &done).await;
    if let Some(m) = body.as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "accessJwt" | "refreshJwt" | "handle" | "did" | "didDoc"
            )
        });
    }
    Ok(XrpcResponse::Json(body))
}

/// The keys an imported commit may be signed with: the one the DID document names now (the
/// old server's, in the middle of a move) and this server's own (a repo it signed before).
/// For this server's own did:web the document is ours, so nothing is fetched.
async fn commit_keys(app: &App, did: &str) -> Result<Vec<PublicKey>, XrpcError> {
    let mut keys = vec![app.repo_key.public_key()];
    let c = &app.config;
    if did == crate::identity::web_did(&c.hostname, c.listen.port(), c.dev) {
        return Ok(keys);
    }
    let cannot = |why: String| {
        XrpcError::invalid_request(format!("cannot check the repository's signature: {why}"))
    };
    let doc = app
        .did_document_fresh(did)
        .await
        .map_err(|e| cannot(e.to_string()))?;
    let key = crate::identity::resolve::signing_key(&doc)
        .and_then(|k| PublicKey::from_did_key(&k).ok())
        .ok_or_else(|| cannot("the DID document has no usable #atproto key".into()))?;
    keys.push(key);
    Ok(keys)
}

/// `com.atproto.repo.importRepo`: the whole repo as a CAR. Every block is hash-checked, the
/// commit must be this account's and signed by its key, and the MST and every record are
/// checked before anything is stored.
pub async fn import_repo(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = require_user(&app, &req).await?;
    session.permit_account(AccountAttr::Repo, AccountAction::Manage)?;
    let ct = req.header("content-type").unwrap_or("");
    if !ct.starts_with("application/vnd.ipld.car") {
        return Err(XrpcError::invalid_request(
            "importRepo takes Content-Type application/vnd.ipld.car",
        ));
    }
    let bytes = req.bytes(IMPORT_LIMIT).await?;
    let keys = commit_keys(&app, &session.did).await?;
    let limits = CarLimits {
        max_total_bytes: IMPORT_LIMIT as u64,
        max_blocks: 10_000_000,
        ..CarLimits::default()
    };
    let did = session.did.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let expected = Expected {
            did: &did,
            keys: &keys,
        };
        load_repo_car_for(bytes.as_ref(), limits, &expected)
    })
    .await
    .map_err(XrpcError::internal)?
    .map_err(|e| XrpcError::invalid_request(format!("not a valid repository: {e}")))?;
    let imported = app
        .writer
        .import_repo(session.did.clone(), Arc::clone(&app.repo_key), loaded)
        .await?;
    tracing::info!(
        "imported repo of {}: {} records, {} blocks, {} blobs expected, rev {}",
        session.did,
        imported.records,
        imported.blocks,
        imported.expected_blobs,
        imported.rev
    );
    Ok(XrpcResponse::Empty)
}

/// `com.atproto.server.activateAccount`: only once the DID document points here; the repo
/// gets a fresh commit under this server's key, announced with `#account`, `#identity` and
/// `#sync`, and the relays are asked to crawl.
pub async fn activate_account(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let session = require_user(&app, &req).await?;
    session.require_password_session()?;
    app.account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("no account"))?;
    if !app.accounts().activate().await? {
        return Ok(XrpcResponse::Empty);
    }
    let federation = Arc::clone(&app.federation);
    tokio::spawn(async move { federation.request_all().await });
    Ok(XrpcResponse::Empty)
}

/// `com.atproto.server.deactivateAccount`: the repo stops being served to others (the owner
/// can still read it, e.g. to move it elsewhere) and the firehose says so. `deleteAfter` is
/// not acted on: deleting is `perch`'s owner's call.
pub async fn deactivate_account(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = require_user(&app, &req).await?;
    session.require_password_session()?;
    let _: Value = req.json(JSON_LIMIT).await.unwrap_or(Value::Null);
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("no account"))?;
    if acct.did != session.did {
        return Err(XrpcError::invalid_token("no account"));
    }
    app.accounts().deactivate().await?;
    Ok(XrpcResponse::Empty)
}

/// `com.atproto.server.requestAccountDelete`: a code for `deleteAccount`, mailed to the
/// account's address when a relay is configured and shown by `perch account codes`.
pub async fn request_account_delete(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let session = require_user(&app, &req).await?;
    session.require_password_session()?;
    app.accounts()
        .issue_code(crate::account::Purpose::DeleteAccount)
        .await?;
    Ok(XrpcResponse::Empty)
}

#[derive(Deserialize)]
struct DeleteAccountInput {
    did: String,
    password: String,
    token: String,
}

/// `com.atproto.server.deleteAccount`: with the password and the code, the account and all it
/// owns are removed and the firehose says `#account {status: deleted}`.
pub async fn delete_account(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let input: DeleteAccountInput = req.json(JSON_LIMIT).await?;
    let cids = app
        .accounts()
        .delete(req.peer, &input.did, input.password, &input.token)
        .await?;
    let blobs = app.blobs.clone();
    let _ = tokio::task::spawn_blocking(move || blobs.delete_many_blocking(&cids)).await;
    Ok(XrpcResponse::Empty)
}
