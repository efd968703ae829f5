//! Who is calling: the session behind an `Authorization: Bearer` header.

use crate::app::App;
use crate::auth::Scope;
use crate::xrpc::{XrpcError, XrpcRequest};

pub use crate::account::Session;

/// Account management needs the main password's session, not an app password's.
pub trait RequireFull {
    fn require_full(&self) -> Result<(), XrpcError>;
}

impl RequireFull for Session {
    fn require_full(&self) -> Result<(), XrpcError> {
        if self.is_full() {
            Ok(())
        } else {
            // The reference answers 400 with this exact message; the Bluesky app looks
            // for it.
            Err(XrpcError::invalid_token("Bad token scope"))
        }
    }
}

pub fn now() -> i64 {
    crate::clock::unix_secs()
}

pub fn bearer(req: &XrpcRequest) -> Result<&str, XrpcError> {
    let h = req
        .header("authorization")
        .ok_or_else(|| XrpcError::auth_required("Authentication Required"))?;
    let (scheme, token) = h
        .split_once(' ')
        .ok_or_else(|| XrpcError::auth_required("Unexpected authorization type"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(XrpcError::auth_required("Unexpected authorization type"));
    }
    Ok(token.trim())
}

/// A valid access token for this server's account, in a session that has not ended.
pub async fn require_user(app: &App, req: &XrpcRequest) -> Result<Session, XrpcError> {
    let token = bearer(req)?;
    Ok(app.accounts().authenticate(token).await?)
}

/// A user session, or a service-auth token the account itself minted (with
/// `getServiceAuth`) for exactly this method and this server. The Bluesky
/// video service uploads processed videos to `uploadBlob` that way.
pub async fn require_user_or_service(
    app: &App,
    req: &XrpcRequest,
    lxm: &str,
) -> Result<Session, XrpcError> {
    let token = bearer(req)?;
    let Ok(jwt) = crate::crypto::jwt::Jwt::decode(token) else {
        return Err(XrpcError::invalid_token("Token could not be verified"));
    };
    if jwt.alg() == "HS256" {
        return require_user(app, req).await;
    }
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("Token could not be verified"))?;
    let claim = |k: &str| jwt.claims.get(k).and_then(|v| v.as_str());
    // Only tokens signed by the account's own key are accepted here, so
    // the issuer's key needs no DID resolution.
    if claim("iss") != Some(acct.did.as_str()) {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtIss",
            "jwt issuer is not this account",
        ));
    }
    jwt.verify_es(&app.repo_key.public_key()).map_err(|_| {
        XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtSignature",
            "jwt signature does not match jwt issuer",
        )
    })?;
    let aud_ok = claim("aud").is_some_and(|a| {
        a == app.service_did || a.split('#').next() == Some(app.service_did.as_str())
    });
    if !aud_ok {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtAudience",
            "jwt audience does not match service did",
        ));
    }
    if claim("lxm") != Some(lxm) {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtLexiconMethod",
            "bad jwt lexicon method (\"lxm\")",
        ));
    }
    crate::crypto::jwt::check_times(&jwt.claims, now(), 5).map_err(|_| {
        XrpcError::new(hyper::StatusCode::UNAUTHORIZED, "JwtExpired", "jwt expired")
    })?;
    Ok(Session {
        did: acct.did,
        handle: acct.handle,
        // A service token grants this one method and nothing else.
        scope: Scope::AppPass,
    })
}

/// `Authorization: Basic` with user `admin` and the configured admin password (the reference
/// PDS's admin scheme), compared in constant time.
pub fn basic_admin_ok(headers: &hyper::HeaderMap, password: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("admin:{password}");
    decoded.len() == expected.len()
        && decoded
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod admin_tests {
    use super::basic_admin_ok;

    #[test]
    fn basic_admin_needs_the_exact_password() {
        let mut h = hyper::HeaderMap::new();
        assert!(!basic_admin_ok(&h, "s3cret"));
        // base64("admin:s3cret")
        h.insert("authorization", "Basic YWRtaW46czNjcmV0".parse().unwrap());
        assert!(basic_admin_ok(&h, "s3cret"));
        assert!(!basic_admin_ok(&h, "s3cre"));
        assert!(!basic_admin_ok(&h, "s3cret!"));
        h.insert("authorization", "Bearer YWRtaW46czNjcmV0".parse().unwrap());
        assert!(!basic_admin_ok(&h, "s3cret"));
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(!basic_admin_ok(&h, "s3cret"));
    }
}
