//! Public EC keys as JSON Web Keys (RFC 7517/7518) and their thumbprints (RFC 7638).
//!
//! OAuth brings keys to us in JWK form: the `jwk` header of every DPoP proof and the
//! `jwks` of confidential clients. A token is bound to a DPoP key by its thumbprint
//! (`cnf.jkt`), so the thumbprint must be a function of the key alone: it is computed
//! from the key after validation, never from the caller's text, and base64url decoding
//! is strict so that one key has exactly one accepted JWK form.
//!
//! Only the two atproto curves are accepted, and only public keys: a JWK that carries
//! its private scalar is refused, since whoever sent it has leaked it.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwt::{b64url_decode_strict, b64url_encode};
use super::keys::{CryptoError, KeyType, PublicKey};

/// Length of a base64url (unpadded) encoding of a 32-byte coordinate. Checked before
/// decoding so that oversized members cost nothing.
const COORD_B64_LEN: usize = 43;

/// The JWK `crv` name of a curve.
fn crv_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::P256 => "P-256",
        KeyType::K256 => "secp256k1",
    }
}

fn crv_from_name(crv: &str) -> Option<KeyType> {
    match crv {
        "P-256" => Some(KeyType::P256),
        "secp256k1" => Some(KeyType::K256),
        _ => None,
    }
}

/// Parses a public EC JWK: `kty` "EC", `crv` "P-256" (ES256) or "secp256k1" (ES256K),
/// `x` and `y` as strict base64url of 32 bytes each, the point on the curve.
///
/// Refused: a private member `d`; any other `kty` or `crv`
/// ([`CryptoError::UnsupportedKeyType`]); a `use` other than "sig"; an `alg` that does
/// not match the curve (a key advertised for one algorithm must not verify another).
/// `key_ops`, `kid` and unknown members are ignored.
pub fn public_key_from_jwk(jwk: &Map<String, Value>) -> Result<PublicKey, CryptoError> {
    if jwk.contains_key("d") {
        return Err(CryptoError::BadKey);
    }
    match jwk.get("kty") {
        Some(Value::String(kty)) if kty == "EC" => {}
        Some(Value::String(_)) => return Err(CryptoError::UnsupportedKeyType),
        _ => return Err(CryptoError::BadKey),
    }
    let key_type = match jwk.get("crv") {
        Some(Value::String(crv)) => crv_from_name(crv).ok_or(CryptoError::UnsupportedKeyType)?,
        _ => return Err(CryptoError::BadKey),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(CryptoError::BadKey),
    }
    match jwk.get("alg") {
        None => {}
        Some(Value::String(alg)) if alg == key_type.jwt_alg() => {}
        Some(_) => return Err(CryptoError::BadKey),
    }
    let x = coordinate(jwk, "x")?;
    let y = coordinate(jwk, "y")?;
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // The curve libraries check that the point lies on the curve.
    PublicKey::from_sec1_bytes(key_type, &sec1)
}

fn coordinate(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, CryptoError> {
    let Some(Value::String(text)) = jwk.get(name) else {
        return Err(CryptoError::BadKey);
    };
    if text.len() != COORD_B64_LEN {
        return Err(CryptoError::BadKey);
    }
    let bytes = b64url_decode_strict(text).map_err(|_| CryptoError::BadKey)?;
    if bytes.len() != 32 {
        return Err(CryptoError::BadKey);
    }
    Ok(bytes)
}

/// RFC 7638 thumbprint of a JWK: base64url (unpadded) of SHA-256 over
/// `{"crv":..,"kty":"EC","x":..,"y":..}` (required members only, in lexicographic
/// order, no whitespace). The JWK is validated first, so an invalid key (or a private
/// one) has no thumbprint.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, CryptoError> {
    let key = public_key_from_jwk(jwk)?;
    key_thumbprint(&key).ok_or(CryptoError::BadKey)
}

/// The RFC 7638 thumbprint of a public key, as [`thumbprint`] computes it for the key's
/// JWK. `None` only if the point cannot be decompressed, which a valid key never hits.
pub fn key_thumbprint(key: &PublicKey) -> Option<String> {
    let (x, y) = coordinates(key)?;
    // Members are fixed and the values are base64url, so no JSON escaping can arise;
    // the text is written by hand because its exact bytes are what gets hashed.
    let canonical = format!(
        "{{\"crv\":\"{}\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
        crv_name(key.key_type()),
        b64url_encode(&x),
        b64url_encode(&y)
    );
    Some(b64url_encode(&Sha256::digest(canonical.as_bytes())))
}

