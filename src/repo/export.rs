//! Whole-repository CARs: streaming export in the preferred block order,
//! and loading plus full verification of an untrusted export.

use std::collections::HashMap;
use std::io::Write;

use super::car::{CarError, CarLimits, CarReader, CarWriter};
use super::commit::Commit;
use super::mst::{Mst, Visit};
use super::{BlockSource, MemoryBlocks, RepoError};
use crate::cbor;
use crate::cid::{self, Cid};
use crate::crypto::PublicKey;
use crate::syntax;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Car(#[from] CarError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Stream the repo whose signed commit is `commit` as a CAR: the commit,
/// then a pre-order walk of the MST with each record after its left subtree.
/// Memory use is one path of nodes, never the whole repo.
pub fn write_repo_car<W: Write>(
    src: &dyn BlockSource,
    commit_cid: &Cid,
    w: W,
) -> Result<W, ExportError> {
    let commit_bytes = src
        .get_block(commit_cid)?
        .ok_or_else(|| RepoError::missing(*commit_cid))?;
    let commit = Commit::decode(&commit_bytes)?;
    let mut car = CarWriter::new(w, &[*commit_cid])?;
    car.write_block(commit_cid, &commit_bytes)?;
    let tree = Mst::load(commit.data);
    let mut io_err = None;
    tree.walk(src, &mut |v| {
        let r = match v {
            Visit::Node(c, b) => car.write_block(c, b),
            Visit::Leaf(_, c) => match src.get_block(c)? {
                Some(b) => car.write_block(c, &b),
                None => return Err(RepoError::missing(*c)),
            },
        };
        r.map_err(|e| {
            let msg = e.to_string();
            io_err = Some(e);
            RepoError::Store(msg)
        })
    })
    .map_err(|e| match io_err.take() {
        Some(io) => ExportError::Io(io),
        None => ExportError::Repo(e),
    })?;
    Ok(car.finish()?)
}

/// A repository read from a CAR and checked end to end.
pub struct LoadedRepo {
    pub commit_cid: Cid,
    pub commit: Commit,
    /// Only the blocks reachable from the commit (stray blocks dropped).
    pub blocks: MemoryBlocks,
    pub record_count: usize,
}

/// Whose repository an untrusted CAR must be, and who must have signed it.
pub struct Expected<'a> {
    pub did: &'a str,
    /// The commit must verify under one of these.
    pub keys: &'a [PublicKey],
}

/// The blocks of a CAR in memory, by SHA-256 digest, as ranges of the input:
/// a CAR of many tiny blocks costs one small index entry per block, never a
/// copy of each. Codecs are checked where links are followed.
struct CarIndex<'a> {
    bytes: &'a [u8],
    ranges: HashMap<[u8; 32], (usize, usize)>,
}

impl BlockSource for CarIndex<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        let Ok(digest) = <[u8; 32]>::try_from(cid.hash().digest()) else {
            return Ok(None);
        };
        Ok(self
            .ranges
            .get(&digest)
            .map(|&(start, end)| self.bytes[start..end].to_vec()))
    }
}

fn index_blocks(bytes: &[u8], limits: CarLimits) -> Result<(Cid, CarIndex<'_>), ExportError> {
    let mut reader = CarReader::new(bytes, limits)?;
    let root = match reader.roots() {
        [root] => *root,
        roots => {
            return Err(RepoError::InvalidCommit(format!(
                "a repository CAR has exactly one root (its commit); this one has {}",
                roots.len()
            ))
            .into());
        }
    };
    let mut ranges = HashMap::new();
    while let Some((c, data)) = reader.next_block()? {
        // The reader stops right after the block's bytes.
        let end = reader.bytes_read() as usize;
        if let Ok(digest) = <[u8; 32]>::try_from(c.hash().digest()) {
            ranges.insert(digest, (end - data.len(), end));
        }
    }
    Ok((root, CarIndex { bytes, ranges }))
}

