//! Signing keys and public keys (secp256k1 and P-256), with the atproto text forms:
//! did:key, multikey and the legacy `publicKeyMultibase` of old DID documents.
//!
//! This file depends only on std and external crates so that it can also be compiled
//! on its own (the interop test includes it by path).

use std::fmt;

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::elliptic_curve::rand_core::CryptoRngCore;
use k256::elliptic_curve::scalar::IsHigh;
use sha2::{Digest, Sha256};

/// Multicodec varints: secp256k1-pub (0xe7) and p256-pub (0x1200).
const K256_CODEC: [u8; 2] = [0xe7, 0x01];
const P256_CODEC: [u8; 2] = [0x80, 0x24];
const DID_KEY_PREFIX: &str = "did:key:";
/// Base58 decoding is quadratic, so refuse long input before decoding. The longest value
/// we accept (65-byte uncompressed point) is about 90 base58 characters.
const MAX_MULTIBASE_LEN: usize = 128;

/// The two curves atproto allows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// secp256k1, JWS `ES256K`. The reference PDS default for new keys.
    K256,
    /// NIST P-256 (secp256r1), JWS `ES256`.
    P256,
}

impl KeyType {
    /// The JWS `alg` value for signatures made with this key type.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            KeyType::K256 => "ES256K",
            KeyType::P256 => "ES256",
        }
    }

    /// Inverse of [`KeyType::jwt_alg`]; also maps the fixtures' `algorithm` field.
    pub fn from_jwt_alg(alg: &str) -> Option<KeyType> {
        match alg {
            "ES256K" => Some(KeyType::K256),
            "ES256" => Some(KeyType::P256),
            _ => None,
        }
    }

    fn multicodec(self) -> [u8; 2] {
        match self {
            KeyType::K256 => K256_CODEC,
            KeyType::P256 => P256_CODEC,
        }
    }
}

/// Errors from key handling, signature checks and JWT processing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Secret key or curve point bytes are not a valid key.
    #[error("invalid key")]
    BadKey,
    /// Signature is malformed (not 64-byte r‖s, high-S, out of range) or does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A multikey names a key type other than secp256k1 or P-256.
    #[error("unsupported key type")]
    UnsupportedKeyType,
    /// Text is not a well-formed `did:key` / multikey.
    #[error("malformed did:key or multikey")]
    BadDidKey,
    /// Text is not a well-formed legacy `publicKeyMultibase` value.
    #[error("malformed legacy multibase public key")]
    BadMultibase,
    /// JWT structure or encoding is invalid.
    #[error("malformed JWT: {0}")]
    BadJwt(String),
    /// JWT `alg` is not the one the verifier expects (includes `none`).
    #[error("unacceptable JWT algorithm: {0}")]
    BadJwtAlg(String),
    /// JWT `exp` has passed.
    #[error("JWT expired")]
    JwtExpired,
    /// JWT `iat` or `nbf` lies in the future.
    #[error("JWT not yet valid")]
    JwtNotYetValid,
}

/// A private signing key. Cloning copies the secret; the inner keys zeroize on drop.
#[derive(Clone)]
pub struct Keypair {
    inner: SecretInner,
}

#[derive(Clone)]
enum SecretInner {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl Keypair {
    /// Loads a key from its 32-byte big-endian scalar (the reference PDS stores it as hex).
    pub fn from_secret_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        let inner = match key_type {
            KeyType::K256 => SecretInner::K256(
                k256::ecdsa::SigningKey::from_bytes(&arr.into())
                    .map_err(|_| CryptoError::BadKey)?,
            ),
            KeyType::P256 => SecretInner::P256(
                p256::ecdsa::SigningKey::from_bytes(&arr.into())
                    .map_err(|_| CryptoError::BadKey)?,
            ),
        };
        Ok(Keypair { inner })
    }

    /// Creates a fresh key from the caller's cryptographically secure RNG.
    pub fn generate(key_type: KeyType, rng: &mut impl CryptoRngCore) -> Self {
        let inner = match key_type {
            KeyType::K256 => SecretInner::K256(k256::ecdsa::SigningKey::random(rng)),
            KeyType::P256 => SecretInner::P256(p256::ecdsa::SigningKey::random(rng)),
        };
        Keypair { inner }
    }

