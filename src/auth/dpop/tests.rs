use rand_core::OsRng;
use serde_json::{Map, Value, json};

use super::*;
use crate::crypto::jwk::{jwk_of, thumbprint};
use crate::crypto::{Keypair, sign_hs256};

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://pds.example.com/oauth/token";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn header(kp: &Keypair) -> Map<String, Value> {
    obj(json!({
        "typ": "dpop+jwt",
        "alg": kp.key_type().jwt_alg(),
        "jwk": jwk_of(&kp.public_key()),
    }))
}

fn claims() -> Map<String, Value> {
    obj(json!({
        "jti": "8f9b7c2a-4c1e-4c55-9b0f-2f0c0d5f3e11",
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
        "nonce": "n-123",
    }))
}

/// A compact JWS with whatever header is given (`sign_es` writes only typ/alg).
fn sign(kp: &Keypair, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(&serde_json::to_vec(header).unwrap()),
        b64url_encode(&serde_json::to_vec(claims).unwrap())
    );
    let sig = kp.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&sig))
}

fn p256() -> Keypair {
    Keypair::generate(KeyType::P256, &mut OsRng)
}

fn proof_with(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let kp = p256();
    let mut c = claims();
    edit(&mut c);
    sign(&kp, &header(&kp), &c)
}

