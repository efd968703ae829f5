use super::*;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};

const ORIGIN: &str = "https://pds.example.com";
const RP: &str = "pds.example.com";
const CHALLENGE: &str = "Y2hhbGxlbmdlLWJ5dGVz";

fn want(ceremony: &'static str) -> Expected<'static> {
    Expected {
        ceremony,
        challenge: CHALLENGE,
        origin: ORIGIN,
        rp_id: RP,
    }
}

fn key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn client_data(ceremony: &str, challenge: &str, origin: &str) -> Vec<u8> {
    serde_json::json!({ "type": ceremony, "challenge": challenge, "origin": origin, "crossOrigin": false })
        .to_string()
        .into_bytes()
}

/// CBOR head of `major` with argument `n`.
fn head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=255 => vec![m | 24, n as u8],
        _ => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
    }
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend_from_slice(b);
    v
}

fn cbor_text(t: &str) -> Vec<u8> {
    let mut v = head(3, t.len());
    v.extend_from_slice(t.as_bytes());
    v
}

fn cbor_int(i: i64) -> Vec<u8> {
    if i >= 0 {
        head(0, i as usize)
    } else {
        head(1, (-1 - i) as usize)
    }
}

fn cose_key(k: &SigningKey, alg: i64) -> Vec<u8> {
    let point = k.verifying_key().to_encoded_point(false);
    let mut v = head(5, 5);
    for (key, value) in [
        (1, cbor_int(2)),
        (3, cbor_int(alg)),
        (-1, cbor_int(1)),
        (-2, cbor_bytes(point.x().unwrap())),
        (-3, cbor_bytes(point.y().unwrap())),
    ] {
        v.extend(cbor_int(key));
        v.extend(value);
    }
    v
}

fn auth_data(rp: &str, flags: u8, count: u32, attested: Option<(&[u8], Vec<u8>)>) -> Vec<u8> {
    let mut v = Sha256::digest(rp.as_bytes()).to_vec();
    v.push(flags);
    v.extend_from_slice(&count.to_be_bytes());
    if let Some((id, key)) = attested {
        v.extend_from_slice(&[0u8; 16]);
        v.extend_from_slice(&(id.len() as u16).to_be_bytes());
        v.extend_from_slice(id);
        v.extend(key);
    }
    v
}

fn attestation(auth_data: &[u8]) -> Vec<u8> {
    let mut v = head(5, 3);
    v.extend(cbor_text("fmt"));
    v.extend(cbor_text("none"));
    v.extend(cbor_text("attStmt"));
    v.extend(head(5, 0));
    v.extend(cbor_text("authData"));
    v.extend(cbor_bytes(auth_data));
    v
}

