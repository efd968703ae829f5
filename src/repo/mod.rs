//! The repository: Merkle Search Tree, signed commits, CAR files and proofs.
//!
//! Pure and synchronous: everything here works against the `BlockSource`
//! trait and never touches SQLite, the network or the clock. Time (as a
//! TID) and keys are passed in by the caller.

pub mod blocks;
pub mod build;
pub mod cache;
pub mod car;
pub mod commit;
pub mod error;
pub mod export;
pub mod mst;

pub use blocks::{BlockSource, MemoryBlocks};
pub use error::RepoError;
