//! `com.atproto.server.*`: sessions, app passwords, service auth, status.

use std::sync::Arc;

use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HandlerResult;
use super::auth::{self as session_auth, Session, now};
use crate::app::App;
use crate::auth::{self, Scope};
use crate::store::{
    self,
    account::{self, Account, AppPassword, RefreshToken},
};
use crate::syntax;
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

/// A rotated refresh token keeps working this long, so a client that lost
/// the response to its refresh call is not logged out (reference: 2 h).
const REFRESH_GRACE_SECS: i64 = 2 * 60 * 60;

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

pub(super) async fn session_body(
    app: &App,
    acct: &Account,
    scope: Scope,
    tokens: Option<(String, String)>,
) -> Value {
    let mut v = json!({
        "handle": acct.handle,
        "did": acct.did,
        "didDoc": super::identity::did_document(app, acct).await,
        "emailConfirmed": acct.email_confirmed_at.is_some(),
        "emailAuthFactor": false,
        "active": acct.is_active(),
    });
    if !scope.is_app_password()
        && let Some(e) = &acct.email
    {
        v["email"] = Value::String(e.clone());
    }
    if !acct.is_active() {
        v["status"] = Value::String(acct.status.clone());
    }
    if let Some((access, refresh)) = tokens {
        v["accessJwt"] = Value::String(access);
        v["refreshJwt"] = Value::String(refresh);
    }
    v
}

/// Mint a token pair and record the refresh token.
pub(super) async fn issue(
    app: &App,
    did: &str,
    scope: Scope,
    app_password: Option<String>,
) -> Result<(String, String), XrpcError> {
    let t = now();
    let jti = auth::new_jti(&mut OsRng);
    let access = auth::mint_access(&app.jwt_secret, did, &app.service_did, scope, t);
    let refresh = auth::mint_refresh(&app.jwt_secret, did, &app.service_did, &jti, t);
    let row = RefreshToken {
        jti,
        app_password_name: app_password,
        expires_at: t + auth::tokens::REFRESH_LIFETIME_SECS,
        next_jti: None,
        rotated_at: None,
    };
    app.writer
        .exec(move |c, _| {
            account::delete_expired_refresh_tokens(c, t)?;
            account::insert_refresh_token(c, &row)
        })
        .await?;
    Ok((access, refresh))
}

#[derive(Deserialize)]
struct CreateSessionInput {
    identifier: String,
    password: String,
}

fn invalid_login() -> XrpcError {
    XrpcError::auth_required("Invalid identifier or password")
}

fn now_ms() -> u64 {
    (now().max(0) as u64) * 1000
}

/// Use the login limiter without holding its lock across an await.
fn limiter<T>(
    app: &App,
    f: impl FnOnce(&mut crate::auth::LoginLimiter) -> T,
) -> Result<T, XrpcError> {
    let mut guard = app
        .login_limiter
        .lock()
        .map_err(|_| XrpcError::internal("limiter lock poisoned"))?;
    Ok(f(&mut guard))
}

pub async fn create_session(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let ip = req.peer;
    limiter(&app, |l| l.check(ip, now_ms()))?.map_err(|retry| XrpcError::rate_limited(retry.0))?;
    let input: CreateSessionInput = req.json(JSON_LIMIT).await?;
    let acct = app.account().await?.ok_or_else(invalid_login)?;
    let id = input.identifier.trim().to_ascii_lowercase();
    let id = id.strip_prefix('@').unwrap_or(&id);
    let matches = id == acct.handle
        || input.identifier.trim() == acct.did
        || acct
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(id));
    let store = Arc::clone(&app.store);
    let main_hash = acct.password_hash.clone();
    let password = input.password;
    // Hash checks are deliberately slow: keep them off the async threads.
    let found = tokio::task::spawn_blocking(
        move || -> Result<Option<(Scope, Option<String>)>, store::StoreError> {
            if !matches {
                return Ok(None);
            }
            if auth::verify_password(&password, &main_hash) {
                return Ok(Some((Scope::Access, None)));
            }
            if !auth::looks_like_app_password(&password) {
                return Ok(None);
            }
            for ap in store.read_blocking(account::list_app_passwords)? {
                if auth::verify_password(&password, &ap.password_hash) {
                    let scope = if ap.privileged {
                        Scope::AppPassPrivileged
                    } else {
                        Scope::AppPass
                    };
                    return Ok(Some((scope, Some(ap.name))));
                }
            }
            Ok(None)
        },
    )
    .await
    .map_err(XrpcError::internal)??;
    let Some((scope, app_password)) = found else {
        limiter(&app, |l| l.record_failure(ip, now_ms()))?;
        return Err(invalid_login());
    };
    limiter(&app, |l| l.record_success(ip, now_ms()))?;
    if acct.status == "takendown" {
        return Err(XrpcError::lexicon(
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    let tokens = issue(&app, &acct.did, scope, app_password).await?;
    Ok(XrpcResponse::Json(
        session_body(&app, &acct, scope, Some(tokens)).await,
    ))
}

pub async fn get_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let s = session_auth::require_user(&app, &req).await?;
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("Token could not be verified"))?;
    Ok(XrpcResponse::Json(
        session_body(&app, &acct, s.scope, None).await,
    ))
}

