//! The OAuth endpoints apps call: the two discovery documents, PAR, token and revocation.
//! Every answer to PAR and token carries a fresh `DPoP-Nonce` (clients reject a
//! `use_dpop_nonce` error without one, and pick up rotations from any answer).

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::{form, header_str, no_store, oauth_error, rate};
use crate::app::App;
use crate::oauth::rate::Kind;
use crate::xrpc::{self, Body};

pub(super) fn is_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/oauth/par"
            | "/oauth/token"
            | "/oauth/revoke"
            | "/oauth/authorize"
            | "/.well-known/oauth-protected-resource"
            | "/.well-known/oauth-authorization-server"
    )
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    xrpc::json_response(status, v.to_string())
}

/// RFC 9728: this server's resources are guarded by this server.
pub(super) fn protected_resource(app: &App) -> Response<Body> {
    let issuer = app.oauth().issuer();
    json(
        StatusCode::OK,
        json!({
            "resource": issuer,
            "authorization_servers": [issuer],
            "scopes_supported": [],
            "bearer_methods_supported": ["header"],
            "resource_documentation": "https://atproto.com",
        }),
    )
}

/// RFC 8414, with the values the atproto profile requires.
pub(super) fn authorization_server(app: &App) -> Response<Body> {
    let issuer = app.oauth().issuer();
    json(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "pushed_authorization_request_endpoint": format!("{issuer}/oauth/par"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "require_pushed_authorization_requests": true,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "dpop_signing_alg_values_supported": ["ES256", "ES256K"],
            "scopes_supported": [
                "atproto",
                "transition:generic",
                "transition:chat.bsky",
                "transition:email"
            ],
            "subject_types_supported": ["public"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": true,
            "require_request_uri_registration": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": true,
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "protected_resources": [issuer],
        }),
    )
}

fn with_nonce(app: &App, mut r: Response<Body>) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&app.oauth_state.nonce()) {
        r.headers_mut().insert("dpop-nonce", v);
    }
    no_store(&mut r);
    r
}

pub(super) async fn par(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let dpop = header_str(&req, "dpop").map(str::to_owned);
    let outcome = async {
        rate(&app, peer, Kind::Par)?;
        let form = form(req, peer).await?;
        app.oauth().par(&form, dpop.as_deref()).await
    }
    .await;
    let r = match outcome {
        Ok(p) => json(
            StatusCode::CREATED,
            json!({ "request_uri": p.request_uri, "expires_in": p.expires_in }),
        ),
        Err(e) => oauth_error(&e),
    };
    with_nonce(&app, r)
}

pub(super) async fn token(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let dpop = header_str(&req, "dpop").map(str::to_owned);
    let outcome = async {
        rate(&app, peer, Kind::Token)?;
        let form = form(req, peer).await?;
        app.oauth().token(&form, dpop.as_deref()).await
    }
    .await;
    let r = match outcome {
        Ok(t) => json(StatusCode::OK, t.to_json()),
        Err(e) => oauth_error(&e),
    };
    with_nonce(&app, r)
}

pub(super) async fn revoke(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let outcome = async {
        rate(&app, peer, Kind::Token)?;
        let form = form(req, peer).await?;
        app.oauth().revoke(&form).await
    }
    .await;
    let r = match outcome {
        Ok(()) => json(StatusCode::OK, json!({})),
        Err(e) => oauth_error(&e),
    };
    with_nonce(&app, r)
}
