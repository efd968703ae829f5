//! Request routing: CORS and security headers, the non-XRPC paths (health,
//! well-known), and `/xrpc/<nsid>` to the API.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::xrpc::{self, Body, XrpcError, XrpcRequest};

const ALLOW_HEADERS: &str = "Authorization, Content-Type, DPoP, atproto-proxy, atproto-accept-labelers, atproto-content-labelers, x-bsky-topics";
const EXPOSE_HEADERS: &str = "DPoP-Nonce, WWW-Authenticate, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After, atproto-repo-rev, atproto-content-labelers";

/// Two years, as browsers' preload lists expect.
const HSTS: &str = "max-age=63072000";

/// `secure`: the request came over TLS (then responses carry HSTS).
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let client = client_ip(&app.config.trusted_proxies, req.headers(), peer);
    let mut resp = route(Arc::clone(&app), req, client).await;
    app.metrics
        .record_request(resp.status().as_u16(), started.elapsed());
    let too_large = resp.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let h = resp.headers_mut();
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if too_large {
        // The rest of the body is not read; the connection cannot be reused.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; sandbox"));
    tracing::debug!(
        "{} {} {} {}ms",
        method,
        path,
        resp.status().as_u16(),
        started.elapsed().as_millis()
    );
    resp
}

/// The client's address: the peer, or when the peer is a configured reverse proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_ip(trusted: &[IpAddr], headers: &hyper::HeaderMap, peer: SocketAddr) -> SocketAddr {
    if !trusted.contains(&peer.ip().to_canonical()) && !trusted.contains(&peer.ip()) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .map_or(peer, |ip| SocketAddr::new(*ip, 0))
}

/// `/metrics`: only when enabled, and only to loopback or with the admin password.
fn metrics(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if !app.config.metrics {
        return XrpcError::not_found("NotFound", "Not Found").into_response();
    }
    let authorized = peer.ip().to_canonical().is_loopback()
        || app
            .config
            .admin_password
            .as_deref()
            .is_some_and(|pw| crate::api::auth::basic_admin_ok(req.headers(), pw));
    if !authorized {
        let mut r = text(StatusCode::UNAUTHORIZED, "admin password required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"perch metrics\""),
        );
        return r;
    }
    let status = app.tls.status();
    let body = app.metrics.render(&crate::metrics::Snapshot {
        commits: app.writer.commits(),
        firehose_seq: *app.writer.seq_watch().borrow(),
        firehose_subscribers: app.subscribers.load(std::sync::atomic::Ordering::Relaxed),
        cert_not_after: status.cert.map(|c| c.not_after),
        certs_issued: status.issued,
    });
    let mut r = Response::new(xrpc::full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(xrpc::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn route(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        let mut r = Response::new(xrpc::full(""));
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return r;
    }
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/" => text(
            StatusCode::OK,
            "This is a perch AT Protocol Personal Data Server: https://atproto.com\n\nMost API routes are under /xrpc/\n",
        ),
        "/robots.txt" => text(StatusCode::OK, "User-agent: *\nAllow: /\n"),
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/metrics" => metrics(&app, &req, peer),
        "/readyz" => crate::api::health::readyz(&app).await,
        "/xrpc/_health" => crate::api::health::health(),
        "/.well-known/atproto-did" => {
            crate::api::identity::well_known_atproto_did(&app, &req).await
        }
        "/.well-known/did.json" => crate::api::identity::well_known_did_json(&app).await,
        "/xrpc/com.atproto.sync.subscribeRepos" => crate::api::firehose::subscribe(app, req).await,
        p if p.starts_with("/xrpc/") => {
            let nsid = p["/xrpc/".len()..].to_owned();
            let (parts, body) = req.into_parts();
            let has_body = parts.method == Method::POST;
            let xreq = XrpcRequest::new(
                nsid,
                parts.method,
                parts.uri.query(),
                parts.headers,
                peer.ip(),
                has_body.then_some(body),
            );
            let result = match xreq {
                Ok(x) => crate::api::dispatch(app, x).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            }
        }
        _ => XrpcError::not_found("NotFound", "Not Found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let mut h = hyper::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "198.51.100.9, 203.0.113.5".parse().unwrap(),
        );
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // Nearest untrusted hop: the client as the last trusted proxy saw it, not the
        // spoofable left-most entry.
        assert_eq!(
            client_ip(&trusted, &h, proxy).ip().to_string(),
            "203.0.113.5"
        );
        let stranger: SocketAddr = "192.0.2.4:5000".parse().unwrap();
        assert_eq!(client_ip(&trusted, &h, stranger), stranger);
        assert_eq!(client_ip(&[], &h, proxy), proxy);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(
            client_ip(&trusted, &h, mapped).ip().to_string(),
            "203.0.113.5"
        );
        assert_eq!(client_ip(&trusted, &hyper::HeaderMap::new(), proxy), proxy);
    }
}
