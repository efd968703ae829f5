//! perch: a single-user AT Protocol Personal Data Server.
//!
//! See `ARCHITECTURE.md` for the module map and the invariants each layer
//! keeps. Layer 0 (pure protocol core): `cbor`, `cid`, `tid`, `syntax`,
//! `crypto`. Layer 1 (repository): `repo`. Layer 2 (storage & identity):
//! `identity`.

pub mod cbor;
pub mod cid;
pub mod crypto;
pub mod identity;
pub mod repo;
pub mod store;
pub mod syntax;
pub mod tid;
pub mod writer;
