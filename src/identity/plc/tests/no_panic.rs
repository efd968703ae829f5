use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::*;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        ".{0,12}".prop_map(Value::String),
        Just(json!(
            "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc"
        )),
        Just(json!(
            "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq"
        )),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "type",
    "rotationKeys",
    "verificationMethods",
    "alsoKnownAs",
    "services",
    "prev",
    "sig",
    "signingKey",
    "recoveryKey",
    "handle",
    "service",
];
const TYPES: &[&str] = &["plc_operation", "plc_tombstone", "create", "x"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Ops with arbitrary field values: parsing, encoding, verifying, replaying
    /// and rendering return results, never panic.
    #[test]
    fn arbitrary_ops_never_panic(
        ty in 0..TYPES.len(),
        fields in prop::collection::vec((0..FIELDS.len(), arb_json()), 0..3),
        created in any::<i64>(),
    ) {
        // Start from a real op so that most cases get past the shape checks.
        let k = crate::crypto::Keypair::from_secret_bytes(
            crate::crypto::KeyType::K256,
            &[5u8; 32],
        )
        .unwrap();
        let base = Operation::genesis(
            vec![k.did_key()],
            &k.did_key(),
            "a.example.com",
            "https://pds.example.com",
        )
        .unwrap();
        let mut obj = sign(base, &k).to_json().as_object().unwrap().clone();
        if ty > 0 {
            obj.insert("type".into(), json!(TYPES[ty]));
        }
        for (f, v) in fields {
            obj.insert(FIELDS[f].into(), v);
        }
        let v = Value::Object(obj);
        if let Ok(op) = SignedOp::from_json(&v) {
            let _ = op.to_json();
            let _ = op.check_size();
            let _ = verify_sig(&op, &["x".to_owned()]);
            let did = did_for_genesis(&op).unwrap_or_else(|_| "did:plc:x".into());
            let entry = AuditEntry {
                did: did.clone(),
                cid: op.cid_string(),
                operation: op.clone(),
                nullified: false,
                created_at_micros: created,
            };
            let _ = verify_audit_log(&did, &[entry.clone(), entry]);
            if let Some(state) = PlcState::from_op(&op) {
                let _ = document(&did, &state);
                if let Ok(cid) = crate::cid::parse(op.prev().unwrap_or(""))
                    && let Ok(upd) = Operation::update_from(&state, &cid.to_string()) {
                        let _ = upd.validate();
                    }
            }
        }
        let _ = AuditEntry::from_json(&json!({"operation": v, "did": "d", "cid": "c",
                                               "nullified": true, "createdAt": "x"}));
    }

    #[test]
    fn arbitrary_sigs_never_panic(sig in ".{0,100}") {
        let op = SignedOp::Tombstone {
            prev: "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq".into(),
            sig,
        };
        let key = "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc".to_owned();
        prop_assert!(verify_sig(&op, &[key]).is_err());
    }
}
