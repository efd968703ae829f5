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
    /// A `WWW-Authenticate` challenge other than the default `Bearer` (DPoP errors).
    pub www_authenticate: Option<String>,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
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
    /// Every password worker is busy and the queue is full: try again in a moment.
    pub fn password_checks_busy() -> Self {
        XrpcError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "Too many sign-in attempts at once; try again in a moment",
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
    /// A repo that is not active, to readers (the reference's words; `who` names the repo
    /// where the reference does).
    pub fn repo_unavailable(
        status: crate::store::account::AccountStatus,
        who: Option<&str>,
    ) -> Self {
        use crate::store::account::AccountStatus::*;
        let (error, what) = match status {
            Takendown => ("RepoTakendown", "takendown"),
            Suspended => ("RepoSuspended", "suspended"),
            Active | Deactivated => ("RepoDeactivated", "deactivated"),
        };
        let message = match who {
            Some(repo) => format!("Repo has been {what}: {repo}"),
            None => format!("Repo has been {what}"),
        };
        Self::lexicon(error, message)
    }
    /// A write to an account that is not active (the reference's words).
    pub fn account_inactive(status: crate::store::account::AccountStatus) -> Self {
        match status {
            crate::store::account::AccountStatus::Deactivated => Self::new(
                StatusCode::UNAUTHORIZED,
                "AccountDeactivated",
                "Account is deactivated",
            ),
            _ => Self::account_takedown(),
        }
    }
    pub fn account_takedown() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
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

impl From<crate::hasher::HashError> for XrpcError {
    fn from(e: crate::hasher::HashError) -> Self {
        match e {
            crate::hasher::HashError::Busy => XrpcError::password_checks_busy(),
            crate::hasher::HashError::Auth(
                crate::auth::AuthError::EmptyPassword | crate::auth::AuthError::PasswordTooLong,
            ) => XrpcError::invalid_request(e.to_string()),
            other => XrpcError::internal(other),
        }
    }
}

impl From<crate::account::AccountError> for XrpcError {
    fn from(e: crate::account::AccountError) -> Self {
        use crate::account::AccountError as E;
        match e {
            E::Invalid(m) => XrpcError::invalid_request(m),
            E::InvalidHandle(m) => XrpcError::lexicon("InvalidHandle", m),
            E::Exists(_) => XrpcError::invalid_request(e.to_string()),
            E::NameTaken(_) => XrpcError::invalid_request("A password by that name already exists"),
            E::Plc(m) => XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", m),
            E::RateLimited(secs) => XrpcError::rate_limited(secs),
            E::Busy => XrpcError::password_checks_busy(),
            E::InvalidLogin => XrpcError::auth_required("Invalid identifier or password"),
            E::Expired => XrpcError::expired_token("Token has expired"),
            E::Revoked => XrpcError::expired_token("Token has been revoked"),
            E::InvalidToken => XrpcError::invalid_token("Token could not be verified"),
            E::Takendown => XrpcError::account_takedown(),
            E::InvalidCode => XrpcError::lexicon("InvalidToken", e.to_string()),
            E::ExpiredCode => XrpcError::lexicon("ExpiredToken", e.to_string()),
            E::CodeRequired => XrpcError::lexicon("TokenRequired", e.to_string()),
            E::InvalidEmail => XrpcError::lexicon("InvalidEmail", e.to_string()),
            E::NoSuchAccount => XrpcError::invalid_request(e.to_string()),
            E::Store(s) => s.into(),
            E::Other(m) => XrpcError::internal(m),
        }
    }
}

impl From<crate::uploads::UploadError> for XrpcError {
    fn from(e: crate::uploads::UploadError) -> Self {
        use crate::uploads::UploadError as E;
        match e {
            E::StorageUnhealthy => XrpcError::storage_unhealthy(),
            E::TooLarge { .. } => XrpcError::payload_too_large(e.to_string()),
            E::LengthMismatch | E::Body | E::TooSlow => XrpcError::invalid_request(e.to_string()),
            E::Blob(b) => XrpcError::internal(b),
            E::Store(s) => s.into(),
        }
    }
}

impl From<crate::identity::plc::directory::DirectoryError> for XrpcError {
    fn from(e: crate::identity::plc::directory::DirectoryError) -> Self {
        use crate::identity::plc::directory::DirectoryError as E;
        match e {
            E::NotConfigured => XrpcError::invalid_request("no PLC directory configured"),
            E::Unreachable(m) => XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", m),
            E::Refused { status, body, .. } => XrpcError::new(
                StatusCode::BAD_GATEWAY,
                "UpstreamFailure",
                format!("PLC directory answered {status}: {body}"),
            ),
            E::Malformed(m) => XrpcError::internal(m),
        }
    }
}
