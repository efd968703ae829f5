//! The one outbound HTTP(S) client: rustls with Mozilla's roots, timeouts,
//! a response size cap, and a guard that refuses private and loopback
//! addresses unless configured (a PDS on the open internet must not be
//! usable to probe its owner's LAN). The guard sits in the DNS resolver the
//! connector uses, so a name that resolves differently on the second lookup
//! (DNS rebinding) is still caught.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

const TIMEOUT: Duration = Duration::from_secs(20);
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad URL {0}")]
    BadUrl(String),
    #[error("{0} is a private or loopback address (set PERCH_ALLOW_LOOPBACK=1 for local testing)")]
    Private(String),
    #[error("request to {0} failed: {1}")]
    Request(String, String),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("response from {0} is too large")]
    TooLarge(String),
}

/// Addresses an outbound request must not reach: this machine, the LAN,
/// link-local (cloud metadata), CGNAT, multicast and reserved space, and
/// IPv6 forms that carry one of those IPv4 addresses (mapped, compatible,
/// NAT64, 6to4), since a home router may translate them.
/// The TLS client of every outbound connection (HTTPS here, SMTP in `mail`): rustls on ring,
/// its safe protocol versions, the Mozilla roots.
pub fn tls_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth(),
    )
}

/// An error with every cause under it, `outer: inner: innermost`, so that "client error
/// (Connect)" is followed by the DNS failure or refused connection that explains it. A cause
/// whose text the outer one already shows is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || a == 0 // "this network"; 0.0.0.0 reaches the local host
                || a >= 240 // reserved, and broadcast
                || a == 100 && (b & 0xc0) == 64 // CGNAT 100.64/10
                || a == 192 && b == 0 && c == 0 // IETF protocol assignments
                || a == 198 && (b & 0xfe) == 18 // benchmarking 198.18/15
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                is_private(IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                )))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || s[..6] == [0; 6] && embedded(s[6], s[7]) // IPv4-compatible ::a.b.c.d
                || s[..5] == [0; 5] && s[5] == 0xffff && embedded(s[6], s[7]) // mapped
                || s[0] == 0x64 && s[1] == 0xff9b && embedded(s[6], s[7]) // NAT64 /96 and /48
                || s[0] == 0x2002 && embedded(s[1], s[2]) // 6to4
        }
    }
}

/// The address a host written in one of the legacy IPv4 forms names
/// (`127.1`, `2130706433`, `0x7f.1`, `017700000001`): resolvers accept them,
/// so the guard must read them the same way. Each of 1–4 dot-separated
/// parts is decimal, `0x` hex or `0`-prefixed octal; the last fills the
/// remaining bytes.
fn legacy_ipv4(host: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        values.push(if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        });
    }
    let (last, head) = values.split_last()?;
    let mut n: u64 = 0;
    for v in head {
        if *v > 255 {
            return None;
        }
        n = n << 8 | v;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << rest_bits {
        return None;
    }
    Some(std::net::Ipv4Addr::from(((n << rest_bits) | last) as u32))
}

/// DNS resolution that drops private addresses unless allowed.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow || !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} has no public address", name.as_str()),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

#[derive(Clone)]
pub struct Net {
    allow_private: bool,
    client: Client<Connector, Full<Bytes>>,
}

impl Net {
    pub fn new(allow_private: bool) -> Net {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = match tls_client_config() {
            Ok(cfg) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http),
            // The ring provider always supports the default versions.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(https);
        Net {
            allow_private,
            client,
        }
    }

    /// Whether private and loopback targets are allowed (tests and development only).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    fn check(&self, url: &str) -> Result<Uri, NetError> {
        let uri: Uri = url.parse().map_err(|_| NetError::BadUrl(url.into()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(NetError::BadUrl(url.into())),
        }
        let host = uri.host().ok_or_else(|| NetError::BadUrl(url.into()))?;
        // IP literals skip the resolver, so check them here; the legacy
        // numeric forms too, rather than trusting each layer below to read
        // them the way the resolver does.
        let ip = host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .ok()
            .or_else(|| legacy_ipv4(host).map(IpAddr::V4));
        if let Some(ip) = ip
            && !self.allow_private
            && is_private(ip)
        {
            return Err(NetError::Private(host.into()));
        }
        // localhost names are loopback by definition (RFC 6761), whatever a
        // resolver or its absence says.
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if !self.allow_private && (name == "localhost" || name.ends_with(".localhost")) {
            return Err(NetError::Private(host.into()));
        }
        Ok(uri)
    }

