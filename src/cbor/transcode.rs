//! DAG-CBOR straight to atproto's JSON text, for reads that pass stored records through
//! (listRecords, getRecord): the checks of [`decode`](super::decode), the JSON of
//! `to_json(decode(x))` (keys in the CBOR order, which is the reference PDS's), and
//! neither value tree in between.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ciborium_ll::{Decoder, Header, simple};

use super::decode::{DecodeError, Limits, Strict};
use super::{Ipld, key_order};

/// Appends the JSON form of the one DAG-CBOR item that is all of `bytes` to `out`. On an
/// error `out` holds part of the item: drop it.
pub fn to_json_text(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let limits = Limits::default();
    if bytes.len() > limits.max_size {
        return Err(DecodeError::Limit(0, "input too large"));
    }
    let mut d = Strict {
        dec: Decoder::from(bytes),
        total: bytes.len(),
        limits: &limits,
    };
    let mut scratch = Vec::new();
    d.json(0, out, &mut scratch)?;
    let end = d.dec.offset();
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes(end));
    }
    Ok(())
}

/// A JSON string literal of `s`, escaped as serde_json escapes.
pub fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short == 0 {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

impl Strict<'_, '_> {
    /// One item as JSON; `scratch` holds byte and text payloads on their way.
    fn json(
        &mut self,
        depth: usize,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        use std::io::Write as _;
        let (at, h) = self.head()?;
        match h {
            Header::Positive(n) => {
                let n = i64::try_from(n).map_err(|_| DecodeError::IntegerRange(at))?;
                let _ = write!(out, "{n}");
            }
            Header::Negative(n) => {
                let n = i64::try_from(n).map_err(|_| DecodeError::IntegerRange(at))?;
                let _ = write!(out, "{}", -1 - n);
            }
            Header::Simple(simple::FALSE) => out.extend_from_slice(b"false"),
            Header::Simple(simple::TRUE) => out.extend_from_slice(b"true"),
            Header::Simple(_) => out.extend_from_slice(b"null"),
            Header::Bytes(Some(n)) => {
                self.payload_into(at, n, scratch)?;
                out.extend_from_slice(b"{\"$bytes\":\"");
                out.extend_from_slice(STANDARD_NO_PAD.encode(&scratch[..]).as_bytes());
                out.extend_from_slice(b"\"}");
            }
            Header::Text(Some(n)) => {
                self.payload_into(at, n, scratch)?;
                let s = std::str::from_utf8(scratch).map_err(|_| DecodeError::Utf8(at))?;
                json_string(s, out);
            }
            Header::Tag(42) => {
                let Ipld::Link(c) = self.link()? else {
                    return Err(DecodeError::Unsupported(at, "tag 42 without a link"));
                };
                out.extend_from_slice(b"{\"$link\":\"");
                out.extend_from_slice(c.to_string().as_bytes());
                out.extend_from_slice(b"\"}");
            }
            Header::Tag(_) => return Err(DecodeError::Unsupported(at, "tag other than 42")),
            Header::Array(Some(n)) => {
                self.container_len(at, n, depth)?;
                out.push(b'[');
                for i in 0..n {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.json(depth + 1, out, scratch)?;
                }
                out.push(b']');
            }
            Header::Map(Some(n)) => {
                self.container_len(at, n, depth)?;
                out.push(b'{');
                let mut prev = String::new();
                for i in 0..n {
                    let (kat, kh) = self.head()?;
                    let Header::Text(Some(len)) = kh else {
                        return Err(DecodeError::Unsupported(kat, "map key is not text"));
                    };
                    if len > self.limits.max_key_len {
                        return Err(DecodeError::Limit(kat, "map key too long"));
                    }
                    self.payload_into(kat, len, scratch)?;
                    let key = std::str::from_utf8(scratch).map_err(|_| DecodeError::Utf8(kat))?;
                    if i > 0 {
                        if key_order(&prev, key) != std::cmp::Ordering::Less {
                            return Err(DecodeError::NonCanonical(
                                kat,
                                "map keys duplicated or out of order",
                            ));
                        }
                        out.push(b',');
                    }
                    json_string(key, out);
                    out.push(b':');
                    prev.clear();
                    prev.push_str(key);
                    self.json(depth + 1, out, scratch)?;
                }
                out.push(b'}');
            }
            // `head` already rejected every other form.
            _ => return Err(DecodeError::Unsupported(at, "unexpected head")),
        }
        Ok(())
    }
}
