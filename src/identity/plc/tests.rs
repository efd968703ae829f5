use rand_core::OsRng;
use serde_json::json;

use super::*;
use crate::crypto::{KeyType, Keypair};

const HOUR: i64 = 60 * 60 * 1_000_000;

fn key(kt: KeyType) -> Keypair {
    Keypair::generate(kt, &mut OsRng)
}

fn genesis_for(rotation: &[&Keypair], signing: &Keypair) -> Operation {
    Operation::genesis(
        rotation.iter().map(|k| k.did_key()).collect(),
        &signing.did_key(),
        "alice.example.com",
        "https://pds.example.com",
    )
    .unwrap()
}

fn entry(did: &str, op: &SignedOp, at: i64) -> AuditEntry {
    AuditEntry {
        did: did.to_owned(),
        operation: op.clone(),
        cid: op.cid_string(),
        nullified: false,
        created_at_micros: at,
    }
}

fn with_sig(op: &SignedOp, sig: &str) -> SignedOp {
    let mut op = op.clone();
    op.set_sig(sig.to_owned());
    op
}

#[test]
fn genesis_shape_sign_verify_roundtrip() {
    for kt in [KeyType::K256, KeyType::P256] {
        let recovery = key(kt);
        let rotation = key(kt);
        let signing = key(KeyType::K256);
        let op = genesis_for(&[&recovery, &rotation], &signing);
        assert_eq!(op.prev, None);
        assert_eq!(op.also_known_as, vec!["at://alice.example.com".to_owned()]);
        assert_eq!(
            op.verification_methods.get("atproto"),
            Some(&signing.did_key())
        );
        let pds = op.services.get("atproto_pds").unwrap();
        assert_eq!(pds.r#type, "AtprotoPersonalDataServer");
        assert_eq!(pds.endpoint, "https://pds.example.com");

        let signed = sign(op, &rotation);
        assert_eq!(signed.sig().len(), 86);
        assert_eq!(verify_sig(&signed, &signed_keys(&signed)), Ok(1));
        signed.check_size().unwrap();

        // JSON round trip keeps the CID; prev is an explicit null.
        let j = signed.to_json();
        assert_eq!(j["prev"], serde_json::Value::Null);
        assert_eq!(j["type"], "plc_operation");
        let back = SignedOp::from_json(&j).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.cid(), signed.cid());
        assert!(signed.cid_string().starts_with("bafyrei"));

        let did = did_for_genesis(&signed).unwrap();
        assert_eq!(did.len(), 32);
        assert!(crate::syntax::is_valid_did(&did), "{did}");
        assert!(
            did["did:plc:".len()..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        verify_audit_log(&did, &[entry(&did, &signed, 0)]).unwrap();
    }
}

fn signed_keys(op: &SignedOp) -> Vec<String> {
    PlcState::from_op(op).unwrap().rotation_keys
}

#[test]
fn signed_op_key_order_is_length_first() {
    let k = key(KeyType::K256);
    let signed = sign(genesis_for(&[&k], &k), &k);
    let bytes = signed.to_cbor();
    let keys = [
        "sig",
        "prev",
        "type",
        "services",
        "alsoKnownAs",
        "rotationKeys",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|name| {
            bytes
                .windows(name.len())
                .position(|w| w == name.as_bytes())
                .unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // The unsigned form simply lacks `sig`.
    assert!(!signed.signing_bytes().windows(3).any(|w| w == b"sig"));
}

#[test]
fn did_derivation_is_stable() {
    let rotation = Keypair::from_secret_bytes(KeyType::K256, &[7u8; 32]).unwrap();
    let signing = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).unwrap();
    let op = genesis_for(&[&rotation], &signing);
    // RFC 6979 signatures are deterministic, so the whole genesis op is.
    let a = sign(op.clone(), &rotation);
    let b = sign(op, &rotation);
    assert_eq!(a, b);
    let did = did_for_genesis(&a).unwrap();
    assert_eq!(did, did_for_genesis(&b).unwrap());
    // The identifier is the base32 SHA-256 prefix of the signed op, not of the CID.
    let digest = crate::cid::sha256(&a.to_cbor());
    let cid = a.cid();
    assert_eq!(cid.hash().digest(), &digest[..]);
    assert_eq!(did, PINNED_DID, "genesis encoding changed");
}

/// DID of the deterministic genesis op in `did_derivation_is_stable` (cross-checked
/// once with Python: base32(sha256(dag-cbor)) of the same bytes).
const PINNED_DID: &str = "did:plc:v2c4ztywpopfmwcxgovhqoxq";

#[test]
fn did_for_genesis_refuses_non_genesis() {
    let k = key(KeyType::K256);
    let genesis = sign(genesis_for(&[&k], &k), &k);
    let state = PlcState::from_op(&genesis).unwrap();
    let update = Operation::update_from(&state, &genesis.cid_string()).unwrap();
    assert_eq!(
        did_for_genesis(&sign(update, &k)),
        Err(PlcError::NotGenesis)
    );
    let tomb = sign_tombstone(&genesis.cid_string(), &k).unwrap();
    assert_eq!(did_for_genesis(&tomb), Err(PlcError::NotGenesis));
}

#[test]
fn update_chain_verifies() {
    let recovery = key(KeyType::P256);
    let pds_rot = key(KeyType::K256);
    let signing = key(KeyType::K256);
    let genesis = sign(genesis_for(&[&recovery, &pds_rot], &signing), &pds_rot);
    let did = did_for_genesis(&genesis).unwrap();

    let mut log = vec![entry(&did, &genesis, 0)];
    let mut last = genesis;
    let new_signing = key(KeyType::P256);
    let new_rot = key(KeyType::K256);
    let steps: Vec<Box<dyn Fn(Operation) -> Operation>> = vec![
        Box::new(|op| op.with_handle("Bob.Example.com").unwrap()),
        Box::new(|op| op.with_pds_endpoint("https://other.example:8443").unwrap()),
        Box::new(|op| op.with_signing_key(&new_signing.did_key()).unwrap()),
        Box::new(|op| {
            op.with_rotation_keys(vec![recovery.did_key(), new_rot.did_key()])
                .unwrap()
        }),
    ];
    let signers = [&pds_rot, &recovery, &pds_rot, &pds_rot];
    for (i, (step, signer)) in steps.iter().zip(signers).enumerate() {
        let state = PlcState::from_op(&last).unwrap();
        let op = step(Operation::update_from(&state, &last.cid_string()).unwrap());
        op.validate().unwrap();
        last = sign(op, signer);
        log.push(entry(&did, &last, (i as i64 + 1) * 100 * HOUR));
    }
    let outcome = replay_audit_log(&did, &log).unwrap();
    let state = outcome.state.unwrap();
    assert_eq!(outcome.head_cid, last.cid_string());
    assert_eq!(state.handle(), Some("bob.example.com"));
    assert_eq!(state.pds_endpoint(), Some("https://other.example:8443"));
    assert_eq!(state.signing_key(), Some(new_signing.did_key().as_str()));
    assert_eq!(state.rotation_keys[1], new_rot.did_key());
    assert!(outcome.nullified.iter().all(|n| !n));

    // The old PDS rotation key no longer has authority; the new one does.
    let state_now = PlcState::from_op(&last).unwrap();
    let rogue = sign(
        Operation::update_from(&state_now, &last.cid_string()).unwrap(),
        &pds_rot,
    );
    let mut bad = log.clone();
    bad.push(entry(&did, &rogue, 1000 * HOUR));
    assert_eq!(
        verify_audit_log(&did, &bad).unwrap_err().root(),
        &PlcError::BadSignature
    );

    // Deactivate, then nothing may build on the tombstone.
    let tomb = sign_tombstone(&last.cid_string(), &new_rot).unwrap();
    log.push(entry(&did, &tomb, 1000 * HOUR));
    let outcome = replay_audit_log(&did, &log).unwrap();
    assert_eq!(outcome.state, None);
    assert_eq!(outcome.head_cid, tomb.cid_string());
    let state_then = PlcState::from_op(&last).unwrap();
    let after = sign(
        Operation::update_from(&state_then, &tomb.cid_string()).unwrap(),
        &new_rot,
    );
    log.push(entry(&did, &after, 1001 * HOUR));
    assert_eq!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        &PlcError::AfterTombstone
    );
}

/// genesis (keys [recovery, pds]) → update by pds → fork by `forker` at `fork_at`.
fn fork_log(forker_is_recovery: bool, fork_at: i64) -> (String, Vec<AuditEntry>) {
    let recovery = key(KeyType::K256);
    let pds = key(KeyType::K256);
    let genesis = sign(genesis_for(&[&recovery, &pds], &pds), &pds);
    let did = did_for_genesis(&genesis).unwrap();
    let state = PlcState::from_op(&genesis).unwrap();
    let hijack = Operation::update_from(&state, &genesis.cid_string())
        .unwrap()
        .with_handle("mallory.example.com")
        .unwrap();
    let hijack = sign(hijack, &pds);
    let fix = Operation::update_from(&state, &genesis.cid_string())
        .unwrap()
        .with_rotation_keys(vec![recovery.did_key()])
        .unwrap();
    let fix = sign(fix, if forker_is_recovery { &recovery } else { &pds });
    let mut log = vec![
        entry(&did, &genesis, 0),
        entry(&did, &hijack, HOUR),
        entry(&did, &fix, HOUR + fork_at),
    ];
    log[1].nullified = true;
    (did, log)
}

#[test]
fn recovery_fork_nullifies_within_window() {
    let (did, log) = fork_log(true, RECOVERY_WINDOW_MICROS);
    let outcome = replay_audit_log(&did, &log).unwrap();
    assert_eq!(outcome.nullified, vec![false, true, false]);
    assert_eq!(outcome.head_cid, log[2].cid);

    // The nullified flags must agree with the replay.
    let mut unflagged = log.clone();
    unflagged[1].nullified = false;
    assert_eq!(
        verify_audit_log(&did, &unflagged).unwrap_err(),
        PlcError::NullifiedMismatch {
            logged: false,
            computed: true
        }
        .at(1)
    );
}

#[test]
fn recovery_fork_too_late_or_same_key_rejected() {
    let (did, log) = fork_log(true, RECOVERY_WINDOW_MICROS + 1);
    assert_eq!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        &PlcError::RecoveryTooLate {
            elapsed_micros: RECOVERY_WINDOW_MICROS + 1
        }
    );
    let (did, log) = fork_log(false, HOUR);
    assert_eq!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        &PlcError::NotHigherAuthority {
            signer: 1,
            disputed: 1
        }
    );
}

