//! Identity: DIDs and the data behind them.
//!
//! `plc` builds, signs and verifies did:plc operations and audit logs and renders the
//! resulting DID document. Everything here is pure: no network, no clock (times are
//! passed in), no randomness of its own.

pub mod plc;
