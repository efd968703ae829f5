//! The official data-model vectors: JSON → DAG-CBOR bytes → CID, byte for
//! byte, and the valid/invalid JSON sets.

use base64::Engine;
use perch::cbor;

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

#[test]
fn fixtures_encode_byte_identical() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let fixtures = super::read_json(&dir.join("data-model/data-model-fixtures.json"));
    let fixtures = fixtures.as_array().unwrap();
    assert!(!fixtures.is_empty());
    for f in fixtures {
        let value = cbor::from_json(&f["json"]).unwrap();
        let (cid, bytes) = cbor::encode_with_cid(&value);
        let expected = b64(f["cbor_base64"].as_str().unwrap());
        assert_eq!(bytes, expected, "encoding of {}", f["json"]);
        assert_eq!(cid.to_string(), f["cid"].as_str().unwrap());
        // And back: strict decode accepts it and gives the same JSON.
        let decoded = cbor::decode(&expected).unwrap();
        assert_eq!(decoded, value);
        assert_eq!(cbor::to_json(&decoded), f["json"]);
    }
}

#[test]
fn valid_json_accepted_invalid_rejected() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let valid = super::read_json(&dir.join("data-model/data-model-valid.json"));
    let invalid = super::read_json(&dir.join("data-model/data-model-invalid.json"));
    let (valid, invalid) = (valid.as_array().unwrap(), invalid.as_array().unwrap());
    assert!(!valid.is_empty() && !invalid.is_empty());
    for v in valid {
        let r = cbor::record_from_json(&v["json"]);
        assert!(r.is_ok(), "{}: {r:?}", v["note"]);
        // Accepted values encode canonically and decode back unchanged.
        let value = r.unwrap();
        assert_eq!(cbor::decode(&cbor::encode(&value)).unwrap(), value);
    }
    for v in invalid {
        assert!(
            cbor::record_from_json(&v["json"]).is_err(),
            "accepted invalid: {}",
            v["note"]
        );
    }
}
