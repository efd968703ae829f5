//! Signing ops and checking their signatures.

use super::PlcError;
use super::build::check_prev;
use super::op::{Operation, SignedOp};
use crate::crypto::jwt::{b64url_decode_strict, b64url_encode};
use crate::crypto::{Keypair, PublicKey};

/// Signs `op` with a rotation key: `sig` = base64url (no padding) of the 64-byte low-S
/// signature over the op's unsigned DAG-CBOR.
///
/// Nothing is validated here; build ops with the [`Operation`] constructors (or call
/// [`Operation::validate`]) and check [`SignedOp::check_size`] before submitting.
pub fn sign(op: Operation, key: &Keypair) -> SignedOp {
    sign_signed(
        SignedOp::Operation {
            op,
            sig: String::new(),
        },
        key,
    )
}

/// A tombstone building on the op with CID `prev_cid`, signed with a rotation key of
/// that op.
pub fn sign_tombstone(prev_cid: &str, key: &Keypair) -> Result<SignedOp, PlcError> {
    check_prev(prev_cid)?;
    Ok(sign_signed(
        SignedOp::Tombstone {
            prev: prev_cid.to_owned(),
            sig: String::new(),
        },
        key,
    ))
}

fn sign_signed(mut unsigned: SignedOp, key: &Keypair) -> SignedOp {
    let sig = key.sign(&unsigned.signing_bytes());
    unsigned.set_sig(b64url_encode(&sig));
    unsigned
}

/// Decodes a `sig` field: strict base64url, no padding characters, no whitespace, zero
/// trailing bits. Length is not checked here.
pub fn decode_sig(sig: &str) -> Result<Vec<u8>, PlcError> {
    b64url_decode_strict(sig).map_err(|e| PlcError::SignatureEncoding(e.to_string()))
}

/// Checks `signed`'s signature against `rotation_keys` in order and returns the index of
/// the first key that verifies it (lower index = higher authority).
///
/// The signature must be exactly 64 bytes `r‖s` with low S (DER and high-S fail).
/// Keys that are not k256/p256 did:keys can never verify and are skipped.
pub fn verify_sig(signed: &SignedOp, rotation_keys: &[String]) -> Result<usize, PlcError> {
    let sig = decode_sig(signed.sig())?;
    if sig.len() != 64 {
        return Err(PlcError::BadSignature);
    }
    let msg = signed.signing_bytes();
    rotation_keys
        .iter()
        .position(|key| PublicKey::from_did_key(key).is_ok_and(|pk| pk.verify(&msg, &sig).is_ok()))
        .ok_or(PlcError::BadSignature)
}
