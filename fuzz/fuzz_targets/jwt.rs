//! JWT decoding and verification: never panics, and nothing verifies under
//! a key it was not signed with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch::crypto::{Jwt, KeyType, Keypair, check_times};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let secret = [7u8; 32];
    let key = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).unwrap();
    if let Ok(jwt) = Jwt::decode(token) {
        let _ = jwt.alg();
        let _ = jwt.typ();
        let _ = check_times(&jwt.claims, 1_700_000_000, 30);
        assert!(jwt.verify_hs256(&secret).is_err(), "forged HS256 verified");
        assert!(
            jwt.verify_es(&key.public_key()).is_err(),
            "forged ES256K verified"
        );
    }
    assert!(
        perch::auth::verify_access(&secret, token, "did:web:pds.example", 1_700_000_000).is_err()
    );
    let _ = perch::auth::verify_refresh(&secret, token, "did:web:pds.example", 1_700_000_000, true);
});
