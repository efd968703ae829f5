//! Keys, signatures and JWTs as atproto uses them.
//!
//! Everything here is pure: no clock reads and no randomness of its own. Callers pass
//! the current time and an RNG, which keeps the code deterministic under test.

pub mod jwk;
pub mod jwt;
pub mod keys;

pub use jwt::{Jwt, MAX_TOKEN_LEN, check_times, sign_es, sign_hs256};
pub use keys::{CryptoError, KeyType, Keypair, PublicKey};

#[cfg(test)]
mod jwt_tests;
#[cfg(test)]
mod keys_tests;

/// Whether two secrets are equal, in time that depends on their length only: no early
/// exit for an attacker to time byte by byte.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod same_secret_tests {
    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(super::same_secret(b"abc", b"abc"));
        assert!(!super::same_secret(b"abc", b"abd"));
        assert!(!super::same_secret(b"abc", b"abcd"));
        assert!(super::same_secret(b"", b""));
    }
}
