//! String-format validators for the atproto identifier and Lexicon string formats.
//!
//! Every validator rejects non-ASCII input before looking at individual bytes, so the
//! byte-level parsing below never slices inside a multi-byte character and never panics.
//!
//! Where the written spec and the interop vectors disagree, the vectors win here because they
//! are what other implementations test against; each such spot is called out in a comment.

mod aturi;
mod cid;
mod datetime;
pub mod form;
mod ident;
mod language;

use std::fmt;

pub use aturi::{AtUri, validate_at_uri};
pub use cid::validate_cid_string;
pub use datetime::{
    format_datetime_millis, format_rfc5322, parse_datetime_micros, validate_datetime,
};
pub use ident::{
    is_disallowed_tld, normalize_handle, validate_at_identifier, validate_did, validate_handle,
    validate_nsid, validate_record_key, validate_tid, validate_uri,
};
pub use language::validate_language;

/// A string did not match the format it was supposed to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Which format was being checked, e.g. `"did"`, `"handle"`, `"at-uri"`.
    pub kind: &'static str,
    /// Human-readable reason, suitable for an XRPC `InvalidRequest` message.
    pub message: String,
}

impl SyntaxError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        SyntaxError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.kind, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Shared guard: every format here is pure ASCII, and checking that first is what makes the
/// byte indexing in the individual parsers safe.
pub(crate) fn require_ascii(kind: &'static str, s: &str) -> Result<(), SyntaxError> {
    if s.is_ascii() {
        Ok(())
    } else {
        Err(SyntaxError::new(kind, "contains non-ASCII characters"))
    }
}

pub fn is_valid_did(s: &str) -> bool {
    validate_did(s).is_ok()
}

pub fn is_valid_handle(s: &str) -> bool {
    validate_handle(s).is_ok()
}

pub fn is_valid_at_identifier(s: &str) -> bool {
    validate_at_identifier(s).is_ok()
}

pub fn is_valid_nsid(s: &str) -> bool {
    validate_nsid(s).is_ok()
}

pub fn is_valid_record_key(s: &str) -> bool {
    validate_record_key(s).is_ok()
}

pub fn is_valid_at_uri(s: &str) -> bool {
    validate_at_uri(s).is_ok()
}

pub fn is_valid_tid(s: &str) -> bool {
    validate_tid(s).is_ok()
}

pub fn is_valid_datetime(s: &str) -> bool {
    validate_datetime(s).is_ok()
}

pub fn is_valid_language(s: &str) -> bool {
    validate_language(s).is_ok()
}

pub fn is_valid_cid_string(s: &str) -> bool {
    validate_cid_string(s).is_ok()
}

pub fn is_valid_uri(s: &str) -> bool {
    validate_uri(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_kind() {
        let e = validate_handle("-a.test").unwrap_err();
        assert_eq!(e.kind, "handle");
        assert!(e.to_string().starts_with("invalid handle: "), "{e}");
    }

    #[test]
    fn non_ascii_never_panics() {
        let inputs = [
            "é",
            "did:é",
            "at://é",
            "at://a.b/é",
            "2022-01-01T00:00:00é",
            "ja-é",
            "bé",
            "x:é",
            "💩",
            "a.💩",
            "3jzfcijpj2z2💩",
        ];
        for s in inputs {
            assert!(!is_valid_did(s));
            assert!(!is_valid_handle(s));
            assert!(!is_valid_nsid(s));
            assert!(!is_valid_record_key(s));
            assert!(!is_valid_at_uri(s));
            assert!(!is_valid_tid(s));
            assert!(!is_valid_datetime(s));
            assert!(!is_valid_language(s));
            assert!(!is_valid_cid_string(s));
            assert!(!is_valid_uri(s));
        }
    }

    #[test]
    fn handle_messages() {
        let msg = |s| validate_handle(s).unwrap_err().message;
        assert_eq!(msg("-a.test"), "handle label may not start with a hyphen");
        assert_eq!(msg("a-.test"), "handle label may not end with a hyphen");
        assert_eq!(
            msg("a.0"),
            "handle top-level label may not start with a digit"
        );
    }

    #[test]
    fn handle_helpers() {
        assert_eq!(normalize_handle("Alice.BSKY.Social"), "alice.bsky.social");
        assert!(is_disallowed_tld("laptop.local"));
        assert!(is_disallowed_tld("x.ONION"));
        assert!(is_disallowed_tld("x.onion."));
        assert!(!is_disallowed_tld("alice.test"));
        assert!(!is_disallowed_tld("localhost.com"));
    }
}
