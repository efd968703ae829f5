//! The one error type at the HTTP boundary: an XRPC error name clients
//! switch on, a safe message, and a status. Internal causes are logged,
//! never sent.

use hyper::StatusCode;

#[derive(Debug, Clone)]
pub struct XrpcError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    /// Seconds, for 429 responses.
    pub retry_after: Option<u64>,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", m)
    }
    /// A lexicon-declared error: status 400 with the lexicon's name.
    pub fn lexicon(error: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, m)
    }
    pub fn auth_required(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", m)
    }
    pub fn invalid_token(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidToken", m)
    }
    pub fn expired_token(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ExpiredToken", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", m)
    }
    pub fn not_found(error: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, m)
    }
    pub fn payload_too_large(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", m)
    }
    pub fn unsupported_media(m: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            m,
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        XrpcError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Rate Limit Exceeded",
            )
        }
    }
    pub fn method_not_implemented() -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "Method Not Implemented",
        )
    }
    /// Storage failed and the server is read-only until restarted
    /// (`crate::health`); the cause is in the log and `/readyz`.
    pub fn storage_unhealthy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "StorageUnhealthy",
            "This server's storage failed; it takes no writes until its operator restarts it. \
             Reads still work.",
        )
    }
    /// A real fault: log the cause, tell the client nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        )
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.error, "message": self.message }).to_string()
    }
}

impl std::fmt::Display for XrpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.message
        )
    }
}

impl From<crate::store::StoreError> for XrpcError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(m) => XrpcError::invalid_request(m),
            crate::store::StoreError::Unhealthy(_) => XrpcError::storage_unhealthy(),
            other => XrpcError::internal(other),
        }
    }
}