/// A leaf's key must be `collection/rkey`, and its value a DAG-CBOR map.
fn check_record(key: &[u8], cid: &Cid, bytes: &[u8]) -> Result<(), RepoError> {
    let path = std::str::from_utf8(key)
        .map_err(|_| RepoError::InvalidKey(format!("record path {key:?} is not UTF-8")))?;
    let bad_path = |why: String| RepoError::InvalidKey(format!("record path {path:?}: {why}"));
    let (collection, rkey) = path
        .split_once('/')
        .ok_or_else(|| bad_path("not collection/rkey".into()))?;
    syntax::validate_nsid(collection).map_err(|e| bad_path(e.to_string()))?;
    syntax::validate_record_key(rkey).map_err(|e| bad_path(e.to_string()))?;
    if cid.codec() != cid::DAG_CBOR {
        return Err(RepoError::InvalidRecord(format!(
            "{path} ({cid}) is not DAG-CBOR"
        )));
    }
    let value = cbor::decode(bytes).map_err(|e| RepoError::Decode(Box::new(*cid), e))?;
    if value.as_map().is_none() {
        return Err(RepoError::InvalidRecord(format!("{path} is not a map")));
    }
    Ok(())
}

/// Read a full-repo CAR: exactly one root, every block hash-checked, the
/// commit parsed (and its signature checked when `key` is given), every MST
/// node verified, keys in order across the whole tree, and every record
/// present and valid. Blocks unreachable from the commit are dropped so a CAR
/// cannot smuggle foreign data into the store; a CAR that is mostly such
/// blocks is refused.
pub fn load_repo_car(
    bytes: &[u8],
    limits: CarLimits,
    key: Option<&PublicKey>,
) -> Result<LoadedRepo, ExportError> {
    load(bytes, limits, &|commit| match key {
        Some(k) => commit.verify(k),
        None => Ok(()),
    })
}

/// As [`load_repo_car`], for a repository that must be `expected.did`'s and
/// signed by one of `expected.keys` (checked before the tree is walked).
pub fn load_repo_car_for(
    bytes: &[u8],
    limits: CarLimits,
    expected: &Expected<'_>,
) -> Result<LoadedRepo, ExportError> {
    load(bytes, limits, &|commit| {
        if commit.did != expected.did {
            return Err(RepoError::InvalidCommit(format!(
                "the repository belongs to {}, not to {}",
                commit.did, expected.did
            )));
        }
        if !expected.keys.iter().any(|k| commit.verify(k).is_ok()) {
            return Err(RepoError::InvalidCommit(
                "the commit's signature does not verify under the account's signing key".into(),
            ));
        }
        Ok(())
    })
}

fn load(
    bytes: &[u8],
    limits: CarLimits,
    check_commit: &dyn Fn(&Commit) -> Result<(), RepoError>,
) -> Result<LoadedRepo, ExportError> {
    let (root, all) = index_blocks(bytes, limits)?;
    if root.codec() != cid::DAG_CBOR {
        return Err(RepoError::InvalidCommit(format!("the root {root} is not DAG-CBOR")).into());
    }
    let commit_bytes = all
        .get_block(&root)?
        .ok_or_else(|| RepoError::missing(root))?;
    let commit = Commit::decode(&commit_bytes)?;
    check_commit(&commit)?;
    let mut blocks = MemoryBlocks::new();
    blocks.insert(root, commit_bytes);
    let mut record_count = 0;
    let mut last: Option<Vec<u8>> = None;
    Mst::load(commit.data).walk(&all, &mut |v| {
        match v {
            Visit::Node(c, b) => {
                if c.codec() != cid::DAG_CBOR {
                    return Err(RepoError::invalid_node(*c, "not DAG-CBOR"));
                }
                blocks.insert(*c, b.to_vec());
            }
            Visit::Leaf(k, c) => {
                // The walk is in key order; a valid search tree never goes back.
                if last.as_deref().is_some_and(|p| p >= k) {
                    return Err(RepoError::InvalidKey(format!(
                        "MST keys are not in order: {:?} after {:?}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(last.as_deref().unwrap_or_default())
                    )));
                }
                let b = all.get_block(c)?.ok_or_else(|| RepoError::missing(*c))?;
                check_record(k, c, &b)?;
                blocks.insert(*c, b);
                record_count += 1;
                last = Some(k.to_vec());
            }
        }
        Ok(())
    })?;
    let stray = all.ranges.len().saturating_sub(blocks.len());
    if stray > blocks.len().max(MIN_STRAY_ALLOWED) {
        return Err(RepoError::InvalidCommit(format!(
            "the CAR holds {stray} blocks the repository does not use (it uses {})",
            blocks.len()
        ))
        .into());
    }
    Ok(LoadedRepo {
        commit_cid: root,
        commit,
        blocks,
        record_count,
    })
}

