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
