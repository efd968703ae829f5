//! An incoming XRPC call: the NSID, query parameters, headers and a body
//! that is read only on demand and always under a size limit and deadline.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use super::XrpcError;
use super::budget::{BodyBudget, BodyCharge};

/// JSON request bodies (everything but records and blobs).
pub const JSON_LIMIT: usize = 150 * 1024;
/// Record writes: a 1 MiB record plus its JSON envelope.
pub const RECORD_LIMIT: usize = 1024 * 1024 + 64 * 1024;
/// A whole body must arrive within this long (slow-client defence).
pub const BODY_DEADLINE: Duration = Duration::from_secs(60);
/// Seconds a request turned away for want of body budget is told to wait.
const BUSY_RETRY_AFTER: u64 = 5;

pub struct XrpcRequest {
    pub nsid: String,
    pub method: Method,
    pub query: Vec<(String, String)>,
    /// The query string as received (forwarded verbatim when proxying).
    pub raw_query: Option<String>,
    pub headers: HeaderMap,
    pub peer: IpAddr,
    pub body: Option<Incoming>,
    /// Where the body's bytes are charged (none: not counted).
    budget: Option<Arc<BodyBudget>>,
    /// What this request holds of the budget, until it is dropped.
    charge: Option<BodyCharge>,
}

/// Charged ahead of each read of a body with no `Content-Length`: about one HTTP/2 frame.
const READ_AHEAD: usize = 16 * 1024;

fn decode_query(q: &str) -> Result<Vec<(String, String)>, XrpcError> {
    crate::syntax::form::decode_form(q)
        .ok_or_else(|| XrpcError::invalid_request("malformed query string"))
}

impl XrpcRequest {
    pub fn new(
        nsid: String,
        method: Method,
        query: Option<&str>,
        headers: HeaderMap,
        peer: IpAddr,
        body: Option<Incoming>,
    ) -> Result<Self, XrpcError> {
        Ok(XrpcRequest {
            nsid,
            method,
            query: decode_query(query.unwrap_or(""))?,
            raw_query: query.map(str::to_owned),
            headers,
            peer,
            body,
            budget: None,
            charge: None,
        })
    }

    /// Count the body's bytes against `budget` while this request lives.
    pub fn with_body_budget(mut self, budget: Arc<BodyBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn required(&self, name: &str) -> Result<&str, XrpcError> {
        self.param(name).ok_or_else(|| {
            XrpcError::invalid_request(format!("Error: Params must have the property \"{name}\""))
        })
    }

    /// An integer parameter within `[min, max]`, `default` when absent.
    pub fn int_param(
        &self,
        name: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> Result<i64, XrpcError> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| {
                    XrpcError::invalid_request(format!("{name} must be an integer"))
                })?;
                if n < min || n > max {
                    return Err(XrpcError::invalid_request(format!(
                        "{name} must be between {min} and {max}"
                    )));
                }
                Ok(n)
            }
        }
    }

    pub fn bool_param(&self, name: &str, default: bool) -> Result<bool, XrpcError> {
        match self.param(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(XrpcError::invalid_request(format!(
                "{name} must be true or false"
            ))),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as bytes, refusing more than `limit` (by Content-Length up
    /// front, and while reading for chunked bodies).
    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, XrpcError> {
        if let Some(len) = self.content_length()?
            && len > limit as u64
        {
            return Err(XrpcError::payload_too_large(format!(
                "request body is larger than {limit} bytes"
            )));
        }
        let Some(mut body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let declared = self.content_length()?;
        let mut charge = self.budget.as_ref().map(|b| b.charge(self.peer));
        let waiting = std::sync::atomic::AtomicBool::new(false);
        let read = async {
            let hold = async |charge: &mut Option<BodyCharge>, bytes: usize| {
                if let Some(c) = charge {
                    waiting.store(true, std::sync::atomic::Ordering::Relaxed);
                    c.hold(bytes).await;
                    waiting.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            };
            if let Some(len) = declared {
                hold(&mut charge, len as usize).await;
            }
            let mut buf = BytesMut::new();
            loop {
                if declared.is_none() {
                    hold(&mut charge, limit.min(buf.len() + READ_AHEAD)).await;
                }
                let Some(frame) = body.frame().await else {
                    break;
                };
                let frame = frame
                    .map_err(|_| XrpcError::invalid_request("could not read the request body"))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(XrpcError::payload_too_large(format!(
                            "request body is larger than {limit} bytes"
                        )));
                    }
                    hold(&mut charge, buf.len() + data.len()).await;
                    buf.extend_from_slice(&data);
                }
            }
            Ok(buf.freeze())
        };
        let r = tokio::time::timeout(BODY_DEADLINE, read).await;
        let waited_for_room = waiting.load(std::sync::atomic::Ordering::Relaxed);
        self.charge = charge;
        match r {
            Ok(r) => r,
            Err(_) if waited_for_room => Err(XrpcError {
                retry_after: Some(BUSY_RETRY_AFTER),
                ..XrpcError::new(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    "NotEnoughResources",
                    "too many request bodies in flight; try again shortly",
                )
            }),
            Err(_) => Err(XrpcError::new(
                hyper::StatusCode::REQUEST_TIMEOUT,
                "InvalidRequest",
                "request body too slow",
            )),
        }
    }

    pub fn content_length(&self) -> Result<Option<u64>, XrpcError> {
        match self.headers.get(hyper::header::CONTENT_LENGTH) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| XrpcError::invalid_request("bad Content-Length")),
        }
    }

    /// A JSON body (Content-Type must be JSON) parsed into `T`.
    pub async fn json<T: DeserializeOwned>(&mut self, limit: usize) -> Result<T, XrpcError> {
        let ct = self.header("content-type").unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(XrpcError::invalid_request(format!(
                "Wrong request encoding (Content-Type): {}",
                if ct.is_empty() { "none" } else { ct }
            )));
        }
        let bytes = self.bytes(limit).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| XrpcError::invalid_request(format!("Invalid JSON body: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = decode_query("a=1&b=x%2Fy&cids=1&cids=2&flag&sp=a+b").unwrap();
        assert_eq!(q[1], ("b".into(), "x/y".into()));
        assert_eq!(q.iter().filter(|(k, _)| k == "cids").count(), 2);
        assert_eq!(q[4], ("flag".into(), "".into()));
        assert_eq!(q[5].1, "a b");
        assert!(decode_query("a=%zz").is_err());
        assert!(decode_query("a=%f").is_err());
        assert!(decode_query("a=%ff").is_err(), "invalid UTF-8");
    }
}
