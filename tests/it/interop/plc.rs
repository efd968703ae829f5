//! did:plc audit-log vectors (`audit_log/{valid,invalid}/*.json`, see
//! `interop-plc/SOURCE.md`): every valid log re-encodes to its CIDs and DID and
//! verifies; every invalid log is rejected, for the reason its file name gives.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use perch::identity::plc::{
    AuditEntry, PlcError, PlcState, SignedOp, audit_log_from_json, decode_sig, did_for_genesis,
    replay_audit_log, verify_audit_log, verify_sig,
};
use serde_json::Value;

fn files(sub: &str) -> Option<Vec<PathBuf>> {
    let dir = super::interop_plc_dir()?.join("audit_log").join(sub);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no vectors in {}", dir.display());
    Some(out)
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn load(path: &Path) -> (Value, String, Vec<AuditEntry>) {
    let json = super::read_json(path);
    let entries = audit_log_from_json(&json).unwrap_or_else(|e| panic!("{}: {e}", name(path)));
    assert!(!entries.is_empty(), "{}", name(path));
    let did = entries[0].did.clone();
    (json, did, entries)
}

#[test]
fn valid_audit_logs_verify() {
    let Some(paths) = files("valid") else { return };
    for path in &paths {
        let file = name(path);
        let (json, did, entries) = load(path);
        for (i, (entry, raw)) in entries.iter().zip(json.as_array().unwrap()).enumerate() {
            // 1. Re-encoding the parsed op gives the directory's CID, and JSON round-trips.
            assert_eq!(entry.operation.cid_string(), entry.cid, "{file}[{i}] cid");
            assert_eq!(
                entry.operation.to_json(),
                raw["operation"],
                "{file}[{i}] json"
            );
            entry.operation.check_size().unwrap();
        }
        // 2. The genesis op derives the DID (legacy `create` included).
        assert_eq!(
            did_for_genesis(&entries[0].operation).unwrap(),
            did,
            "{file} did"
        );
        // 3-5. Signatures, prev links, nullification and the log's flags.
        let outcome =
            replay_audit_log(&did, &entries).unwrap_or_else(|e| panic!("{file} rejected: {e}"));
        let flags: Vec<bool> = entries.iter().map(|e| e.nullified).collect();
        assert_eq!(outcome.nullified, flags, "{file}");
        let head = entries
            .iter()
            .rev()
            .find(|e| !e.nullified)
            .expect("an active op");
        assert_eq!(outcome.head_cid, head.cid, "{file} head");
        assert_eq!(
            outcome.state,
            PlcState::from_op(&head.operation),
            "{file} state"
        );
        println!(
            "valid {file}: {} entries, head {}",
            entries.len(),
            outcome.head_cid
        );
    }
    println!("{} valid logs", paths.len());
}

/// Whether an error is the rejection a file name calls for.
type Check = fn(&PlcError) -> bool;

/// The rejection each invalid file's name calls for.
fn expected(file: &str) -> Option<Check> {
    const TABLE: &[(&str, Check)] = &[
        ("nullification_reused_key", |e| {
            matches!(e, PlcError::NotHigherAuthority { .. })
        }),
        ("nullification_too_slow", |e| {
            matches!(e, PlcError::RecoveryTooLate { .. })
        }),
        ("sig_b64_newline", |e| {
            matches!(e, PlcError::SignatureEncoding(_))
        }),
        ("sig_b64_padding_bits", |e| {
            matches!(e, PlcError::SignatureEncoding(_))
        }),
        ("sig_b64_padding_chars", |e| {
            matches!(e, PlcError::SignatureEncoding(_))
        }),
        ("sig_der", |e| matches!(e, PlcError::BadSignature)),
        ("sig_k256_high_s", |e| matches!(e, PlcError::BadSignature)),
        ("sig_p256_high_s", |e| matches!(e, PlcError::BadSignature)),
        ("update_nullified", |e| {
            matches!(e, PlcError::PrevNullified(_))
        }),
        ("update_tombstoned", |e| {
            matches!(e, PlcError::AfterTombstone)
        }),
    ];
    TABLE
        .iter()
        .find(|(key, _)| file.ends_with(key))
        .map(|(_, check)| *check)
}

#[test]
fn invalid_audit_logs_rejected() {
    let Some(paths) = files("invalid") else {
        return;
    };
    for path in &paths {
        let file = name(path);
        let (_, did, entries) = load(path);
        let err = verify_audit_log(&did, &entries)
            .err()
            .unwrap_or_else(|| panic!("{file} was accepted"));
        println!("invalid {file}: rejected: {err}");
        match expected(&file) {
            Some(check) => assert!(
                check(err.root()),
                "{file} rejected for the wrong reason: {err}"
            ),
            None => println!("  (no expected reason recorded for {file})"),
        }
    }
    println!("{} invalid logs", paths.len());
}

/// The signature vectors are otherwise sound: undoing the one defect the file name
/// describes makes the signature verify, so the rejection is for that defect alone.
#[test]
fn invalid_signatures_only_fail_for_their_defect() {
    let Some(paths) = files("invalid") else {
        return;
    };
    let k256_n = hex32("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141");
    let p256_n = hex32("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let mut repaired = 0;
    for path in &paths {
        let file = name(path);
        let (_, _, entries) = load(path);
        let op = &entries[0].operation;
        let keys = PlcState::from_op(op).unwrap().rotation_keys;
        let sig = op.sig();
        let fixed = if file.ends_with("sig_b64_newline") {
            sig.replace('\n', "")
        } else if file.ends_with("sig_b64_padding_chars") {
            sig.trim_end_matches('=').to_owned()
        } else if file.ends_with("sig_b64_padding_bits") {
            let bytes = URL_SAFE_NO_PAD
                .decode(sig.as_bytes())
                .or_else(|_| lenient_decode(sig))
                .unwrap();
            URL_SAFE_NO_PAD.encode(bytes)
        } else if file.ends_with("sig_k256_high_s") || file.ends_with("sig_p256_high_s") {
            let n = if file.contains("k256") {
                k256_n
            } else {
                p256_n
            };
            let mut raw = decode_sig(sig).unwrap();
            assert_eq!(raw.len(), 64);
            let s: [u8; 32] = raw[32..].try_into().unwrap();
            raw[32..].copy_from_slice(&sub_be(&n, &s));
            URL_SAFE_NO_PAD.encode(raw)
        } else if file.ends_with("sig_der") {
            URL_SAFE_NO_PAD.encode(der_to_compact(&decode_sig(sig).unwrap()))
        } else {
            continue;
        };
        assert!(verify_sig(op, &keys).is_err(), "{file}");
        let fixed_op = with_sig(op, &fixed);
        assert!(
            verify_sig(&fixed_op, &keys).is_ok(),
            "{file}: repaired signature still fails"
        );
        repaired += 1;
    }
    assert_eq!(repaired, 6, "expected six signature vectors");
}

fn with_sig(op: &SignedOp, sig: &str) -> SignedOp {
    let mut json = op.to_json();
    json["sig"] = Value::String(sig.to_owned());
    SignedOp::from_json(&json).unwrap()
}

/// base64url allowing non-zero trailing bits (which are then dropped).
fn lenient_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    )
    .decode(s)
}

/// Minimal DER `SEQUENCE { INTEGER r, INTEGER s }` → 64-byte `r‖s` (test helper).
fn der_to_compact(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "not a DER sequence");
    assert_eq!(usize::from(der[1]) + 2, der.len());
    let mut pos = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[pos], 0x02);
        let len = usize::from(der[pos + 1]);
        let int = &der[pos + 2..pos + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        pos += 2 + len;
    }
    out
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