    /// The 32-byte secret scalar, for persisting the key.
    pub fn secret_bytes(&self) -> [u8; 32] {
        match &self.inner {
            SecretInner::K256(sk) => sk.to_bytes().into(),
            SecretInner::P256(sk) => sk.to_bytes().into(),
        }
    }

    pub fn key_type(&self) -> KeyType {
        match &self.inner {
            SecretInner::K256(_) => KeyType::K256,
            SecretInner::P256(_) => KeyType::P256,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        let inner = match &self.inner {
            SecretInner::K256(sk) => PublicInner::K256(*sk.verifying_key()),
            SecretInner::P256(sk) => PublicInner::P256(*sk.verifying_key()),
        };
        PublicKey { inner }
    }

    /// ECDSA over SHA-256(msg), deterministic (RFC 6979), as compact `r‖s` with low S.
    ///
    /// Signing only fails if the nonce yields r = 0 or s = 0, which cannot happen in
    /// practice (probability ~2^-256). Rather than panic, that case returns all zeros,
    /// which [`PublicKey::verify`] always rejects.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let digest = Sha256::digest(msg);
        let bytes = match &self.inner {
            SecretInner::K256(sk) => {
                let sig: Result<k256::ecdsa::Signature, _> = sk.sign_prehash(&digest);
                // k256 0.13 already normalises; doing it again keeps the guarantee local.
                sig.map(|s| s.normalize_s().unwrap_or(s).to_bytes())
                    .map(|b| fill::<64>(&b))
            }
            SecretInner::P256(sk) => {
                let sig: Result<p256::ecdsa::Signature, _> = sk.sign_prehash(&digest);
                // p256 leaves S as computed, but atproto verifiers reject high S.
                sig.map(|s| s.normalize_s().unwrap_or(s).to_bytes())
                    .map(|b| fill::<64>(&b))
            }
        };
        bytes.unwrap_or([0u8; 64])
    }

    /// The `did:key:z…` form of the public key.
    pub fn did_key(&self) -> String {
        self.public_key().to_did_key()
    }
}

impl fmt::Debug for Keypair {
    // Only public information: secrets must never end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("key_type", &self.key_type())
            .field("public", &self.did_key())
            .finish_non_exhaustive()
    }
}

/// A public key on one of the two supported curves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    inner: PublicInner,
}

#[derive(Clone, PartialEq, Eq)]
enum PublicInner {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicInner {
    // The multikey is far more useful in logs than raw affine coordinates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = PublicKey {
            inner: self.clone(),
        };
        write!(f, "{}", key.to_multikey())
    }
}

impl PublicKey {
    pub fn key_type(&self) -> KeyType {
        match &self.inner {
            PublicInner::K256(_) => KeyType::K256,
            PublicInner::P256(_) => KeyType::P256,
        }
    }

