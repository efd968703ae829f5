//! Identity: DIDs and the data behind them.
//!
//! `plc` builds, signs and verifies did:plc operations and audit logs and renders the
//! resulting DID document; it is pure (no network, no clock, no randomness of its own).
//! `resolve` fetches other identities' DID documents and handles through `net`.

pub mod dns;
pub mod plc;
pub mod resolve;