    /// Send a request and get the response head; the body streams.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, NetError> {
        let url = req.uri().to_string();
        self.check(&url)?;
        match tokio::time::timeout(TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                let mut private = false;
                let mut cause: Option<&dyn std::error::Error> = Some(&e);
                while let Some(c) = cause {
                    private |= c.to_string().contains("no public address");
                    cause = c.source();
                }
                if private {
                    Err(NetError::Private(url))
                } else {
                    Err(NetError::Request(url, error_chain(&e)))
                }
            }
            Err(_) => Err(NetError::Timeout(url)),
        }
    }

    /// A request to `url` (checked against the guard), with perch's User-Agent.
    fn builder(
        &self,
        method: Method,
        url: &str,
    ) -> Result<hyper::http::request::Builder, NetError> {
        let uri = self.check(url)?;
        Ok(Request::builder().method(method).uri(uri).header(
            header::USER_AGENT,
            concat!("perch/", env!("CARGO_PKG_VERSION")),
        ))
    }

    /// GET `url` with a small size cap and a short deadline for the whole exchange (a
    /// document anyone can make perch fetch, like an OAuth client's metadata); redirects
    /// are not followed. Returns status, headers and body.
    pub async fn get_small(
        &self,
        url: &str,
        accept: &str,
        max_bytes: usize,
        deadline: Duration,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), NetError> {
        let req = self
            .builder(Method::GET, url)?
            .header(header::ACCEPT, accept)
            .body(Full::new(Bytes::new()))
            .map_err(|e| NetError::Request(url.into(), e.to_string()))?;
        let fetch = async { read_capped(self.send(req).await?, url, max_bytes).await };
        tokio::time::timeout(deadline, fetch)
            .await
            .map_err(|_| NetError::Timeout(url.into()))?
    }

    /// Send `body` (JSON) with `method`; returns status and (capped) body.
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), NetError> {
        let mut req = self.builder(method, url)?;
        let payload = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| NetError::Request(url.into(), e.to_string()))?;
        let resp = self.send(req).await?;
        let (status, _, bytes) =
            tokio::time::timeout(TIMEOUT, read_capped(resp, url, MAX_RESPONSE))
                .await
                .map_err(|_| NetError::Timeout(url.into()))??;
        Ok((status, bytes))
    }
}

/// Reads a response whole, refusing one that says or turns out to be over `max` bytes.
async fn read_capped(
    resp: Response<Incoming>,
    url: &str,
    max: usize,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), NetError> {
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(NetError::TooLarge(url.into()));
    }
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, max)
        .collect()
        .await
        .map_err(|_| NetError::TooLarge(url.into()))?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::127.0.0.1",
            "64:ff9b::c0a8:101",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn legacy_ipv4_forms() {
        for (s, want) in [
            ("127.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("127.000.000.001", "127.0.0.1"),
            ("10.0x10.1", "10.16.0.1"),
            ("0", "0.0.0.0"),
            ("1.2.3.4.", "1.2.3.4"),
        ] {
            assert_eq!(legacy_ipv4(s), Some(want.parse().unwrap()), "{s}");
        }
        for s in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.65536",
            "08",
            "",
            "1..2",
        ] {
            assert_eq!(legacy_ipv4(s), None, "{s}");
        }
    }

    #[tokio::test]
    async fn refuses_private_targets_unless_allowed() {
        let n = Net::new(false);
        // IP literal and a name that resolves to loopback.
        for url in [
            "http://127.0.0.1:9/",
            "http://localhost:9/",
            "https://[::1]:9/",
        ] {
            let e = n.json(Method::GET, url, None).await.unwrap_err();
            assert!(matches!(e, NetError::Private(_)), "{url}: {e}");
        }
        let e = n.json(Method::GET, "ftp://x/", None).await.unwrap_err();
        assert!(matches!(e, NetError::BadUrl(_)));
        // Allowed: the connection is attempted (and refused by the closed port).
        let e = Net::new(true)
            .json(Method::GET, "http://127.0.0.1:9/", None)
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Request(..)), "{e}");
        // The cause under hyper's "client error (Connect)" is named.
        assert!(e.to_string().contains("Connection refused"), "{e}");
        let e = Net::new(false)
            .json(Method::GET, "https://nonexistent.invalid/", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("(Connect): dns error"), "{e}");
    }
}