    /// Parses SEC1 point bytes: 33-byte compressed or 65-byte uncompressed.
    pub fn from_sec1_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 33 && bytes.len() != 65 {
            return Err(CryptoError::BadKey);
        }
        let inner = match key_type {
            KeyType::K256 => PublicInner::K256(
                k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| CryptoError::BadKey)?,
            ),
            KeyType::P256 => PublicInner::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| CryptoError::BadKey)?,
            ),
        };
        Ok(PublicKey { inner })
    }

    /// Parses `did:key:z…`.
    pub fn from_did_key(did: &str) -> Result<Self, CryptoError> {
        let multikey = did
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(CryptoError::BadDidKey)?;
        Self::from_multikey(multikey)
    }

    pub fn to_did_key(&self) -> String {
        format!("{DID_KEY_PREFIX}{}", self.to_multikey())
    }

    /// Parses a multikey: `z` + base58btc(multicodec varint ‖ 33-byte compressed point).
    ///
    /// Only the compressed form is accepted, so that every key has exactly one multikey
    /// and did:key strings can be compared as text.
    pub fn from_multikey(multikey: &str) -> Result<Self, CryptoError> {
        let bytes = decode_base58btc_multibase(multikey).ok_or(CryptoError::BadDidKey)?;
        let (key_type, point) = if let Some(rest) = bytes.strip_prefix(&K256_CODEC) {
            (KeyType::K256, rest)
        } else if let Some(rest) = bytes.strip_prefix(&P256_CODEC) {
            (KeyType::P256, rest)
        } else {
            return Err(CryptoError::UnsupportedKeyType);
        };
        if point.len() != 33 {
            return Err(CryptoError::BadDidKey);
        }
        Self::from_sec1_bytes(key_type, point)
    }

    pub fn to_multikey(&self) -> String {
        let mut bytes = Vec::with_capacity(35);
        bytes.extend_from_slice(&self.key_type().multicodec());
        bytes.extend_from_slice(&self.compressed_bytes());
        format!("z{}", bs58::encode(bytes).into_string())
    }

    /// Parses the legacy DID-document form: `z` + base58btc of the point without a
    /// multicodec prefix, so the curve has to come from the verification method type.
    pub fn from_legacy_multibase(key_type: KeyType, value: &str) -> Result<Self, CryptoError> {
        let bytes = decode_base58btc_multibase(value).ok_or(CryptoError::BadMultibase)?;
        Self::from_sec1_bytes(key_type, &bytes)
    }

    /// The 33-byte compressed SEC1 point (0x02/0x03 ‖ X).
    pub fn compressed_bytes(&self) -> [u8; 33] {
        match &self.inner {
            PublicInner::K256(vk) => fill::<33>(vk.to_encoded_point(true).as_bytes()),
            PublicInner::P256(vk) => fill::<33>(vk.to_encoded_point(true).as_bytes()),
        }
    }

    /// Strict atproto verification of a signature over SHA-256(msg).
    ///
    /// Only 64-byte compact `r‖s` is accepted (so DER is rejected), and high-S is rejected
    /// on both curves. The high-S check is explicit: k256 0.13 happens to reject it too,
    /// but p256 does not, and atproto needs one rule for both.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::BadSignature);
        }
        let digest = Sha256::digest(msg);
        match &self.inner {
            PublicInner::K256(vk) => {
                let sig = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::BadSignature)?;
                if bool::from(sig.s().is_high()) {
                    return Err(CryptoError::BadSignature);
                }
                vk.verify_prehash(&digest, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }
            PublicInner::P256(vk) => {
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::BadSignature)?;
                if bool::from(sig.s().is_high()) {
                    return Err(CryptoError::BadSignature);
                }
                vk.verify_prehash(&digest, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

impl PublicKey {
    /// JOSE verification (RFC 7518 ES256 / RFC 8812 ES256K) of a signature over
    /// SHA-256(msg): 64-byte `r‖s`, either S. JWS has no low-S rule, and WebCrypto signs
    /// with either half, so OAuth's DPoP proofs and client assertions need this; atproto's
    /// own signatures (records, commits, service auth) keep [`PublicKey::verify`].
    pub fn verify_jose(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::BadSignature);
        }
        match &self.inner {
            // The same signature with low S, through the strict check.
            PublicInner::K256(_) => {
                let s = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::BadSignature)?;
                let low = s.normalize_s().unwrap_or(s).to_bytes();
                self.verify(msg, &low)
            }
            PublicInner::P256(vk) => {
                // ring's fixed-size ECDSA takes either S, as JOSE does.
                let point = vk.to_encoded_point(false);
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    point.as_bytes(),
                )
                .verify(msg, sig)
                .map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

/// Decodes `z` + base58btc (Bitcoin alphabet), refusing oversized input.
fn decode_base58btc_multibase(value: &str) -> Option<Vec<u8>> {
    if value.len() > MAX_MULTIBASE_LEN {
        return None;
    }
    let body = value.strip_prefix('z')?;
    if body.is_empty() {
        return None;
    }
    bs58::decode(body).into_vec().ok()
}

/// Copies a slice whose length the caller's types already fix into an array, without a
/// panicking path; a shorter slice would leave trailing zeros.
fn fill<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, s) in out.iter_mut().zip(src) {
        *o = *s;
    }
    out
}
