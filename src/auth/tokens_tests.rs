use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::OsRng;
use serde_json::{Map, Value, json};

use super::AuthError;
use super::service_auth::{
    SERVICE_AUTH_DEFAULT_LIFETIME_SECS, mint_service_auth, service_auth_lifetime,
};
use super::tokens::*;
use crate::crypto::{Jwt, KeyType, Keypair, sign_es, sign_hs256};

const SECRET: &[u8] = b"server jwt secret";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const PDS: &str = "did:web:pds.example.com";
const NOW: i64 = 1_700_000_000;

fn invalid(r: Result<impl std::fmt::Debug, AuthError>) -> bool {
    matches!(r, Err(AuthError::InvalidToken(_)))
}

fn claims_of(token: &str) -> Map<String, Value> {
    Jwt::decode(token).expect("decode").claims
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn access_round_trip_each_scope() {
    for scope in [Scope::Access, Scope::AppPass, Scope::AppPassPrivileged] {
        let token = mint_access(SECRET, DID, PDS, scope, "sess-1", NOW);
        let jwt = Jwt::decode(&token).expect("decode");
        assert_eq!(jwt.typ(), Some("at+jwt"));
        assert_eq!(jwt.alg(), "HS256");
        let expect = obj(json!({
            "scope": scope.as_str(), "sub": DID, "aud": PDS, "sid": "sess-1",
            "iat": NOW, "exp": NOW + 7200,
        }));
        assert_eq!(jwt.claims, expect);
        let got = verify_access(SECRET, &token, PDS, NOW + 60).expect("verify");
        assert_eq!(
            got,
            AccessClaims {
                scope,
                sub: DID.into(),
                aud: PDS.into(),
                session: Some("sess-1".into()),
                iat: NOW,
                exp: NOW + 7200
            }
        );
        assert_eq!(Scope::parse(scope.as_str()), Some(scope));
    }
    assert_eq!(Scope::Access.as_str(), "com.atproto.access");
    assert_eq!(Scope::AppPass.as_str(), "com.atproto.appPass");
    assert_eq!(
        Scope::AppPassPrivileged.as_str(),
        "com.atproto.appPassPrivileged"
    );
    assert!(!Scope::Access.is_app_password() && Scope::AppPass.is_app_password());
    assert!(Scope::AppPassPrivileged.is_privileged() && !Scope::AppPass.is_privileged());
}

#[test]
fn refresh_round_trip() {
    let jti = new_jti(&mut OsRng);
    let token = mint_refresh(SECRET, DID, PDS, &jti, NOW);
    let jwt = Jwt::decode(&token).expect("decode");
    assert_eq!(jwt.typ(), Some("refresh+jwt"));
    let expect = obj(json!({
        "scope": "com.atproto.refresh", "sub": DID, "aud": PDS, "jti": jti,
        "iat": NOW, "exp": NOW + 90 * 86400,
    }));
    assert_eq!(jwt.claims, expect);
    let got = verify_refresh(SECRET, &token, PDS, NOW + 86400, false).expect("verify");
    assert_eq!(got.jti, jti);
    assert_eq!(got.sub, DID);
    assert_eq!(got.exp, NOW + REFRESH_LIFETIME_SECS);
}

#[test]
fn jti_is_random_and_url_safe() {
    let a = new_jti(&mut OsRng);
    assert_eq!(a.len(), 43);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_ne!(a, new_jti(&mut OsRng));
}

#[test]
fn kinds_do_not_cross() {
    let access = mint_access(SECRET, DID, PDS, Scope::Access, "sess-1", NOW);
    let refresh = mint_refresh(SECRET, DID, PDS, "jti", NOW);
    assert!(invalid(verify_refresh(SECRET, &access, PDS, NOW, false)));
    assert!(invalid(verify_refresh(SECRET, &access, PDS, NOW, true)));
    assert!(invalid(verify_access(SECRET, &refresh, PDS, NOW)));

    // typ and scope are each checked on their own: a validly signed token with the
    // right typ but the other kind's scope is still refused.
    let mut c = claims_of(&refresh);
    let refresh_scope_access_typ = sign_hs256(SECRET, Some("at+jwt"), &c);
    assert!(invalid(verify_access(
        SECRET,
        &refresh_scope_access_typ,
        PDS,
        NOW
    )));
    c.insert("scope".into(), "com.atproto.access".into());
    let access_scope_refresh_typ = sign_hs256(SECRET, Some("refresh+jwt"), &c);
    assert!(invalid(verify_refresh(
        SECRET,
        &access_scope_refresh_typ,
        PDS,
        NOW,
        false
    )));
    // Unknown scopes (here: ones perch never issues) are refused.
    let mut c = claims_of(&access);
    c.insert("scope".into(), "com.atproto.takendown".into());
    assert!(invalid(verify_access(
        SECRET,
        &sign_hs256(SECRET, Some("at+jwt"), &c),
        PDS,
        NOW
    )));
    // Missing typ (defaults to "JWT") is refused.
    let plain = sign_hs256(SECRET, None, &claims_of(&access));
    assert!(invalid(verify_access(SECRET, &plain, PDS, NOW)));
}

#[test]
fn expiry() {
    let access = mint_access(SECRET, DID, PDS, Scope::Access, "sess-1", NOW);
    let late = NOW + ACCESS_LIFETIME_SECS + TOKEN_LEEWAY_SECS + 1;
    assert_eq!(
        verify_access(SECRET, &access, PDS, late),
        Err(AuthError::Expired)
    );
    // Within the leeway it still works.
    assert!(verify_access(SECRET, &access, PDS, NOW + ACCESS_LIFETIME_SECS).is_ok());

    let refresh = mint_refresh(SECRET, DID, PDS, "jti-1", NOW);
    let late = NOW + REFRESH_LIFETIME_SECS + TOKEN_LEEWAY_SECS + 1;
    assert_eq!(
        verify_refresh(SECRET, &refresh, PDS, late, false),
        Err(AuthError::Expired)
    );
    let ok = verify_refresh(SECRET, &refresh, PDS, late, true).expect("allowed");
    assert_eq!(ok.jti, "jti-1");
    // allow_expired does not excuse anything else.
    assert!(invalid(verify_refresh(b"other", &refresh, PDS, late, true)));
    assert!(invalid(verify_refresh(
        SECRET,
        &refresh,
        "did:web:x.com",
        late,
        true
    )));
    // Expired *and* wrong audience reports the audience, not the age.
    assert!(invalid(verify_access(
        SECRET,
        &access,
        "did:web:x.com",
        late
    )));
}

#[test]
fn not_yet_valid_is_invalid() {
    let access = mint_access(SECRET, DID, PDS, Scope::Access, "sess-1", NOW + 3600);
    assert!(invalid(verify_access(SECRET, &access, PDS, NOW)));
}

#[test]
fn wrong_secret_aud_alg() {
    let access = mint_access(SECRET, DID, PDS, Scope::Access, "sess-1", NOW);
    assert!(invalid(verify_access(b"another secret", &access, PDS, NOW)));
    assert!(invalid(verify_access(b"", &access, PDS, NOW)));
    assert!(invalid(verify_access(
        SECRET,
        &access,
        "did:web:other.example",
        NOW
    )));

    // Same claims and typ, signed with an EC key: alg ES256K must be refused.
    let key = Keypair::generate(KeyType::K256, &mut OsRng);
    let es = sign_es(&key, Some("at+jwt"), &claims_of(&access));
    assert!(invalid(verify_access(SECRET, &es, PDS, NOW)));

    // alg "none" with an empty signature.
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"at+jwt","alg":"none"}"#);
    let body = access.split('.').nth(1).expect("payload");
    assert!(invalid(verify_access(
        SECRET,
        &format!("{header}.{body}."),
        PDS,
        NOW
    )));
}

