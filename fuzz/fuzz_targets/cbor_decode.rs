//! DAG-CBOR decoding: never panics, and whatever it accepts re-encodes to
//! the same bytes (there is exactly one encoding of each value).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = perch::cbor::decode(data) {
        assert_eq!(
            perch::cbor::encode(&v),
            data,
            "accepted a non-canonical encoding"
        );
        // The JSON form never fails to render.
        let _ = perch::cbor::to_json(&v);
    }
});
