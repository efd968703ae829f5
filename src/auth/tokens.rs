//! Legacy session tokens, made the way the reference PDS makes them: HS256 JWTs
//! signed with the server's JWT secret.
//!
//! - access: header `typ: "at+jwt"`, claims `{scope, sub, aud, sid, iat, exp}`, 120 minutes.
//!   `sid` names the session (the `jti` of the refresh token issued with it), so ending the
//!   session (logout, password change, a revoked app password) ends its access tokens too,
//!   not only its refresh token.
//! - refresh: header `typ: "refresh+jwt"`, claims `{scope: "com.atproto.refresh", sub,
//!   aud, jti, iat, exp}`, 90 days; the `jti` is stored server-side so it can be rotated
//!   and revoked.
//!
//! The two kinds are separated twice, by header `typ` and by `scope`, so a leaked
//! refresh token can never be used as an access token or the reverse, even if one check
//! were lost in a refactor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::CryptoRngCore;
use serde_json::{Map, Value};

use super::AuthError;
use crate::crypto::{CryptoError, Jwt, check_times, sign_hs256};
use crate::syntax::is_valid_did;

/// Access token lifetime: 120 minutes.
pub const ACCESS_LIFETIME_SECS: i64 = 120 * 60;
/// Refresh token lifetime: 90 days.
pub const REFRESH_LIFETIME_SECS: i64 = 90 * 24 * 60 * 60;
/// Header `typ` of access tokens.
pub const ACCESS_TYP: &str = "at+jwt";
/// Header `typ` of refresh tokens.
pub const REFRESH_TYP: &str = "refresh+jwt";
/// The only `scope` a refresh token carries.
pub const REFRESH_SCOPE: &str = "com.atproto.refresh";
/// Clock tolerance when checking `exp` / `iat`. Tokens are minted and checked by the
/// same clock, but a Pi has no RTC and NTP may step the clock; a small tolerance keeps
/// a step back from rejecting a token minted a moment earlier ("not yet valid").
pub const TOKEN_LEEWAY_SECS: i64 = 30;

/// What an access token allows. The reference PDS also issues
/// `com.atproto.signupQueued` and `com.atproto.takendown`; perch has no signup queue and
/// refuses sessions for taken-down accounts, so those scopes are rejected as invalid.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Full session from the account password.
    Access,
    /// Session from an app password: no account management.
    AppPass,
    /// App password that may also use privileged services (DMs).
    AppPassPrivileged,
}

impl Scope {
    /// The exact `scope` claim string.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Access => "com.atproto.access",
            Scope::AppPass => "com.atproto.appPass",
            Scope::AppPassPrivileged => "com.atproto.appPassPrivileged",
        }
    }

    /// Inverse of [`Scope::as_str`]; exact match only.
    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Access, Scope::AppPass, Scope::AppPassPrivileged]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }

    /// True for sessions made with an app password (which may not manage the account).
    pub fn is_app_password(self) -> bool {
        !matches!(self, Scope::Access)
    }

    /// True where privileged services (chat/DMs) are allowed.
    pub fn is_privileged(self) -> bool {
        !matches!(self, Scope::AppPass)
    }
}

/// The verified claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    pub scope: Scope,
    /// The account DID.
    pub sub: String,
    pub aud: String,
    /// The session this token belongs to; the caller checks it still exists. Tokens minted
    /// before sessions were named have none.
    pub session: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

/// The verified claims of a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshClaims {
    /// The account DID.
    pub sub: String,
    pub aud: String,
    /// Server-side id; the caller must still check it is stored and not revoked.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// Mints an access token for `did`, audience `service_did` (this PDS's DID), in the session
/// `session` (the refresh token's `jti`).
pub fn mint_access(
    secret: &[u8],
    did: &str,
    service_did: &str,
    scope: Scope,
    session: &str,
    now: i64,
) -> String {
    let mut claims = Map::new();
    claims.insert("scope".into(), scope.as_str().into());
    claims.insert("sub".into(), did.into());
    claims.insert("aud".into(), service_did.into());
    claims.insert("sid".into(), session.into());
    claims.insert("iat".into(), now.into());
    claims.insert(
        "exp".into(),
        now.saturating_add(ACCESS_LIFETIME_SECS).into(),
    );
    sign_hs256(secret, Some(ACCESS_TYP), &claims)
}

/// Mints a refresh token; `jti` comes from [`new_jti`] and is stored by the caller.
pub fn mint_refresh(secret: &[u8], did: &str, service_did: &str, jti: &str, now: i64) -> String {
    let mut claims = Map::new();
    claims.insert("scope".into(), REFRESH_SCOPE.into());
    claims.insert("sub".into(), did.into());
    claims.insert("aud".into(), service_did.into());
    claims.insert("jti".into(), jti.into());
    claims.insert("iat".into(), now.into());
    claims.insert(
        "exp".into(),
        now.saturating_add(REFRESH_LIFETIME_SECS).into(),
    );
    sign_hs256(secret, Some(REFRESH_TYP), &claims)
}

