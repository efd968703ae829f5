//! XRPC: `/xrpc/<NSID>` calls, their errors and responses. Parsing and
//! rendering only; handlers live in `crate::api`.

pub mod budget;
mod error;
mod request;
pub mod stream;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode, header};

pub use error::XrpcError;
pub use request::{BODY_DEADLINE, JSON_LIMIT, RECORD_LIMIT, XrpcRequest};

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// What a handler returns.
pub enum XrpcResponse {
    Json(serde_json::Value),
    /// JSON written by the handler (records transcoded from DAG-CBOR as they are read).
    JsonText(Vec<u8>),
    /// 200 with no body (procedures without output).
    Empty,
    /// Any other body, with its content type and extra headers.
    Body {
        content_type: String,
        body: Body,
        headers: Vec<(header::HeaderName, String)>,
    },
    /// A complete response passed through as is (proxying).
    Raw(Response<Body>),
}

impl XrpcResponse {
    pub fn into_response(self) -> Response<Body> {
        match self {
            XrpcResponse::Json(v) => json_response(StatusCode::OK, v.to_string()),
            XrpcResponse::JsonText(v) => json_response(StatusCode::OK, v),
            XrpcResponse::Empty => Response::builder()
                .status(StatusCode::OK)
                .body(full(Bytes::new()))
                .unwrap_or_else(|_| Response::new(full(Bytes::new()))),
            XrpcResponse::Body {
                content_type,
                body,
                headers,
            } => {
                let mut b = Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, content_type);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                b.body(body)
                    .unwrap_or_else(|_| XrpcError::internal("bad response headers").into_response())
            }
            XrpcResponse::Raw(r) => r,
        }
    }
}

pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

impl XrpcError {
    pub fn into_response(self) -> Response<Body> {
        let mut r = json_response(self.status, self.body());
        if let Some(secs) = self.retry_after
            && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(v) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| header::HeaderValue::from_str(c).ok())
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        } else if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Whether an NSID is a query (GET) or a procedure (POST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Query,
    Procedure,
}
