//! Service proxying: methods this PDS does not implement itself (the
//! AppView's `app.bsky.*`, chat's `chat.bsky.*`, or anything named by an
//! `atproto-proxy` header) are forwarded to the service on the user's
//! behalf, with a short-lived service-auth token signed by the account key.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, header};
use rand_core::OsRng;

use super::HandlerResult;
use super::auth::{self, Permit};
use crate::app::App;
use crate::net::NetError;
use crate::xrpc::{Body, RECORD_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

const FORWARD_REQUEST: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "atproto-accept-labelers",
    "x-bsky-topics",
    "content-type",
];

pub(super) const FORWARD_RESPONSE: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "content-language",
    "atproto-repo-rev",
    "atproto-content-labelers",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
];

/// Whether an unknown method should be proxied rather than answered 501.
pub fn wants_proxy(req: &XrpcRequest) -> bool {
    req.header("atproto-proxy").is_some()
        || req.nsid.starts_with("app.bsky.")
        || req.nsid.starts_with("chat.bsky.")
}

/// Where to send it: (service endpoint URL, `aud` = `did#service`).
async fn target(app: &App, req: &XrpcRequest) -> Result<(String, String), XrpcError> {
    let (did, id) = match req.header("atproto-proxy") {
        Some(h) => {
            let (did, id) = h.split_once('#').ok_or_else(|| {
                XrpcError::invalid_request("atproto-proxy must be <did>#<service>")
            })?;
            crate::syntax::validate_did(did)
                .map_err(|_| XrpcError::invalid_request("atproto-proxy: invalid DID"))?;
            (did.to_owned(), id.to_owned())
        }
        None if req.nsid.starts_with("chat.bsky.") => {
            (app.config.chat_did.clone(), "bsky_chat".to_owned())
        }
        None => (app.config.appview_did.clone(), "bsky_appview".to_owned()),
    };
    let aud = format!("{did}#{id}");
    if did == app.config.appview_did && id == "bsky_appview" {
        return Ok((app.config.appview_url.clone(), aud));
    }
    if did == app.config.chat_did && id == "bsky_chat" {
        return Ok((app.config.chat_url.clone(), aud));
    }
    let endpoint = resolve_service(app, &did, &id).await?;
    Ok((endpoint, aud))
}

/// Find `#id` among the services of `did`'s document.
async fn resolve_service(app: &App, did: &str, id: &str) -> Result<String, XrpcError> {
    use crate::identity::resolve::{self, ResolveError};
    let doc = app.did_document(did).await.map_err(|e| match e {
        ResolveError::Fetch(_, net) => upstream(net),
        other => XrpcError::invalid_request(other.to_string()),
    })?;
    resolve::service_endpoint(&doc, id)
        .ok_or_else(|| XrpcError::invalid_request(format!("{did} has no service #{id}")))
}

pub(super) fn upstream(e: NetError) -> XrpcError {
    match e {
        NetError::Timeout(_) => XrpcError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "UpstreamTimeout",
            "upstream timed out",
        ),
        NetError::Private(_) | NetError::BadUrl(_) => XrpcError::new(
            StatusCode::BAD_GATEWAY,
            "UpstreamFailure",
            "upstream is not reachable",
        ),
        other => {
            tracing::warn!("proxy: {other}");
            XrpcError::new(
                StatusCode::BAD_GATEWAY,
                "UpstreamFailure",
                "upstream failed",
            )
        }
    }
}

pub async fn forward(app: Arc<App>, mut req: XrpcRequest, query: Option<String>) -> HandlerResult {
    // The router already refuses other paths; this keeps the URL and `lxm`
    // safe whoever calls.
    if !crate::syntax::is_valid_nsid(&req.nsid) {
        return Err(XrpcError::invalid_request("invalid xrpc path"));
    }
    // Account management is never sent elsewhere; direct messages and creating an account
    // elsewhere need a full session or a privileged app password (as the reference).
    if crate::auth::methods::is_protected(&req.nsid) {
        return Err(XrpcError::invalid_token("Bad token method"));
    }
    let session = auth::require_user(&app, &req).await?;
    if session.permissions.is_none()
        && crate::auth::methods::is_privileged(&req.nsid)
        && !session.scope.is_privileged()
    {
        return Err(XrpcError::invalid_token("Bad token method"));
    }
    let (endpoint, aud) = target(&app, &req).await?;
    session.permit_rpc(&req.nsid, &aud)?;
    let now = auth::now();
    let token = crate::auth::mint_service_auth(
        &app.repo_key,
        &session.did,
        &aud,
        Some(&req.nsid),
        now,
        60,
        &mut OsRng,
    );
    let body = if req.method == Method::POST {
        req.bytes(RECORD_LIMIT).await?
    } else {
        Bytes::new()
    };
    let mut url = format!("{}/xrpc/{}", endpoint.trim_end_matches('/'), req.nsid);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let mut out = Request::builder()
        .method(req.method.clone())
        .uri(&url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            header::USER_AGENT,
            concat!("perch/", env!("CARGO_PKG_VERSION")),
        );
    let patchable = req.method == Method::GET && super::read_after_write::applies(&req.nsid);
    for name in FORWARD_REQUEST {
        // A patchable answer must come unencoded, so it can be read.
        if patchable && *name == "accept-encoding" {
            continue;
        }
        if let Some(v) = req.headers.get(*name) {
            out = out.header(*name, v);
        }
    }
    let out = out
        .body(Full::new(body))
        .map_err(|_| XrpcError::invalid_request("bad request"))?;
    let resp = app.net.send(out).await.map_err(upstream)?;
    if patchable {
        return Ok(XrpcResponse::Raw(
            super::read_after_write::patch(&app, &req, resp).await,
        ));
    }
    Ok(XrpcResponse::Raw(relay_response(resp)))
}

/// A read the reference passes to the AppView without a token:
/// `repo.getRecord` for a repo this server does not host. It goes to the
/// configured AppView only (an `atproto-proxy` header is not followed here:
/// an unauthenticated request must not make perch fetch from services
/// named by strangers).
pub async fn forward_to_appview_unsigned(app: &App, req: &XrpcRequest) -> HandlerResult {
    if !crate::syntax::is_valid_nsid(&req.nsid) {
        return Err(XrpcError::invalid_request("invalid xrpc path"));
    }
    let mut url = format!(
        "{}/xrpc/{}",
        app.config.appview_url.trim_end_matches('/'),
        req.nsid
    );
    if let Some(q) = req.raw_query.as_deref().filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    let mut out = Request::builder().method(Method::GET).uri(&url).header(
        header::USER_AGENT,
        concat!("perch/", env!("CARGO_PKG_VERSION")),
    );
    for name in FORWARD_REQUEST {
        if let Some(v) = req.headers.get(*name) {
            out = out.header(*name, v);
        }
    }
    let out = out
        .body(Full::new(Bytes::new()))
        .map_err(|_| XrpcError::invalid_request("bad request"))?;
    let resp = app.net.send(out).await.map_err(upstream)?;
    Ok(XrpcResponse::Raw(relay_response(resp)))
}

pub(super) fn relay_response(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut r = Response::new(body.map_err(std::io::Error::other).boxed());
    *r.status_mut() = parts.status;
    for name in FORWARD_RESPONSE {
        if let Some(v) = parts.headers.get(*name) {
            r.headers_mut().insert(*name, v.clone());
        }
    }
    r
}
