//! atproto interop vectors for keys and signatures (`crypto/*.json`).
//!
//! The vectors live outside the repository: `$ATPROTO_INTEROP_DIR`, or `../shared/interop`
//! next to the crate. Missing vectors skip the test locally but fail it under CI.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use perch::crypto::{KeyType, Keypair, PublicKey};
use serde_json::Value;

fn crypto_dir() -> Option<std::path::PathBuf> {
    super::interop_dir().map(|d| d.join("crypto"))
}

fn load(dir: &std::path::Path, name: &str) -> Vec<Value> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("{} is not a JSON array: {other:?}", path.display()),
    }
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {name} in {entry}"))
}

fn b64(text: &str) -> Vec<u8> {
    STANDARD_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("bad base64 {text:?}: {e}"))
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

#[test]
fn signature_fixtures() {
    let Some(dir) = crypto_dir() else { return };
    let entries = load(&dir, "signature-fixtures.json");
    assert!(!entries.is_empty());

    let (mut high_s, mut der, mut valid) = (0, 0, 0);
    for entry in &entries {
        let comment = field(entry, "comment");
        let key_type = KeyType::from_jwt_alg(field(entry, "algorithm"))
            .unwrap_or_else(|| panic!("unknown algorithm in {comment}"));
        let did = field(entry, "publicKeyDid");
        let from_did = PublicKey::from_did_key(did).expect("publicKeyDid parses");
        let legacy = field(entry, "publicKeyMultibase");
        let from_legacy =
            PublicKey::from_legacy_multibase(key_type, legacy).expect("publicKeyMultibase parses");
        assert_eq!(from_did, from_legacy, "{comment}");
        assert_eq!(from_did.key_type(), key_type, "{comment}");
        assert_eq!(from_did.to_did_key(), did, "{comment}");
        let legacy_again = format!(
            "z{}",
            bs58::encode(from_did.compressed_bytes()).into_string()
        );
        assert_eq!(legacy_again, legacy, "{comment}");

        let message = b64(field(entry, "messageBase64"));
        let signature = b64(field(entry, "signatureBase64"));
        let expected = entry["validSignature"]
            .as_bool()
            .expect("validSignature is a bool");
        let accepted = from_did.verify(&message, &signature).is_ok();
        assert_eq!(accepted, expected, "{comment}");

        let tags: Vec<&str> = entry["tags"]
            .as_array()
            .expect("tags is an array")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if tags.contains(&"high-s") {
            high_s += 1;
            assert!(!accepted, "high-S accepted: {comment}");
        }
        if tags.contains(&"der-encoded") {
            der += 1;
            assert!(!accepted, "DER accepted: {comment}");
        }
        valid += usize::from(accepted);
    }
    // Make sure the interesting cases were actually exercised.
    assert!(high_s > 0 && der > 0 && valid > 0);
    println!(
        "{} signature fixtures: {valid} valid, {high_s} high-S, {der} DER",
        entries.len()
    );
}

fn check_didkeys(file: &str, key_type: KeyType, secret: impl Fn(&Value) -> Vec<u8>) {
    let Some(dir) = crypto_dir() else { return };
    let entries = load(&dir, file);
    assert!(!entries.is_empty(), "{file} is empty");
    for entry in &entries {
        let key = Keypair::from_secret_bytes(key_type, &secret(entry)).expect("private key");
        let expected = field(entry, "publicDidKey");
        assert_eq!(key.did_key(), expected);
        assert_eq!(
            PublicKey::from_did_key(expected).expect("parse"),
            key.public_key()
        );
    }
    println!("{file}: {} keys", entries.len());
}

#[test]
fn w3c_didkey_k256() {
    check_didkeys("w3c_didkey_K256.json", KeyType::K256, |e| {
        hex(field(e, "privateKeyBytesHex"))
    });
}

#[test]
fn w3c_didkey_p256() {
    check_didkeys("w3c_didkey_P256.json", KeyType::P256, |e| {
        bs58::decode(field(e, "privateKeyBytesBase58"))
            .into_vec()
            .expect("base58 private key")
    });
}
