//! Inter-service auth tokens: short JWS tokens signed with the account's repo signing
//! key (ES256K or ES256), sent as `Authorization: Bearer` when this PDS calls another
//! service on the user's behalf (proxying, `getServiceAuth`).

use rand_core::CryptoRngCore;
use serde_json::Map;

use crate::crypto::{Keypair, sign_es};

/// Lifetime used when proxying: the reference default `iat + 60`.
pub const SERVICE_AUTH_DEFAULT_LIFETIME_SECS: i64 = 60;
/// Longest lifetime `getServiceAuth` grants for a token without `lxm`.
pub const SERVICE_AUTH_MAX_LIFETIME_SECS: i64 = 60;
/// Longest lifetime `getServiceAuth` grants when `lxm` pins the token to one method.
pub const SERVICE_AUTH_MAX_LIFETIME_WITH_LXM_SECS: i64 = 60 * 60;

/// Mints a service auth token: header `{typ: "JWT", alg}` (alg from the key's curve),
/// claims `iss`, `aud`, `exp = now + exp_secs`, `iat = now`, `lxm` (when given) and a
/// `jti` of 16 random bytes in hex (the reference nonce form; receivers may keep it in a
/// replay cache until `exp`).
///
/// `exp_secs` is a lifetime, not an absolute time. It is not bounded here: callers
/// check requests with [`service_auth_lifetime`] first.
pub fn mint_service_auth(
    key: &Keypair,
    iss: &str,
    aud: &str,
    lxm: Option<&str>,
    now: i64,
    exp_secs: i64,
    rng: &mut impl CryptoRngCore,
) -> String {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let jti: String = nonce.iter().map(|b| format!("{b:02x}")).collect();

    let mut claims = Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("iss".into(), iss.into());
    claims.insert("aud".into(), aud.into());
    claims.insert("exp".into(), now.saturating_add(exp_secs).into());
    if let Some(lxm) = lxm {
        claims.insert("lxm".into(), lxm.into());
    }
    claims.insert("jti".into(), jti.into());
    sign_es(key, Some("JWT"), &claims)
}

/// Turns `getServiceAuth`'s optional absolute `exp` into a lifetime, applying the
/// reference limits (60 s without `lxm`, one hour with it). `Err` carries the message
/// for a `BadExpiration` error.
pub fn service_auth_lifetime(
    now: i64,
    requested_exp: Option<i64>,
    has_lxm: bool,
) -> Result<i64, &'static str> {
    let Some(exp) = requested_exp else {
        return Ok(SERVICE_AUTH_DEFAULT_LIFETIME_SECS);
    };
    let lifetime = exp.saturating_sub(now);
    if lifetime <= 0 {
        return Err("expiration is in the past");
    }
    if lifetime > SERVICE_AUTH_MAX_LIFETIME_WITH_LXM_SECS {
        return Err("cannot request a token with an expiration more than an hour in the future");
    }
    if !has_lxm && lifetime > SERVICE_AUTH_MAX_LIFETIME_SECS {
        return Err(
            "cannot request a method-less token with an expiration more than a minute in the future",
        );
    }
    Ok(lifetime)
}