#[test]
fn building_on_nullified_or_unknown_op_rejected() {
    let (did, mut log) = fork_log(true, HOUR);
    let recovery_state = PlcState::from_op(&log[1].operation).unwrap();
    // Anything building on the nullified hijack op is out.
    let k = key(KeyType::K256);
    let on_nullified = sign(
        Operation::update_from(&recovery_state, &log[1].cid).unwrap(),
        &k,
    );
    log.push(entry(&did, &on_nullified, 3 * HOUR));
    assert!(matches!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        PlcError::PrevNullified(_)
    ));
    log.pop();
    let unknown_prev = crate::cid::for_cbor(b"\xa0").to_string();
    let orphan = sign(
        Operation::update_from(&recovery_state, &unknown_prev).unwrap(),
        &k,
    );
    log.push(entry(&did, &orphan, 3 * HOUR));
    assert!(matches!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        PlcError::UnknownPrev(_)
    ));
}

#[test]
fn log_level_checks() {
    let k = key(KeyType::K256);
    let genesis = sign(genesis_for(&[&k], &k), &k);
    let did = did_for_genesis(&genesis).unwrap();
    assert_eq!(verify_audit_log(&did, &[]), Err(PlcError::EmptyLog));

    let other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    assert!(matches!(
        verify_audit_log(other, &[entry(other, &genesis, 0)])
            .unwrap_err()
            .root(),
        PlcError::DidMismatch { .. }
    ));
    assert!(matches!(
        verify_audit_log(&did, &[entry(other, &genesis, 0)])
            .unwrap_err()
            .root(),
        PlcError::WrongDid { .. }
    ));
    let mut wrong_cid = entry(&did, &genesis, 0);
    wrong_cid.cid = crate::cid::for_cbor(b"\xa0").to_string();
    assert!(matches!(
        verify_audit_log(&did, &[wrong_cid]).unwrap_err().root(),
        PlcError::CidMismatch { .. }
    ));

    // A second genesis op (prev null) after the first.
    let again = sign(
        genesis_for(&[&k], &k).with_handle("x.example.com").unwrap(),
        &k,
    );
    let log = [entry(&did, &genesis, 0), entry(&did, &again, 1)];
    assert_eq!(
        verify_audit_log(&did, &log).unwrap_err(),
        PlcError::MissingPrev.at(1)
    );

    // Time going backwards.
    let state = PlcState::from_op(&genesis).unwrap();
    let upd = sign(
        Operation::update_from(&state, &genesis.cid_string()).unwrap(),
        &k,
    );
    let log = [entry(&did, &genesis, 10), entry(&did, &upd, 9)];
    assert_eq!(
        verify_audit_log(&did, &log).unwrap_err().root(),
        &PlcError::TimeOrder
    );
}

