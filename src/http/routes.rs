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
    let dpop = req.headers().contains_key("dpop");
    let mut resp = route(Arc::clone(&app), req, client).await;
    if dpop
        && !resp.headers().contains_key("dpop-nonce")
        && let Ok(v) = HeaderValue::from_str(&app.oauth_state.nonce())
    {
        // DPoP clients pick up nonce rotations from any answer.
        resp.headers_mut().insert("dpop-nonce", v);
    }
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

/// The answer to a request beyond the caps on requests open at once (`limit`): 429, as for
/// any client asking too much at once, with the headers a browser needs to read it.
pub(super) fn too_many_requests() -> Response<Body> {
    let mut r = XrpcError::rate_limited(1).into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The client's address: the peer, or when the peer is a configured reverse proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy. A hop that does
/// not parse ends the walk and stands for the client ([`UNKNOWN_CLIENT`]): skipping it would
/// let a client behind the proxy put any address (loopback, say) further left and be taken
/// for it.
fn client_ip(trusted: &[IpAddr], headers: &hyper::HeaderMap, peer: SocketAddr) -> SocketAddr {
    let is_trusted = |ip: &IpAddr| trusted.contains(&ip.to_canonical()) || trusted.contains(ip);
    if !is_trusted(&peer.ip()) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        match v.to_str() {
            Ok(v) => hops.extend(v.split(',').map(str::trim).filter(|h| !h.is_empty())),
            // Not even text: nothing in it can be believed.
            Err(_) => hops.push("?"),
        }
    }
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => {}
            Some(ip) => return SocketAddr::new(ip.to_canonical(), 0),
            None => return SocketAddr::new(UNKNOWN_CLIENT, 0),
        }
    }
    peer
}

/// Who a client is when its proxy wrote something that is not an address (`unknown`, an
/// obfuscated name): an address in the discard-only prefix `100::/64` (RFC 6666). It is not
/// loopback, and all such clients share one /64, so one limiter key.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1));

/// One forwarded hop in the forms proxies write: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, each possibly in double quotes (as `Forwarded`
/// writes them) and padded with spaces.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let hop = hop
        .strip_prefix('"')
        .and_then(|h| h.strip_suffix('"'))
        .unwrap_or(hop)
        .trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
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
        password_hashes: app.hasher.hashes(),
        password_queue: app.hasher.queued(),
        relays: app
            .federation
            .views()
            .into_iter()
            .map(|v| crate::metrics::RelayMetric {
                healthy: v.health == crate::federation::Health::Healthy,
                crawl_requests: v.crawls_total,
                matched_at: v.matched_at,
                relay: v.relay,
            })
            .collect(),
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
        p if crate::web::handles(p) => crate::web::route(app, req, peer.ip()).await,
        "/xrpc/com.atproto.sync.subscribeRepos" => {
            super::websocket::subscribe_repos(app, req, peer.ip()).await
        }
        p if p.starts_with("/xrpc/") => {
            // Only a well-formed NSID goes on: it names the handler, and the
            // proxy puts it in an upstream URL and a token's `lxm`, where
            // `app.bsky.x/../../foo` would reach another path. One trailing
            // slash is allowed, as the reference allows it.
            let raw = &p["/xrpc/".len()..];
            let nsid = raw.strip_suffix('/').unwrap_or(raw);
            if !crate::syntax::is_valid_nsid(nsid) {
                return XrpcError::invalid_request("invalid xrpc path").into_response();
            }
            let nsid = nsid.to_owned();
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
                Ok(x) => {
                    let x = x.with_body_budget(Arc::clone(&app.body_budget));
                    crate::api::dispatch(app, x).await
                }
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

    #[test]
    fn forwarded_hops_parse_in_every_common_form() {
        let v4: IpAddr = "203.0.113.5".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        for (hop, want) in [
            ("203.0.113.5", Some(v4)),
            ("  203.0.113.5  ", Some(v4)),
            ("203.0.113.5:4711", Some(v4)),
            ("\"203.0.113.5:4711\"", Some(v4)),
            ("2001:db8::7", Some(v6)),
            ("[2001:db8::7]", Some(v6)),
            ("[2001:db8::7]:443", Some(v6)),
            ("\"[2001:db8::7]:443\"", Some(v6)),
            (
                "::ffff:203.0.113.5",
                Some("::ffff:203.0.113.5".parse().unwrap()),
            ),
            ("unknown", None),
            ("_hidden", None),
            ("203.0.113.5:port", None),
            ("[203.0.113.5]", None),
            ("[2001:db8::7", None),
            ("2001:db8::7]:443", None),
            ("203.0.113", None),
            ("\"", None),
            ("", None),
        ] {
            assert_eq!(parse_hop(hop), want, "{hop:?}");
        }
    }

    #[test]
    fn an_unparsable_hop_is_the_client_never_skipped() {
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let client = |xff: &str| {
            let mut h = hyper::HeaderMap::new();
            h.append("x-forwarded-for", xff.parse().unwrap());
            client_ip(&trusted, &h, proxy).ip()
        };
        // The proxy appended the real client with its port: that is the client, not the
        // forged loopback entry to its left.
        assert_eq!(
            client("127.0.0.1, 203.0.113.5:4711").to_string(),
            "203.0.113.5"
        );
        assert_eq!(
            client("127.0.0.1, [2001:db8::7]:443").to_string(),
            "2001:db8::7"
        );
        assert_eq!(
            client("127.0.0.1, [2001:db8::7]").to_string(),
            "2001:db8::7"
        );
        for forged in [
            "127.0.0.1, unknown",
            "127.0.0.1, _hidden",
            "127.0.0.1, 203.0.113.5:x",
            "::1, garbage, 127.0.0.1",
        ] {
            let ip = client(forged);
            assert_eq!(ip, UNKNOWN_CLIENT, "{forged}");
            assert!(!ip.is_loopback());
        }
        // Empty list elements carry nothing and are ignored (RFC 9110 list syntax).
        assert_eq!(client("203.0.113.5, ").to_string(), "203.0.113.5");
        // Only trusted hops: the peer itself.
        assert_eq!(client("127.0.0.1"), proxy.ip());
        // A mapped hop counts as its IPv4 address.
        assert_eq!(client("::ffff:198.51.100.2").to_string(), "198.51.100.2");
        let mut h = hyper::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            hyper::header::HeaderValue::from_bytes(b"127.0.0.1, \xff").unwrap(),
        );
        assert_eq!(client_ip(&trusted, &h, proxy).ip(), UNKNOWN_CLIENT);
    }
}
