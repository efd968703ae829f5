use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::OsRng;
use serde_json::{Map, Value, json};

use super::jwt::{Jwt, MAX_TOKEN_LEN, check_times, sign_es, sign_hs256};
use super::keys::{CryptoError, KeyType, Keypair};

const SECRET: &[u8] = b"server jwt secret";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn service_claims() -> Map<String, Value> {
    obj(json!({
        "iss": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "aud": "did:web:api.bsky.app#bsky_appview",
        "exp": 1_700_000_060,
        "iat": 1_700_000_000,
        "lxm": "app.bsky.feed.getTimeline",
        "jti": "0123456789abcdef0123456789abcdef",
    }))
}

/// Builds a token from raw JSON text, so tests can hand-craft headers.
fn raw_token(header: &str, claims: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[test]
fn es_round_trip_both_curves() {
    for kt in [KeyType::K256, KeyType::P256] {
        let key = Keypair::generate(kt, &mut OsRng);
        let token = sign_es(&key, None, &service_claims());
        let jwt = Jwt::decode(&token).expect("decode");
        assert_eq!(jwt.alg(), kt.jwt_alg());
        assert_eq!(jwt.typ(), Some("JWT"));
        assert_eq!(jwt.claims, service_claims());
        assert_eq!(jwt.verify_es(&key.public_key()), Ok(()));
        let other = Keypair::generate(kt, &mut OsRng).public_key();
        assert_eq!(jwt.verify_es(&other), Err(CryptoError::BadSignature));
    }
}

#[test]
fn header_layout_matches_reference() {
    let key = Keypair::generate(KeyType::K256, &mut OsRng);
    let token = sign_es(&key, None, &service_claims());
    let header = URL_SAFE_NO_PAD.decode(&segments(&token)[0]).expect("b64");
    assert_eq!(header, br#"{"typ":"JWT","alg":"ES256K"}"#);
    // The signature segment is the raw 64-byte r‖s, not DER.
    let sig = URL_SAFE_NO_PAD.decode(&segments(&token)[2]).expect("b64");
    assert_eq!(sig.len(), 64);
}

#[test]
fn hs256_round_trip_with_typ() {
    let claims = obj(json!({"scope": "com.atproto.access", "sub": "did:plc:abc", "exp": 10}));
    let token = sign_hs256(SECRET, Some("at+jwt"), &claims);
    let jwt = Jwt::decode(&token).expect("decode");
    assert_eq!(jwt.alg(), "HS256");
    assert_eq!(jwt.typ(), Some("at+jwt"));
    assert_eq!(jwt.claims, claims);
    assert_eq!(jwt.verify_hs256(SECRET), Ok(()));
    assert_eq!(
        jwt.verify_hs256(b"other secret"),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(jwt.verify_hs256(b""), Err(CryptoError::BadKey));
}

#[test]
fn tampered_payload_rejected() {
    let key = Keypair::generate(KeyType::P256, &mut OsRng);
    let es = segments(&sign_es(&key, None, &service_claims()));
    let hs = segments(&sign_hs256(SECRET, None, &service_claims()));
    let mut evil = service_claims();
    evil.insert("iss".into(), json!("did:plc:attacker"));
    let evil_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).expect("json"));

    let forged_es = Jwt::decode(&format!("{}.{}.{}", es[0], evil_b64, es[2])).expect("decode");
    assert_eq!(
        forged_es.verify_es(&key.public_key()),
        Err(CryptoError::BadSignature)
    );
    let forged_hs = Jwt::decode(&format!("{}.{}.{}", hs[0], evil_b64, hs[2])).expect("decode");
    assert_eq!(
        forged_hs.verify_hs256(SECRET),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn editing_public_header_does_not_change_checked_alg() {
    let mut jwt = Jwt::decode(&sign_hs256(SECRET, None, &service_claims())).expect("decode");
    jwt.header.insert("alg".into(), json!("ES256K"));
    let key = Keypair::generate(KeyType::K256, &mut OsRng);
    assert!(matches!(
        jwt.verify_es(&key.public_key()),
        Err(CryptoError::BadJwtAlg(_))
    ));
}

#[test]
fn wrong_alg_rejected() {
    let k256 = Keypair::generate(KeyType::K256, &mut OsRng);
    let p256 = Keypair::generate(KeyType::P256, &mut OsRng);
    let es256k = Jwt::decode(&sign_es(&k256, None, &service_claims())).expect("decode");
    let hs = Jwt::decode(&sign_hs256(SECRET, None, &service_claims())).expect("decode");

    assert_eq!(
        es256k.verify_es(&p256.public_key()),
        Err(CryptoError::BadJwtAlg("ES256K".into()))
    );
    assert_eq!(
        es256k.verify_hs256(SECRET),
        Err(CryptoError::BadJwtAlg("ES256K".into()))
    );
    assert_eq!(
        hs.verify_es(&k256.public_key()),
        Err(CryptoError::BadJwtAlg("HS256".into()))
    );

    // Classic confusion attack: HS256 keyed with the public key bytes.
    let public = k256.public_key();
    let confused = sign_hs256(&public.compressed_bytes(), None, &service_claims());
    let confused = Jwt::decode(&confused).expect("decode");
    assert!(matches!(
        confused.verify_es(&public),
        Err(CryptoError::BadJwtAlg(_))
    ));

    // A valid ES256K signature relabelled as ES256 must not pass for a P-256 key.
    let parts = segments(&sign_es(&k256, None, &service_claims()));
    let relabelled = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ES256"}"#),
        parts[1],
        parts[2]
    );
    let relabelled = Jwt::decode(&relabelled).expect("decode");
    assert_eq!(
        relabelled.verify_es(&p256.public_key()),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn alg_none_rejected() {
    let claims = serde_json::to_string(&service_claims()).expect("json");
    for header in [r#"{"alg":"none"}"#, r#"{"alg":"None","typ":"JWT"}"#] {
        let jwt = Jwt::decode(&raw_token(header, &claims, b"")).expect("decodes, unverified");
        let key = Keypair::generate(KeyType::K256, &mut OsRng);
        assert!(matches!(
            jwt.verify_es(&key.public_key()),
            Err(CryptoError::BadJwtAlg(_))
        ));
        assert!(matches!(
            jwt.verify_hs256(SECRET),
            Err(CryptoError::BadJwtAlg(_))
        ));
    }
}

#[test]
fn non_canonical_base64_rejected() {
    let token = sign_hs256(SECRET, None, &obj(json!({"exp": 1, "a": "bc"})));
    let parts = segments(&token);
    assert!(Jwt::decode(&token).is_ok());
    // Each segment's length must not be a multiple of 4 for the padding case to apply.
    let variants = [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}==.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!(" {token}"),
        format!("{token}\n"),
        format!("{}.{} .{}", parts[0], parts[1], parts[2]),
    ];
    for bad in &variants {
        assert!(
            matches!(Jwt::decode(bad), Err(CryptoError::BadJwt(_))),
            "accepted {bad:?}"
        );
    }
    // The standard alphabet's "+/" are not base64url (bytes fb ff are "-_8" there).
    assert!(Jwt::decode("eyJhbGciOiJIUzI1NiJ9.e30.-_8").is_ok());
    assert!(Jwt::decode("eyJhbGciOiJIUzI1NiJ9.e30.+/8").is_err());
    // "e30" is "{}"; "e31" decodes to the same bytes but with a non-zero trailing bit.
    assert!(Jwt::decode("eyJhbGciOiJIUzI1NiJ9.e30.").is_ok());
    assert!(matches!(
        Jwt::decode("eyJhbGciOiJIUzI1NiJ9.e31."),
        Err(CryptoError::BadJwt(_))
    ));
}

#[test]
fn structural_errors_rejected() {
    let ok = raw_token(r#"{"alg":"HS256"}"#, "{}", b"sig");
    assert!(Jwt::decode(&ok).is_ok());
    let too_long = raw_token(r#"{"alg":"HS256"}"#, &"x".repeat(MAX_TOKEN_LEN), b"");
    let cases = [
        String::new(),
        "a.b".to_owned(),
        format!("{ok}.extra"),
        format!("{ok}."),
        too_long,
        raw_token("[]", "{}", b""),
        raw_token(r#"{"typ":"JWT"}"#, "{}", b""),
        raw_token(r#"{"alg":256}"#, "{}", b""),
        raw_token(r#"{"alg":"HS256","crit":["b64"]}"#, "{}", b""),
        raw_token(r#"{"alg":"HS256"}"#, "[1,2]", b""),
        raw_token(r#"{"alg":"HS256"}"#, "not json", b""),
        raw_token(r#"{"alg":"HS256""#, "{}", b""),
        format!("..{}", URL_SAFE_NO_PAD.encode(b"x")),
    ];
    for bad in &cases {
        assert!(
            matches!(Jwt::decode(bad), Err(CryptoError::BadJwt(_))),
            "accepted {bad:?}"
        );
    }
}

#[test]
fn check_times_cases() {
    let now = 1_700_000_000;
    let c = |v: Value| obj(v);
    assert_eq!(
        check_times(&c(json!({"exp": now + 60, "iat": now})), now, 0),
        Ok(())
    );
    assert_eq!(
        check_times(&c(json!({"exp": now})), now, 0),
        Err(CryptoError::JwtExpired)
    );
    assert_eq!(
        check_times(&c(json!({"exp": now - 10})), now, 0),
        Err(CryptoError::JwtExpired)
    );
    assert_eq!(check_times(&c(json!({"exp": now - 10})), now, 30), Ok(()));
    assert!(matches!(
        check_times(&c(json!({"iat": now})), now, 0),
        Err(CryptoError::BadJwt(_))
    ));
    assert!(matches!(
        check_times(&c(json!({"exp": "tomorrow"})), now, 0),
        Err(CryptoError::BadJwt(_))
    ));
    assert!(matches!(
        check_times(&c(json!({"exp": now + 60, "iat": null})), now, 0),
        Err(CryptoError::BadJwt(_))
    ));
    assert_eq!(
        check_times(&c(json!({"exp": now + 600, "iat": now + 100})), now, 30),
        Err(CryptoError::JwtNotYetValid)
    );
    assert_eq!(
        check_times(&c(json!({"exp": now + 600, "iat": now + 20})), now, 30),
        Ok(())
    );
    assert_eq!(
        check_times(&c(json!({"exp": now + 600, "nbf": now + 31})), now, 30),
        Err(CryptoError::JwtNotYetValid)
    );
    assert_eq!(
        check_times(&c(json!({"exp": now + 600, "nbf": now - 5})), now, 0),
        Ok(())
    );
    // Fractional NumericDate values are allowed by RFC 7519.
    assert_eq!(
        check_times(&c(json!({"exp": now as f64 + 0.5})), now, 0),
        Err(CryptoError::JwtExpired)
    );
    assert_eq!(
        check_times(&c(json!({"exp": now as f64 + 1.5})), now, 0),
        Ok(())
    );
    // Extremes must not overflow.
    assert_eq!(
        check_times(&c(json!({"exp": u64::MAX})), i64::MAX, i64::MAX),
        Ok(())
    );
    assert_eq!(check_times(&c(json!({"exp": 1e300})), now, 0), Ok(()));
    assert_eq!(
        check_times(&c(json!({"exp": i64::MIN})), i64::MIN, i64::MAX),
        Err(CryptoError::JwtExpired)
    );
    assert_eq!(
        check_times(&c(json!({"exp": -1e300})), now, 0),
        Err(CryptoError::JwtExpired)
    );
    // A negative leeway is treated as zero rather than shortening validity.
    assert_eq!(check_times(&c(json!({"exp": now + 1})), now, -100), Ok(()));
}

#[test]
fn claims_with_unicode_and_escapes_round_trip() {
    let claims = obj(json!({"exp": 5, "note": "quote\" backslash\\ ünïcødé \u{1F600}"}));
    let token = sign_hs256(SECRET, Some("we\"ird"), &claims);
    let jwt = Jwt::decode(&token).expect("decode");
    assert_eq!(jwt.claims, claims);
    assert_eq!(jwt.typ(), Some("we\"ird"));
    assert_eq!(jwt.verify_hs256(SECRET), Ok(()));
}

#[test]
fn every_single_character_mutation_fails() {
    // Strict base64url means no two texts decode to the same bytes, so any edit anywhere
    // in the token must break decoding or verification.
    let key = Keypair::generate(KeyType::P256, &mut OsRng);
    let public = key.public_key();
    let es = sign_es(&key, None, &obj(json!({"exp": 1})));
    let hs = sign_hs256(SECRET, None, &obj(json!({"exp": 1})));
    for (token, is_es) in [(es, true), (hs, false)] {
        for i in 0..token.len() {
            for c in ['A', 'B', 'Q', 'g', 'w', '-', '_', '.', '='] {
                let mut bytes = token.clone().into_bytes();
                if bytes[i] == c as u8 {
                    continue;
                }
                bytes[i] = c as u8;
                let mutated = String::from_utf8(bytes).expect("ascii");
                let verified = Jwt::decode(&mutated).is_ok_and(|jwt| {
                    if is_es {
                        jwt.verify_es(&public).is_ok()
                    } else {
                        jwt.verify_hs256(SECRET).is_ok()
                    }
                });
                assert!(!verified, "mutation at {i} to {c:?} verified");
            }
        }
    }
}

#[test]
fn arbitrary_input_does_not_panic() {
    // Cheap deterministic fuzzing (xorshift) over the parsers' whole input space.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"AZaz09-_.=+/ {}\"e3ZyJ";
    let key = Keypair::generate(KeyType::K256, &mut OsRng).public_key();
    for _ in 0..5_000 {
        let len = (next() % 120) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect();
        if let Ok(jwt) = Jwt::decode(&text) {
            assert!(jwt.verify_es(&key).is_err());
            assert!(jwt.verify_hs256(SECRET).is_err());
            let _ = check_times(&jwt.claims, 0, 0);
        }
        let _ = super::keys::PublicKey::from_did_key(&text);
        let _ = super::keys::PublicKey::from_multikey(&format!("z{text}"));
        let _ = super::keys::PublicKey::from_legacy_multibase(KeyType::P256, &format!("z{text}"));
        let bytes = text.as_bytes();
        assert!(key.verify(bytes, bytes).is_err());
        let _ = Keypair::from_secret_bytes(KeyType::P256, bytes);
    }
}
