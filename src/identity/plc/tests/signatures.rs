//! Signatures: strict encodings, low-S only, tampering detected.

use super::*;

#[test]
fn strict_signature_encoding() {
    let k = key(KeyType::P256);
    let signed = sign(genesis_for(&[&k], &k), &k);
    let keys = signed_keys(&signed);
    let sig = signed.sig().to_owned();
    assert_eq!(verify_sig(&signed, &keys), Ok(0));

    for bad in [
        format!("{sig}=="),
        format!("{sig}\n"),
        format!("{}\n{}", &sig[..40], &sig[40..]),
        format!(" {sig}"),
        sig.replace('-', "+").replace('_', "/"),
    ] {
        if bad == sig {
            continue;
        }
        assert!(
            matches!(
                verify_sig(&with_sig(&signed, &bad), &keys),
                Err(PlcError::SignatureEncoding(_))
            ),
            "{bad:?}"
        );
    }
    // Non-zero padding bits: 86 chars carry 516 bits, the last 4 must be zero.
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let flipped = alphabet.chars().nth(idx ^ 1).unwrap();
    let bad = format!("{}{flipped}", &sig[..85]);
    assert!(matches!(
        verify_sig(&with_sig(&signed, &bad), &keys),
        Err(PlcError::SignatureEncoding(_))
    ));
    // Wrong length (DER-sized, truncated) is a signature failure.
    let short = crate::crypto::jwt::b64url_encode(&[1u8; 63]);
    let long = crate::crypto::jwt::b64url_encode(&[1u8; 71]);
    for s in [short, long, String::new()] {
        assert_eq!(
            verify_sig(&with_sig(&signed, &s), &keys),
            Err(PlcError::BadSignature)
        );
    }
}

#[test]
fn high_s_rejected() {
    // secp256k1 group order n; s' = n - s verifies mathematically but is high-S.
    let n = hex32("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141");
    let k = Keypair::from_secret_bytes(KeyType::K256, &[3u8; 32]).unwrap();
    let signed = sign(genesis_for(&[&k], &k), &k);
    let keys = signed_keys(&signed);
    let mut raw = decode_sig(signed.sig()).unwrap();
    let s: [u8; 32] = raw[32..].try_into().unwrap();
    raw[32..].copy_from_slice(&sub_be(&n, &s));
    let high = with_sig(&signed, &crate::crypto::jwt::b64url_encode(&raw));
    assert_eq!(verify_sig(&high, &keys), Err(PlcError::BadSignature));
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[test]
fn tampered_op_rejected() {
    let k = key(KeyType::K256);
    let signed = sign(genesis_for(&[&k], &k), &k);
    let keys = signed_keys(&signed);
    let SignedOp::Operation { op, sig } = signed.clone() else {
        unreachable!()
    };
    let tampered = SignedOp::Operation {
        op: op.clone().with_handle("mallory.example.com").unwrap(),
        sig: sig.clone(),
    };
    assert_eq!(verify_sig(&tampered, &keys), Err(PlcError::BadSignature));
    // Signed by a key not in the list.
    let other = key(KeyType::K256);
    assert_eq!(
        verify_sig(&sign(op, &other), &keys),
        Err(PlcError::BadSignature)
    );
    // Unparseable keys are skipped, not fatal.
    let mut with_junk = vec!["junk".to_owned(), String::new()];
    with_junk.extend(keys);
    assert_eq!(verify_sig(&signed, &with_junk), Ok(2));
    // And a tampered genesis no longer hashes to its DID.
    let did = did_for_genesis(&signed).unwrap();
    let mut e = entry(&did, &tampered, 0);
    e.cid = tampered.cid_string();
    assert!(matches!(
        verify_audit_log(&did, &[e]).unwrap_err().root(),
        PlcError::DidMismatch { .. }
    ));
}
