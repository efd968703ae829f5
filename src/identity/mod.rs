//! Identity: DIDs and the data behind them.
//!
//! `plc` builds, signs and verifies did:plc operations and audit logs and renders the
//! resulting DID document; it is pure (no network, no clock, no randomness of its own).
//! `resolve` fetches other identities' DID documents and handles through `net`;
//! `handles` caches and bounds handle resolution for `resolveHandle`.

pub mod dns;
pub mod handles;
pub mod plc;
pub mod resolve;

/// The `did:web` for this host; in development the port is part of it
/// (`did:web:localhost%3A2583`), as the did:web method allows for localhost.
pub fn web_did(hostname: &str, port: u16, dev: bool) -> String {
    if dev && hostname == "localhost" && port != 80 && port != 443 {
        format!("did:web:{hostname}%3A{port}")
    } else {
        format!("did:web:{hostname}")
    }
}