/// Unused blocks a repository CAR may carry whatever its size (leftovers of
/// earlier commits are harmless and dropped); beyond that, no more than the
/// repository itself, so a flood of tiny blocks is refused.
const MIN_STRAY_ALLOWED: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, Keypair};
    use crate::tid::Tid;

    const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";

    fn sample(n: u32) -> (MemoryBlocks, Cid, Keypair) {
        let key = Keypair::from_secret_bytes(KeyType::K256, &[3u8; 32]).unwrap();
        let mut store = MemoryBlocks::new();
        let mut tree = Mst::new();
        for i in 0..n {
            let rec = crate::ipld_map! {
                "$type" => cbor::Ipld::String("app.bsky.feed.post".into()),
                "text" => cbor::Ipld::String(format!("post {i}")),
            };
            let (c, b) = cbor::encode_with_cid(&rec);
            store.insert(c, b);
            tree.insert(&store, format!("app.bsky.feed.post/{i:06}").as_bytes(), c)
                .unwrap();
        }
        store.extend(tree.unstored_blocks());
        let commit = Commit::sign(
            DID,
            tree.root_cid(),
            Tid::new(1_700_000_000_000_000, 0),
            &key,
        );
        let (cc, cb) = commit.to_block();
        store.insert(cc, cb);
        (store, cc, key)
    }

    #[test]
    fn export_then_load_verifies_everything() {
        let (store, commit_cid, key) = sample(300);
        let car = write_repo_car(&store, &commit_cid, Vec::new()).unwrap();
        let keys = [key.public_key()];
        let expected = Expected {
            did: DID,
            keys: &keys,
        };
        let loaded = load_repo_car_for(car.as_slice(), CarLimits::default(), &expected).unwrap();
        assert!(load_repo_car(car.as_slice(), CarLimits::default(), Some(&keys[0])).is_ok());
        assert_eq!(loaded.commit_cid, commit_cid);
        assert_eq!(loaded.record_count, 300);
        assert_eq!(loaded.blocks.len(), store.len());
        // First block after the header is the commit.
        let mut r = CarReader::new(car.as_slice(), CarLimits::default()).unwrap();
        assert_eq!(r.next_block().unwrap().unwrap().0, commit_cid);
    }

    #[test]
    fn missing_record_or_wrong_key_is_rejected() {
        let (store, commit_cid, key) = sample(20);
        let car = write_repo_car(&store, &commit_cid, Vec::new()).unwrap();
        let other = Keypair::from_secret_bytes(KeyType::K256, &[4u8; 32]).unwrap();
        let keys = [other.public_key()];
        let wrong_key = Expected {
            did: DID,
            keys: &keys,
        };
        assert!(load_repo_car_for(car.as_slice(), CarLimits::default(), &wrong_key).is_err());
        let keys = [key.public_key()];
        let wrong_did = Expected {
            did: "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
            keys: &keys,
        };
        assert!(load_repo_car_for(car.as_slice(), CarLimits::default(), &wrong_did).is_err());
        // Drop the last block (a record) from the CAR.
        let mut r = CarReader::new(car.as_slice(), CarLimits::default()).unwrap();
        let roots = r.roots().to_vec();
        let mut blocks: Vec<_> = std::iter::from_fn(|| r.next_block().unwrap()).collect();
        blocks.pop();
        let short =
            super::super::car::write_car(&roots, blocks.iter().map(|(c, b)| (c, b.as_slice())));
        assert!(matches!(
            load_repo_car(short.as_slice(), CarLimits::default(), None),
            Err(ExportError::Repo(RepoError::MissingBlock(_)))
        ));
    }
}