fn reason(r: Result<Proof, DpopError>) -> &'static str {
    match r {
        Err(Invalid(why)) => why,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn good_proof() {
    let kp = p256();
    let proof = sign(&kp, &header(&kp), &claims());
    let p = verify_proof(&proof, "POST", URL, NOW).unwrap();
    assert_eq!(p.jkt, thumbprint(&jwk_of(&kp.public_key())).unwrap());
    assert_eq!(p.jti, "8f9b7c2a-4c1e-4c55-9b0f-2f0c0d5f3e11");
    assert_eq!(p.iat, NOW);
    assert_eq!(p.nonce.as_deref(), Some("n-123"));
    assert_eq!(p.ath, None);
}

#[test]
fn good_es256k_proof() {
    let kp = Keypair::generate(KeyType::K256, &mut OsRng);
    let proof = sign(&kp, &header(&kp), &claims());
    let p = verify_proof(&proof, "POST", URL, NOW).unwrap();
    assert_eq!(p.jkt, thumbprint(&jwk_of(&kp.public_key())).unwrap());
}

#[test]
fn returns_ath_and_refuses_non_string_nonce() {
    let proof = proof_with(|c| {
        c.insert("ath".into(), json!(access_token_hash("tok")));
    });
    let p = verify_proof(&proof, "POST", URL, NOW).unwrap();
    assert_eq!(p.check_ath("tok"), Ok(()));
    assert!(matches!(p.check_ath("other"), Err(Invalid(_))));
    let without = verify_proof(&proof_with(|_| {}), "POST", URL, NOW).unwrap();
    assert_eq!(without.check_ath("tok"), Err(Invalid("missing ath")));

    let bad_nonce = proof_with(|c| {
        c.insert("nonce".into(), json!(5));
    });
    assert!(verify_proof(&bad_nonce, "POST", URL, NOW).is_err());
    let no_nonce = proof_with(|c| {
        c.remove("nonce");
    });
    assert_eq!(
        verify_proof(&no_nonce, "POST", URL, NOW).unwrap().nonce,
        None
    );
}

#[test]
fn wrong_htm() {
    let proof = proof_with(|_| {});
    assert_eq!(
        reason(verify_proof(&proof, "GET", URL, NOW)),
        "htm does not match the request method"
    );
    let lower = proof_with(|c| {
        c.insert("htm".into(), json!("post"));
    });
    assert!(verify_proof(&lower, "POST", URL, NOW).is_err());
    let missing = proof_with(|c| {
        c.remove("htm");
    });
    assert!(verify_proof(&missing, "POST", URL, NOW).is_err());
}

#[test]
fn wrong_htu() {
    let proof = proof_with(|_| {});
    for url in [
        "https://pds.example.com/oauth/par",
        "https://other.example.com/oauth/token",
        "http://pds.example.com/oauth/token",
        "https://pds.example.com:8443/oauth/token",
        "https://pds.example.com/oauth/token/",
        "https://pds.example.com/OAUTH/token",
    ] {
        assert_eq!(
            reason(verify_proof(&proof, "POST", url, NOW)),
            "htu does not match the request URL",
            "{url}"
        );
    }
    let relative = proof_with(|c| {
        c.insert("htu".into(), json!("/oauth/token"));
    });
    assert_eq!(
        reason(verify_proof(&relative, "POST", URL, NOW)),
        "htu is not an http(s) URL"
    );
    let missing = proof_with(|c| {
        c.remove("htu");
    });
    assert_eq!(
        reason(verify_proof(&missing, "POST", URL, NOW)),
        "missing htu"
    );
}

#[test]
fn htu_normalised_forms_accepted() {
    for htu in [
        "https://pds.example.com:443/oauth/token",
        "HTTPS://PDS.Example.COM/oauth/token",
        "https://pds.example.com/oauth/token?x=1&y=2",
        "https://pds.example.com/oauth/token#frag",
        "https://pds.example.com:/oauth/token",
    ] {
        let proof = proof_with(|c| {
            c.insert("htu".into(), json!(htu));
        });
        assert!(verify_proof(&proof, "POST", URL, NOW).is_ok(), "{htu}");
    }
    // The request URL is normalised too.
    let proof = proof_with(|_| {});
    assert!(
        verify_proof(
            &proof,
            "POST",
            "https://PDS.example.com:443/oauth/token",
            NOW
        )
        .is_ok()
    );
}

#[test]
fn normalize_htu_rules() {
    let n = |s: &str| normalize_htu(s);
    assert_eq!(
        n("http://a.example:80/x").as_deref(),
        Some("http://a.example/x")
    );
    assert_eq!(
        n("http://a.example:443/x").as_deref(),
        Some("http://a.example:443/x")
    );
    assert_eq!(
        n("https://a.example:80").as_deref(),
        Some("https://a.example:80/")
    );
    assert_eq!(
        n("https://a.example").as_deref(),
        Some("https://a.example/")
    );
    assert_eq!(
        n("https://a.example?q").as_deref(),
        Some("https://a.example/")
    );
    assert_eq!(
        n("https://a.example:0443/").as_deref(),
        Some("https://a.example/")
    );
    assert_eq!(n("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
    assert_eq!(
        n("http://[FE80::1]:8080/x").as_deref(),
        Some("http://[fe80::1]:8080/x")
    );
    assert_eq!(
        n("https://a.example/A%2fb%e2").as_deref(),
        Some("https://a.example/A%2Fb%E2")
    );
    assert_eq!(
        n("https://a.example/%").as_deref(),
        Some("https://a.example/%")
    );
    for bad in [
        "",
        "pds.example.com/x",
        "ftp://a.example/x",
        "https:///x",
        "https://user@a.example/x",
        "https://a.example:99999/x",
        "https://a.example:-1/x",
        "https://a.example:+443/x",
        "https://a.example:443:1/x",
        "https://[::1/x",
        "https://[]/x",
        "https://[::1]x/x",
        "https://a b.example/x",
        "https://a.example/\u{e9}",
        "https://a.example/x\n",
    ] {
        assert_eq!(n(bad), None, "{bad:?}");
    }
}

#[test]
fn iat_window() {
    let at = |iat: Value| {
        let proof = proof_with(|c| {
            c.insert("iat".into(), iat);
        });
        verify_proof(&proof, "POST", URL, NOW)
    };
    assert!(at(json!(NOW - IAT_PAST)).is_ok());
    assert_eq!(reason(at(json!(NOW - IAT_PAST - 1))), "iat too old");
    assert!(at(json!(NOW + IAT_FUTURE)).is_ok());
    assert_eq!(reason(at(json!(NOW + IAT_FUTURE + 1))), "iat in the future");
    assert_eq!(reason(at(json!(NOW as f64 + 0.5))), "iat is not an integer");
    assert_eq!(reason(at(json!(u64::MAX))), "iat is not an integer");
    assert_eq!(reason(at(json!(NOW.to_string()))), "missing iat");
    assert_eq!(reason(at(json!(i64::MIN))), "iat too old");
    // Extreme `now` values must not overflow.
    let proof = proof_with(|_| {});
    assert!(verify_proof(&proof, "POST", URL, i64::MAX).is_err());
    assert!(verify_proof(&proof, "POST", URL, i64::MIN).is_err());
}

#[test]
fn jti_rules() {
    let with = |jti: Option<Value>| {
        let proof = proof_with(|c| match jti {
            Some(v) => {
                c.insert("jti".into(), v);
            }
            None => {
                c.remove("jti");
            }
        });
        verify_proof(&proof, "POST", URL, NOW)
    };
    assert_eq!(reason(with(None)), "missing or bad jti");
    assert_eq!(reason(with(Some(json!("")))), "missing or bad jti");
    assert_eq!(reason(with(Some(json!(12345)))), "missing or bad jti");
    assert_eq!(
        reason(with(Some(json!("x".repeat(257))))),
        "missing or bad jti"
    );
    // The bound counts characters, not bytes.
    assert!(with(Some(json!("\u{e9}".repeat(256)))).is_ok());
    assert!(with(Some(json!("x".repeat(256)))).is_ok());
}

#[test]
fn private_jwk_refused() {
    let kp = p256();
    let mut h = header(&kp);
    let mut jwk = jwk_of(&kp.public_key());
    jwk.insert("d".into(), json!(b64url_encode(&kp.secret_bytes())));
    h.insert("jwk".into(), Value::Object(jwk));
    let proof = sign(&kp, &h, &claims());
    assert_eq!(
        reason(verify_proof(&proof, "POST", URL, NOW)),
        "unacceptable jwk"
    );
}

#[test]
fn header_shape_refused() {
    let kp = p256();
    type Edit = fn(&mut Map<String, Value>);
    let edits: [(&str, Edit); 5] = [
        ("typ is not dpop+jwt", |h| {
            h.insert("typ".into(), json!("JWT"));
        }),
        ("typ is not dpop+jwt", |h| {
            h.remove("typ");
        }),
        ("missing jwk", |h| {
            h.remove("jwk");
        }),
        ("missing jwk", |h| {
            h.insert("jwk".into(), json!("not an object"));
        }),
        ("unsupported alg", |h| {
            h.insert("alg".into(), json!("RS256"));
        }),
    ];
    for (why, edit) in edits {
        let mut h = header(&kp);
        edit(&mut h);
        assert_eq!(
            reason(verify_proof(&sign(&kp, &h, &claims()), "POST", URL, NOW)),
            why
        );
    }
    // `typ` is a media type: case does not matter.
    let mut h = header(&kp);
    h.insert("typ".into(), json!("DPoP+JWT"));
    assert!(verify_proof(&sign(&kp, &h, &claims()), "POST", URL, NOW).is_ok());
}

#[test]
fn alg_none_and_hs256_refused() {
    let kp = p256();
    let c = claims();
    let mut h = header(&kp);
    h.insert("alg".into(), json!("none"));
    let unsigned = format!(
        "{}.{}.",
        b64url_encode(&serde_json::to_vec(&h).unwrap()),
        b64url_encode(&serde_json::to_vec(&c).unwrap())
    );
    assert_eq!(
        reason(verify_proof(&unsigned, "POST", URL, NOW)),
        "unsupported alg"
    );

    // HS256 keyed with the public key's bytes: the classic confusion attack.
    let hs = sign_hs256(&kp.public_key().compressed_bytes(), Some("dpop+jwt"), &c);
    assert_eq!(
        reason(verify_proof(&hs, "POST", URL, NOW)),
        "unsupported alg"
    );
}

#[test]
fn tampered_signature_refused() {
    let proof = proof_with(|_| {});
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let mut sig = b64url_decode_strict(sig).unwrap();
    sig[10] ^= 1;
    let tampered = format!("{input}.{}", b64url_encode(&sig));
    assert_eq!(
        reason(verify_proof(&tampered, "POST", URL, NOW)),
        "bad signature"
    );

    // Claims changed after signing.
    let kp = p256();
    let good = sign(&kp, &header(&kp), &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c.insert("htm".into(), json!("GET"));
    let forged_claims = b64url_encode(&serde_json::to_vec(&c).unwrap());
    parts[1] = &forged_claims;
    assert_eq!(
        reason(verify_proof(&parts.join("."), "GET", URL, NOW)),
        "bad signature"
    );

    // Signed by another key than the one in the header.
    let other = p256();
    let swapped = sign(&other, &header(&kp), &claims());
    assert_eq!(
        reason(verify_proof(&swapped, "POST", URL, NOW)),
        "bad signature"
    );
}

#[test]
fn alg_must_match_jwk_curve() {
    let k = Keypair::generate(KeyType::K256, &mut OsRng);
    let mut h = header(&k);
    h.insert("alg".into(), json!("ES256"));
    assert_eq!(
        reason(verify_proof(&sign(&k, &h, &claims()), "POST", URL, NOW)),
        "alg does not match the jwk curve"
    );
    let p = p256();
    let mut h = header(&p);
    h.insert("alg".into(), json!("ES256K"));
    assert_eq!(
        reason(verify_proof(&sign(&p, &h, &claims()), "POST", URL, NOW)),
        "alg does not match the jwk curve"
    );
}

#[test]
fn junk_input_refused() {
    let long = "a".repeat(MAX_PROOF_LEN + 1);
    assert_eq!(
        reason(verify_proof(&long, "POST", URL, NOW)),
        "proof too long"
    );
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b.c.d",
        "\u{0}\u{ff}",
        "eyJ9.eyJ9.AA",
    ] {
        assert_eq!(
            reason(verify_proof(junk, "POST", URL, NOW)),
            "malformed proof"
        );
    }
    // A good proof against a request URL that is not http(s).
    let proof = proof_with(|_| {});
    assert_eq!(
        reason(verify_proof(&proof, "POST", "/oauth/token", NOW)),
        "request URL is not http(s)"
    );
}

#[test]
fn access_token_hash_vector() {
    // SHA-256 of the empty string, base64url without padding.
    assert_eq!(
        access_token_hash(""),
        "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    );
    assert_eq!(
        access_token_hash("abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

/// The start of a nonce window, so `+ ROTATE_SECS - 1` stays inside it.
const W0: i64 = ROTATE_SECS * 9_444_444;

#[test]
fn nonce_windows() {
    let nonces = Nonces::new([7; 32]);
    let n = nonces.current(W0);
    assert_eq!(n.len(), NONCE_LEN);
    assert_eq!(nonces.current(W0 + ROTATE_SECS - 1), n);
    assert_ne!(nonces.current(W0 + ROTATE_SECS), n);
    assert_ne!(nonces.current(W0 - 1), n);
    assert!(nonces.is_valid(&n, W0));
    // Previous window (from the server's view a window later).
    assert!(nonces.is_valid(&n, W0 + ROTATE_SECS));
    assert!(nonces.is_valid(&n, W0 + 2 * ROTATE_SECS - 1));
    // Next window (the clock stepped back).
    assert!(nonces.is_valid(&n, W0 - 1));
    assert!(nonces.is_valid(&n, W0 - ROTATE_SECS));
    // Older or further ahead: refused.
    assert!(!nonces.is_valid(&n, W0 + 2 * ROTATE_SECS));
    assert!(!nonces.is_valid(&n, W0 - ROTATE_SECS - 1));
    assert_eq!(
        nonces.check(Some(&n), W0 + 2 * ROTATE_SECS),
        Err(DpopError::UseNonce)
    );
    assert_eq!(nonces.check(Some(&n), W0), Ok(()));
    assert_eq!(nonces.check(None, W0), Err(DpopError::UseNonce));
}

#[test]
fn nonce_forgeries_refused() {
    let nonces = Nonces::new([7; 32]);
    let n = nonces.current(W0);
    assert!(!Nonces::new([8; 32]).is_valid(&n, W0));
    let tag = b64url_decode_strict(&n).unwrap();
    // A prefix of the real tag must not pass (the MAC check accepts any prefix length).
    assert!(!nonces.is_valid(&b64url_encode(&tag[..8]), W0));
    assert!(!nonces.is_valid(&n[..11], W0));
    let mut flipped = tag.clone();
    flipped[15] ^= 1;
    assert!(!nonces.is_valid(&b64url_encode(&flipped), W0));
    let mut longer = tag;
    longer.push(0);
    assert!(!nonces.is_valid(&b64url_encode(&longer), W0));
    for junk in [
        "",
        "=",
        &"A".repeat(NONCE_LEN),
        &"!".repeat(NONCE_LEN),
        &format!("{n}="),
    ] {
        assert!(!nonces.is_valid(junk, W0), "{junk:?}");
    }
    // Extreme times neither panic nor accept.
    assert!(!nonces.current(i64::MIN).is_empty());
    assert!(nonces.is_valid(&nonces.current(i64::MAX), i64::MAX));
    assert!(!nonces.is_valid(&n, i64::MIN));
    // The secret stays out of Debug output.
    assert!(!format!("{nonces:?}").contains('7'));
}

#[test]
fn replay_refused() {
    let mut cache = ReplayCache::new(10);
    assert!(cache.is_empty());
    assert_eq!(cache.check_and_insert("a", NOW), Ok(()));
    assert_eq!(cache.check_and_insert("a", NOW), Err(DpopError::Replayed));
    assert_eq!(
        cache.check_and_insert("a", NOW + REPLAY_TTL - 1),
        Err(DpopError::Replayed)
    );
    // A step back in the clock does not reopen it either.
    assert_eq!(
        cache.check_and_insert("a", NOW - 1000),
        Err(DpopError::Replayed)
    );
    assert_eq!(cache.check_and_insert("b", NOW), Ok(()));
    assert_eq!(cache.len(), 2);
}

#[test]
fn replay_outlives_proof_validity() {
    // A proof with the latest acceptable iat, accepted at NOW, is still acceptable at
    // iat + IAT_PAST; the cache must still refuse it then.
    let last_valid = NOW + IAT_FUTURE + IAT_PAST;
    let mut cache = ReplayCache::new(10);
    cache.check_and_insert("a", NOW).unwrap();
    assert_eq!(
        cache.check_and_insert("a", last_valid),
        Err(DpopError::Replayed)
    );
}

#[test]
fn expired_entries_forgotten() {
    let mut cache = ReplayCache::new(10);
    cache.check_and_insert("a", NOW).unwrap();
    cache.check_and_insert("b", NOW + 10).unwrap();
    assert_eq!(cache.check_and_insert("a", NOW + REPLAY_TTL), Ok(()));
    // "a" was pruned and re-inserted, "b" is still live.
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.check_and_insert("b", NOW + REPLAY_TTL),
        Err(DpopError::Replayed)
    );
    cache.check_and_insert("c", NOW + 3 * REPLAY_TTL).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.order.len(), 1);
}

#[test]
fn cache_full_refused() {
    let mut cache = ReplayCache::new(2);
    cache.check_and_insert("a", NOW).unwrap();
    cache.check_and_insert("b", NOW).unwrap();
    assert_eq!(cache.check_and_insert("c", NOW + 1), Err(DpopError::Full));
    // A replay is still reported as one, not as Full.
    assert_eq!(
        cache.check_and_insert("a", NOW + 1),
        Err(DpopError::Replayed)
    );
    assert_eq!(cache.len(), 2);
    // Room again once the entries expire.
    assert_eq!(cache.check_and_insert("c", NOW + REPLAY_TTL), Ok(()));
    assert_eq!(
        ReplayCache::new(0).check_and_insert("a", NOW),
        Err(DpopError::Full)
    );
}

#[test]
fn clock_step_back_keeps_cache_consistent() {
    let mut cache = ReplayCache::new(10);
    cache.check_and_insert("x", 1000).unwrap();
    // The clock steps back: "y" expires before "x" but sits behind it in the queue.
    cache.check_and_insert("y", 0).unwrap();
    let t = 1100;
    assert!((REPLAY_TTL..1000 + REPLAY_TTL).contains(&t));
    // "y" has expired (though not yet pruned): it may be used again, in its own slot.
    assert_eq!(cache.check_and_insert("y", t), Ok(()));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.check_and_insert("y", t), Err(DpopError::Replayed));
    // Popping the stale pair for "y" must not forget its newer entry.
    assert_eq!(cache.check_and_insert("x", 1000 + REPLAY_TTL), Ok(()));
    assert_eq!(
        cache.check_and_insert("y", 1000 + REPLAY_TTL),
        Err(DpopError::Replayed)
    );
    // Everything expires eventually, stale pairs included.
    cache.check_and_insert("z", 10 * REPLAY_TTL).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.order.len(), 1);
}

#[test]
fn stale_pairs_stay_bounded() {
    // Repeated step-backs re-inserting expired-but-unpruned keys leave stale pairs; the
    // queue must not grow without bound.
    let mut cache = ReplayCache::new(1000);
    cache.check_and_insert("anchor", 1_000_000).unwrap();
    for i in 0..500 {
        let jti = format!("j{}", i % 5);
        // Each round is later than the last but far before "anchor"'s expiry.
        let t = i64::from(i) * REPLAY_TTL;
        let _ = cache.check_and_insert(&jti, t);
    }
    assert!(cache.len() <= 6);
    assert!(
        cache.order.len() <= 2 * cache.len() + 64,
        "{}",
        cache.order.len()
    );
}

#[test]
fn many_inserts_over_time_stay_bounded() {
    let mut cache = ReplayCache::new(1000);
    for i in 0..10_000i64 {
        // One proof a second: exactly REPLAY_TTL of them are live at any time.
        assert_eq!(cache.check_and_insert(&format!("jti-{i}"), NOW + i), Ok(()));
    }
    assert_eq!(cache.len(), REPLAY_TTL as usize);
    assert_eq!(cache.order.len(), cache.len());
}
