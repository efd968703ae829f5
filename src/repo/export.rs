//! Whole-repository CARs: streaming export in the preferred block order,
//! and loading plus full verification of an untrusted export.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use super::car::{CarError, CarLimits, CarReader, CarWriter};
use super::commit::Commit;
use super::mst::{Mst, Node, Visit};
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
    mut w: W,
) -> Result<W, ExportError> {
    let mut walk = ExportWalk::new(*commit_cid);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let done = walk.next_batch(src, &mut buf, 64 * 1024)?;
        w.write_all(&buf)?;
        if done {
            break;
        }
    }
    w.flush()?;
    Ok(w)
}

/// A whole-repo export made a batch at a time, in the order of [`write_repo_car`], so a
/// server can read each batch on a short-lived connection and let go of it while the client
/// takes its time. The state is the path from the root to the current node (one decoded
/// node per layer) and a short queue of blocks already looked up, never the repo.
///
/// Blocks are looked up many at a time ([`BlockSource::get_blocks`]): the walk plans up to
/// [`AHEAD`] records past the last block written, fetches the planned records in one go,
/// and fetches each inner node's children together when it reaches the node. Records
/// longer than [`HELD_BLOCK`] are left out of the batches and read alone when written, so
/// the queue never holds more than `AHEAD × HELD_BLOCK` bytes of records.
///
/// Batches may come from different read transactions: blocks are content-addressed and
/// ordinary writes never delete them, so the tree under a fixed commit stays whole. If a
/// block does go (the repo was replaced or deleted meanwhile), the next batch fails with
/// [`RepoError::MissingBlock`].
pub struct ExportWalk {
    commit_cid: Cid,
    begun: bool,
    path: Vec<Frame>,
    /// Blocks planned but not yet written, in CAR order.
    queue: VecDeque<Planned>,
    /// Children of the nodes on the path, fetched with their parent and not yet reached.
    children: HashMap<Cid, Vec<u8>>,
}

/// Records planned ahead of the last block written (and fetched together).
const AHEAD: usize = 256;
/// Records up to this size are fetched with the others; larger ones alone.
const HELD_BLOCK: usize = 4096;
/// Children of one node fetched together (a wider node's others come one by one), each if
/// at most [`HELD_NODE`] bytes long.
const SIBLINGS: usize = 64;
const HELD_NODE: usize = 64 * 1024;

/// A block the walk has reached: a node (read already, as the walk needs it to go on) or a
/// record, with its bytes once fetched (`None`: not yet, or too large to hold).
enum Planned {
    Node(Cid, Vec<u8>),
    Record(Cid, Option<Vec<u8>>),
}

/// A node on the walk's path and the next of its slots to visit: slot `2i` is the subtree
/// left of entry `i` (`2n` the right-most), slot `2i + 1` the entry's record.
struct Frame {
    node: Node,
    slot: usize,
}

impl ExportWalk {
    pub fn new(commit_cid: Cid) -> ExportWalk {
        ExportWalk {
            commit_cid,
            begun: false,
            path: Vec::new(),
            queue: VecDeque::new(),
            children: HashMap::new(),
        }
    }

    /// Every block has been given out.
    pub fn is_done(&self) -> bool {
        self.begun && self.path.is_empty() && self.queue.is_empty()
    }

