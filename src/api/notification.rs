//! `app.bsky.notification.registerPush` / `unregisterPush`: the app hands
//! its push token to the notification service named by `serviceDid`, on the
//! user's behalf. As the reference does: the configured AppView when
//! `serviceDid` is its DID, otherwise the `#bsky_notif` entry (type
//! `BskyNotificationService`) of that DID's document; the call carries a
//! service-auth token with `aud` = `serviceDid` (the bare DID) and `lxm` =
//! the method.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, header};
use rand_core::OsRng;
use serde::Deserialize;

use super::HandlerResult;
use super::auth::{self, Permit};
use crate::app::App;
use crate::identity::resolve::{self, ResolveError};
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

const REGISTER: &str = "app.bsky.notification.registerPush";
const UNREGISTER: &str = "app.bsky.notification.unregisterPush";

/// The lexicon's required input; the body is forwarded as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // read only to check the input's shape
struct PushInput {
    service_did: String,
    token: String,
    platform: String,
    app_id: String,
    age_restricted: Option<bool>,
}

pub async fn register_push(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    push(app, req, REGISTER).await
}

pub async fn unregister_push(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    push(app, req, UNREGISTER).await
}

async fn push(app: Arc<App>, mut req: XrpcRequest, lxm: &'static str) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    session.permit_rpc(lxm, &super::actor::appview(&app))?;
    let body: serde_json::Value = req.json(JSON_LIMIT).await?;
    let input: PushInput = serde_json::from_value(body.clone())
        .map_err(|e| XrpcError::invalid_request(format!("Invalid input: {e}")))?;
    let service_did = input.service_did;
    crate::syntax::validate_did(&service_did)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid serviceDid: {e}")))?;
    let endpoint = endpoint(&app, &service_did).await?;
    let token = crate::auth::mint_service_auth(
        &app.repo_key,
        &session.did,
        &service_did,
        Some(lxm),
        auth::now(),
        60,
        &mut OsRng,
    );
    let out = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/xrpc/{lxm}", endpoint.trim_end_matches('/')))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("perch/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| XrpcError::invalid_request("Invalid serviceDid"))?;
    let resp = app.net.send(out).await.map_err(super::proxy::upstream)?;
    if resp.status().is_success() {
        Ok(XrpcResponse::Empty)
    } else {
        // The service's own error (a bad token, an unknown app) is the answer.
        Ok(XrpcResponse::Raw(super::proxy::relay_response(resp)))
    }
}

/// Where the notification service named by `did` takes calls.
async fn endpoint(app: &App, did: &str) -> Result<String, XrpcError> {
    if did == app.config.appview_did {
        return Ok(app.config.appview_url.clone());
    }
    let doc = app.did_document(did).await.map_err(|e| match e {
        ResolveError::Fetch(_, net) => super::proxy::upstream(net),
        _ => XrpcError::invalid_request(format!("could not resolve did document: {did}")),
    })?;
    let bad = || {
        XrpcError::invalid_request(format!(
            "invalid notification service details in did document: {did}"
        ))
    };
    let url = resolve::typed_service_endpoint(&doc, "bsky_notif", "BskyNotificationService")
        .ok_or_else(bad)?;
    // A push token is a credential: only over TLS, as the reference's safe
    // client insists (plain http is for loopback tests).
    let https = url.starts_with("https://");
    let test_http = app.net.allows_private() && url.starts_with("http://");
    if !(https || test_http) {
        return Err(bad());
    }
    Ok(url)
}