#[test]
fn tampering_rejected() {
    let access = mint_access(SECRET, DID, PDS, Scope::AppPass, "sess-1", NOW);
    let parts: Vec<&str> = access.split('.').collect();
    // Escalate the scope in the payload, keep the signature.
    let mut c = claims_of(&access);
    c.insert("scope".into(), "com.atproto.access".into());
    let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).expect("json"));
    let forged = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
    assert!(invalid(verify_access(SECRET, &forged, PDS, NOW)));
    // Flip one signature character.
    let mut sig = parts[2].to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    sig.replace_range(0..1, first);
    let flipped = format!("{}.{}.{}", parts[0], parts[1], sig);
    assert!(invalid(verify_access(SECRET, &flipped, PDS, NOW)));
    // Garbage.
    for junk in ["", "a.b", "a.b.c", "...", &"x".repeat(20_000)] {
        assert!(invalid(verify_access(SECRET, junk, PDS, NOW)));
        assert!(invalid(verify_refresh(SECRET, junk, PDS, NOW, true)));
    }
}

#[test]
fn signed_but_malformed_claims_rejected() {
    let good = claims_of(&mint_refresh(SECRET, DID, PDS, "j", NOW));
    let edits: [(&str, Value); 6] = [
        ("sub", json!("not-a-did")),
        ("sub", json!(42)),
        ("jti", json!("")),
        ("iat", json!(1.5)),
        ("exp", json!("soon")),
        ("aud", json!([PDS])),
    ];
    for (name, value) in edits {
        let mut c = good.clone();
        c.insert(name.into(), value);
        let t = sign_hs256(SECRET, Some("refresh+jwt"), &c);
        assert!(
            invalid(verify_refresh(SECRET, &t, PDS, NOW, true)),
            "{name}"
        );
    }
    let mut c = good.clone();
    c.remove("exp");
    let t = sign_hs256(SECRET, Some("refresh+jwt"), &c);
    assert!(invalid(verify_refresh(SECRET, &t, PDS, NOW, true)));
}

