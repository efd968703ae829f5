//! perch: a single-user AT Protocol Personal Data Server.
//!
//! See `ARCHITECTURE.md` for the module map and the invariants each layer
//! keeps (checked by `tests/it/tidy.rs`). Layer 0 (pure protocol core):
//! `cbor`, `cid`, `tid`, `syntax`, `crypto`, `clock`. Layer 1: `repo`,
//! `lexicon`. Layer 2 (storage & identity): `store`, `blobs`, `health`,
//! `keys`, `fsutil`, `identity`, `net`, `mail`, `auth`, `addr`, `hasher`,
//! `config`, `metrics`. Layer 3 (services): `writer`, `firehose`, `account`,
//! `uploads`, `migrate`, `federation`, `tls`, `notify`, `backup`,
//! `firstboot`, `oauth`. `app` is the
//! composition root. Layer 4 (faces): `xrpc`, `api`, `web`, `http`, `cli`.

pub mod account;
pub mod addr;
pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod blobs;
pub mod cbor;
pub mod cid;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod federation;
pub mod firehose;
pub mod firstboot;
pub mod fsutil;
pub mod hasher;
pub mod health;
pub mod http;
pub mod identity;
pub mod keys;
pub mod lexicon;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod notify;
pub mod oauth;
pub mod progress;
pub mod repo;
pub mod store;
pub mod syntax;
pub mod tid;
pub mod tls;
pub mod uploads;
pub mod web;
pub mod writer;
pub mod xrpc;
