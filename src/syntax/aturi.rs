//! AT-URIs in the restricted Lexicon form: `at://<handle|did>[/<nsid>[/<rkey>]]`.

use std::fmt;

use super::{
    SyntaxError, require_ascii, validate_at_identifier, validate_nsid, validate_record_key,
};

const K: &str = "at-uri";
const AT_URI_MAX_LEN: usize = 8192;

/// A parsed AT-URI. Components are kept exactly as written (no case normalisation), so
/// `parse(s)?.to_string() == s` for every valid `s`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AtUri {
    /// Handle or DID.
    pub authority: String,
    /// Collection NSID.
    pub collection: Option<String>,
    /// Record key; only meaningful when `collection` is set.
    pub rkey: Option<String>,
}

impl AtUri {
    pub fn parse(s: &str) -> Result<AtUri, SyntaxError> {
        let fail = |m: &str| Err(SyntaxError::new(K, m));
        require_ascii(K, s)?;
        if s.len() > AT_URI_MAX_LEN {
            return fail("AT-URI is longer than 8192 characters");
        }
        let Some(rest) = s.strip_prefix("at://") else {
            return fail("AT-URI must start with \"at://\"");
        };
        // Checked up front only for a clearer message: none of the components allow these
        // characters, so they would be rejected below anyway.
        if rest.contains('?') {
            return fail("AT-URI may not have a query part");
        }
        if rest.contains('#') {
            return fail("AT-URI may not have a fragment");
        }
        if rest.bytes().any(|b| !b.is_ascii_graphic()) {
            return fail("AT-URI may not contain whitespace or control characters");
        }
        let mut parts = rest.split('/');
        let authority = parts.next().unwrap_or("");
        let collection = parts.next();
        let rkey = parts.next();
        if parts.next().is_some() {
            return fail("AT-URI path has more than two segments");
        }
        if authority.is_empty() {
            return fail("AT-URI authority is empty");
        }
        validate_at_identifier(authority)
            .map_err(|e| SyntaxError::new(K, format!("authority: {}", e.message)))?;
        if let Some(c) = collection {
            if c.is_empty() {
                return fail("AT-URI has an empty path segment (trailing or double '/')");
            }
            validate_nsid(c)
                .map_err(|e| SyntaxError::new(K, format!("collection: {}", e.message)))?;
        }
        if let Some(r) = rkey {
            if r.is_empty() {
                return fail("AT-URI has an empty path segment (trailing or double '/')");
            }
            validate_record_key(r)
                .map_err(|e| SyntaxError::new(K, format!("record key: {}", e.message)))?;
        }
        Ok(AtUri {
            authority: authority.to_string(),
            collection: collection.map(str::to_string),
            rkey: rkey.map(str::to_string),
        })
    }
}

impl fmt::Display for AtUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at://{}", self.authority)?;
        if let Some(c) = &self.collection {
            write!(f, "/{c}")?;
            // An rkey without a collection has no textual form; it is dropped rather than
            // producing a URI that would not parse back.
            if let Some(r) = &self.rkey {
                write!(f, "/{r}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for AtUri {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AtUri::parse(s)
    }
}

/// Validates an AT-URI in the restricted Lexicon form.
pub fn validate_at_uri(s: &str) -> Result<(), SyntaxError> {
    AtUri::parse(s).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "at://did:plc:asdf123",
            "at://alice.test/app.bsky.feed.post",
            "at://did:plc:asdf123/app.bsky.feed.post/3k2a4bcdefg22",
        ] {
            let u = AtUri::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
        }
        let u = AtUri::parse("at://did:plc:x/app.bsky.feed.post/self").unwrap();
        assert_eq!(u.authority, "did:plc:x");
        assert_eq!(u.collection.as_deref(), Some("app.bsky.feed.post"));
        assert_eq!(u.rkey.as_deref(), Some("self"));
    }

    #[test]
    fn messages() {
        let msg = |s| AtUri::parse(s).unwrap_err().message;
        assert!(msg("at://did:plc:x?q").contains("query"));
        assert!(msg("at://did:plc:x/").contains("empty path segment"));
        assert!(msg("at://did:plc:x/a.b.c/d/e").contains("more than two"));
        assert!(msg("at://did:plc:x/a.b/c").starts_with("collection:"));
    }
}
