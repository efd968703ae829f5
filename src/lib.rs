//! perch: a single-user AT Protocol Personal Data Server.
//!
//! See `ARCHITECTURE.md` for the module map and the invariants each layer
//! keeps. Layer 0 (pure protocol core): `cbor`, `cid`, `tid`, `syntax`,
//! `crypto`. Layer 1 (repository): `repo`. Layer 2 (storage & identity):
//! `identity`.

pub mod account;
pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod blobs;
pub mod cbor;
pub mod cid;
pub mod cli;
pub mod config;
pub mod crawl;
pub mod crypto;
pub mod firstboot;
pub mod fsutil;
pub mod health;
pub mod http;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod notify;
pub mod repo;
pub mod store;
pub mod syntax;
pub mod tid;
pub mod tls;
pub mod writer;
pub mod xrpc;
