//! DIDs, handles, NSIDs, record keys, TIDs and generic URIs.

use super::{SyntaxError, require_ascii};

const DID_MAX_LEN: usize = 2048;
const HANDLE_MAX_LEN: usize = 253;
const LABEL_MAX_LEN: usize = 63;
const NSID_MAX_LEN: usize = 317;
const RECORD_KEY_MAX_LEN: usize = 512;
const URI_MAX_LEN: usize = 8192;

/// TLDs that are syntactically fine but must never be registered or resolved.
const DISALLOWED_TLDS: [&str; 8] = [
    "alt",
    "arpa",
    "example",
    "internal",
    "invalid",
    "local",
    "localhost",
    "onion",
];

/// The base32-sortable alphabet (same as in `crate::tid`).
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// Generic DID syntax, any method: `did:<method>:<identifier>`.
pub fn validate_did(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "did";
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    require_ascii(K, s)?;
    if s.len() > DID_MAX_LEN {
        return fail("DID is longer than 2048 characters");
    }
    // The prefix is case-sensitive: `DID:` is a different (invalid) string, not a variant.
    let Some(rest) = s.strip_prefix("did:") else {
        return fail("DID must start with \"did:\"");
    };
    let Some((method, ident)) = rest.split_once(':') else {
        return fail("DID must have a method and an identifier separated by ':'");
    };
    if method.is_empty() {
        return fail("DID method is empty");
    }
    if !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return fail("DID method must be lower-case letters only");
    }
    if ident.is_empty() {
        return fail("DID identifier is empty");
    }
    if let Some(c) = ident
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '%' | '-')))
    {
        return Err(SyntaxError::new(
            K,
            format!("DID identifier contains disallowed character {c:?}"),
        ));
    }
    if ident.ends_with(':') || ident.ends_with('%') {
        return fail("DID may not end with ':' or '%'");
    }
    Ok(())
}

/// Handle (DNS hostname) syntax. Case-insensitive; see [`normalize_handle`].
pub fn validate_handle(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "handle";
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    if s.is_empty() {
        return fail("handle is empty");
    }
    require_ascii(K, s)?;
    if s.len() > HANDLE_MAX_LEN {
        return fail("handle is longer than 253 characters");
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in s.split('.') {
        labels += 1;
        check_dns_label(K, "handle", label)?;
        last = label;
    }
    if labels < 2 {
        return fail("handle must have at least two labels separated by '.'");
    }
    // A numeric TLD would make IPv4 literals such as 127.0.0.1 look like handles.
    if last.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return fail("handle top-level label may not start with a digit");
    }
    Ok(())
}

/// One hostname label: 1-63 of `[A-Za-z0-9-]`, no hyphen at either end.
fn check_dns_label(kind: &'static str, what: &str, label: &str) -> Result<(), SyntaxError> {
    let fail = |m: String| Err(SyntaxError::new(kind, m));
    if label.is_empty() {
        return fail(format!(
            "{what} has an empty label (leading, trailing or double '.')"
        ));
    }
    if label.len() > LABEL_MAX_LEN {
        return fail(format!("{what} label is longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return fail(format!("{what} contains disallowed character {c:?}"));
    }
    if label.starts_with('-') {
        return fail(format!("{what} label may not start with a hyphen"));
    }
    if label.ends_with('-') {
        return fail(format!("{what} label may not end with a hyphen"));
    }
    Ok(())
}

/// Lower-cases a handle; handles compare case-insensitively and are stored lower-case.
pub fn normalize_handle(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// True if the handle's TLD is one that must never be registered or resolved. This is a
/// policy check separate from syntax: such handles are syntactically valid.
pub fn is_disallowed_tld(handle: &str) -> bool {
    let trimmed = handle.strip_suffix('.').unwrap_or(handle);
    let tld = trimmed.rsplit('.').next().unwrap_or(trimmed);
    DISALLOWED_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t))
}

/// `at-identifier`: a handle or a DID.
pub fn validate_at_identifier(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "at-identifier";
    // Handles cannot contain ':', so the prefix picks the only alternative that could match
    // and lets the error message explain what is wrong with it.
    let result = if s.starts_with("did:") {
        validate_did(s)
    } else {
        validate_handle(s)
    };
    result.map_err(|e| SyntaxError::new(K, format!("not a valid {}: {}", e.kind, e.message)))
}

/// NSID: reversed-domain authority (at least two segments) plus a name segment.
pub fn validate_nsid(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "nsid";
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    if s.is_empty() {
        return fail("NSID is empty");
    }
    require_ascii(K, s)?;
    // The spec also caps the authority at 253 characters, but nsid_syntax_valid.txt has a
    // 283-character authority (287 total), so only the overall 317 limit is enforced.
    if s.len() > NSID_MAX_LEN {
        return fail("NSID is longer than 317 characters");
    }
    let segments: Vec<&str> = s.split('.').collect();
    let Some((name, authority)) = segments.split_last() else {
        return fail("NSID is empty");
    };
    if segments.len() < 3 {
        return fail("NSID must have at least three segments");
    }
    for seg in authority {
        check_dns_label(K, "NSID domain authority", seg)?;
    }
    if authority
        .first()
        .and_then(|seg| seg.as_bytes().first())
        .is_some_and(u8::is_ascii_digit)
    {
        return fail("NSID first segment may not start with a digit");
    }
    if name.is_empty() {
        return fail("NSID name segment is empty");
    }
    if name.len() > LABEL_MAX_LEN {
        return fail("NSID name segment is longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return fail("NSID name segment may only contain letters and digits");
    }
    if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return fail("NSID name segment may not start with a digit");
    }
    Ok(())
}

/// Record key: 1-512 of `[A-Za-z0-9.\-_:~]`, but never `.` or `..`.
pub fn validate_record_key(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "record-key";
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    if s.is_empty() {
        return fail("record key is empty");
    }
    require_ascii(K, s)?;
    if s.len() > RECORD_KEY_MAX_LEN {
        return fail("record key is longer than 512 characters");
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '~')))
    {
        return Err(SyntaxError::new(
            K,
            format!("record key contains disallowed character {c:?}"),
        ));
    }
    // These would be path traversal when the key becomes an MST path segment.
    if s == "." || s == ".." {
        return fail("record key may not be \".\" or \"..\"");
    }
    Ok(())
}

