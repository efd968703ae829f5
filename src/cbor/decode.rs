//! Strict DAG-CBOR decoder. It accepts exactly the canonical encoding the
//! writer produces, and bounds every allocation by the bytes actually present
//! so a tiny hostile input cannot ask for gigabytes.

use std::collections::BTreeMap;

use ciborium_ll::{Decoder, Header, simple};
use thiserror::Error;

use super::{Ipld, key_order};
use crate::cid::{self, MAX_CID_BYTES};

/// Resource bounds for untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Nested arrays/maps allowed (the top-level container counts as 1).
    pub max_depth: usize,
    /// Elements in one array or entries in one map.
    pub max_container_len: usize,
    /// Bytes in one map key.
    pub max_key_len: usize,
    /// Bytes in the whole input.
    pub max_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: super::MAX_DEPTH,
            max_container_len: 128 * 1024,
            max_key_len: 8192,
            max_size: 5 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("input ends early at byte {0}")]
    Truncated(usize),
    #[error("trailing bytes after the item at byte {0}")]
    TrailingBytes(usize),
    #[error("non-canonical encoding at byte {0}: {1}")]
    NonCanonical(usize, &'static str),
    #[error("unsupported CBOR at byte {0}: {1}")]
    Unsupported(usize, &'static str),
    #[error("integer out of the signed 64-bit range at byte {0}")]
    IntegerRange(usize),
    #[error("invalid UTF-8 in a text string at byte {0}")]
    Utf8(usize),
    #[error("invalid CID link at byte {0}: {1}")]
    Cid(usize, String),
    #[error("limit exceeded at byte {0}: {1}")]
    Limit(usize, &'static str),
}

/// Decode one canonical item spanning all of `bytes`, with default limits.
pub fn decode(bytes: &[u8]) -> Result<Ipld, DecodeError> {
    decode_with(bytes, &Limits::default())
}

pub fn decode_with(bytes: &[u8], limits: &Limits) -> Result<Ipld, DecodeError> {
    if bytes.len() > limits.max_size {
        return Err(DecodeError::Limit(0, "input too large"));
    }
    let mut d = Strict {
        dec: Decoder::from(bytes),
        total: bytes.len(),
        limits,
    };
    let v = d.value(0)?;
    let end = d.dec.offset();
    if end != bytes.len() {
        return Err(DecodeError::TrailingBytes(end));
    }
    Ok(v)
}

/// Bytes a head takes in its shortest form for argument `arg`.
fn minimal_head_len(arg: u64) -> usize {
    match arg {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The strict reader: `decode` builds an `Ipld` with it, `transcode` writes JSON.
pub(super) struct Strict<'a, 'l> {
    pub(super) dec: Decoder<&'a [u8]>,
    pub(super) total: usize,
    pub(super) limits: &'l Limits,
}

impl Strict<'_, '_> {
    fn remaining(&mut self) -> usize {
        self.total - self.dec.offset()
    }

    pub(super) fn head(&mut self) -> Result<(usize, Header), DecodeError> {
        let at = self.dec.offset();
        let h = self.dec.pull().map_err(|e| match e {
            ciborium_ll::Error::Io(_) => DecodeError::Truncated(at),
            ciborium_ll::Error::Syntax(_) => DecodeError::Unsupported(at, "reserved head"),
        })?;
        let used = self.dec.offset() - at;
        let arg = match h {
            Header::Positive(n) | Header::Negative(n) | Header::Tag(n) => n,
            Header::Bytes(Some(n))
            | Header::Text(Some(n))
            | Header::Array(Some(n))
            | Header::Map(Some(n)) => n as u64,
            Header::Bytes(None) | Header::Text(None) | Header::Array(None) | Header::Map(None) => {
                return Err(DecodeError::Unsupported(at, "indefinite length"));
            }
            Header::Break => return Err(DecodeError::Unsupported(at, "break code")),
            Header::Float(_) => return Err(DecodeError::Unsupported(at, "floats are not allowed")),
            Header::Simple(s) => {
                if used != 1 || !(simple::FALSE..=simple::NULL).contains(&s) {
                    return Err(DecodeError::Unsupported(at, "simple value"));
                }
                return Ok((at, h));
            }
        };
        if used != minimal_head_len(arg) {
            return Err(DecodeError::NonCanonical(at, "head not in shortest form"));
        }
        Ok((at, h))
    }

    fn payload(&mut self, at: usize, len: usize) -> Result<Vec<u8>, DecodeError> {
        let mut buf = Vec::new();
        self.payload_into(at, len, &mut buf)?;
        Ok(buf)
    }

    /// The next `len` bytes into `buf` (replacing what it held).
    pub(super) fn payload_into(
        &mut self,
        at: usize,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated(at));
        }
        buf.clear();
        buf.resize(len, 0);
        ciborium_io::Read::read_exact(&mut self.dec, buf).map_err(|_| DecodeError::Truncated(at))
    }

    fn text(&mut self, at: usize, len: usize) -> Result<String, DecodeError> {
        let raw = self.payload(at, len)?;
        String::from_utf8(raw).map_err(|_| DecodeError::Utf8(at))
    }

    pub(super) fn container_len(
        &mut self,
        at: usize,
        n: usize,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(DecodeError::Limit(at, "nesting too deep"));
        }
        if n > self.limits.max_container_len {
            return Err(DecodeError::Limit(at, "container too long"));
        }
        // Every element takes at least one byte, so a count beyond the
        // remaining input is a lie we can reject before allocating.
        if n > self.remaining() {
            return Err(DecodeError::Truncated(at));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Ipld, DecodeError> {
        let (at, h) = self.head()?;
        Ok(match h {
            Header::Positive(n) => {
                Ipld::Integer(i64::try_from(n).map_err(|_| DecodeError::IntegerRange(at))?)
            }
            Header::Negative(n) => {
                let n = i64::try_from(n).map_err(|_| DecodeError::IntegerRange(at))?;
                Ipld::Integer(-1 - n)
            }
            Header::Simple(simple::FALSE) => Ipld::Bool(false),
            Header::Simple(simple::TRUE) => Ipld::Bool(true),
            Header::Simple(_) => Ipld::Null,
            Header::Bytes(Some(n)) => Ipld::Bytes(self.payload(at, n)?),
            Header::Text(Some(n)) => Ipld::String(self.text(at, n)?),
            Header::Tag(42) => self.link()?,
            Header::Tag(_) => return Err(DecodeError::Unsupported(at, "tag other than 42")),
            Header::Array(Some(n)) => {
                self.container_len(at, n, depth)?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ipld::List(items)
            }
            Header::Map(Some(n)) => {
                self.container_len(at, n, depth)?;
                let mut map = BTreeMap::new();
                let mut prev: Option<String> = None;
                for _ in 0..n {
                    let (kat, kh) = self.head()?;
                    let key = match kh {
                        Header::Text(Some(len)) => {
                            if len > self.limits.max_key_len {
                                return Err(DecodeError::Limit(kat, "map key too long"));
                            }
                            self.text(kat, len)?
                        }
                        _ => return Err(DecodeError::Unsupported(kat, "map key is not text")),
                    };
                    if let Some(p) = &prev
                        && key_order(p, &key) != std::cmp::Ordering::Less
                    {
                        return Err(DecodeError::NonCanonical(
                            kat,
                            "map keys duplicated or out of order",
                        ));
                    }
                    let v = self.value(depth + 1)?;
                    map.insert(key.clone(), v);
                    prev = Some(key);
                }
                Ipld::Map(map)
            }
            // `head` already rejected every other form.
            _ => return Err(DecodeError::Unsupported(at, "unexpected head")),
        })
    }

    pub(super) fn link(&mut self) -> Result<Ipld, DecodeError> {
        let (at, h) = self.head()?;
        let n = match h {
            Header::Bytes(Some(n)) if (2..=MAX_CID_BYTES + 1).contains(&n) => n,
            _ => {
                return Err(DecodeError::Cid(
                    at,
                    "tag 42 must wrap a byte string".into(),
                ));
            }
        };
        let raw = self.payload(at, n)?;
        if raw[0] != 0 {
            return Err(DecodeError::Cid(at, "missing 0x00 multibase prefix".into()));
        }
        let c = cid::from_bytes(&raw[1..]).map_err(|e| DecodeError::Cid(at, e.to_string()))?;
        // Canonical round trip: re-encoding must give the same bytes.
        if c.to_bytes() != raw[1..] {
            return Err(DecodeError::Cid(at, "non-canonical CID bytes".into()));
        }
        Ok(Ipld::Link(c))
    }
}
