//! The JWT attack matrix (reliability plan item 13) against the real server,
//! in process on 127.0.0.1: forged, confused, stale, misdirected, malformed
//! and over-long tokens on a read route, a write route, a full-scope route
//! and the one route that takes service auth (uploadBlob). Zero may be
//! accepted; each must get a clean 400/401 XRPC error, and the repo head must
//! not move. Headers that name a key location (jku, x5u) must not make the
//! server fetch anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use perch::auth::{self, Scope};
use perch::crypto::{KeyType, Keypair};
use rand_core::OsRng;
use serde_json::{Value, json};

use crate::support::{Client, InProcess};

/// One request on its own connection: status and JSON body.
async fn call(
    s: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    s.call(method, path, headers, body.to_vec()).await
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A compact JWS from raw header and payload JSON text and signature bytes.
fn jws(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(sig)
    )
}

fn hs256(secret: &[u8], header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn es(key: &Keypair, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    format!("{input}.{}", b64(&key.sign(input.as_bytes())))
}

/// `s` → `n - s` on secp256k1: the same signature in its high-S form.
fn high_s(token: &str) -> String {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = N[i] as i16 - sig[32 + i] as i16 - borrow;
        sig[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    format!("{input}.{}", b64(&sig))
}

/// The last base64url character of the signature changed only in bits that
/// decode to nothing: the same bytes, a different string.
fn trailing_bits(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = ALPHABET.find(last).unwrap();
    // A 32-byte HMAC is 43 characters: the last carries 4 bits and 2 spare.
    t.push(ALPHABET.as_bytes()[i ^ 1] as char);
    t
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const AT: &str = r#"{"typ":"at+jwt","alg":"HS256"}"#;

/// Access tokens name their session (`sid`, the refresh token's id): a forged token must
/// name a live one, or it would be refused for that alone and prove nothing else.
fn access_claims(did: &str, aud: &str, sid: &str) -> Value {
    let t = now();
    json!({"scope": "com.atproto.access", "sub": did, "aud": aud, "sid": sid,
           "iat": t, "exp": t + 600})
}

/// The session's id (the `sid` of its access token).
fn session_id(s: &Client) -> String {
    let payload = s.token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn with(mut v: Value, k: &str, x: Value) -> String {
    if x.is_null() {
        v.as_object_mut().unwrap().remove(k);
    } else {
        v[k] = x;
    }
    v.to_string()
}

#[tokio::test]
async fn no_forged_or_misused_token_is_accepted() {
    let s = InProcess::start().await;
    let secret = s.app.jwt_secret;
    let aud = s.app.service_did.clone();
    let did = s.did.clone();
    let ours = Arc::clone(&s.app.repo_key);
    let attacker = Keypair::generate(KeyType::K256, &mut OsRng);
    let p256 = Keypair::generate(KeyType::P256, &mut OsRng);
    let sid = session_id(&s);
    let base = access_claims(&did, &aud, &sid);
    let t = now();

    // A key-location listener: jku / x5u must never be fetched.
    let fetches = Arc::new(AtomicUsize::new(0));
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!(
        "http://127.0.0.1:{}/jwks.json",
        trap.local_addr().unwrap().port()
    );
    {
        let fetches = Arc::clone(&fetches);
        tokio::spawn(async move {
            while trap.accept().await.is_ok() {
                fetches.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    // Control: the genuine article works, so a rejection below is the check
    // under test and not a broken harness.
    let good = hs256(&secret, AT, &base.to_string());
    let (st, b) = call(
        &s,
        "GET",
        "com.atproto.server.getSession",
        &[("authorization", &format!("Bearer {good}"))],
        b"",
    )
    .await;
    assert_eq!(st, 200, "{b}");

    let pubkey = ours.public_key();
    let refresh = auth::mint_refresh(&secret, &did, &aud, "jti-1", t);
    let app_pass = auth::mint_access(&secret, &did, &aud, Scope::AppPass, &sid, t);
    let attacker_jwk = json!({"kty": "EC", "crv": "secp256k1",
        "x": b64(&pubkey.compressed_bytes()[1..]), "y": ""});
    let mut cases: Vec<(&str, String)> = vec![
        // Algorithm games.
        (
            "alg none",
            jws(r#"{"typ":"at+jwt","alg":"none"}"#, &base.to_string(), b""),
        ),
        (
            "alg None",
            jws(r#"{"typ":"at+jwt","alg":"None"}"#, &base.to_string(), b""),
        ),
        ("alg none, real HMAC kept", {
            let g = hs256(&secret, AT, &base.to_string());
            let sig = g.rsplit('.').next().unwrap().to_owned();
            format!(
                "{}.{}.{sig}",
                b64(br#"{"typ":"at+jwt","alg":"none"}"#),
                b64(base.to_string().as_bytes())
            )
        }),
        (
            "alg missing",
            hs256(&secret, r#"{"typ":"at+jwt"}"#, &base.to_string()),
        ),
        (
            "alg lowercase hs256",
            hs256(
                &secret,
                r#"{"typ":"at+jwt","alg":"hs256"}"#,
                &base.to_string(),
            ),
        ),
        (
            "alg as a number",
            hs256(&secret, r#"{"typ":"at+jwt","alg":256}"#, &base.to_string()),
        ),
        (
            "HS256 keyed with our public key (compressed)",
            hs256(&pubkey.compressed_bytes(), AT, &base.to_string()),
        ),
        (
            "HS256 keyed with our did:key",
            hs256(pubkey.to_did_key().as_bytes(), AT, &base.to_string()),
        ),
        (
            "HS256 keyed with our multikey",
            hs256(pubkey.to_multikey().as_bytes(), AT, &base.to_string()),
        ),
        (
            "HS256 keyed with the empty secret",
            hs256(b"", AT, &base.to_string()),
        ),
        (
            "ES256K by our own repo key as an access token",
            es(
                &ours,
                r#"{"typ":"at+jwt","alg":"ES256K"}"#,
                &base.to_string(),
            ),
        ),
        ("ES256K token relabelled HS256", {
            let e = es(
                &ours,
                r#"{"typ":"at+jwt","alg":"ES256K"}"#,
                &base.to_string(),
            );
            let sig = e.rsplit('.').next().unwrap().to_owned();
            format!(
                "{}.{}.{sig}",
                b64(AT.as_bytes()),
                b64(base.to_string().as_bytes())
            )
        }),
        (
            "ES256 by an attacker key",
            es(
                &p256,
                r#"{"typ":"at+jwt","alg":"ES256"}"#,
                &base.to_string(),
            ),
        ),
        (
            "embedded jwk of the attacker",
            es(
                &attacker,
                &json!({"typ": "at+jwt", "alg": "ES256K", "jwk": attacker_jwk}).to_string(),
                &base.to_string(),
            ),
        ),
        (
            "jku to a key set we host",
            es(
                &attacker,
                &json!({"typ": "at+jwt", "alg": "ES256K", "jku": trap_url}).to_string(),
                &base.to_string(),
            ),
        ),
        (
            "x5u to a certificate we host",
            es(
                &attacker,
                &json!({"typ": "at+jwt", "alg": "ES256K", "x5u": trap_url}).to_string(),
                &base.to_string(),
            ),
        ),
        (
            "kid pointing at a file",
            hs256(
                b"",
                &json!({"typ": "at+jwt", "alg": "HS256",
            "kid": "../../../../dev/null"})
                .to_string(),
                &base.to_string(),
            ),
        ),
        (
            "crit header",
            hs256(
                &secret,
                r#"{"typ":"at+jwt","alg":"HS256","crit":["exp"]}"#,
                &base.to_string(),
            ),
        ),
        // Signatures.
        (
            "another secret",
            hs256(b"0123456789abcdef0123456789abcdef", AT, &base.to_string()),
        ),
        ("empty signature", jws(AT, &base.to_string(), b"")),
        ("signature with a flipped bit", {
            let g = hs256(&secret, AT, &base.to_string());
            let (input, sig) = g.rsplit_once('.').unwrap();
            let mut sig = B64.decode(sig).unwrap();
            sig[5] ^= 1;
            format!("{input}.{}", b64(&sig))
        }),
        (
            "signature with non-canonical trailing bits",
            trailing_bits(&hs256(&secret, AT, &base.to_string())),
        ),
        (
            "signature with base64 padding",
            format!("{}=", hs256(&secret, AT, &base.to_string())),
        ),
        ("claims changed after signing", {
            let g = hs256(&secret, AT, &base.to_string());
            let parts: Vec<&str> = g.split('.').collect();
            let evil = with(base.clone(), "sub", json!("did:web:evil.example"));
            format!("{}.{}.{}", parts[0], b64(evil.as_bytes()), parts[2])
        }),
        (
            "duplicate sub, forged",
            jws(
                AT,
                &format!(
                    r#"{{"scope":"com.atproto.access","sub":"did:web:evil.example","sub":"{did}","aud":"{aud}","iat":{t},"exp":{}}}"#,
                    t + 600
                ),
                &[0u8; 32],
            ),
        ),
        // Claims (signed with the real secret, so only the claim check can refuse).
        (
            "session that does not exist",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "sid", json!("no-such-session")),
            ),
        ),
        (
            "no session named",
            hs256(&secret, AT, &with(base.clone(), "sid", Value::Null)),
        ),
        (
            "session as a number",
            hs256(&secret, AT, &with(base.clone(), "sid", json!(7))),
        ),
        (
            "wrong aud",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "aud", json!("did:web:other.example")),
            ),
        ),
        (
            "aud with a service fragment",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "aud", json!(format!("{aud}#atproto_pds"))),
            ),
        ),
        (
            "aud missing",
            hs256(&secret, AT, &with(base.clone(), "aud", Value::Null)),
        ),
        (
            "aud as an array",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "aud", json!([aud.clone()])),
            ),
        ),
        (
            "sub another DID",
            hs256(
                &secret,
                AT,
                &with(
                    base.clone(),
                    "sub",
                    json!("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"),
                ),
            ),
        ),
        (
            "sub not a DID",
            hs256(&secret, AT, &with(base.clone(), "sub", json!("alice.test"))),
        ),
        (
            "expired",
            hs256(&secret, AT, &with(base.clone(), "exp", json!(t - 3600))),
        ),
        (
            "exp zero",
            hs256(&secret, AT, &with(base.clone(), "exp", json!(0))),
        ),
        (
            "exp missing",
            hs256(&secret, AT, &with(base.clone(), "exp", Value::Null)),
        ),
        (
            "exp a string",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "exp", json!(format!("{}", t + 600))),
            ),
        ),
        (
            "exp a float",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "exp", json!((t + 600) as f64 + 0.5)),
            ),
        ),
        (
            "exp negative",
            hs256(&secret, AT, &with(base.clone(), "exp", json!(-1))),
        ),
        (
            "iat an hour ahead",
            hs256(&secret, AT, &with(base.clone(), "iat", json!(t + 3600))),
        ),
        (
            "nbf an hour ahead",
            hs256(&secret, AT, &with(base.clone(), "nbf", json!(t + 3600))),
        ),
        (
            "scope missing",
            hs256(&secret, AT, &with(base.clone(), "scope", Value::Null)),
        ),
        (
            "scope unknown",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "scope", json!("com.atproto.admin")),
            ),
        ),
        (
            "scope takendown",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "scope", json!("com.atproto.takendown")),
            ),
        ),
        // Token kinds.
        ("refresh token as access", refresh.clone()),
        (
            "access claims with typ refresh+jwt",
            hs256(
                &secret,
                r#"{"typ":"refresh+jwt","alg":"HS256"}"#,
                &base.to_string(),
            ),
        ),
        (
            "access claims with typ dpop+jwt",
            hs256(
                &secret,
                r#"{"typ":"dpop+jwt","alg":"HS256"}"#,
                &base.to_string(),
            ),
        ),
        (
            "access claims with typ JWT",
            hs256(&secret, r#"{"typ":"JWT","alg":"HS256"}"#, &base.to_string()),
        ),
        (
            "access claims without typ",
            hs256(&secret, r#"{"alg":"HS256"}"#, &base.to_string()),
        ),
        (
            "refresh scope with typ at+jwt",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "scope", json!("com.atproto.refresh")),
            ),
        ),
        (
            "service token for uploadBlob used elsewhere",
            auth::mint_service_auth(
                &ours,
                &did,
                &aud,
                Some("com.atproto.repo.uploadBlob"),
                t,
                60,
                &mut OsRng,
            ),
        ),
        // Shapes.
        ("empty token", String::new()),
        ("two segments", {
            let g = hs256(&secret, AT, &base.to_string());
            g.rsplit_once('.').unwrap().0.to_owned()
        }),
        (
            "four segments",
            format!("{}.x", hs256(&secret, AT, &base.to_string())),
        ),
        ("truncated", {
            let g = hs256(&secret, AT, &base.to_string());
            g[..g.len() - 10].to_owned()
        }),
        ("payload not an object", hs256(&secret, AT, "[1,2,3]")),
        ("payload not JSON", hs256(&secret, AT, "{\"scope\":")),
        (
            "header not JSON",
            hs256(&secret, "not json", &base.to_string()),
        ),
        ("standard base64 alphabet", {
            // "???" encodes with `_`, so the swap below always changes something.
            let g = hs256(&secret, AT, &with(base.clone(), "x", json!("???")));
            let swapped = g.replace('-', "+").replace('_', "/");
            assert_ne!(g, swapped);
            swapped
        }),
        ("whitespace inside", {
            let g = hs256(&secret, AT, &base.to_string());
            format!("{} {}", &g[..20], &g[20..])
        }),
        (
            "17 KB token",
            hs256(
                &secret,
                AT,
                &with(base.clone(), "pad", json!("x".repeat(17 * 1024))),
            ),
        ),
        ("non-ASCII bytes", "\u{e9}\u{e9}.\u{e0}.\u{fc}".to_owned()),
    ];
    // The same forged token presented under another scheme.
    let schemes: Vec<(&str, String)> = vec![
        (
            "Basic scheme",
            format!("Basic {}", b64(format!("admin:{}", good).as_bytes())),
        ),
        ("DPoP scheme", format!("DPoP {good}x")),
        ("no scheme", good.clone()),
    ];

    let q_did = did.replace('%', "%25");
    let path = format!("com.atproto.sync.getLatestCommit?did={q_did}");
    let head = || async {
        let (st, b) = call(&s, "GET", &path, &[], b"").await;
        (st, b["rev"].clone())
    };
    let before = head().await;
    let record = json!({"repo": did, "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "pwned", "createdAt": "2026-01-01T00:00:00Z"}})
    .to_string();

    let mut tried = 0;
    let mut accepted = vec![];
    let mut check = |what: String, st: u16, b: &Value| {
        tried += 1;
        if st == 200 || st / 100 == 2 {
            accepted.push(what.clone());
        }
        assert!(st == 400 || st == 401, "{what}: status {st} {b}");
        assert!(
            b["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {b}"
        );
        assert!(b["message"].is_string(), "{what}: {b}");
    };
    cases.extend(schemes.iter().map(|(n, h)| (*n, format!("\0{h}"))));
    for (what, token) in &cases {
        // `\0` marks a full header value rather than a bearer token.
        let header = match token.strip_prefix('\0') {
            Some(h) => h.to_owned(),
            None => format!("Bearer {token}"),
        };
        let auth = [
            ("authorization", header.as_str()),
            ("content-type", "application/json"),
        ];
        let (st, b) = call(&s, "GET", "com.atproto.server.getSession", &auth, b"").await;
        check(format!("{what} (getSession)"), st, &b);
        let (st, b) = call(
            &s,
            "POST",
            "com.atproto.repo.createRecord",
            &auth,
            record.as_bytes(),
        )
        .await;
        check(format!("{what} (createRecord)"), st, &b);
        if what.starts_with("service token for uploadBlob") {
            continue; // genuine there; the service cases below cover uploadBlob
        }
        let (st, b) = call(
            &s,
            "POST",
            "com.atproto.repo.uploadBlob",
            &[
                ("authorization", header.as_str()),
                ("content-type", "text/plain"),
            ],
            b"hello",
        )
        .await;
        check(format!("{what} (uploadBlob)"), st, &b);
    }

    // An access token used where a refresh token belongs.
    let (st, b) = call(
        &s,
        "POST",
        "com.atproto.server.refreshSession",
        &[("authorization", &format!("Bearer {good}"))],
        b"",
    )
    .await;
    check("access token on refreshSession".into(), st, &b);
    // A refresh token the server never stored (right secret, unknown jti).
    let (st, b) = call(
        &s,
        "POST",
        "com.atproto.server.refreshSession",
        &[("authorization", &format!("Bearer {refresh}"))],
        b"",
    )
    .await;
    check("unknown refresh jti".into(), st, &b);

    // App-password sessions on methods that need the main password.
    let full_only = [
        ("com.atproto.server.createAppPassword", r#"{"name":"x"}"#),
        ("com.atproto.server.deactivateAccount", "{}"),
        ("com.atproto.server.requestAccountDelete", "{}"),
        ("com.atproto.identity.requestPlcOperationSignature", "{}"),
        ("com.atproto.identity.signPlcOperation", "{}"),
        ("com.atproto.server.activateAccount", "{}"),
    ];
    for (nsid, body) in full_only {
        let (st, b) = call(
            &s,
            "POST",
            nsid,
            &[
                ("authorization", &format!("Bearer {app_pass}")),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await;
        check(format!("app-password scope on {nsid}"), st, &b);
    }

    // Service auth on uploadBlob: only the account's own key, this audience,
    // this method, in date, low-S.
    let svc = |key: &Keypair, iss: &str, aud: &str, lxm: Option<&str>, iat: i64, life: i64| {
        auth::mint_service_auth(key, iss, aud, lxm, iat, life, &mut OsRng)
    };
    let blob = "com.atproto.repo.uploadBlob";
    let genuine = svc(&ours, &did, &aud, Some(blob), t, 60);
    let (st, b) = call(
        &s,
        "POST",
        blob,
        &[
            ("authorization", &format!("Bearer {genuine}")),
            ("content-type", "text/plain"),
        ],
        b"hi",
    )
    .await;
    assert_eq!(st, 200, "control: a genuine service token uploads: {b}");
    let service_cases = [
        (
            "service: attacker key, our iss",
            svc(&attacker, &did, &aud, Some(blob), t, 60),
        ),
        (
            "service: other iss",
            svc(
                &ours,
                "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                &aud,
                Some(blob),
                t,
                60,
            ),
        ),
        (
            "service: other aud",
            svc(&ours, &did, "did:web:other.example", Some(blob), t, 60),
        ),
        ("service: no lxm", svc(&ours, &did, &aud, None, t, 60)),
        (
            "service: other lxm",
            svc(
                &ours,
                &did,
                &aud,
                Some("com.atproto.repo.createRecord"),
                t,
                60,
            ),
        ),
        (
            "service: expired",
            svc(&ours, &did, &aud, Some(blob), t - 600, 60),
        ),
        (
            "service: issued in the future",
            svc(&ours, &did, &aud, Some(blob), t + 600, 60),
        ),
        ("service: high-S signature", high_s(&genuine)),
        ("service: relabelled ES256", {
            let (_, rest) = genuine.split_once('.').unwrap();
            format!("{}.{rest}", b64(br#"{"typ":"JWT","alg":"ES256"}"#))
        }),
    ];
    for (what, token) in &service_cases {
        let (st, b) = call(
            &s,
            "POST",
            blob,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "text/plain"),
            ],
            b"hi",
        )
        .await;
        check(what.to_string(), st, &b);
    }

    assert_eq!(head().await, before, "a rejected token moved the repo head");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "a jku/x5u header made the server fetch"
    );
    println!("jwt: attacks={tried} accepted={}", accepted.len());
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}
