//! A pull reader for hot paths that know the shape they expect (MST nodes): the strict
//! decoder's checks item by item, without building an `Ipld`. The counterpart of
//! [`Writer`](super::Writer).

use ciborium_ll::{Decoder, Header, simple};

use super::Ipld;
use super::decode::{DecodeError, Limits, Strict};
use crate::cid::Cid;

const LIMITS: Limits = Limits {
    max_depth: super::MAX_DEPTH,
    max_container_len: 128 * 1024,
    max_key_len: 8192,
    max_size: 5 * 1024 * 1024,
};

pub struct Reader<'a> {
    s: Strict<'a, 'static>,
    /// The last text or byte string read.
    scratch: Vec<u8>,
}

fn unexpected(at: usize) -> DecodeError {
    DecodeError::Unsupported(at, "not the expected type")
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        if bytes.len() > LIMITS.max_size {
            return Err(DecodeError::Limit(0, "input too large"));
        }
        Ok(Reader {
            s: Strict {
                dec: Decoder::from(bytes),
                total: bytes.len(),
                limits: &LIMITS,
            },
            scratch: Vec::new(),
        })
    }

    /// A map's head: its entry count.
    pub fn map(&mut self) -> Result<usize, DecodeError> {
        match self.s.head()? {
            (at, Header::Map(Some(n))) => self.s.container_len(at, n, 0).map(|()| n),
            (at, _) => Err(unexpected(at)),
        }
    }

    /// An array's head: its length.
    pub fn array(&mut self) -> Result<usize, DecodeError> {
        match self.s.head()? {
            (at, Header::Array(Some(n))) => self.s.container_len(at, n, 0).map(|()| n),
            (at, _) => Err(unexpected(at)),
        }
    }

    /// A text string (valid UTF-8), borrowed until the next read.
    pub fn text(&mut self) -> Result<&str, DecodeError> {
        match self.s.head()? {
            (at, Header::Text(Some(n))) => {
                self.s.payload_into(at, n, &mut self.scratch)?;
                std::str::from_utf8(&self.scratch).map_err(|_| DecodeError::Utf8(at))
            }
            (at, _) => Err(unexpected(at)),
        }
    }

    /// A byte string, borrowed until the next read.
    pub fn bytes(&mut self) -> Result<&[u8], DecodeError> {
        match self.s.head()? {
            (at, Header::Bytes(Some(n))) => {
                self.s.payload_into(at, n, &mut self.scratch)?;
                Ok(&self.scratch)
            }
            (at, _) => Err(unexpected(at)),
        }
    }

    pub fn int(&mut self) -> Result<i64, DecodeError> {
        match self.s.head()? {
            (at, Header::Positive(n)) => {
                i64::try_from(n).map_err(|_| DecodeError::IntegerRange(at))
            }
            (at, Header::Negative(n)) => i64::try_from(n)
                .map(|n| -1 - n)
                .map_err(|_| DecodeError::IntegerRange(at)),
            (at, _) => Err(unexpected(at)),
        }
    }

    /// A CID link, or `None` for null.
    pub fn link_or_null(&mut self) -> Result<Option<Cid>, DecodeError> {
        match self.s.head()? {
            (_, Header::Simple(simple::NULL)) => Ok(None),
            (at, Header::Tag(42)) => match self.s.link()? {
                Ipld::Link(c) => Ok(Some(c)),
                _ => Err(unexpected(at)),
            },
            (at, _) => Err(unexpected(at)),
        }
    }

    pub fn link(&mut self) -> Result<Cid, DecodeError> {
        let at = self.s.dec.offset();
        self.link_or_null()?.ok_or_else(|| unexpected(at))
    }

    /// The input must end here.
    pub fn finish(mut self) -> Result<(), DecodeError> {
        let end = self.s.dec.offset();
        if end == self.s.total {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(end))
        }
    }
}