#[test]
fn oversized_op_rejected() {
    let k = key(KeyType::K256);
    let mut op = genesis_for(&[&k], &k);
    for i in 0..200 {
        op.also_known_as
            .push(format!("https://alias-{i}.example.com/padding"));
    }
    assert!(matches!(
        op.validate(),
        Err(PlcError::TooLarge { max: 7500, .. })
    ));
    let signed = sign(op, &k);
    assert!(signed.encoded_len() > MAX_OP_BYTES);
    assert!(matches!(
        signed.check_size(),
        Err(PlcError::TooLarge { .. })
    ));
    let did = did_for_genesis(&signed).unwrap();
    assert!(matches!(
        verify_audit_log(&did, &[entry(&did, &signed, 0)])
            .unwrap_err()
            .root(),
        PlcError::TooLarge { .. }
    ));

    // validate() predicts the signed size exactly: find the boundary.
    let mut op = genesis_for(&[&k], &k);
    op.also_known_as.push(String::new());
    let base = sign(op.clone(), &k).encoded_len();
    let pad = MAX_OP_BYTES - base;
    // Grow the last alias until the signed op is exactly at the limit.
    for len in pad.saturating_sub(4)..pad + 4 {
        op.also_known_as[1] = "x".repeat(len);
        let signed_len = sign(op.clone(), &k).encoded_len();
        assert_eq!(op.validate().is_ok(), signed_len <= MAX_OP_BYTES, "{len}");
    }
}