    /// Append the next blocks as CAR bytes to `out` (the header first) until this batch
    /// holds at least `budget` bytes (or one block more than that) or the repo is done.
    /// Returns true when the export is complete.
    pub fn next_batch(
        &mut self,
        src: &dyn BlockSource,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Result<bool, ExportError> {
        let mut car = if self.begun {
            CarWriter::resume(&mut *out)
        } else {
            let commit_bytes = src
                .get_block(&self.commit_cid)?
                .ok_or_else(|| RepoError::missing(self.commit_cid))?;
            let commit = Commit::decode(&commit_bytes)?;
            let mut car = CarWriter::new(&mut *out, &[self.commit_cid])?;
            car.write_block(&self.commit_cid, &commit_bytes)?;
            let bytes = src
                .get_block(&commit.data)?
                .ok_or_else(|| RepoError::missing(commit.data))?;
            self.enter(src, commit.data, bytes, None)?;
            self.begun = true;
            car
        };
        while car.bytes_written() < budget as u64 {
            if self.queue.is_empty() {
                self.plan(src)?;
            }
            let Some(step) = self.queue.pop_front() else {
                break;
            };
            match step {
                Planned::Node(cid, bytes) => car.write_block(&cid, &bytes)?,
                Planned::Record(cid, Some(bytes)) => car.write_block(&cid, &bytes)?,
                Planned::Record(cid, None) => {
                    let bytes = src
                        .get_block(&cid)?
                        .ok_or_else(|| RepoError::missing(cid))?;
                    car.write_block(&cid, &bytes)?;
                }
            }
        }
        Ok(self.is_done())
    }

    /// Walks on until [`AHEAD`] records are queued (or the tree ends), then fetches them.
    fn plan(&mut self, src: &dyn BlockSource) -> Result<(), RepoError> {
        let mut records = Vec::new();
        while records.len() < AHEAD {
            let Some(top) = self.path.last_mut() else {
                break;
            };
            let slot = top.slot;
            if slot > 2 * top.node.entries.len() {
                self.path.pop();
                continue;
            }
            top.slot += 1;
            if slot % 2 == 1 {
                let cid = top.node.entries[slot / 2].value;
                records.push(cid);
                self.queue.push_back(Planned::Record(cid, None));
            } else if top.node.layer > 0
                && let Some(child) = top.node.gap(slot / 2).cid()
            {
                let layer = top.node.layer - 1;
                let bytes = match self.children.remove(&child) {
                    Some(b) => b,
                    None => src
                        .get_block(&child)?
                        .ok_or_else(|| RepoError::missing(child))?,
                };
                self.enter(src, child, bytes, Some(layer))?;
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut fetched = src.get_blocks(&records, HELD_BLOCK)?.into_iter();
        for step in self.queue.iter_mut() {
            if let Planned::Record(_, slot @ None) = step {
                *slot = fetched.next().flatten();
            }
        }
        Ok(())
    }

    /// Checks node `cid`, queues it, puts it on the path, and fetches its children.
    fn enter(
        &mut self,
        src: &dyn BlockSource,
        cid: Cid,
        bytes: Vec<u8>,
        layer: Option<u32>,
    ) -> Result<(), RepoError> {
        let node = Node::decode(src, cid, &bytes, layer)?;
        if node.layer > 0 {
            let kids: Vec<Cid> = (0..=node.entries.len())
                .filter_map(|i| node.gap(i).cid())
                .take(SIBLINGS)
                .collect();
            for (c, b) in kids.iter().zip(src.get_blocks(&kids, HELD_NODE)?) {
                if let Some(b) = b {
                    self.children.insert(*c, b);
                }
            }
        }
        self.queue.push_back(Planned::Node(cid, bytes));
        self.path.push(Frame { node, slot: 0 });
        Ok(())
    }
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
                // Some longer than the export fetches in batches (HELD_BLOCK).
                "text" => cbor::Ipld::String(if i % 50 == 7 {
                    format!("post {i} {}", "x".repeat(HELD_BLOCK))
                } else {
                    format!("post {i}")
                }),
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

    /// The order of `Mst::walk` (the recursive reference): commit, each node, its left
    /// subtree, then each record and the subtree right of it.
    fn reference_car(store: &MemoryBlocks, commit_cid: &Cid) -> Vec<u8> {
        let commit_bytes = store.get(commit_cid).unwrap().to_vec();
        let commit = Commit::decode(&commit_bytes).unwrap();
        let mut car = CarWriter::new(Vec::new(), &[*commit_cid]).unwrap();
        car.write_block(commit_cid, &commit_bytes).unwrap();
        Mst::load(commit.data)
            .walk(store, &mut |v| {
                match v {
                    Visit::Node(c, b) => car.write_block(c, b).unwrap(),
                    Visit::Leaf(_, c) => car.write_block(c, store.get(c).unwrap()).unwrap(),
                }
                Ok(())
            })
            .unwrap();
        car.finish().unwrap()
    }

    #[test]
    fn batches_of_any_size_give_the_streaming_order() {
        for n in [0, 1, 8, 300, 700] {
            let (store, commit_cid, _) = sample(n);
            let want = reference_car(&store, &commit_cid);
            assert_eq!(
                write_repo_car(&store, &commit_cid, Vec::new()).unwrap(),
                want
            );
            for budget in [1, 100, 4096] {
                let mut walk = ExportWalk::new(commit_cid);
                let (mut got, mut batches) = (Vec::new(), 0);
                loop {
                    let mut batch = Vec::new();
                    let done = walk.next_batch(&store, &mut batch, budget).unwrap();
                    batches += 1;
                    got.extend(batch);
                    if done {
                        break;
                    }
                }
                assert_eq!(got, want, "{n} records in batches of {budget} bytes");
                if budget == 1 {
                    // One block a batch (the first has the header, commit and root).
                    assert!(batches + 2 >= store.len(), "{batches} batches");
                }
            }
        }
    }

    #[test]
    fn a_block_gone_between_batches_is_an_error() {
        let (mut store, commit_cid, _) = sample(50);
        let mut walk = ExportWalk::new(commit_cid);
        let mut out = Vec::new();
        assert!(!walk.next_batch(&store, &mut out, 1).unwrap());
        // The repo is replaced: nothing of it is left.
        store = MemoryBlocks::new();
        assert!(matches!(
            walk.next_batch(&store, &mut out, 1 << 20),
            Err(ExportError::Repo(RepoError::MissingBlock(_)))
        ));
        let mut fresh = ExportWalk::new(commit_cid);
        assert!(fresh.next_batch(&store, &mut Vec::new(), 1).is_err());
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