fn revoked() -> XrpcError {
    XrpcError::expired_token("Token has been revoked")
}

pub async fn refresh_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let token = session_auth::bearer(&req)?;
    let t = now();
    let claims = auth::verify_refresh(&app.jwt_secret, token, &app.service_did, t, false)
        .map_err(session_auth::token_error)?;
    let acct = app
        .account()
        .await?
        .filter(|a| a.did == claims.sub)
        .ok_or_else(|| XrpcError::invalid_token("Token could not be verified"))?;
    if acct.status == "takendown" {
        return Err(XrpcError::lexicon(
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    let old = claims.jti.clone();
    let old2 = old.clone();
    let row = app
        .store
        .read(move |c| account::get_refresh_token(c, &old2))
        .await?
        .ok_or_else(revoked)?;
    if let Some(name) = &row.app_password_name {
        let name = name.clone();
        if !app
            .store
            .read(move |c| account::app_password_exists(c, &name))
            .await?
        {
            return Err(revoked());
        }
    }
    let scope = match &row.app_password_name {
        None => Scope::Access,
        Some(name) => {
            let name = name.clone();
            let list = app.store.read(account::list_app_passwords).await?;
            match list.into_iter().find(|p| p.name == name) {
                Some(p) if p.privileged => Scope::AppPassPrivileged,
                Some(_) => Scope::AppPass,
                None => return Err(revoked()),
            }
        }
    };
    // A token already rotated: within the grace period hand out its
    // successor again; after it, the token is dead.
    let next_jti = match (&row.next_jti, row.rotated_at) {
        (Some(next), Some(at)) if t - at <= REFRESH_GRACE_SECS => next.clone(),
        (Some(_), _) => return Err(revoked()),
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
            app.writer
                .exec(move |c, _| {
                    account::insert_refresh_token(c, &new_row)?;
                    account::rotate_refresh_token(c, &old, &n2, t)
                })
                .await?;
            next
        }
    };
    let access = auth::mint_access(&app.jwt_secret, &acct.did, &app.service_did, scope, t);
    let refresh = auth::mint_refresh(&app.jwt_secret, &acct.did, &app.service_did, &next_jti, t);
    Ok(XrpcResponse::Json(
        session_body(&app, &acct, scope, Some((access, refresh))).await,
    ))
}

pub async fn delete_session(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let token = session_auth::bearer(&req)?;
    let claims = auth::verify_refresh(&app.jwt_secret, token, &app.service_did, now(), true)
        .map_err(session_auth::token_error)?;
    let jti = claims.jti;
    app.writer
        .exec(move |c, _| {
            if let Some(row) = account::get_refresh_token(c, &jti)?
                && let Some(next) = row.next_jti
            {
                account::delete_refresh_token(c, &next)?;
            }
            account::delete_refresh_token(c, &jti)
        })
        .await?;
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
    s.require_full()?;
    let input: CreateAppPasswordInput = req.json(JSON_LIMIT).await?;
    let name = auth::validate_app_password_name(&input.name)
        .map_err(|e| XrpcError::invalid_request(e.to_string()))?
        .to_owned();
    let password = auth::app_password::generate(&mut OsRng);
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw, &mut OsRng))
        .await
        .map_err(XrpcError::internal)?
        .map_err(XrpcError::internal)?;
    let created_at = crate::syntax::format_datetime_millis(now() * 1000);
    let row = AppPassword {
        name: name.clone(),
        password_hash: hash,
        privileged: input.privileged,
        created_at: created_at.clone(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.writer
        .exec(move |c, _| {
            let _ = tx.send(account::insert_app_password(c, &row)?);
            Ok(())
        })
        .await?;
    if !rx.await.unwrap_or(false) {
        return Err(XrpcError::invalid_request(
            "A password by that name already exists",
        ));
    }
    Ok(XrpcResponse::Json(json!({
        "name": name,
        "password": password,
        "createdAt": created_at,
        "privileged": input.privileged,
    })))
}

pub async fn list_app_passwords(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req).await?;
    let list = app.store.read(account::list_app_passwords).await?;
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
    session_auth::require_user(&app, &req).await?;
    let input: RevokeInput = req.json(JSON_LIMIT).await?;
    app.writer
        .exec(move |c, _| account::delete_app_password(c, &input.name).map(|_| ()))
        .await?;
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
    let t = now();
    let lifetime = auth::service_auth::service_auth_lifetime(t, exp, lxm.is_some())
        .map_err(|m| XrpcError::lexicon("BadExpiration", m))?;
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
    let valid_did = super::migrate::did_points_here(&app, &acct.did)
        .await
        .is_ok();
    let mut v = json!({
        "activated": acct.is_active(),
        "validDid": valid_did,
        "repoBlocks": blocks,
        "indexedRecords": records,
        "privateStateValues": prefs,
        "expectedBlobs": expected,
        "importedBlobs": imported,
    });
    if let Some(r) = root {
        v["repoCommit"] = Value::String(r.commit_cid.to_string());
        v["repoRev"] = Value::String(r.rev);
    }
    Ok(XrpcResponse::Json(v))
}

pub async fn get_account_invite_codes(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    session_auth::require_user(&app, &req).await?;
    Ok(XrpcResponse::Json(json!({ "codes": [] })))
}