#[test]
fn service_auth_claims_and_signature() {
    for kt in [KeyType::K256, KeyType::P256] {
        let key = Keypair::generate(kt, &mut OsRng);
        let aud = "did:web:api.bsky.app#bsky_appview";
        let lxm = "app.bsky.feed.getTimeline";
        let token = mint_service_auth(&key, DID, aud, Some(lxm), NOW, 60, &mut OsRng);
        let jwt = Jwt::decode(&token).expect("decode");
        assert_eq!(jwt.verify_es(&key.public_key()), Ok(()));
        assert_eq!(jwt.alg(), kt.jwt_alg());
        assert_eq!(jwt.typ(), Some("JWT"));
        let c = &jwt.claims;
        assert_eq!(c["iss"], DID);
        assert_eq!(c["aud"], aud);
        assert_eq!(c["lxm"], lxm);
        assert_eq!(c["iat"], NOW);
        assert_eq!(c["exp"], NOW + 60);
        let jti = c["jti"].as_str().expect("jti");
        assert_eq!(jti.len(), 32);
        assert!(
            jti.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(c.len(), 6);
        let other = Keypair::generate(kt, &mut OsRng).public_key();
        assert!(jwt.verify_es(&other).is_err());
        // A service token is no session token.
        assert!(invalid(verify_access(SECRET, &token, aud, NOW)));
    }
    let key = Keypair::generate(KeyType::K256, &mut OsRng);
    let a = mint_service_auth(&key, DID, PDS, None, NOW, 60, &mut OsRng);
    let b = mint_service_auth(&key, DID, PDS, None, NOW, 60, &mut OsRng);
    assert!(!claims_of(&a).contains_key("lxm"));
    assert_ne!(claims_of(&a)["jti"], claims_of(&b)["jti"]);
}

#[test]
fn service_auth_lifetime_rules() {
    assert_eq!(
        service_auth_lifetime(NOW, None, false),
        Ok(SERVICE_AUTH_DEFAULT_LIFETIME_SECS)
    );
    assert_eq!(service_auth_lifetime(NOW, Some(NOW + 30), false), Ok(30));
    assert!(service_auth_lifetime(NOW, Some(NOW + 61), false).is_err());
    assert_eq!(service_auth_lifetime(NOW, Some(NOW + 3600), true), Ok(3600));
    assert!(service_auth_lifetime(NOW, Some(NOW + 3601), true).is_err());
    assert!(service_auth_lifetime(NOW, Some(NOW), true).is_err());
    assert!(service_auth_lifetime(NOW, Some(i64::MIN), true).is_err());
}
