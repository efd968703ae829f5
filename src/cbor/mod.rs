//! DAG-CBOR (DRISL) as atproto uses it: one canonical encoding for every
//! value, and a strict decoder that accepts only that encoding.
//!
//! Canonical form: shortest integer and length heads, definite lengths only,
//! map keys are text sorted length-first then bytewise, CIDs as tag 42 over a
//! `0x00`-prefixed binary CID, no floats, no simple values but
//! false/true/null, exactly one item per block.
//!
//! Heads are written and read with `ciborium-ll`; the canonical rules are
//! enforced here because ciborium itself neither sorts keys nor rejects
//! non-minimal input. Invariant: for every `bytes` that `decode` accepts,
//! `encode(&decode(bytes)?) == bytes`.

mod decode;
mod json;
mod read;
mod transcode;
mod write;

use std::collections::BTreeMap;

pub use decode::{DecodeError, Limits, decode, decode_with};

/// Containers inside containers (the outermost counts) that a data-model
/// value may have, in JSON and in DAG-CBOR alike: whatever a client can
/// write must read back, and a repo exported here must import anywhere
/// that uses the same bound.
pub const MAX_DEPTH: usize = 64;
pub use json::{JsonError, from_json, record_from_json, to_json};
pub use read::Reader;
pub use transcode::{json_string, to_json_text};
pub use write::Writer;

use crate::cid::{self, Cid};

/// An atproto data-model value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipld {
    Null,
    Bool(bool),
    Integer(i64),
    String(String),
    Bytes(Vec<u8>),
    Link(Cid),
    List(Vec<Ipld>),
    /// Keys are held in Rust's bytewise order; the encoder re-sorts them
    /// length-first.
    Map(BTreeMap<String, Ipld>),
}

impl Ipld {
    pub fn as_map(&self) -> Option<&BTreeMap<String, Ipld>> {
        match self {
            Ipld::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Ipld::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_link(&self) -> Option<&Cid> {
        match self {
            Ipld::Link(c) => Some(c),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Ipld::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Ipld::Integer(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Ipld]> {
        match self {
            Ipld::List(l) => Some(l),
            _ => None,
        }
    }
    /// Field of a map value, `None` when absent or not a map.
    pub fn get(&self, key: &str) -> Option<&Ipld> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Every CID link inside this value, depth first (blob refs included).
    pub fn links(&self) -> Vec<Cid> {
        let mut out = Vec::new();
        self.collect_links(&mut out);
        out
    }
    fn collect_links(&self, out: &mut Vec<Cid>) {
        match self {
            Ipld::Link(c) => out.push(*c),
            Ipld::List(l) => l.iter().for_each(|v| v.collect_links(out)),
            Ipld::Map(m) => m.values().for_each(|v| v.collect_links(out)),
            _ => {}
        }
    }
}

/// Length-first, then bytewise: the DAG-CBOR map key order.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Canonical DAG-CBOR bytes of `value`.
pub fn encode(value: &Ipld) -> Vec<u8> {
    let mut w = Writer::new();
    w.value(value);
    w.into_bytes()
}

/// Canonical bytes and their dag-cbor CID.
pub fn encode_with_cid(value: &Ipld) -> (Cid, Vec<u8>) {
    let bytes = encode(value);
    (cid::for_cbor(&bytes), bytes)
}

/// Convenience for building maps in code.
#[macro_export]
macro_rules! ipld_map {
    ($($k:expr => $v:expr),* $(,)?) => {{
        let mut m = ::std::collections::BTreeMap::<String, $crate::cbor::Ipld>::new();
        $( m.insert(String::from($k), $v); )*
        $crate::cbor::Ipld::Map(m)
    }};
}

#[cfg(test)]
mod tests;
