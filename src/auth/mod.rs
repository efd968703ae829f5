//! Account authentication: password hashing, legacy session tokens, app passwords,
//! inter-service auth tokens and the login rate limiter.
//!
//! Everything here is pure: no SQL, no clock reads, no I/O. Callers pass the current
//! time (`now`, UNIX seconds, or `now_ms` for the limiter) and an RNG, which keeps the
//! code deterministic under test. Storage of password hashes, refresh-token ids and app
//! passwords belongs to the account layer.

pub mod app_password;
pub mod dpop;
pub mod limiter;
pub mod methods;
pub mod password;
pub mod permissions;
pub mod service_auth;
pub mod tokens;
pub mod webauthn;

pub use app_password::{looks_like_app_password, validate_app_password_name};
pub use limiter::{LimiterConfig, LoginLimiter, RetryAfter};
pub use password::{check_password_hash, hash_password, hash_password_with, verify_password};
pub use service_auth::mint_service_auth;
pub use tokens::{
    AccessClaims, RefreshClaims, Scope, mint_access, mint_refresh, new_jti, verify_access,
    verify_refresh,
};

/// Errors from the authentication helpers.
///
/// Token failures carry a short static reason for logs only; the XRPC layer maps
/// [`AuthError::Expired`] to `ExpiredToken` and [`AuthError::InvalidToken`] to
/// `InvalidToken` and must not echo the reason to clients (it would help an attacker
/// probe which check failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// An empty password was offered for hashing.
    #[error("password must not be empty")]
    EmptyPassword,
    /// The password exceeds [`password::MAX_PASSWORD_BYTES`].
    #[error("password is too long")]
    PasswordTooLong,
    /// The hashing library failed (bad parameters); not caused by the password itself.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A session token is malformed, forged, of the wrong kind or for another audience.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A session token was valid but its `exp` has passed.
    #[error("token expired")]
    Expired,
    /// An app-password name breaks the naming rules.
    #[error("invalid app password name: {0}")]
    InvalidName(&'static str),
}

#[cfg(test)]
mod limiter_tests;
#[cfg(test)]
mod tokens_tests;