/// A fresh refresh-token id: 32 random bytes (256 bits, unguessable), base64url
/// without padding (43 characters, safe in URLs, headers and SQL text).
pub fn new_jti(rng: &mut impl CryptoRngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Verifies an access token: HS256 signature, `typ: at+jwt`, a known access scope,
/// `aud == service_did`, a DID `sub`, and times. [`AuthError::Expired`] is returned
/// only for a token that passed every other check.
pub fn verify_access(
    secret: &[u8],
    token: &str,
    service_did: &str,
    now: i64,
) -> Result<AccessClaims, AuthError> {
    let jwt = decode_verified(secret, token, ACCESS_TYP)?;
    let scope = Scope::parse(str_claim(&jwt.claims, "scope")?)
        .ok_or(AuthError::InvalidToken("not an access scope"))?;
    let session = match jwt.claims.get("sid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(AuthError::InvalidToken("bad sid")),
    };
    let common = check_common(&jwt.claims, service_did, now, false)?;
    Ok(AccessClaims {
        scope,
        sub: common.sub,
        aud: common.aud,
        session,
        iat: common.iat,
        exp: common.exp,
    })
}

/// Verifies a refresh token like [`verify_access`], with `typ: refresh+jwt`, scope
/// `com.atproto.refresh` and a non-empty `jti`. With `allow_expired`, a token whose only
/// fault is its age is accepted (for revoking it at logout).
pub fn verify_refresh(
    secret: &[u8],
    token: &str,
    service_did: &str,
    now: i64,
    allow_expired: bool,
) -> Result<RefreshClaims, AuthError> {
    let jwt = decode_verified(secret, token, REFRESH_TYP)?;
    if str_claim(&jwt.claims, "scope")? != REFRESH_SCOPE {
        return Err(AuthError::InvalidToken("not a refresh scope"));
    }
    let jti = str_claim(&jwt.claims, "jti")?;
    if jti.is_empty() {
        return Err(AuthError::InvalidToken("empty jti"));
    }
    let jti = jti.to_owned();
    let common = check_common(&jwt.claims, service_did, now, allow_expired)?;
    Ok(RefreshClaims {
        sub: common.sub,
        aud: common.aud,
        jti,
        iat: common.iat,
        exp: common.exp,
    })
}

/// Decodes, checks the signature (which also pins `alg` to HS256), then the `typ`.
/// Nothing from the token is interpreted before its signature has been checked.
fn decode_verified(secret: &[u8], token: &str, typ: &str) -> Result<Jwt, AuthError> {
    let jwt = Jwt::decode(token).map_err(|_| AuthError::InvalidToken("malformed"))?;
    jwt.verify_hs256(secret).map_err(|e| match e {
        CryptoError::BadJwtAlg(_) => AuthError::InvalidToken("wrong algorithm"),
        _ => AuthError::InvalidToken("bad signature"),
    })?;
    if jwt.typ() != Some(typ) {
        return Err(AuthError::InvalidToken("wrong token type"));
    }
    Ok(jwt)
}

struct Common {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Checks the claims both kinds share. Times come last so that `Expired` always means
/// "a genuine token of the right kind that is merely old".
fn check_common(
    claims: &Map<String, Value>,
    service_did: &str,
    now: i64,
    allow_expired: bool,
) -> Result<Common, AuthError> {
    let sub = str_claim(claims, "sub")?;
    if !is_valid_did(sub) {
        return Err(AuthError::InvalidToken("sub is not a DID"));
    }
    let aud = str_claim(claims, "aud")?;
    if aud != service_did {
        return Err(AuthError::InvalidToken("wrong audience"));
    }
    // We only ever write integers; anything else was not made by us.
    let int = |name| {
        claims
            .get(name)
            .and_then(Value::as_i64)
            .ok_or(AuthError::InvalidToken("missing or non-integer time"))
    };
    let (iat, exp) = (int("iat")?, int("exp")?);
    match check_times(claims, now, TOKEN_LEEWAY_SECS) {
        Ok(()) => {}
        Err(CryptoError::JwtExpired) if allow_expired => {}
        Err(CryptoError::JwtExpired) => return Err(AuthError::Expired),
        Err(_) => return Err(AuthError::InvalidToken("bad times")),
    }
    Ok(Common {
        sub: sub.to_owned(),
        aud: aud.to_owned(),
        iat,
        exp,
    })
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, AuthError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidToken("missing string claim"))
}