#[test]
fn rotation_key_rules_when_building() {
    let keys: Vec<Keypair> = (0..6).map(|_| key(KeyType::K256)).collect();
    let dids: Vec<String> = keys.iter().map(Keypair::did_key).collect();
    let signing = keys[0].did_key();
    let build = |rot: Vec<String>| {
        Operation::genesis(
            rot,
            &signing,
            "alice.example.com",
            "https://pds.example.com",
        )
    };
    assert!(build(dids[..5].to_vec()).is_ok());
    assert!(matches!(
        build(dids.clone()),
        Err(PlcError::RotationKeys(_))
    ));
    assert!(matches!(build(vec![]), Err(PlcError::RotationKeys(_))));
    assert!(matches!(
        build(vec![dids[0].clone(), dids[1].clone(), dids[0].clone()]),
        Err(PlcError::RotationKeys(_))
    ));
    // Not a key, unsupported type (ed25519), not canonical text.
    for bad in [
        "did:key:nope",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:web:example.com",
        "",
    ] {
        assert!(
            matches!(build(vec![bad.to_owned()]), Err(PlcError::RotationKeys(_))),
            "{bad}"
        );
    }
    // validate() applies the same rule to hand-assembled ops.
    let mut op = build(dids[..1].to_vec()).unwrap();
    op.rotation_keys = dids.clone();
    assert!(matches!(op.validate(), Err(PlcError::RotationKeys(_))));
}

