//! The one outbound HTTP client: timeouts, a response size cap, and a guard
//! that refuses private and loopback addresses unless configured (a PDS on
//! the open internet must not be usable to probe its owner's LAN).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TIMEOUT: Duration = Duration::from_secs(20);
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad URL {0}")]
    BadUrl(String),
    #[error("{0}: only plain-HTTP URLs are supported by this build")]
    Https(String),
    #[error(
        "{0} resolves to a private or loopback address (set PERCH_ALLOW_LOOPBACK=1 for local testing)"
    )]
    Private(String),
    #[error("could not resolve {0}")]
    Resolve(String),
    #[error("request to {0} failed: {1}")]
    Request(String, String),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("response from {0} is too large")]
    TooLarge(String),
}

fn is_private(ip: IpAddr) -> bool {
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

pub struct Net {
    allow_private: bool,
}

impl Net {
    pub fn new(allow_private: bool) -> Net {
        Net { allow_private }
    }

    async fn check(&self, uri: &Uri, url: &str) -> Result<(), NetError> {
        let host = uri.host().ok_or_else(|| NetError::BadUrl(url.into()))?;
        let port = uri.port_u16().unwrap_or(80);
        let addrs: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|_| NetError::Resolve(host.into()))?
            .collect();
        if addrs.is_empty() {
            return Err(NetError::Resolve(host.into()));
        }
        if !self.allow_private && addrs.iter().any(|a| is_private(a.ip())) {
            return Err(NetError::Private(host.into()));
        }
        Ok(())
    }

    /// Send `body` (JSON) with `method`; returns status and body bytes.
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), NetError> {
        let uri: Uri = url.parse().map_err(|_| NetError::BadUrl(url.into()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(NetError::Https(url.into())),
            _ => return Err(NetError::BadUrl(url.into())),
        }
        self.check(&uri, url).await?;
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
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
        let fut = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| NetError::Request(url.into(), e.to_string()))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|_| NetError::TooLarge(url.into()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| NetError::Timeout(url.into()))?
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
    async fn refuses_loopback_unless_allowed() {
        let n = Net::new(false);
        let e = n
            .json(Method::GET, "http://127.0.0.1:9/", None)
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Private(_)));
        let e = n.json(Method::GET, "ftp://x/", None).await.unwrap_err();
        assert!(matches!(e, NetError::BadUrl(_)));
    }
}
