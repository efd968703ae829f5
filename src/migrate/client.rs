//! A small XRPC client for talking to PDSes during a move: JSON calls and raw bodies (CARs,
//! blobs), with a bearer token, through perch's outbound client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, header};
use serde_json::Value;

use crate::net::Net;

/// Largest response read (a whole repo CAR).
const MAX_BODY: usize = 1024 * 1024 * 1024;
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    /// The server answered with an XRPC error.
    #[error("{nsid} answered {status} {error}: {message}")]
    Xrpc {
        nsid: String,
        status: u16,
        error: String,
        message: String,
    },
}

impl CallError {
    /// The XRPC error name, when the server gave one.
    pub fn error_name(&self) -> Option<&str> {
        match self {
            CallError::Xrpc { error, .. } => Some(error),
            CallError::Transport { .. } => None,
        }
    }
}

/// One PDS, optionally with a session.
#[derive(Clone)]
pub struct Pds {
    pub url: String,
    pub token: Option<String>,
    net: Net,
}

/// A raw response body with its content type.
pub struct Raw {
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

impl Pds {
    pub fn new(net: &Net, url: &str) -> Pds {
        Pds {
            url: url.trim_end_matches('/').to_owned(),
            token: None,
            net: net.clone(),
        }
    }

    pub fn with_token(&self, token: &str) -> Pds {
        Pds {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    fn url_for(&self, nsid: &str, params: &[(&str, &str)]) -> String {
        let mut url = format!("{}/xrpc/{nsid}", self.url);
        for (i, (k, v)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        nsid: &str,
        url: String,
        body: Option<(String, Bytes)>,
    ) -> Result<Raw, CallError> {
        let transport = |message: String| CallError::Transport {
            method: method.to_string(),
            url: url.clone(),
            message,
        };
        let mut req = Request::builder().method(method.clone()).uri(&url).header(
            header::USER_AGENT,
            concat!("perch/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some((ct, b)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                b
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| transport(e.to_string()))?;
        let resp = self
            .net
            .send(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| transport("the response body took too long".into()))?
        .map_err(|e| transport(e.to_string()))?
        .to_bytes();
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(CallError::Xrpc {
                nsid: nsid.to_owned(),
                status: status.as_u16(),
                error: field("error"),
                message: field("message"),
            });
        }
        Ok(Raw {
            content_type,
            bytes,
        })
    }

    fn json(raw: Raw, nsid: &str) -> Result<Value, CallError> {
        if raw.bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&raw.bytes).map_err(|e| CallError::Xrpc {
            nsid: nsid.to_owned(),
            status: 200,
            error: "BadResponse".into(),
            message: e.to_string(),
        })
    }

    // The request is fully built before the future is returned, so callers may pass
    // temporaries (and retry by calling again).

    /// A query (GET) answering JSON.
    pub fn query<'a>(
        &'a self,
        nsid: &'a str,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<Value, CallError>> + use<'a> {
        let url = self.url_for(nsid, params);
        async move {
            let raw = self.send(Method::GET, nsid, url, None).await?;
            Self::json(raw, nsid)
        }
    }

    /// A query answering bytes (a CAR, a blob).
    pub fn query_raw<'a>(
        &'a self,
        nsid: &'a str,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<Raw, CallError>> + use<'a> {
        let url = self.url_for(nsid, params);
        async move { self.send(Method::GET, nsid, url, None).await }
    }

    /// A procedure (POST) with a JSON body (or none).
    pub fn procedure<'a>(
        &'a self,
        nsid: &'a str,
        body: Option<&Value>,
    ) -> impl Future<Output = Result<Value, CallError>> + use<'a> {
        let url = self.url_for(nsid, &[]);
        let payload = body.map(|b| ("application/json".to_owned(), Bytes::from(b.to_string())));
        async move {
            let raw = self.send(Method::POST, nsid, url, payload).await?;
            Self::json(raw, nsid)
        }
    }

    /// A procedure with a raw body.
    pub fn procedure_raw<'a>(
        &'a self,
        nsid: &'a str,
        content_type: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<Value, CallError>> + use<'a> {
        let url = self.url_for(nsid, &[]);
        let payload = Some((content_type.to_owned(), body));
        async move {
            let raw = self.send(Method::POST, nsid, url, payload).await?;
            Self::json(raw, nsid)
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("did:plc:abc"), "did%3Aplc%3Aabc");
        assert_eq!(super::encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
