use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::elliptic_curve::scalar::IsHigh;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use super::keys::{CryptoError, KeyType, Keypair, PublicKey};

const BOTH: [KeyType; 2] = [KeyType::K256, KeyType::P256];

/// Replaces s with n − s using the curve's own scalar arithmetic.
fn flip_s(key_type: KeyType, sig: &[u8; 64]) -> [u8; 64] {
    let mut out = [0u8; 64];
    match key_type {
        KeyType::K256 => {
            let sig = k256::ecdsa::Signature::from_slice(sig).expect("valid sig");
            let (r, s) = sig.split_scalars();
            let flipped = k256::ecdsa::Signature::from_scalars(r, -s).expect("scalars");
            out.copy_from_slice(&flipped.to_bytes());
        }
        KeyType::P256 => {
            let sig = p256::ecdsa::Signature::from_slice(sig).expect("valid sig");
            let (r, s) = sig.split_scalars();
            let flipped = p256::ecdsa::Signature::from_scalars(r, -s).expect("scalars");
            out.copy_from_slice(&flipped.to_bytes());
        }
    }
    out
}

fn s_is_high(key_type: KeyType, sig: &[u8; 64]) -> bool {
    match key_type {
        KeyType::K256 => {
            let sig = k256::ecdsa::Signature::from_slice(sig).expect("valid sig");
            bool::from(sig.s().is_high())
        }
        KeyType::P256 => {
            let sig = p256::ecdsa::Signature::from_slice(sig).expect("valid sig");
            bool::from(sig.s().is_high())
        }
    }
}

#[test]
fn jwt_alg_names() {
    assert_eq!(KeyType::K256.jwt_alg(), "ES256K");
    assert_eq!(KeyType::P256.jwt_alg(), "ES256");
    for kt in BOTH {
        assert_eq!(KeyType::from_jwt_alg(kt.jwt_alg()), Some(kt));
    }
    assert_eq!(KeyType::from_jwt_alg("none"), None);
    assert_eq!(KeyType::from_jwt_alg("es256"), None);
}

#[test]
fn sign_verify_round_trip() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        assert_eq!(key.key_type(), kt);
        let public = key.public_key();
        assert_eq!(public.key_type(), kt);
        let sig = key.sign(b"hello atproto");
        assert_eq!(public.verify(b"hello atproto", &sig), Ok(()));
        assert_eq!(
            public.verify(b"hello atprotO", &sig),
            Err(CryptoError::BadSignature)
        );
        let other = Keypair::generate(kt, &mut OsRng).public_key();
        assert_eq!(
            other.verify(b"hello atproto", &sig),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn signatures_are_always_low_s() {
    // Without normalisation about half of all p256 signatures would be high-S, so 64
    // messages make a silent regression practically impossible to miss.
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        for i in 0u32..64 {
            let sig = key.sign(&i.to_be_bytes());
            assert!(!s_is_high(kt, &sig), "{kt:?} produced high-S");
        }
    }
}

#[test]
fn high_s_rejected_on_both_curves() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        let sig = key.sign(b"msg");
        let flipped = flip_s(kt, &sig);
        assert!(s_is_high(kt, &flipped));
        assert_ne!(sig, flipped);
        assert_eq!(
            key.public_key().verify(b"msg", &flipped),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn jose_verification_takes_either_s_and_nothing_else() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        let sig = key.sign(b"msg");
        let flipped = flip_s(kt, &sig);
        let public = key.public_key();
        assert_eq!(public.verify_jose(b"msg", &sig), Ok(()));
        assert_eq!(
            public.verify_jose(b"msg", &flipped),
            Ok(()),
            "{kt:?} high-S"
        );
        assert_eq!(
            public.verify_jose(b"other", &flipped),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            public.verify_jose(b"msg", &flipped[..63]),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn p256_library_alone_accepts_high_s() {
    // Documents why verify() checks S itself: plain p256 verification accepts it.
    let key = Keypair::generate(KeyType::P256, &mut OsRng);
    let flipped = flip_s(KeyType::P256, &key.sign(b"msg"));
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_key().compressed_bytes())
        .expect("point");
    let sig = p256::ecdsa::Signature::from_slice(&flipped).expect("sig");
    assert!(vk.verify_prehash(&Sha256::digest(b"msg"), &sig).is_ok());
}

#[test]
fn k256_library_alone_rejects_high_s() {
    // k256 0.13 enforces low-S inside its verify; our explicit check must agree with it.
    let key = Keypair::generate(KeyType::K256, &mut OsRng);
    let flipped = flip_s(KeyType::K256, &key.sign(b"msg"));
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_key().compressed_bytes())
        .expect("point");
    let sig = k256::ecdsa::Signature::from_slice(&flipped).expect("range-valid");
    assert!(vk.verify_prehash(&Sha256::digest(b"msg"), &sig).is_err());
}

#[test]
fn malformed_signatures_rejected() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        let public = key.public_key();
        let sig = key.sign(b"m");
        for bad in [&sig[..63], &[sig.as_slice(), &[0]].concat()[..], &[][..]] {
            assert_eq!(public.verify(b"m", bad), Err(CryptoError::BadSignature));
        }
        assert_eq!(
            public.verify(b"m", &[0u8; 64]),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            public.verify(b"m", &[0xffu8; 64]),
            Err(CryptoError::BadSignature)
        );
    }
}

