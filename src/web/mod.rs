//! The web face: the OAuth endpoints (JSON, for apps), the sign-in and consent pages and
//! the owner's page (HTML, for the owner's browser). Parsing and rendering only; what is
//! decided is the services' (`oauth`, `account`, `federation`).

mod authorize;
mod endpoints;
mod owner;
pub mod pages;

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::oauth::OAuthError;
use crate::oauth::rate::Kind;
use crate::xrpc::{self, Body, XrpcRequest};

/// Form bodies are small: a PAR with a long scope and a client assertion is a few KiB.
const FORM_LIMIT: usize = 16 * 1024;

/// Whether `path` is one this face answers.
pub fn handles(path: &str) -> bool {
    path.starts_with("/oauth/") || path.starts_with("/.well-known/oauth-") || owner::handles(path)
}

pub async fn route(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if owner::handles(&path) {
        return owner::route(app, req, peer).await;
    }
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/.well-known/oauth-protected-resource") => {
            endpoints::protected_resource(&app)
        }
        (Method::GET | Method::HEAD, "/.well-known/oauth-authorization-server") => {
            endpoints::authorization_server(&app)
        }
        (Method::POST, "/oauth/par") => endpoints::par(app, req, peer).await,
        (Method::POST, "/oauth/token") => endpoints::token(app, req, peer).await,
        (Method::POST, "/oauth/revoke") => endpoints::revoke(app, req, peer).await,
        (Method::GET, "/oauth/authorize") => authorize::show(app, req, peer).await,
        (Method::POST, "/oauth/authorize/sign-in") => authorize::sign_in(app, req, peer).await,
        (Method::POST, "/oauth/authorize/consent") => authorize::consent(app, req, peer).await,
        (Method::POST, "/oauth/authorize/passkey") => authorize::passkey(app, req, peer).await,
        (Method::GET | Method::HEAD, "/oauth/style.css") => {
            let mut r = Response::new(xrpc::full(pages::STYLE));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            r
        }
        (_, p) if endpoints::is_endpoint(p) => oauth_error(&OAuthError::new(
            405,
            "invalid_request",
            "Method not allowed",
        )),
        _ => xrpc::XrpcError::not_found("NotFound", "Not Found").into_response(),
    }
}

/// An OAuth error as JSON (RFC 6749 §5.2).
pub(crate) fn oauth_error(e: &OAuthError) -> Response<Body> {
    let body = serde_json::json!({ "error": e.error, "error_description": e.description });
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = xrpc::json_response(status, body.to_string());
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response<Body>) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Takes one request from the address's budget for `kind`. Loopback callers are exempt only
/// where loopback is allowed at all (`PERCH_ALLOW_LOOPBACK`: tests and development, whose
/// suites sign in dozens of times a second from 127.0.0.1).
fn rate(app: &App, peer: IpAddr, kind: Kind) -> Result<(), OAuthError> {
    if app.config.allow_loopback && peer.to_canonical().is_loopback() {
        return Ok(());
    }
    app.oauth_state
        .rate
        .take(peer, kind, crate::clock::unix_millis())
        .map_err(OAuthError::rate_limited)
}

/// A form body (`application/x-www-form-urlencoded`), bounded in size and time.
async fn form(req: Request<Incoming>, peer: IpAddr) -> Result<Vec<(String, String)>, OAuthError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let (parts, body) = req.into_parts();
    let mut x = XrpcRequest::new(
        "oauth".into(),
        parts.method,
        None,
        parts.headers,
        peer,
        Some(body),
    )
    .map_err(|e| OAuthError::invalid_request(e.message))?;
    let bytes = x
        .bytes(FORM_LIMIT)
        .await
        .map_err(|e| OAuthError::new(e.status.as_u16(), "invalid_request", e.message))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| OAuthError::invalid_request("the form is not UTF-8"))?;
    crate::syntax::form::decode_form(text)
        .ok_or_else(|| OAuthError::invalid_request("the form is malformed"))
}

/// The value of cookie `name`, when present, not empty and at most `max_len` bytes.
fn cookie(req: &Request<Incoming>, name: &str, max_len: usize) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= max_len)
}

fn header_str<'r>(req: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `form-action` must name where a form's redirects lead too (browsers check each hop), so
/// the app's redirect target is allowed beside this origin.
fn form_action(redirect_uri: &str) -> String {
    match crate::oauth::client::parse_url(redirect_uri) {
        Some(u) => match u.port {
            Some(p) => format!("{}://{}:{p}", u.scheme, u.host),
            None => format!("{}://{}", u.scheme, u.host),
        },
        None => redirect_uri
            .split_once(':')
            .map(|(scheme, _)| format!("{scheme}:"))
            .unwrap_or_default(),
    }
}

fn html(status: StatusCode, markup: maud::Markup, redirect_uri: Option<&str>) -> Response<Body> {
    let mut r = Response::new(xrpc::full(markup.into_string()));
    *r.status_mut() = status;
    let extra = redirect_uri.map(form_action).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
         img-src 'self'; form-action 'self' {extra}; frame-ancestors 'none'; base-uri 'none'"
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(csp.trim()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the pages' own forms.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    no_store(&mut r);
    r
}

fn see_other(location: &str) -> Response<Body> {
    let mut r = Response::new(xrpc::full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut r);
    r
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Whether the browser says the form came from this origin (or says nothing, as older
/// browsers and some privacy settings do: the form token still has to match).
fn same_origin(app: &App, req: &Request<Incoming>) -> bool {
    let origin_ok = header_str(req, "origin").is_none_or(|o| o == app.oauth().issuer());
    let site_ok = header_str(req, "sec-fetch-site").is_none_or(|s| s == "same-origin");
    origin_ok && site_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_names_the_redirect_target() {
        assert_eq!(
            form_action("https://app.example.com/cb?x=1"),
            "https://app.example.com"
        );
        assert_eq!(
            form_action("http://127.0.0.1:4000/cb"),
            "http://127.0.0.1:4000"
        );
        assert_eq!(form_action("com.example.app:/callback"), "com.example.app:");
    }
}
