//! CAR v1: `varint(len) header` then `varint(len) cid block` repeated.
//!
//! The writer streams; the reader streams too, re-hashes every block against
//! its CID and enforces size and count limits before allocating, so a
//! hostile upload yields a clean error rather than a panic or a huge buffer.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::cbor::{self, Ipld, Limits, Writer};
use crate::cid::{self, Cid, SHA2_256};

#[derive(Debug, Error)]
pub enum CarError {
    #[error("I/O error reading CAR: {0}")]
    Io(#[from] io::Error),
    #[error("CAR ends in the middle of a section")]
    Truncated,
    #[error("bad varint in CAR")]
    BadVarint,
    #[error("bad CAR header: {0}")]
    BadHeader(String),
    #[error("bad CID in CAR block: {0}")]
    BadCid(String),
    #[error("block {0} does not hash to its CID")]
    HashMismatch(Box<Cid>),
    #[error("block {0} uses a hash other than sha2-256")]
    UnsupportedHash(Box<Cid>),
    #[error("CAR limit exceeded: {0}")]
    Limit(&'static str),
}

/// Bounds for reading untrusted CARs.
#[derive(Clone, Copy, Debug)]
pub struct CarLimits {
    pub max_header_bytes: usize,
    /// Largest single block (records are at most 1 MiB; MST nodes far less).
    pub max_block_bytes: usize,
    pub max_blocks: usize,
    pub max_total_bytes: u64,
}

impl Default for CarLimits {
    fn default() -> Self {
        CarLimits {
            max_header_bytes: 64 * 1024,
            max_block_bytes: 2 * 1024 * 1024,
            max_blocks: 2_000_000,
            max_total_bytes: 1024 * 1024 * 1024,
        }
    }
}

fn write_varint(w: &mut impl Write, mut n: u64) -> io::Result<usize> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    w.write_all(&buf[..i])?;
    Ok(i)
}

/// Streams a CAR to `W`.
pub struct CarWriter<W: Write> {
    w: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    pub fn new(mut w: W, roots: &[Cid]) -> io::Result<Self> {
        let mut h = Writer::new();
        // Canonical order: "roots" (5) before "version" (7).
        h.map(2);
        h.text("roots");
        h.array(roots.len());
        roots.iter().for_each(|r| h.link(r));
        h.text("version");
        h.int(1);
        let header = h.into_bytes();
        let n = write_varint(&mut w, header.len() as u64)?;
        w.write_all(&header)?;
        Ok(CarWriter {
            w,
            written: (n + header.len()) as u64,
        })
    }

    /// Go on writing blocks of a CAR whose header (and earlier blocks) went out already,
    /// e.g. by an earlier batch of the same export. `bytes_written` counts from here.
    pub fn resume(w: W) -> Self {
        CarWriter { w, written: 0 }
    }

    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let c = cid.to_bytes();
        let n = write_varint(&mut self.w, (c.len() + data.len()) as u64)?;
        self.w.write_all(&c)?;
        self.w.write_all(data)?;
        self.written += (n + c.len() + data.len()) as u64;
        Ok(())
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// A whole CAR in memory (small CARs: proofs, firehose slices).
pub fn write_car<'a>(
    roots: &[Cid],
    blocks: impl IntoIterator<Item = (&'a Cid, &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    // Writes into a Vec cannot fail.
    if let Ok(mut w) = CarWriter::new(&mut out, roots) {
        for (c, b) in blocks {
            let _ = w.write_block(c, b);
        }
    }
    out
}

/// Streams blocks out of a CAR, verifying each.
pub struct CarReader<R: Read> {
    r: R,
    roots: Vec<Cid>,
    limits: CarLimits,
    blocks: usize,
    total: u64,
}

impl<R: Read> CarReader<R> {
    pub fn new(mut r: R, limits: CarLimits) -> Result<Self, CarError> {
        let mut total = 0;
        let len = read_varint(&mut r, &mut total)?.ok_or(CarError::Truncated)?;
        if len == 0 || len > limits.max_header_bytes as u64 {
            return Err(CarError::Limit("header size"));
        }
        let header = read_exact_vec(&mut r, len as usize)?;
        total += len;
        let v = cbor::decode_with(
            &header,
            &Limits {
                max_depth: 3,
                max_container_len: 64,
                max_key_len: 16,
                max_size: limits.max_header_bytes,
            },
        )
        .map_err(|e| CarError::BadHeader(e.to_string()))?;
        if v.get("version") != Some(&Ipld::Integer(1)) {
            return Err(CarError::BadHeader("version must be 1".into()));
        }
        let roots = v
            .get("roots")
            .and_then(Ipld::as_list)
            .ok_or_else(|| CarError::BadHeader("missing roots".into()))?
            .iter()
            .map(|x| x.as_link().copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CarError::BadHeader("roots must be links".into()))?;
        Ok(CarReader {
            r,
            roots,
            limits,
            blocks: 0,
            total,
        })
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    /// The next verified block, or `None` at a clean end of input.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let Some(len) = read_varint(&mut self.r, &mut self.total)? else {
            return Ok(None);
        };
        self.blocks += 1;
        if self.blocks > self.limits.max_blocks {
            return Err(CarError::Limit("too many blocks"));
        }
        if len > (self.limits.max_block_bytes + cid::MAX_CID_BYTES) as u64 {
            return Err(CarError::Limit("block too large"));
        }
        self.total += len;
        if self.total > self.limits.max_total_bytes {
            return Err(CarError::Limit("CAR too large"));
        }
        let mut section = read_exact_vec(&mut self.r, len as usize)?;
        let (c, n) = cid::read_prefix(&section).map_err(|e| CarError::BadCid(e.to_string()))?;
        if c.hash().code() != SHA2_256 {
            return Err(CarError::UnsupportedHash(Box::new(c)));
        }
        let data = section.split_off(n);
        if c.hash().digest() != cid::sha256(&data) {
            return Err(CarError::HashMismatch(Box::new(c)));
        }
        Ok(Some((c, data)))
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<(Cid, Vec<u8>), CarError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

/// LEB128; `None` on a clean end of input before the first byte.
fn read_varint(r: &mut impl Read, total: &mut u64) -> Result<Option<u64>, CarError> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(CarError::Truncated),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        *total += 1;
        let low = u64::from(b[0] & 0x7f);
        if i == 9 && low > 1 {
            return Err(CarError::BadVarint);
        }
        value |= low << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(CarError::BadVarint)
}

fn read_exact_vec(r: &mut impl Read, len: usize) -> Result<Vec<u8>, CarError> {
    // `len` is already bounded by the limits; read through `take` so a short
    // input fails cleanly.
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(CarError::Truncated);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn blocks(n: usize) -> Vec<(Cid, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let v = cbor::encode(&Ipld::Integer(i as i64));
                (cid::for_cbor(&v), v)
            })
            .collect()
    }

