//! Generic CID *string* syntax: a multibase prefix followed by characters of that base.
//!
//! This is deliberately structural. It does not decode the bytes and check the CID header,
//! because cid_syntax_valid.txt contains contrived strings (e.g. `mBcDxtdWx0aWhhc2g+`) that are
//! well-formed multibase but do not decode to a CIDv1 header. Code that needs a real CID (for
//! links and blobs) must decode it properly; this check is for the Lexicon `cid` string format.

use super::{SyntaxError, require_ascii};

const K: &str = "cid";

/// A CID is a few varints plus a multihash digest (at most 64 bytes for common hashes), so
/// anything much larger than this is not a CID.
const MAX_DECODED_BITS: usize = 256 * 8;
/// Version + codec + hash code + digest length: the smallest conceivable CID.
const MIN_DECODED_BITS: usize = 4 * 8;

struct Base {
    alphabet: &'static [u8],
    /// Lower bound on the bits one character carries, for the length bounds.
    bits_per_char: usize,
    /// `Some(n)`: '=' padding allowed at the end and the body is a multiple of `n` chars.
    padded_block: Option<usize>,
    /// Bodies of unpadded power-of-two bases must still be a whole number of bytes for these.
    whole_unit: Option<usize>,
}

const B32_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const B32_UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B32HEX_LOWER: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
const B32HEX_UPPER: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
const B58_BTC: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const B58_FLICKR: &[u8] = b"123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const fn base(
    alphabet: &'static [u8],
    bits_per_char: usize,
    padded_block: Option<usize>,
    whole_unit: Option<usize>,
) -> Base {
    Base {
        alphabet,
        bits_per_char,
        padded_block,
        whole_unit,
    }
}

/// The multibase table (ASCII prefixes only).
fn base_for(prefix: u8) -> Option<Base> {
    Some(match prefix {
        b'0' => base(b"01", 1, None, Some(8)),
        b'7' => base(b"01234567", 3, None, None),
        b'9' => base(b"0123456789", 3, None, None),
        b'f' => base(b"0123456789abcdef", 4, None, Some(2)),
        b'F' => base(b"0123456789ABCDEF", 4, None, Some(2)),
        b'v' => base(B32HEX_LOWER, 5, None, None),
        b'V' => base(B32HEX_UPPER, 5, None, None),
        b't' => base(B32HEX_LOWER, 5, Some(8), None),
        b'T' => base(B32HEX_UPPER, 5, Some(8), None),
        b'b' => base(B32_LOWER, 5, None, None),
        b'B' => base(B32_UPPER, 5, None, None),
        b'c' => base(B32_LOWER, 5, Some(8), None),
        b'C' => base(B32_UPPER, 5, Some(8), None),
        b'h' => base(b"ybndrfg8ejkmcpqxot1uwisza345h769", 5, None, None),
        b'k' => base(b"0123456789abcdefghijklmnopqrstuvwxyz", 5, None, None),
        b'K' => base(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 5, None, None),
        b'z' => base(B58_BTC, 5, None, None),
        b'Z' => base(B58_FLICKR, 5, None, None),
        b'm' => base(B64, 6, None, None),
        b'M' => base(B64, 6, Some(4), None),
        b'u' => base(B64_URL, 6, None, None),
        b'U' => base(B64_URL, 6, Some(4), None),
        _ => return None,
    })
}

/// Validates a CID string: multibase prefix, characters from that base's alphabet, sane
/// length. Legacy CIDv0 (`Qm...`, bare base58 without a prefix) is rejected.
pub fn validate_cid_string(s: &str) -> Result<(), SyntaxError> {
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    require_ascii(K, s)?;
    let Some((&prefix, body)) = s.as_bytes().split_first() else {
        return fail("CID is empty");
    };
    if prefix == b'Q' {
        return fail("CIDv0 (\"Qm...\") is not supported; use a CIDv1 string");
    }
    let Some(base) = base_for(prefix) else {
        return Err(SyntaxError::new(
            K,
            format!(
                "{:?} is not a supported multibase prefix",
                char::from(prefix)
            ),
        ));
    };
    let pad_ok = base.padded_block.is_some();
    if let Some(&c) = body
        .iter()
        .find(|&&c| !(base.alphabet.contains(&c) || (pad_ok && c == b'=')))
    {
        return Err(SyntaxError::new(
            K,
            format!(
                "{:?} is not a valid character for multibase prefix {:?}",
                char::from(c),
                char::from(prefix)
            ),
        ));
    }
    let data_len = body.iter().position(|&b| b == b'=').unwrap_or(body.len());
    if let Some(block) = base.padded_block {
        if body
            .get(data_len..)
            .is_some_and(|pad| pad.iter().any(|&b| b != b'='))
        {
            return fail("padding '=' may only appear at the end of a CID string");
        }
        if body.len() % block != 0 || body.len() - data_len >= block {
            return fail("padded CID string has the wrong amount of padding");
        }
    }
    if let Some(unit) = base.whole_unit
        && data_len % unit != 0
    {
        return fail("CID string does not encode a whole number of bytes");
    }
    let bits = data_len * base.bits_per_char;
    if bits < MIN_DECODED_BITS {
        return fail("CID string is too short");
    }
    if bits > MAX_DECODED_BITS {
        return fail("CID string is too long");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_atproto_cids() {
        assert!(
            validate_cid_string("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
                .is_ok()
        );
        assert!(
            validate_cid_string("bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy")
                .is_ok()
        );
    }

    #[test]
    fn rejects() {
        assert!(validate_cid_string("").is_err());
        assert!(validate_cid_string("b").is_err());
        assert!(validate_cid_string("bafy").is_err());
        assert!(validate_cid_string("bAFYREIE").is_err());
        assert!(validate_cid_string("f0").is_err());
        assert!(validate_cid_string(&format!("b{}", "a".repeat(1000))).is_err());
        assert!(validate_cid_string("Maaaa=a==").is_err());
        assert!(validate_cid_string("Maaaaaaaa====").is_err());
    }
}
