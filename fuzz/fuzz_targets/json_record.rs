//! JSON → record (the createRecord path): never panics; an accepted record
//! encodes to DAG-CBOR that decodes back to itself and to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(v) = perch::cbor::from_json(&json) {
        let bytes = perch::cbor::encode(&v);
        let back = perch::cbor::decode(&bytes).expect("our own encoding decodes");
        assert_eq!(back, v);
        assert_eq!(
            perch::cbor::from_json(&perch::cbor::to_json(&v)).ok(),
            Some(v)
        );
    }
    let _ = perch::cbor::record_from_json(&json);
});