    type Blocks = Vec<(Cid, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<(Vec<Cid>, Blocks), CarError> {
        let r = CarReader::new(bytes, CarLimits::default())?;
        let roots = r.roots().to_vec();
        let blocks = r.collect::<Result<Vec<_>, _>>()?;
        Ok((roots, blocks))
    }

    #[test]
    fn round_trip() {
        let bs = blocks(50);
        let car = write_car(&[bs[0].0], bs.iter().map(|(c, b)| (c, b.as_slice())));
        let (roots, back) = read_all(&car).unwrap();
        assert_eq!(roots, vec![bs[0].0]);
        assert_eq!(back, bs);
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        let bs = blocks(3);
        let car = write_car(&[bs[0].0], bs.iter().map(|(c, b)| (c, b.as_slice())));
        // Truncated anywhere after the header start.
        for cut in 1..car.len() {
            let r = read_all(&car[..cut]);
            assert!(r.is_err() || r.as_ref().unwrap().1.len() < 3, "cut {cut}");
        }
        // A block whose bytes do not match its CID.
        let mut bad = car.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(read_all(&bad), Err(CarError::HashMismatch(_))));
        // A header declaring a huge length.
        assert!(read_all(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0xa0]).is_err());
        // A block declaring a huge length.
        let mut huge = write_car(&[], std::iter::empty());
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(read_all(&huge), Err(CarError::Limit(_))));
        // An overlong varint.
        let mut over = write_car(&[], std::iter::empty());
        over.extend_from_slice(&[0x80; 11]);
        assert!(matches!(read_all(&over), Err(CarError::BadVarint)));
        // Header that is not a CAR header.
        let junk = cbor::encode(&Ipld::Integer(1));
        let mut h = vec![junk.len() as u8];
        h.extend_from_slice(&junk);
        assert!(matches!(read_all(&h), Err(CarError::BadHeader(_))));
        assert!(read_all(&[]).is_err());
    }

    #[test]
    fn limits_apply() {
        let bs = blocks(10);
        let car = write_car(&[], bs.iter().map(|(c, b)| (c, b.as_slice())));
        let limits = CarLimits {
            max_blocks: 5,
            ..CarLimits::default()
        };
        let r = CarReader::new(car.as_slice(), limits).unwrap();
        assert!(matches!(
            r.collect::<Result<Vec<_>, _>>(),
            Err(CarError::Limit(_))
        ));
    }

    proptest! {
        #[test]
        fn write_read_round_trips(data in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let bs: Vec<_> = data.iter().map(|d| (cid::for_raw(d), d.clone())).collect();
            let roots: Vec<_> = bs.iter().take(2).map(|(c, _)| *c).collect();
            let car = write_car(&roots, bs.iter().map(|(c, b)| (c, b.as_slice())));
            let (r, back) = read_all(&car).unwrap();
            prop_assert_eq!(r, roots);
            prop_assert_eq!(back, bs);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_all(&bytes);
        }
    }
}
