//! The OAuth service: perch as the atproto OAuth authorization server of its one account,
//! and as the resource server that checks DPoP-bound access tokens on XRPC calls.
//!
//! - `client`: who an app is (its client metadata document, fetched through the guarded
//!   outbound client and cached; the loopback development client synthesised);
//! - `par`: pushed authorization requests;
//! - `authorize`: what the sign-in and consent pages decide (the pages themselves are a
//!   face, `web`);
//! - `token`: codes for tokens, refresh with rotation, revocation, the grants list;
//! - `resource`: the check every `Authorization: DPoP` request makes;
//! - `proof`: DPoP proofs at the endpoints (nonce, replay), client assertions;
//! - `sets`: `include:` permission sets, resolved, cached and expanded;
//! - `rate`: per-address request budgets for the endpoints anyone can call.
//!
//! State that must survive a restart (requests, grants, used values, consent, signed-in
//! browsers) lives in the store (`store::oauth`); what may be lost with a restart (the
//! DPoP replay cache, client metadata cache, rate budgets) lives in [`OAuthState`].

mod authorize;
pub mod client;
mod par;
mod proof;
pub mod rate;
mod resource;
mod sets;
mod token;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::account::Accounts;
use crate::auth::dpop::{Nonces, ReplayCache};
use crate::config::Config;
use crate::net::Net;
use crate::store::{Store, StoreError};
use crate::writer::Writer;

pub use authorize::{Credential, Decision, Prompt, View};
pub use client::Client;
pub use par::Pushed;
pub use resource::{Resource, ResourceError};
pub use token::{GrantInfo, TokenResponse};

/// A pushed request lives this long without the owner acting on it (reference: 5 minutes).
pub const REQUEST_LIFETIME: i64 = 5 * 60;
/// An authorization code lives this long.
pub const CODE_LIFETIME: i64 = 60;
/// Access tokens: the spec wants under 30 minutes; every use also checks the grant, so a
/// revoked grant ends its tokens at once whatever their age.
pub const ACCESS_LIFETIME: i64 = 15 * 60;
/// Public clients: each refresh token, and the whole session, 2 weeks (the spec's maximum).
pub const PUBLIC_REFRESH_LIFETIME: i64 = 14 * 24 * 3600;
pub const PUBLIC_SESSION_LIFETIME: i64 = 14 * 24 * 3600;
/// Confidential clients: each refresh token 3 months, the session 2 years (the reference's).
pub const CONFIDENTIAL_REFRESH_LIFETIME: i64 = 90 * 24 * 3600;
pub const CONFIDENTIAL_SESSION_LIFETIME: i64 = 730 * 24 * 3600;
/// A browser stays signed in to the sign-in page this long (reference: 7 days).
pub const DEVICE_LIFETIME: i64 = 7 * 24 * 3600;
/// A code challenge is refused if seen again within this window (the spec asks ≥ 24 h).
pub const CHALLENGE_MEMORY: i64 = 24 * 3600;
/// Pushed requests not yet expired, at most (anyone can push one).
pub const MAX_LIVE_REQUESTS: i64 = 200;
/// DPoP proofs remembered for replay detection, at most, in each of the two caches (about
/// 100 bytes each; a proof is remembered for 9 minutes, so this allows ~90 proofs/s).
pub const REPLAY_CAPACITY: usize = 50_000;

/// An OAuth error, as RFC 6749 words it (`error`, `error_description`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_client", d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_client_metadata", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_scope", d)
    }
    pub fn invalid_dpop_proof(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_dpop_proof", d)
    }
    pub fn use_dpop_nonce() -> Self {
        Self::new(
            400,
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof",
        )
    }
    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(403, "access_denied", d)
    }
    /// The proof replay cache is full: every entry is a live proof, none may be forgotten.
    pub fn busy(retry_after: u64) -> Self {
        OAuthError {
            retry_after: Some(retry_after),
            ..Self::new(
                503,
                "temporarily_unavailable",
                "Too many requests at once; try again later",
            )
        }
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        OAuthError {
            retry_after: Some(retry_after),
            ..Self::new(429, "rate_limited", "Too many requests; try again later")
        }
    }
    /// A real fault: logged, not described to the client.
    pub fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!("oauth: {cause}");
        Self::new(500, "server_error", "Internal server error")
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::server(e)
    }
}

/// What the service keeps in memory: the nonce secret, the proof replay cache, fetched
/// client metadata, the endpoints' rate budgets, and keys derived from the server secret.
pub struct OAuthState {
    nonces: Nonces,
    /// Proofs seen at the endpoints anyone can call, and on API calls, apart: anyone can
    /// make valid proofs for the former (their own key, the public nonce), and filling that
    /// cache must not stop signed-in apps from working.
    replay_endpoints: Mutex<ReplayCache>,
    replay_api: Mutex<ReplayCache>,
    clients: client::ClientCache,
    sets: sets::SetCache,
    pub rate: rate::Budgets,
    /// Signs access tokens (derived, so a legacy session token can never pass for one).
    access_key: [u8; 32],
    /// Binds the pages' forms to the browser and the request (CSRF).
    form_key: [u8; 32],
}

impl OAuthState {
    pub fn new(server_secret: &[u8; 32]) -> OAuthState {
        let mut nonce_secret = [0u8; 32];
        // Nonces need not survive a restart: a client told `use_dpop_nonce` retries.
        OsRng.fill_bytes(&mut nonce_secret);
        OAuthState {
            nonces: Nonces::new(nonce_secret),
            replay_endpoints: Mutex::new(ReplayCache::new(REPLAY_CAPACITY)),
            replay_api: Mutex::new(ReplayCache::new(REPLAY_CAPACITY)),
            clients: client::ClientCache::default(),
            sets: sets::SetCache::default(),
            rate: rate::Budgets::default(),
            access_key: derive(server_secret, b"perch oauth access token"),
            form_key: derive(server_secret, b"perch oauth form"),
        }
    }

    /// The DPoP nonce to hand out now.
    pub fn nonce(&self) -> String {
        self.nonces.current(crate::clock::unix_secs())
    }
}

fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length.
        return [0; 32];
    };
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// What the service works with; `App::oauth` hands one out.
pub struct OAuth<'a> {
    pub config: &'a Config,
    pub store: &'a Arc<Store>,
    pub writer: &'a Writer,
    pub net: &'a Net,
    pub state: &'a OAuthState,
    pub accounts: Accounts<'a>,
    /// This server's DID, the audience of its access tokens.
    pub service_did: &'a str,
    /// The DNS server for `_lexicon` lookups (tests only; the system's otherwise).
    pub dns: Option<std::net::SocketAddr>,
}

impl OAuth<'_> {
    /// The issuer: this server's public origin, exactly as its DID document and the
    /// protected-resource document name it.
    pub fn issuer(&self) -> String {
        self.config.public_url().trim_end_matches('/').to_owned()
    }
}

/// A fresh random secret with a prefix saying what it is (handy in logs and bug reports,
/// never its value): 32 random bytes, base64url.
fn secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b))
}

/// How secrets are stored: SHA-256, base64url.
pub fn hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn now() -> i64 {
    crate::clock::unix_secs()
}
