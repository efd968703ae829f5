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

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
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
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth()
        });
        let https = match tls {
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

    fn check(&self, url: &str) -> Result<Uri, NetError> {
        let uri: Uri = url.parse().map_err(|_| NetError::BadUrl(url.into()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(NetError::BadUrl(url.into())),
        }
        let host = uri.host().ok_or_else(|| NetError::BadUrl(url.into()))?;
        // IP literals skip the resolver, so check them here.
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !self.allow_private
            && is_private(ip)
        {
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
                    Err(NetError::Request(url, e.to_string()))
                }
            }
            Err(_) => Err(NetError::Timeout(url)),
        }
    }

    /// Send `body` (JSON) with `method`; returns status and (capped) body.
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), NetError> {
        let uri = self.check(url)?;
        let mut req = Request::builder().method(method).uri(uri).header(
            header::USER_AGENT,
            concat!("perch/", env!("CARGO_PKG_VERSION")),
        );
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
        let status = resp.status();
        let bytes = tokio::time::timeout(
            TIMEOUT,
            Limited::new(resp.into_body(), MAX_RESPONSE).collect(),
        )
        .await
        .map_err(|_| NetError::Timeout(url.into()))?
        .map_err(|_| NetError::TooLarge(url.into()))?
        .to_bytes();
        Ok((status, bytes))
    }
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
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
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
    }
}
