//! `com.atproto.identity.*` and the identity well-knowns.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::HandlerResult;
use crate::app::App;
use crate::store::account::Account;
use crate::syntax;
use crate::xrpc::{self, Body, XrpcError, XrpcRequest, XrpcResponse};

/// The DID document this server publishes for (or registered for) the
/// account: its handle, repo signing key and PDS endpoint.
pub async fn did_document(app: &App, acct: &Account) -> Value {
    let key = app.repo_key.public_key();
    let context_suite = match key.key_type() {
        crate::crypto::KeyType::K256 => "https://w3id.org/security/suites/secp256k1-2019/v1",
        crate::crypto::KeyType::P256 => "https://w3id.org/security/suites/ecdsa-2019/v1",
    };
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            context_suite,
        ],
        "id": acct.did,
        "alsoKnownAs": [format!("at://{}", acct.handle)],
        "verificationMethod": [{
            "id": format!("{}#atproto", acct.did),
            "type": "Multikey",
            "controller": acct.did,
            "publicKeyMultibase": key.to_multikey(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": app.config.public_url(),
        }],
    })
}

pub async fn resolve_handle(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let handle = req.required("handle")?;
    syntax::validate_handle(handle).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let handle = syntax::normalize_handle(handle);
    match app.account().await? {
        Some(a) if a.handle == handle => Ok(XrpcResponse::Json(json!({ "did": a.did }))),
        _ => Err(XrpcError::lexicon(
            "HandleNotFound",
            "Unable to resolve handle",
        )),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(xrpc::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `/.well-known/atproto-did`: the account's DID when asked on its handle's
/// host (or on this server's own hostname, which is the default handle).
pub async fn well_known_atproto_did(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    match app.account().await {
        Ok(Some(a)) if a.handle == host || host == app.config.hostname => {
            plain(StatusCode::OK, a.did)
        }
        Ok(_) => plain(StatusCode::NOT_FOUND, "no user by that name\n".into()),
        Err(e) => XrpcError::internal(e).into_response(),
    }
}

/// `/.well-known/did.json`: served when the account is `did:web` on this
/// server's hostname.
pub async fn well_known_did_json(app: &App) -> Response<Body> {
    match app.account().await {
        Ok(Some(a))
            if a.did
                == web_did(
                    &app.config.hostname,
                    app.config.listen.port(),
                    app.config.dev,
                ) =>
        {
            let doc = did_document(app, &a).await;
            xrpc::json_response(StatusCode::OK, doc.to_string())
        }
        Ok(_) => XrpcError::not_found("NotFound", "no did:web document here").into_response(),
        Err(e) => XrpcError::internal(e).into_response(),
    }
}

/// The `did:web` for this host; in development the port is part of it
/// (`did:web:localhost%3A2583`), as the did:web method allows for localhost.
pub fn web_did(hostname: &str, port: u16, dev: bool) -> String {
    if dev && hostname == "localhost" && port != 80 && port != 443 {
        format!("did:web:{hostname}%3A{port}")
    } else {
        format!("did:web:{hostname}")
    }
}
