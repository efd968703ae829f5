//! `application/x-www-form-urlencoded`: query strings and form bodies, as name/value pairs
//! in order (names may repeat). `+` is a space; a `%` must be followed by two hex digits,
//! and the result must be UTF-8.

/// Decodes a whole query string or form body; `None` if any part is malformed.
pub fn decode_form(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Decodes one form component (`+` is a space).
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, true)
}

/// Decodes `%XX` escapes only (RFC 3986): a `+` stays a `+`, as OAuth scopes need for MIME
/// types such as `application/atom+xml`.
pub fn percent_decode_strict(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Encodes one component for a query string: unreserved characters stay, everything else
/// is `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_encodes() {
        let q = decode_form("a=1&b=x%2Fy&cids=1&cids=2&flag&sp=a+b").unwrap();
        assert_eq!(q[1], ("b".into(), "x/y".into()));
        assert_eq!(q.iter().filter(|(k, _)| k == "cids").count(), 2);
        assert_eq!(q[4], ("flag".into(), "".into()));
        assert_eq!(q[5].1, "a b");
        for bad in ["a=%zz", "a=%f", "a=%ff", "a=%+1"] {
            assert!(decode_form(bad).is_none(), "{bad}");
        }
        let s = "http://127.0.0.1:5/cb?x=1&y=é #";
        assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_decode_strict("a+b%23c").as_deref(), Some("a+b#c"));
        assert_eq!(percent_decode("a+b%23c").as_deref(), Some("a b#c"));
        assert!(percent_decode_strict("%e9").is_none(), "not UTF-8");
    }
}
