//! Compact JWS tokens: ES256K / ES256 (inter-service auth) and HS256 (session tokens).
//!
//! Decoding is split from verification so callers can read `iss`/`kid` to find the key
//! first. Nothing here reads the clock; [`check_times`] takes `now` as an argument.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::keys::{CryptoError, Keypair, PublicKey};

/// Upper bound on accepted token length. Real tokens are well under 2 KiB; the bound
/// keeps hostile input from costing much before any signature check.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// base64url without padding, strict on decode: padding, whitespace, the standard
/// alphabet's `+`/`/` and non-zero trailing bits are all errors, so each token has
/// exactly one encoding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

const HS256: &str = "HS256";

/// Strict base64url decoding (the `B64URL` rules above), shared with did:plc operation
/// signatures, which follow the same rules.
pub(crate) fn b64url_decode_strict(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64URL.decode(s)
}

/// Unpadded base64url encoding, the form [`b64url_decode_strict`] accepts.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

type HmacSha256 = Hmac<Sha256>;

/// Signs `claims` with an account or service key. `typ` defaults to `"JWT"`.
///
/// Returns an empty string only if JSON serialisation fails, which cannot happen for a
/// `Map<String, Value>`; an empty string never decodes, so it fails closed.
pub fn sign_es(key: &Keypair, typ: Option<&str>, claims: &Map<String, Value>) -> String {
    let Some(input) = signing_input(typ, key.key_type().jwt_alg(), claims) else {
        return String::new();
    };
    let sig = key.sign(input.as_bytes());
    join_signature(input, &sig)
}

/// Signs `claims` with a shared secret (HS256). `typ` defaults to `"JWT"`; session
/// tokens use `"at+jwt"` / `"refresh+jwt"` so one kind cannot stand in for the other.
///
/// Returns an empty string only on the impossible failures of JSON serialisation or
/// HMAC key setup (HMAC takes keys of any length); that fails closed.
pub fn sign_hs256(secret: &[u8], typ: Option<&str>, claims: &Map<String, Value>) -> String {
    let Some(input) = signing_input(typ, HS256, claims) else {
        return String::new();
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(input.as_bytes());
    let tag = mac.finalize().into_bytes();
    join_signature(input, &tag)
}

/// Header fields are written in the order the reference implementation uses
/// (`typ`, then `alg`); the order is cosmetic since the signature covers the bytes.
fn signing_input(typ: Option<&str>, alg: &str, claims: &Map<String, Value>) -> Option<String> {
    let typ = serde_json::to_string(typ.unwrap_or("JWT")).ok()?;
    let alg = serde_json::to_string(alg).ok()?;
    let header = format!("{{\"typ\":{typ},\"alg\":{alg}}}");
    let payload = serde_json::to_vec(claims).ok()?;
    Some(format!(
        "{}.{}",
        B64URL.encode(header.as_bytes()),
        B64URL.encode(payload)
    ))
}

fn join_signature(mut input: String, sig: &[u8]) -> String {
    input.push('.');
    input.push_str(&B64URL.encode(sig));
    input
}

/// A decoded but not yet verified token.
#[derive(Clone, Debug)]
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Kept apart from `header` so that editing the public field cannot change which
    /// algorithm the signature is checked under.
    alg: String,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Parses a compact JWS without checking the signature or times.
    pub fn decode(token: &str) -> Result<Jwt, CryptoError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected exactly three segments"));
        };

        let header = decode_object(header_b64, "header")?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            Some(_) => return Err(bad("header alg is not a string")),
            None => return Err(bad("header has no alg")),
        };
        // RFC 7515: extensions listed in `crit` must be understood; we support none.
        if header.contains_key("crit") {
            return Err(bad("unsupported crit header"));
        }
        let claims = decode_object(claims_b64, "payload")?;
        let signature = B64URL
            .decode(sig_b64)
            .map_err(|_| bad("signature is not base64url"))?;

        Ok(Jwt {
            header,
            claims,
            alg,
            signing_input: format!("{header_b64}.{claims_b64}"),
            signature,
        })
    }

    /// The `alg` the token was decoded with.
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The header `typ`, if present and a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// Verifies an ES256K / ES256 signature. The token's `alg` must match the key's curve,
    /// which also rules out `none` and HS256 (no algorithm confusion).
    pub fn verify_es(&self, key: &PublicKey) -> Result<(), CryptoError> {
        if self.alg != key.key_type().jwt_alg() {
            return Err(CryptoError::BadJwtAlg(self.alg.clone()));
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)
    }

    /// Verifies an ES256 / ES256K signature as JOSE does (either S; see
    /// [`PublicKey::verify_jose`]): for OAuth's DPoP proofs and client assertions.
    pub fn verify_jose(&self, key: &PublicKey) -> Result<(), CryptoError> {
        if self.alg != key.key_type().jwt_alg() {
            return Err(CryptoError::BadJwtAlg(self.alg.clone()));
        }
        key.verify_jose(self.signing_input.as_bytes(), &self.signature)
    }

    /// Verifies an HS256 signature in constant time. An empty secret is refused so that
    /// a missing configuration value can never make tokens forgeable.
    pub fn verify_hs256(&self, secret: &[u8]) -> Result<(), CryptoError> {
        if self.alg != HS256 {
            return Err(CryptoError::BadJwtAlg(self.alg.clone()));
        }
        if secret.is_empty() {
            return Err(CryptoError::BadKey);
        }
        let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| CryptoError::BadKey)?;
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

fn bad(msg: &str) -> CryptoError {
    CryptoError::BadJwt(msg.to_owned())
}

fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, CryptoError> {
    let bytes = B64URL
        .decode(segment)
        .map_err(|_| CryptoError::BadJwt(format!("{what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CryptoError::BadJwt(format!("{what} is not a JSON object"))),
        Err(_) => Err(CryptoError::BadJwt(format!("{what} is not valid JSON"))),
    }
}

/// Checks `exp` (required, must be after `now - leeway`) and, when present, `iat` and
/// `nbf` (must not be after `now + leeway`). Times are UNIX seconds; a negative leeway
/// counts as zero.
pub fn check_times(
    claims: &Map<String, Value>,
    now_secs: i64,
    leeway_secs: i64,
) -> Result<(), CryptoError> {
    let leeway = leeway_secs.max(0);
    let exp = numeric_claim(claims, "exp")?.ok_or_else(|| bad("missing exp"))?;
    if exp <= now_secs.saturating_sub(leeway) {
        return Err(CryptoError::JwtExpired);
    }
    let latest_start = now_secs.saturating_add(leeway);
    for name in ["iat", "nbf"] {
        if let Some(t) = numeric_claim(claims, name)?
            && t > latest_start
        {
            return Err(CryptoError::JwtNotYetValid);
        }
    }
    Ok(())
}

/// Reads a NumericDate claim. JWT allows fractional seconds, so non-integers are
/// floored; float-to-int `as` saturates, so huge values cannot wrap.
fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, CryptoError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64() {
                Ok(Some(f.floor() as i64))
            } else {
                Err(CryptoError::BadJwt(format!(
                    "{name} is not a usable number"
                )))
            }
        }
        Some(_) => Err(CryptoError::BadJwt(format!("{name} is not a number"))),
    }
}