fn der(sig: &Signature) -> Vec<u8> {
    let int = |b: &[u8]| {
        let b: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        let mut v = vec![0x02];
        if b.first().is_some_and(|&x| x & 0x80 != 0) {
            v.push(b.len() as u8 + 1);
            v.push(0);
        } else {
            v.push(b.len() as u8);
        }
        v.extend(b);
        v
    };
    let bytes = sig.to_bytes();
    let body = [int(&bytes[..32]), int(&bytes[32..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

fn registration(k: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    let ad = auth_data(RP, 0x45, 0, Some((b"cred-1", cose_key(k, -7))));
    (
        client_data("webauthn.create", CHALLENGE, ORIGIN),
        attestation(&ad),
    )
}

#[test]
fn a_registration_yields_the_credential_and_its_key() {
    let k = key();
    let (cd, att) = registration(&k);
    let c = register(&cd, &att, &want("webauthn.create")).unwrap();
    assert_eq!(c.id, b"cred-1");
    assert_eq!(
        c.public_key,
        k.verifying_key().to_encoded_point(false).as_bytes()
    );
    assert!(c.user_verified);
}

#[test]
fn a_registration_for_another_request_is_refused() {
    let k = key();
    let (_, att) = registration(&k);
    for (cd, what) in [
        (
            client_data("webauthn.get", CHALLENGE, ORIGIN),
            "ceremony type",
        ),
        (
            client_data("webauthn.create", "b3RoZXI", ORIGIN),
            "challenge",
        ),
        (
            client_data("webauthn.create", CHALLENGE, "https://evil.example"),
            "origin",
        ),
    ] {
        assert_eq!(
            register(&cd, &att, &want("webauthn.create")),
            Err(Mismatch(what))
        );
    }
    let (cd, _) = registration(&k);
    let other_rp = attestation(&auth_data(
        "evil.example",
        0x45,
        0,
        Some((b"c", cose_key(&k, -7))),
    ));
    assert_eq!(
        register(&cd, &other_rp, &want("webauthn.create")),
        Err(Mismatch("relying party"))
    );
    let absent = attestation(&auth_data(RP, 0x44, 0, Some((b"c", cose_key(&k, -7)))));
    assert_eq!(
        register(&cd, &absent, &want("webauthn.create")),
        Err(Mismatch("user not present"))
    );
    let rsa = attestation(&auth_data(RP, 0x45, 0, Some((b"c", cose_key(&k, -257)))));
    assert_eq!(
        register(&cd, &rsa, &want("webauthn.create")),
        Err(WebAuthnError::Unsupported)
    );
}

#[test]
fn hostile_cbor_is_malformed_without_large_allocations() {
    let (cd, _) = registration(&key());
    let w = want("webauthn.create");
    // A byte string claiming 4 GiB, a map claiming 2^32 entries, deep nesting, truncation.
    for bad in [
        vec![0x5a, 0xff, 0xff, 0xff, 0xff, 0x00],
        vec![0xba, 0xff, 0xff, 0xff, 0xff],
        vec![0x81; 64],
        attestation(&auth_data(RP, 0x45, 0, None))[..20].to_vec(),
        vec![0xa1, 0x5f],
    ] {
        assert!(
            matches!(register(&cd, &bad, &w), Err(Malformed(_))),
            "{bad:02x?}"
        );
    }
    // authData without the attested credential it must carry.
    let bare = attestation(&auth_data(RP, 0x05, 0, None));
    assert_eq!(
        register(&cd, &bare, &w),
        Err(Malformed("no attested credential"))
    );
}

#[test]
fn an_assertion_verifies_only_as_signed() {
    let k = key();
    let pk = k
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let cd = client_data("webauthn.get", CHALLENGE, ORIGIN);
    let ad = auth_data(RP, 0x05, 9, None);
    let sign = |k: &SigningKey, ad: &[u8], cd: &[u8]| {
        let mut msg = ad.to_vec();
        msg.extend_from_slice(&Sha256::digest(cd));
        der(&k.sign(&msg))
    };
    let sig = sign(&k, &ad, &cd);
    let w = want("webauthn.get");
    assert_eq!(
        assert(&pk, &cd, &ad, &sig, &w),
        Ok(Assertion {
            sign_count: 9,
            user_verified: true
        })
    );
    // A changed counter, another key's signature, a raw (not DER) signature.
    let mut bumped = ad.clone();
    bumped[36] = 10;
    assert_eq!(
        assert(&pk, &cd, &bumped, &sig, &w),
        Err(WebAuthnError::BadSignature)
    );
    let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
    assert_eq!(
        assert(&pk, &cd, &ad, &sign(&other, &ad, &cd), &w),
        Err(WebAuthnError::BadSignature)
    );
    let mut msg = ad.clone();
    msg.extend_from_slice(&Sha256::digest(&cd));
    let raw: Signature = k.sign(&msg);
    assert_eq!(
        assert(&pk, &cd, &ad, &raw.to_bytes(), &w),
        Err(WebAuthnError::BadSignature)
    );
    // Signed for a registration, or on another site.
    let cd2 = client_data("webauthn.get", CHALLENGE, "https://evil.example");
    assert_eq!(
        assert(&pk, &cd2, &ad, &sign(&k, &ad, &cd2), &w),
        Err(Mismatch("origin"))
    );
}