/// TID string syntax: 13 base32-sortable characters, first one from `234567abcdefghij`.
///
/// This is the spec's regex. Note it admits a first character of `c`..`j`, which encodes
/// bit 63 set; [`crate::tid::Tid::parse`] additionally rejects that.
pub fn validate_tid(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "tid";
    require_ascii(K, s)?;
    let b = s.as_bytes();
    if b.len() != 13 {
        return Err(SyntaxError::new(K, "TID must be exactly 13 characters"));
    }
    if let Some(&c) = b.iter().find(|c| !TID_ALPHABET.contains(c)) {
        return Err(SyntaxError::new(
            K,
            format!(
                "TID contains {:?}, which is not in the base32-sortable alphabet",
                char::from(c)
            ),
        ));
    }
    // The first character only carries 4 bits (13 * 5 = 65 > 64).
    if b.first().is_some_and(|c| !b"234567abcdefghij".contains(c)) {
        return Err(SyntaxError::new(
            K,
            "TID first character must be one of 234567abcdefghij",
        ));
    }
    Ok(())
}

/// Generic URI (Lexicon `uri` format): RFC 3986 scheme, ':', then a non-empty remainder made
/// of printable ASCII without whitespace. At most 8 KiB.
pub fn validate_uri(s: &str) -> Result<(), SyntaxError> {
    const K: &str = "uri";
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    require_ascii(K, s)?;
    if s.len() > URI_MAX_LEN {
        return fail("URI is longer than 8192 characters");
    }
    if s.bytes().any(|b| !b.is_ascii_graphic()) {
        return fail("URI may not contain whitespace or control characters");
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return fail("URI must have a scheme followed by ':'");
    };
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return fail("URI scheme must start with a letter");
    }
    if !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return fail("URI scheme may only contain letters, digits, '+', '-' and '.'");
    }
    if rest.is_empty() {
        return fail("URI has nothing after the scheme");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_edges() {
        assert!(validate_did("did:plc:7iza6de2dwap2sbkpav7c6c6").is_ok());
        assert!(validate_did("did:plc:").is_err());
        assert!(validate_did("did::x").is_err());
        let long = format!("did:m:{}", "v".repeat(2042));
        assert_eq!(long.len(), 2048);
        assert!(validate_did(&long).is_ok());
        assert!(validate_did(&format!("{long}v")).is_err());
    }

    #[test]
    fn nsid_edges() {
        assert!(validate_nsid("com.example.fooBar").is_ok());
        assert!(validate_nsid("com.example.fooBar.2").is_err());
        assert!(validate_nsid("com.example.foo-bar").is_err());
        assert!(validate_nsid("com..foo").is_err());
        assert!(validate_nsid("com.example.").is_err());
    }

    #[test]
    fn uri_edges() {
        assert!(validate_uri("a:b").is_ok());
        assert!(validate_uri("a+b.c-d:x").is_ok());
        assert!(validate_uri(":x").is_err());
        assert!(validate_uri("a b:x").is_err());
        assert!(validate_uri("a:\tb").is_err());
    }

    #[test]
    fn tid_first_char() {
        assert!(validate_tid("j222222222222").is_ok());
        assert!(validate_tid("k222222222222").is_err());
    }
}
