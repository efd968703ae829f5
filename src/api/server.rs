//! `com.atproto.server.*`: sessions, app passwords, service auth, status.

use std::sync::Arc;

use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HandlerResult;
use super::auth::{self as session_auth, Permit, Session, now};
use crate::account::LoggedIn;
use crate::app::App;
use crate::auth;
use crate::store::{
    self,
    account::{self, Account},
};
use crate::syntax;
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

pub async fn describe_server(app: Arc<App>, _req: XrpcRequest) -> HandlerResult {
    Ok(XrpcResponse::Json(json!({
        "did": app.service_did,
        "availableUserDomains": [],
        "inviteCodeRequired": true,
        "phoneVerificationRequired": false,
        "links": {},
        "contact": {},
    })))
}

/// A session as createSession and refreshSession answer it.
pub(super) async fn session_body(app: &App, done: &LoggedIn) -> Value {
    let mut v = account_body(app, &done.account, !done.scope.is_app_password()).await;
    v["accessJwt"] = Value::String(done.tokens.access.clone());
    v["refreshJwt"] = Value::String(done.tokens.refresh.clone());
    v
}

/// The account as getSession answers it (the email only where the session may see it).
async fn account_body(app: &App, acct: &Account, email: bool) -> Value {
    let mut v = json!({
        "handle": acct.handle,
        "did": acct.did,
        "didDoc": super::identity::did_document(app, acct).await,
        "emailConfirmed": acct.email_confirmed_at.is_some(),
        "emailAuthFactor": false,
        "active": acct.is_active(),
    });
    if email && let Some(e) = &acct.email {
        v["email"] = Value::String(e.clone());
    }
    if !acct.is_active() {
        v["status"] = acct.status.as_str().into();
    }
    v
}

#[derive(Deserialize)]
struct CreateSessionInput {
    identifier: String,
    password: String,
}

pub async fn create_session(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let input: CreateSessionInput = req.json(JSON_LIMIT).await?;
    let done = app
        .accounts()
        .login(req.peer, &input.identifier, input.password)
        .await?;
    Ok(XrpcResponse::Json(session_body(&app, &done).await))
}

pub async fn get_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let s = session_auth::require_user(&app, &req).await?;
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("Token could not be verified"))?;
    Ok(XrpcResponse::Json(
        account_body(&app, &acct, s.sees_email()).await,
    ))
}

pub async fn refresh_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let token = session_auth::bearer(&req)?;
    let done = app.accounts().refresh(token).await?;
    Ok(XrpcResponse::Json(session_body(&app, &done).await))
}

pub async fn delete_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let token = session_auth::bearer(&req)?;
    app.accounts().logout(token).await?;
    Ok(XrpcResponse::Empty)
}

#[derive(Deserialize)]
struct CreateAppPasswordInput {
    name: String,
    #[serde(default)]
    privileged: bool,
}

pub async fn create_app_password(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let s: Session = session_auth::require_user(&app, &req).await?;
    s.require_password_session()?;
    let input: CreateAppPasswordInput = req.json(JSON_LIMIT).await?;
    let made = app
        .accounts()
        .create_app_password(&input.name, input.privileged)
        .await?;
    Ok(XrpcResponse::Json(json!({
        "name": made.row.name,
        "password": made.password,
        "createdAt": made.row.created_at,
        "privileged": made.row.privileged,
    })))
}

pub async fn list_app_passwords(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req)
        .await?
        .refuse_oauth()?;
    let list = app.accounts().app_passwords().await?;
    let passwords: Vec<Value> = list
        .into_iter()
        .map(|p| json!({ "name": p.name, "createdAt": p.created_at, "privileged": p.privileged }))
        .collect();
    Ok(XrpcResponse::Json(json!({ "passwords": passwords })))
}

#[derive(Deserialize)]
struct RevokeInput {
    name: String,
}

pub async fn revoke_app_password(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req)
        .await?
        .refuse_oauth()?;
    let input: RevokeInput = req.json(JSON_LIMIT).await?;
    app.accounts().revoke_app_password(&input.name).await?;
    Ok(XrpcResponse::Empty)
}

pub async fn get_service_auth(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let s = session_auth::require_user(&app, &req).await?;
    let aud = req.required("aud")?.to_owned();
    let did_part = aud.split('#').next().unwrap_or("");
    syntax::validate_did(did_part).map_err(|_| XrpcError::invalid_request("aud must be a DID"))?;
    let lxm = req.param("lxm").map(str::to_owned);
    if let Some(l) = &lxm {
        syntax::validate_nsid(l).map_err(|_| XrpcError::invalid_request("lxm must be an NSID"))?;
    }
    let exp = req
        .param("exp")
        .map(|e| {
            e.parse::<i64>()
                .map_err(|_| XrpcError::invalid_request("exp must be an integer"))
        })
        .transpose()?;
    if s.permissions.is_some() {
        // An app's token is for one method it was granted, never a blanket one.
        let l = lxm.as_deref().ok_or_else(|| {
            XrpcError::invalid_request("apps signed in with OAuth must name the method (lxm)")
        })?;
        s.permit_rpc(l, &aud)?;
    } else if let Some(l) = &lxm
        && auth::methods::is_privileged(l)
        && !s.scope.is_privileged()
    {
        return Err(XrpcError::invalid_request(format!(
            "insufficient access to request a service auth token for the following method: {l}"
        )));
    }
    let t = now();
    let lifetime = auth::service_auth::service_auth_lifetime(t, exp, lxm.is_some())
        .map_err(|m| XrpcError::lexicon("BadExpiration", m))?;
    if let Some(l) = &lxm
        && auth::methods::is_protected(l)
    {
        return Err(XrpcError::invalid_request(format!(
            "cannot request a service auth token for the following protected method: {l}"
        )));
    }
    let token = auth::mint_service_auth(
        &app.repo_key,
        &s.did,
        &aud,
        lxm.as_deref(),
        t,
        lifetime,
        &mut OsRng,
    );
    Ok(XrpcResponse::Json(json!({ "token": token })))
}

pub async fn check_account_status(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req).await?;
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("no account"))?;
    // Every field is required (`@atproto/api` rejects the answer otherwise), so a moving
    // account that an older perch created without a repo gets the empty one it has now.
    if app.store.read(store::repo::get_root).await?.is_none() {
        app.writer
            .ensure_repo(acct.did.clone(), Arc::clone(&app.repo_key))
            .await?;
    }
    let (root, blocks, records, prefs, (expected, imported)) = app
        .store
        .read(|c| {
            Ok((
                store::repo::get_root(c)?,
                store::repo::block_count(c)?,
                store::repo::record_count(c)?,
                account::get_preferences(c)?.is_some() as i64,
                store::blobs::blob_counts(c)?,
            ))
        })
        .await?;
    let root = root.ok_or_else(|| XrpcError::internal("the account has no repo"))?;
    let valid_did = app.accounts().did_points_here(&acct.did).await.is_ok();
    Ok(XrpcResponse::Json(json!({
        "activated": acct.is_active(),
        "validDid": valid_did,
        "repoCommit": root.commit_cid.to_string(),
        "repoRev": root.rev,
        "repoBlocks": blocks,
        "indexedRecords": records,
        "privateStateValues": prefs,
        "expectedBlobs": expected,
        "importedBlobs": imported,
    })))
}

pub async fn get_account_invite_codes(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req).await?;
    Ok(XrpcResponse::Json(json!({ "codes": [] })))
}