#[test]
fn secret_bytes_round_trip() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        let again = Keypair::from_secret_bytes(kt, &key.secret_bytes()).expect("reload");
        assert_eq!(again.did_key(), key.did_key());
        // RFC 6979 is deterministic, so the same key signs identically.
        assert_eq!(again.sign(b"x"), key.sign(b"x"));
    }
}

#[test]
fn bad_secret_bytes_rejected() {
    // secp256k1 group order n; n itself and zero are not valid scalars.
    let k256_n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    for kt in BOTH {
        for bad in [
            &[0u8; 32][..],
            &[1u8; 31][..],
            &[1u8; 33][..],
            &[][..],
            &[0xff; 32][..],
        ] {
            assert!(Keypair::from_secret_bytes(kt, bad).is_err());
        }
    }
    assert_eq!(
        Keypair::from_secret_bytes(KeyType::K256, &k256_n).err(),
        Some(CryptoError::BadKey)
    );
}

#[test]
fn debug_hides_secret() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng);
        let secret_hex: String = key
            .secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains(&secret_hex));
        assert!(!shown.contains(&format!("{:?}", key.secret_bytes())));
        assert!(shown.contains(&key.did_key()));
    }
}

#[test]
fn did_key_round_trip_and_prefixes() {
    for (kt, prefix) in [
        (KeyType::K256, "did:key:zQ3s"),
        (KeyType::P256, "did:key:zDn"),
    ] {
        let key = Keypair::generate(kt, &mut OsRng);
        let did = key.did_key();
        assert!(did.starts_with(prefix), "{did}");
        let parsed = PublicKey::from_did_key(&did).expect("parse");
        assert_eq!(parsed, key.public_key());
        assert_eq!(parsed.to_did_key(), did);
        assert_eq!(
            PublicKey::from_multikey(&parsed.to_multikey()).expect("multikey"),
            parsed
        );
    }
}

#[test]
fn spec_example_did_keys_parse() {
    for (did, kt) in [
        (
            "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo",
            KeyType::P256,
        ),
        (
            "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc",
            KeyType::K256,
        ),
    ] {
        let key = PublicKey::from_did_key(did).expect("parse");
        assert_eq!(key.key_type(), kt);
        assert_eq!(key.to_did_key(), did);
    }
}

#[test]
fn malformed_did_keys_rejected() {
    let key = Keypair::generate(KeyType::K256, &mut OsRng).public_key();
    let multikey = key.to_multikey();
    let long = format!("z{}", "1".repeat(10_000));
    let ed25519 = format!(
        "z{}",
        bs58::encode([[0xed, 0x01].as_slice(), &[7; 32]].concat()).into_string()
    );
    let uncompressed_k256 = {
        let mut p = vec![0xe7, 0x01, 0x04];
        p.extend_from_slice(&[1; 64]);
        format!("z{}", bs58::encode(p).into_string())
    };
    let not_on_curve = format!(
        "z{}",
        bs58::encode([[0xe7, 0x01, 0x02].as_slice(), &[0xff; 32]].concat()).into_string()
    );
    let cases: [(&str, CryptoError); 8] = [
        ("", CryptoError::BadDidKey),
        ("z", CryptoError::BadDidKey),
        (&multikey[1..], CryptoError::BadDidKey),
        ("zO0Il", CryptoError::BadDidKey),
        (&long, CryptoError::BadDidKey),
        (&ed25519, CryptoError::UnsupportedKeyType),
        (&uncompressed_k256, CryptoError::BadDidKey),
        (&not_on_curve, CryptoError::BadKey),
    ];
    for (input, expected) in cases {
        assert_eq!(PublicKey::from_multikey(input), Err(expected), "{input}");
    }
    assert_eq!(
        PublicKey::from_did_key(&multikey),
        Err(CryptoError::BadDidKey)
    );
    assert_eq!(
        PublicKey::from_did_key(&format!("did:web:{multikey}")),
        Err(CryptoError::BadDidKey)
    );
}

#[test]
fn legacy_multibase_compressed_and_uncompressed() {
    for kt in BOTH {
        let key = Keypair::generate(kt, &mut OsRng).public_key();
        let compressed = format!("z{}", bs58::encode(key.compressed_bytes()).into_string());
        assert_eq!(
            PublicKey::from_legacy_multibase(kt, &compressed).expect("33"),
            key
        );
        let uncompressed = match kt {
            KeyType::K256 => {
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.compressed_bytes())
                    .expect("point");
                vk.to_encoded_point(false).as_bytes().to_vec()
            }
            KeyType::P256 => {
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.compressed_bytes())
                    .expect("point");
                vk.to_encoded_point(false).as_bytes().to_vec()
            }
        };
        assert_eq!(uncompressed.len(), 65);
        let text = format!("z{}", bs58::encode(&uncompressed).into_string());
        assert_eq!(
            PublicKey::from_legacy_multibase(kt, &text).expect("65"),
            key
        );
        assert_eq!(
            PublicKey::from_legacy_multibase(kt, &format!("f{}", &compressed[1..])),
            Err(CryptoError::BadMultibase)
        );
        let short = format!(
            "z{}",
            bs58::encode(&key.compressed_bytes()[..32]).into_string()
        );
        assert_eq!(
            PublicKey::from_legacy_multibase(kt, &short),
            Err(CryptoError::BadKey)
        );
    }
}
