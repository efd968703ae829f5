//! Canonical DAG-CBOR writer. Heads go through `ciborium_ll`, which always
//! picks the shortest form; map key ordering is our job.

use ciborium_ll::{Encoder, Header};

use super::{Ipld, key_order};
use crate::cid::Cid;

/// Appends canonical DAG-CBOR items to a byte buffer. Callers writing maps
/// by hand (MST nodes, commits) must emit keys in `key_order`.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::with_capacity(64)
    }
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn head(&mut self, h: Header) {
        // Writing into a Vec cannot fail.
        let _ = Encoder::from(&mut self.buf).push(h);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn null(&mut self) {
        self.head(Header::Simple(ciborium_ll::simple::NULL));
    }
    pub fn bool(&mut self, b: bool) {
        self.head(Header::Simple(if b {
            ciborium_ll::simple::TRUE
        } else {
            ciborium_ll::simple::FALSE
        }));
    }
    pub fn int(&mut self, i: i64) {
        if i >= 0 {
            self.head(Header::Positive(i.unsigned_abs()));
        } else {
            // CBOR stores -1 - n.
            self.head(Header::Negative(i.unsigned_abs() - 1));
        }
    }
    pub fn text(&mut self, s: &str) {
        self.head(Header::Text(Some(s.len())));
        self.raw(s.as_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.head(Header::Bytes(Some(b.len())));
        self.raw(b);
    }
    pub fn link(&mut self, cid: &Cid) {
        self.head(Header::Tag(42));
        let bin = cid.to_bytes();
        self.head(Header::Bytes(Some(bin.len() + 1)));
        self.raw(&[0]);
        self.raw(&bin);
    }
    pub fn link_or_null(&mut self, cid: Option<&Cid>) {
        match cid {
            Some(c) => self.link(c),
            None => self.null(),
        }
    }
    pub fn array(&mut self, len: usize) {
        self.head(Header::Array(Some(len)));
    }
    pub fn map(&mut self, len: usize) {
        self.head(Header::Map(Some(len)));
    }

    pub fn value(&mut self, v: &Ipld) {
        match v {
            Ipld::Null => self.null(),
            Ipld::Bool(b) => self.bool(*b),
            Ipld::Integer(i) => self.int(*i),
            Ipld::String(s) => self.text(s),
            Ipld::Bytes(b) => self.bytes(b),
            Ipld::Link(c) => self.link(c),
            Ipld::List(l) => {
                self.array(l.len());
                l.iter().for_each(|x| self.value(x));
            }
            Ipld::Map(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by(|a, b| key_order(a.0, b.0));
                self.map(entries.len());
                for (k, x) in entries {
                    self.text(k);
                    self.value(x);
                }
            }
        }
    }
}