#[test]
fn other_build_rules() {
    let k = key(KeyType::K256);
    let rot = vec![k.did_key()];
    let build = |signing: &str, handle: &str, endpoint: &str| {
        Operation::genesis(rot.clone(), signing, handle, endpoint)
    };
    let sk = k.did_key();
    assert!(matches!(
        build("did:key:zzz", "a.example.com", "https://pds.example.com"),
        Err(PlcError::VerificationMethod(_))
    ));
    for handle in ["", "nodot", "-a.example.com", "a..b", "at://a.example.com"] {
        assert!(
            matches!(
                build(&sk, handle, "https://pds.example.com"),
                Err(PlcError::Handle(_))
            ),
            "{handle}"
        );
    }
    for endpoint in [
        "http://pds.example.com",
        "https://pds.example.com/",
        "https://pds.example.com/xrpc",
        "https://pds.example.com?x",
        "https://user@pds.example.com",
        "https://pds.example.com:0",
        "https://pds.example.com:99999",
        "https://pds.example.com:",
        "https://",
        "https://-bad.example.com",
        "pds.example.com",
    ] {
        assert!(
            matches!(
                build(&sk, "a.example.com", endpoint),
                Err(PlcError::Service(_))
            ),
            "{endpoint}"
        );
    }
    for endpoint in [
        "https://pds.example.com",
        "https://pds.example.com:2583",
        "https://localhost",
        "https://127.0.0.1:8443",
    ] {
        assert!(build(&sk, "a.example.com", endpoint).is_ok(), "{endpoint}");
    }

    // Too many verification methods; names with '#'.
    let mut op = build(&sk, "a.example.com", "https://pds.example.com").unwrap();
    for i in 0..10 {
        op.verification_methods.insert(format!("m{i}"), sk.clone());
    }
    assert!(matches!(
        op.validate(),
        Err(PlcError::VerificationMethod(_))
    ));
    let mut op = build(&sk, "a.example.com", "https://pds.example.com").unwrap();
    op.verification_methods.insert("#bad".into(), sk.clone());
    assert!(matches!(
        op.validate(),
        Err(PlcError::VerificationMethod(_))
    ));
    // Any syntactically valid did:key is fine as a verification method (spec v0.2).
    let mut op = build(&sk, "a.example.com", "https://pds.example.com").unwrap();
    op.verification_methods.insert(
        "other".into(),
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into(),
    );
    op.validate().unwrap();

    // update_from wants a CID prev.
    let state = PlcState::from_op(&sign(op, &k)).unwrap();
    assert!(matches!(
        Operation::update_from(&state, "not-a-cid"),
        Err(PlcError::Prev(_))
    ));
    assert!(matches!(sign_tombstone("", &k), Err(PlcError::Prev(_))));
}

#[test]
fn with_handle_replaces_first_at_alias_in_place() {
    let k = key(KeyType::K256);
    let mut op = genesis_for(&[&k], &k);
    op.also_known_as = vec![
        "https://example.org/me".into(),
        "at://old.example.com".into(),
        "at://older.example.com".into(),
    ];
    let op = op.with_handle("new.example.com").unwrap();
    assert_eq!(
        op.also_known_as,
        vec![
            "https://example.org/me",
            "at://new.example.com",
            "at://older.example.com"
        ]
    );
    let mut op = op;
    op.also_known_as = vec!["https://example.org/me".into()];
    let op = op.with_handle("new.example.com").unwrap();
    assert_eq!(op.also_known_as[0], "at://new.example.com");
}

#[test]
fn from_json_is_strict() {
    let k = key(KeyType::K256);
    let good = sign(genesis_for(&[&k], &k), &k).to_json();
    assert!(SignedOp::from_json(&good).is_ok());

    let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = good.clone();
        f(v.as_object_mut().unwrap());
        SignedOp::from_json(&v)
    };
    assert!(matches!(
        edit(&|m| {
            m.remove("prev");
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.remove("sig");
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("extra".into(), json!(1));
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("type".into(), json!("plc_update"));
        }),
        Err(PlcError::UnknownType(t)) if t == "plc_update"
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("rotationKeys".into(), json!([1]));
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("services".into(), json!({"x": {"type": "t"}}));
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert(
                "services".into(),
                json!({"x": {"type": "t", "endpoint": "e", "z": 1}}),
            );
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("verificationMethods".into(), json!({"atproto": null}));
        }),
        Err(PlcError::Malformed(_))
    ));
    assert!(matches!(
        edit(&|m| {
            m.insert("prev".into(), json!(5));
        }),
        Err(PlcError::Malformed(_))
    ));

    // Tombstones need a string prev; legacy creates need prev null.
    let t = json!({"type": "plc_tombstone", "prev": null, "sig": "x"});
    assert!(matches!(
        SignedOp::from_json(&t),
        Err(PlcError::Malformed(_))
    ));
    let t = json!({"type": "plc_tombstone", "prev": "bafy", "sig": "x", "rotationKeys": []});
    assert!(matches!(
        SignedOp::from_json(&t),
        Err(PlcError::Malformed(_))
    ));
    let c = json!({"type": "create", "signingKey": "a", "recoveryKey": "b", "handle": "h",
                   "service": "s", "prev": "bafy", "sig": "x"});
    assert!(matches!(
        SignedOp::from_json(&c),
        Err(PlcError::Malformed(_))
    ));

    for junk in [
        json!(null),
        json!([]),
        json!("plc_operation"),
        json!({}),
        json!({"type": 7}),
    ] {
        assert!(SignedOp::from_json(&junk).is_err(), "{junk}");
        assert!(AuditEntry::from_json(&junk).is_err(), "{junk}");
        assert!(audit_log_from_json(&junk).is_err() || junk == json!([]));
        assert!(PlcState::from_json(&junk).is_err(), "{junk}");
    }
}

