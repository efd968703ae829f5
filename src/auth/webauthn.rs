//! Passkeys: the server's half of WebAuthn for ES256 credentials with attestation `none`.
//! Registration reads the new credential's public key from the authenticator data (the
//! attestation statement is not checked: perch asks for none, and trusts the owner's choice
//! of authenticator); sign-in checks an assertion's signature over the authenticator data
//! and the hash of the client data. Both check the ceremony type, the challenge, the origin,
//! the relying party's hash and the user-presence flag. Pure: the expected values come in.
//!
//! The CBOR here (attestation objects, COSE keys) is not DAG-CBOR (COSE keys have integer
//! keys), so it has its own small reader, bounded in depth and length.

use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// Authenticator data flags.
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const ATTESTED: u8 = 0x40;

/// The largest credential id accepted (the spec allows 1023 bytes).
const MAX_CREDENTIAL_ID: usize = 1023;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnError {
    #[error("the passkey's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("the passkey answered a different request ({0})")]
    Mismatch(&'static str),
    #[error("only ES256 (P-256) passkeys are supported")]
    Unsupported,
    #[error("the passkey's signature does not verify")]
    BadSignature,
}

use WebAuthnError::{Malformed, Mismatch};

/// What a ceremony must match: `webauthn.create` or `webauthn.get`, the challenge this
/// server issued (base64url, as the browser echoes it), this origin and relying party.
pub struct Expected<'a> {
    pub ceremony: &'a str,
    pub challenge: &'a str,
    pub origin: &'a str,
    pub rp_id: &'a str,
}

/// A credential to store: its id and its P-256 public key (SEC1, uncompressed, 65 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    pub public_key: Vec<u8>,
    pub sign_count: u32,
    pub user_verified: bool,
}

/// A verified assertion: the counter it carried and whether the user was verified.
#[derive(Debug, PartialEq, Eq)]
pub struct Assertion {
    pub sign_count: u32,
    pub user_verified: bool,
}

fn check_client_data(json: &[u8], want: &Expected) -> Result<(), WebAuthnError> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|_| Malformed("client data is not JSON"))?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    if field("type") != Some(want.ceremony) {
        return Err(Mismatch("ceremony type"));
    }
    if field("challenge") != Some(want.challenge) {
        return Err(Mismatch("challenge"));
    }
    if field("origin") != Some(want.origin) {
        return Err(Mismatch("origin"));
    }
    // A cross-origin iframe: the pages forbid framing, so this is never ours.
    if v.get("crossOrigin").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(Mismatch("cross-origin"));
    }
    Ok(())
}

struct AuthData<'a> {
    flags: u8,
    sign_count: u32,
    /// The attested credential data and what follows it (registration only).
    rest: &'a [u8],
}

fn auth_data<'a>(bytes: &'a [u8], want: &Expected) -> Result<AuthData<'a>, WebAuthnError> {
    if bytes.len() < 37 {
        return Err(Malformed("authenticator data is too short"));
    }
    if bytes[..32] != Sha256::digest(want.rp_id.as_bytes())[..] {
        return Err(Mismatch("relying party"));
    }
    let flags = bytes[32];
    if flags & USER_PRESENT == 0 {
        return Err(Mismatch("user not present"));
    }
    let sign_count = u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]);
    Ok(AuthData {
        flags,
        sign_count,
        rest: &bytes[37..],
    })
}

/// Checks a registration (`navigator.credentials.create`) and returns the new credential.
pub fn register(
    client_data_json: &[u8],
    attestation_object: &[u8],
    want: &Expected,
) -> Result<NewCredential, WebAuthnError> {
    check_client_data(client_data_json, want)?;
    let top = Cbor::parse(attestation_object)?;
    let data = top
        .get_text("authData")
        .and_then(Cbor::bytes)
        .ok_or(Malformed("no authData"))?;
    let ad = auth_data(data, want)?;
    if ad.flags & ATTESTED == 0 {
        return Err(Malformed("no attested credential"));
    }
    // aaguid (16), credential id length (2), the id, then the COSE key.
    let rest = ad.rest;
    if rest.len() < 18 {
        return Err(Malformed("attested credential data is too short"));
    }
    let id_len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
    if id_len == 0 || id_len > MAX_CREDENTIAL_ID || rest.len() < 18 + id_len {
        return Err(Malformed("credential id"));
    }
    let id = rest[18..18 + id_len].to_vec();
    let (key, _) = Cbor::parse_prefix(&rest[18 + id_len..], 0)?;
    Ok(NewCredential {
        id,
        public_key: cose_p256(&key)?,
        sign_count: ad.sign_count,
        user_verified: ad.flags & USER_VERIFIED != 0,
    })
}