/// The public JWK of a key: `kty`, `crv`, `x`, `y` (what a JWKS publishes, without
/// `kid`/`alg`/`use`, which the publisher adds). [`public_key_from_jwk`] reads it back
/// to the same key.
///
/// If the point could not be decompressed (impossible for a valid key) the map has
/// empty coordinates, which [`public_key_from_jwk`] refuses: it fails closed.
pub fn jwk_of(key: &PublicKey) -> Map<String, Value> {
    let (x, y) = coordinates(key).map_or_else(
        || (String::new(), String::new()),
        |(x, y)| (b64url_encode(&x), b64url_encode(&y)),
    );
    let mut jwk = Map::new();
    jwk.insert("kty".into(), Value::String("EC".into()));
    jwk.insert("crv".into(), Value::String(crv_name(key.key_type()).into()));
    jwk.insert("x".into(), Value::String(x));
    jwk.insert("y".into(), Value::String(y));
    jwk
}

/// Affine x and y of a key. `PublicKey` exposes only the compressed point, so this
/// decompresses it with the curve library rather than widening the key type's API.
fn coordinates(key: &PublicKey) -> Option<([u8; 32], [u8; 32])> {
    let compressed = key.compressed_bytes();
    let point = match key.key_type() {
        KeyType::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&compressed)
            .ok()?
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
        KeyType::K256 => k256::ecdsa::VerifyingKey::from_sec1_bytes(&compressed)
            .ok()?
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    };
    if point.len() != 65 || point.first() != Some(&0x04) {
        return None;
    }
    let x: [u8; 32] = point.get(1..33)?.try_into().ok()?;
    let y: [u8; 32] = point.get(33..65)?.try_into().ok()?;
    Some((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use serde_json::json;

    /// A fixed P-256 key (secret scalar 1..=32), so the thumbprint below is a constant.
    fn fixed_p256() -> PublicKey {
        let secret: Vec<u8> = (1..=32).collect();
        Keypair::from_secret_bytes(KeyType::P256, &secret)
            .expect("valid scalar")
            .public_key()
    }

    fn fixed_k256() -> PublicKey {
        let secret: Vec<u8> = (1..=32).collect();
        Keypair::from_secret_bytes(KeyType::K256, &secret)
            .expect("valid scalar")
            .public_key()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn round_trip_both_curves() {
        for key in [fixed_p256(), fixed_k256()] {
            let jwk = jwk_of(&key);
            assert_eq!(jwk.len(), 4);
            assert_eq!(jwk["kty"], "EC");
            assert_eq!(public_key_from_jwk(&jwk), Ok(key));
        }
        assert_eq!(jwk_of(&fixed_p256())["crv"], "P-256");
        assert_eq!(jwk_of(&fixed_k256())["crv"], "secp256k1");
    }

    #[test]
    fn thumbprint_is_sha256_of_canonical_members() {
        let key = fixed_p256();
        let jwk = jwk_of(&key);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let expected = b64url_encode(&Sha256::digest(canonical.as_bytes()));
        let tp = thumbprint(&jwk).unwrap();
        assert_eq!(tp, expected);
        assert_eq!(tp.len(), 43);
        assert_eq!(key_thumbprint(&key).as_deref(), Some(tp.as_str()));
        // Extra members (kid, alg, use, key_ops) do not change the thumbprint.
        let mut extended = jwk.clone();
        extended.insert("kid".into(), json!("k1"));
        extended.insert("alg".into(), json!("ES256"));
        extended.insert("use".into(), json!("sig"));
        extended.insert("key_ops".into(), json!(["verify"]));
        assert_eq!(thumbprint(&extended).unwrap(), tp);
        // Different keys, different thumbprints.
        assert_ne!(thumbprint(&jwk_of(&fixed_k256())).unwrap(), tp);
    }

    #[test]
    fn thumbprint_is_stable() {
        // Pinned so that a change in encoding (member order, padding, whitespace) that
        // would unbind every issued token shows up here.
        // The values were computed independently (affine arithmetic in Python, then
        // SHA-256 over the RFC 7638 member string), not by this code.
        let jwk = jwk_of(&fixed_p256());
        assert_eq!(jwk["x"], "UVw9brnjlrkE0_7Kf1T9zQzB6Ze_N13KUVrQpsO0A18");
        assert_eq!(jwk["y"], "RTa-OlDzGPv5pUdZAqIhUCvvDVfgjFOyzApW8X2fk1Q");
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "6UoWwDCkLjV0J-pQG8c0THxbVhBcpR0AZDift1Yl5DM"
        );
    }

    #[test]
    fn refuses_private_member() {
        let mut jwk = jwk_of(&fixed_p256());
        jwk.insert("d".into(), json!(b64url_encode(&[1u8; 32])));
        assert_eq!(public_key_from_jwk(&jwk), Err(CryptoError::BadKey));
        assert_eq!(thumbprint(&jwk), Err(CryptoError::BadKey));
    }

    #[test]
    fn refuses_other_kty_and_crv() {
        let good = jwk_of(&fixed_p256());
        let mut rsa = good.clone();
        rsa.insert("kty".into(), json!("RSA"));
        assert_eq!(
            public_key_from_jwk(&rsa),
            Err(CryptoError::UnsupportedKeyType)
        );
        let mut okp = good.clone();
        okp.insert("kty".into(), json!("OKP"));
        okp.insert("crv".into(), json!("Ed25519"));
        assert_eq!(
            public_key_from_jwk(&okp),
            Err(CryptoError::UnsupportedKeyType)
        );
        let mut p384 = good.clone();
        p384.insert("crv".into(), json!("P-384"));
        assert_eq!(
            public_key_from_jwk(&p384),
            Err(CryptoError::UnsupportedKeyType)
        );
        // Case matters: "ec" is not "EC".
        let mut lower = good.clone();
        lower.insert("kty".into(), json!("ec"));
        assert!(public_key_from_jwk(&lower).is_err());
        let mut missing = good.clone();
        missing.remove("crv");
        assert_eq!(public_key_from_jwk(&missing), Err(CryptoError::BadKey));
        let mut non_string = good;
        non_string.insert("kty".into(), json!(1));
        assert_eq!(public_key_from_jwk(&non_string), Err(CryptoError::BadKey));
    }

    #[test]
    fn refuses_wrong_coordinate_encodings() {
        let good = jwk_of(&fixed_p256());
        let x = good["x"].as_str().unwrap().to_owned();
        for bad in [
            json!(b64url_encode(&[7u8; 31])),
            json!(b64url_encode(&[7u8; 33])),
            json!(format!("{x}=")),
            json!(x.replace('-', "+").replace('_', "/") + "A"),
            json!(""),
            json!(null),
            json!(42),
        ] {
            let mut jwk = good.clone();
            jwk.insert("x".into(), bad.clone());
            assert_eq!(public_key_from_jwk(&jwk), Err(CryptoError::BadKey), "{bad}");
        }
        let mut no_y = good;
        no_y.remove("y");
        assert_eq!(public_key_from_jwk(&no_y), Err(CryptoError::BadKey));
    }

    #[test]
    fn refuses_point_off_curve() {
        let mut jwk = jwk_of(&fixed_p256());
        let mut y = b64url_decode_strict(jwk["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        jwk.insert("y".into(), json!(b64url_encode(&y)));
        assert_eq!(public_key_from_jwk(&jwk), Err(CryptoError::BadKey));
        // A P-256 point is (overwhelmingly likely) not on secp256k1.
        let mut other_curve = jwk_of(&fixed_p256());
        other_curve.insert("crv".into(), json!("secp256k1"));
        assert_eq!(public_key_from_jwk(&other_curve), Err(CryptoError::BadKey));
    }

    #[test]
    fn use_and_alg_must_fit() {
        let good = jwk_of(&fixed_p256());
        let mut enc = good.clone();
        enc.insert("use".into(), json!("enc"));
        assert_eq!(public_key_from_jwk(&enc), Err(CryptoError::BadKey));
        let mut sig = good.clone();
        sig.insert("use".into(), json!("sig"));
        assert!(public_key_from_jwk(&sig).is_ok());
        let mut wrong_alg = good.clone();
        wrong_alg.insert("alg".into(), json!("ES256K"));
        assert_eq!(public_key_from_jwk(&wrong_alg), Err(CryptoError::BadKey));
        let mut none_alg = good.clone();
        none_alg.insert("alg".into(), json!("none"));
        assert_eq!(public_key_from_jwk(&none_alg), Err(CryptoError::BadKey));
        let mut k = jwk_of(&fixed_k256());
        k.insert("alg".into(), json!("ES256K"));
        assert_eq!(public_key_from_jwk(&k), Ok(fixed_k256()));
        let mut ops = good;
        ops.insert("key_ops".into(), json!(["sign", "nonsense"]));
        assert!(public_key_from_jwk(&ops).is_ok());
    }

    #[test]
    fn parses_a_hand_written_jwk() {
        let jwk = jwk_of(&fixed_p256());
        let text = format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","kid":"a"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let parsed = obj(serde_json::from_str(&text).unwrap());
        assert_eq!(public_key_from_jwk(&parsed), Ok(fixed_p256()));
    }
}