#[test]
fn audit_entry_from_json() {
    let k = key(KeyType::K256);
    let op = sign(genesis_for(&[&k], &k), &k);
    let did = did_for_genesis(&op).unwrap();
    let v = json!([{
        "did": did,
        "operation": op.to_json(),
        "cid": op.cid_string(),
        "nullified": false,
        "createdAt": "2024-01-02T03:04:05.678Z",
    }]);
    let log = audit_log_from_json(&v).unwrap();
    assert_eq!(log[0].created_at_micros, 1_704_164_645_678_000);
    verify_audit_log(&did, &log).unwrap();
    let mut bad = v.clone();
    bad[0]["createdAt"] = json!("yesterday");
    assert!(matches!(
        audit_log_from_json(&bad).unwrap_err().root(),
        PlcError::Malformed(_)
    ));
}

#[test]
fn document_rendering() {
    let k = key(KeyType::K256);
    let op = genesis_for(&[&k], &k);
    let state = PlcState::from_op(&sign(op, &k)).unwrap();
    let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    let doc = document(did, &state);
    assert_eq!(
        doc["@context"],
        json!([
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ])
    );
    assert_eq!(doc["id"], did);
    assert_eq!(doc["alsoKnownAs"], json!(["at://alice.example.com"]));
    let multikey = k.did_key().strip_prefix("did:key:").unwrap().to_owned();
    assert_eq!(
        doc["verificationMethod"],
        json!([{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": multikey,
        }])
    );
    assert_eq!(
        doc["service"],
        json!([{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "https://pds.example.com",
        }])
    );

    let p = key(KeyType::P256);
    let mut state = state;
    state
        .verification_methods
        .insert("atproto".into(), p.did_key());
    let doc = document(did, &state);
    assert_eq!(
        doc["@context"][2],
        "https://w3id.org/security/suites/ecdsa-2019/v1"
    );
    assert_eq!(doc["@context"].as_array().unwrap().len(), 3);

    // /data round trip.
    let data = state.to_json(did);
    assert_eq!(data["did"], did);
    assert_eq!(PlcState::from_json(&data).unwrap(), state);
}

#[test]
fn legacy_create_normalisation() {
    let op = SignedOp::LegacyCreate {
        signing_key: "did:key:zSigning".into(),
        recovery_key: "did:key:zRecovery".into(),
        handle: "dan.bsky.social".into(),
        service: "bsky.social".into(),
        sig: String::new(),
    };
    let state = PlcState::from_op(&op).unwrap();
    assert_eq!(
        state.rotation_keys,
        vec!["did:key:zRecovery", "did:key:zSigning"]
    );
    assert_eq!(state.handle(), Some("dan.bsky.social"));
    assert_eq!(state.pds_endpoint(), Some("https://bsky.social"));
    assert_eq!(state.signing_key(), Some("did:key:zSigning"));
    assert_eq!(op.prev(), None);
    assert_eq!(op.to_json()["prev"], serde_json::Value::Null);
    assert_eq!(op.op_type(), "create");
}

#[test]
fn errors_display_and_root() {
    let e = PlcError::BadSignature.at(3);
    assert_eq!(e.root(), &PlcError::BadSignature);
    assert_eq!(
        e.to_string(),
        "audit entry 3: signature does not verify against any allowed rotation key"
    );
}

mod no_panic;
mod signatures;
