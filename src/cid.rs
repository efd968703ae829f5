//! Content identifiers in the "blessed" atproto form: CIDv1, sha2-256, with the
//! dag-cbor (0x71) codec for structured blocks and raw (0x55) for blobs.
//!
//! Everything that hashes data into a CID goes through this module, so the
//! codec and hash choices live in one place.

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use ::cid::Cid;

/// Multicodec for DAG-CBOR blocks (records, MST nodes, commits).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec for raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code for sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Upper bound on a binary CID we agree to parse; a blessed CID is 36 bytes.
pub const MAX_CID_BYTES: usize = 100;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidError {
    #[error("invalid CID: {0}")]
    Invalid(String),
    #[error("CID is {0} bytes, more than the {MAX_CID_BYTES}-byte limit")]
    TooLong(usize),
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn from_digest(codec: u64, digest: &[u8; 32]) -> Cid {
    // `wrap` fails only for digests over 64 bytes; ours is always 32.
    let mh = ::cid::multihash::Multihash::<64>::wrap(SHA2_256, digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// CID of a DAG-CBOR block.
pub fn for_cbor(bytes: &[u8]) -> Cid {
    from_digest(DAG_CBOR, &sha256(bytes))
}

/// CID of a blob's raw bytes.
pub fn for_raw(bytes: &[u8]) -> Cid {
    from_digest(RAW, &sha256(bytes))
}

/// CID from a precomputed sha2-256 digest (streaming blob uploads).
pub fn from_sha256(codec: u64, digest: &[u8; 32]) -> Cid {
    from_digest(codec, digest)
}

/// Parse the string form (`b…` base32 and the other multibases the `cid`
/// crate knows). CIDv0 strings are refused: atproto never uses them.
pub fn parse(s: &str) -> Result<Cid, CidError> {
    if s.len() > 2 * MAX_CID_BYTES {
        return Err(CidError::TooLong(s.len()));
    }
    let cid = Cid::try_from(s).map_err(|e| CidError::Invalid(e.to_string()))?;
    if cid.version() != ::cid::Version::V1 {
        return Err(CidError::Invalid("CIDv0 is not allowed".into()));
    }
    Ok(cid)
}

/// Parse a binary CID that must span all of `bytes`.
pub fn from_bytes(bytes: &[u8]) -> Result<Cid, CidError> {
    if bytes.len() > MAX_CID_BYTES {
        return Err(CidError::TooLong(bytes.len()));
    }
    let cid = Cid::try_from(bytes).map_err(|e| CidError::Invalid(e.to_string()))?;
    if cid.encoded_len() != bytes.len() {
        return Err(CidError::Invalid("trailing bytes after CID".into()));
    }
    Ok(cid)
}

/// Read a binary CID from the front of `bytes`, returning it and its length.
pub fn read_prefix(bytes: &[u8]) -> Result<(Cid, usize), CidError> {
    let window = &bytes[..bytes.len().min(MAX_CID_BYTES)];
    let cid = Cid::read_bytes(window).map_err(|e| CidError::Invalid(e.to_string()))?;
    Ok((cid, cid.encoded_len()))
}

/// Whether `cid` is the form atproto requires for repo structure.
pub fn is_blessed(cid: &Cid) -> bool {
    cid.version() == ::cid::Version::V1
        && (cid.codec() == DAG_CBOR || cid.codec() == RAW)
        && cid.hash().code() == SHA2_256
        && cid.hash().size() == 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blessed_cids_have_expected_prefixes() {
        let c = for_cbor(b"\xa0");
        assert!(c.to_string().starts_with("bafyrei"));
        assert_eq!(c.to_bytes().len(), 36);
        let b = for_raw(b"hello");
        assert!(b.to_string().starts_with("bafkrei"));
        assert!(is_blessed(&c) && is_blessed(&b));
        assert_eq!(parse(&c.to_string()).unwrap(), c);
        assert_eq!(from_bytes(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn rejects_v0_trailing_and_garbage() {
        assert!(parse("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY").is_err());
        assert!(parse("bafyrei").is_err());
        assert!(parse("").is_err());
        let mut bytes = for_cbor(b"x").to_bytes();
        bytes.push(0);
        assert!(from_bytes(&bytes).is_err());
        assert!(from_bytes(&[0xff; 200]).is_err());
        let (cid, n) = read_prefix(&bytes).unwrap();
        assert_eq!(n, 36);
        assert_eq!(cid, for_cbor(b"x"));
    }
}