/// An EC2 / P-256 / ES256 COSE key as SEC1 uncompressed bytes.
fn cose_p256(key: &Cbor) -> Result<Vec<u8>, WebAuthnError> {
    let int = |k: i64| key.get_int(k).and_then(Cbor::int);
    // kty 2 (EC2), alg -7 (ES256), crv 1 (P-256).
    if int(1) != Some(2) || int(3) != Some(-7) || int(-1) != Some(1) {
        return Err(WebAuthnError::Unsupported);
    }
    let coord = |k: i64| {
        key.get_int(k)
            .and_then(Cbor::bytes)
            .filter(|b| b.len() == 32)
            .ok_or(Malformed("COSE key coordinates"))
    };
    let mut out = Vec::with_capacity(65);
    out.push(0x04);
    out.extend_from_slice(coord(-2)?);
    out.extend_from_slice(coord(-3)?);
    // The point must be on the curve.
    p256::PublicKey::from_sec1_bytes(&out)
        .map_err(|_| Malformed("COSE key is not a P-256 point"))?;
    Ok(out)
}

/// Checks a sign-in (`navigator.credentials.get`) against the stored public key.
pub fn assert(
    public_key: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature_der: &[u8],
    want: &Expected,
) -> Result<Assertion, WebAuthnError> {
    check_client_data(client_data_json, want)?;
    let ad = auth_data(authenticator_data, want)?;
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&signed, signature_der)
        .map_err(|_| WebAuthnError::BadSignature)?;
    Ok(Assertion {
        sign_count: ad.sign_count,
        user_verified: ad.flags & USER_VERIFIED != 0,
    })
}

/// The CBOR items WebAuthn uses, borrowed from the input.
#[derive(Debug, PartialEq)]
pub enum Cbor<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Cbor<'a>>),
    Map(Vec<(Cbor<'a>, Cbor<'a>)>),
    /// Tags, floats and simple values: kept only as "something".
    Other,
}

const MAX_DEPTH: usize = 8;
const MAX_ITEMS: u64 = 256;

impl<'a> Cbor<'a> {
    /// One item that is the whole input.
    pub fn parse(input: &'a [u8]) -> Result<Cbor<'a>, WebAuthnError> {
        let (item, used) = Cbor::parse_prefix(input, 0)?;
        if used != input.len() {
            return Err(Malformed("trailing bytes after CBOR"));
        }
        Ok(item)
    }

    /// One item at the start of `input`, and how many bytes it took.
    pub fn parse_prefix(input: &'a [u8], depth: usize) -> Result<(Cbor<'a>, usize), WebAuthnError> {
        if depth > MAX_DEPTH {
            return Err(Malformed("CBOR nested too deeply"));
        }
        let first = *input.first().ok_or(Malformed("CBOR ends early"))?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (arg, mut at) = match info {
            0..=23 => (u64::from(info), 1),
            24..=27 => {
                let n = 1usize << (info - 24);
                let b = input.get(1..1 + n).ok_or(Malformed("CBOR ends early"))?;
                (b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)), 1 + n)
            }
            _ => return Err(Malformed("indefinite-length CBOR")),
        };
        let slice = |at: usize, len: u64| {
            let len = usize::try_from(len).map_err(|_| Malformed("CBOR length"))?;
            input
                .get(at..at.checked_add(len).ok_or(Malformed("CBOR length"))?)
                .ok_or(Malformed("CBOR ends early"))
        };
        let item = match major {
            0 => Cbor::Int(i64::try_from(arg).map_err(|_| Malformed("CBOR integer"))?),
            1 => Cbor::Int(-1 - i64::try_from(arg).map_err(|_| Malformed("CBOR integer"))?),
            2 => {
                let b = slice(at, arg)?;
                at += b.len();
                Cbor::Bytes(b)
            }
            3 => {
                let b = slice(at, arg)?;
                at += b.len();
                Cbor::Text(std::str::from_utf8(b).map_err(|_| Malformed("CBOR text"))?)
            }
            4 | 5 => {
                if arg > MAX_ITEMS {
                    return Err(Malformed("CBOR container too large"));
                }
                let per = if major == 4 { 1 } else { 2 };
                let mut items = Vec::new();
                for _ in 0..arg * per {
                    let (x, n) = Cbor::parse_prefix(&input[at..], depth + 1)?;
                    at += n;
                    items.push(x);
                }
                if major == 4 {
                    Cbor::Array(items)
                } else {
                    let mut pairs = Vec::new();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Cbor::Map(pairs)
                }
            }
            6 => {
                let (_, n) = Cbor::parse_prefix(&input[at..], depth + 1)?;
                at += n;
                Cbor::Other
            }
            _ => {
                // Simple values and floats: their argument was their payload.
                Cbor::Other
            }
        };
        Ok((item, at))
    }

    fn get(&self, pred: impl Fn(&Cbor) -> bool) -> Option<&Cbor<'a>> {
        match self {
            Cbor::Map(pairs) => pairs.iter().find(|(k, _)| pred(k)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_text(&self, key: &str) -> Option<&Cbor<'a>> {
        self.get(|k| matches!(k, Cbor::Text(t) if *t == key))
    }

    pub fn get_int(&self, key: i64) -> Option<&Cbor<'a>> {
        self.get(|k| matches!(k, Cbor::Int(i) if *i == key))
    }

    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            Cbor::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Cbor::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "webauthn_tests.rs"]
mod tests;
