//! The commit builder: a repo head plus a list of changes in, the next signed commit out,
//! with everything a server stores and announces for it (as `@atproto/repo`'s
//! `formatCommit`). Pure: blocks come from a `BlockSource`, the rev and key from the caller;
//! nothing is written anywhere.

use crate::cbor::{self, Ipld};
use crate::cid::Cid;
use crate::crypto::Keypair;
use crate::repo::car::write_car;
use crate::repo::commit::Commit;
use crate::repo::mst::{Mst, covering_proof};
use crate::repo::{BlockSource, MemoryBlocks, RepoError};
use crate::tid::Tid;

/// The firehose caps a commit's CAR slice at this many bytes (framing included).
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2_000_000;
/// Largest encoded record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One change to a repo, by path (`collection/rkey`).
#[derive(Clone, Debug)]
pub enum Change {
    /// Fails if the record exists.
    Create { path: String, record: Ipld },
    /// Create or replace. `swap`: `Some(None)` = must not exist, `Some(Some(c))` = the
    /// current CID must be `c`.
    Put {
        path: String,
        record: Ipld,
        swap: Option<Option<Cid>>,
    },
    /// A no-op when the record is absent. `swap`: the current CID must be this.
    Delete { path: String, swap: Option<Cid> },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Create { path, .. }
            | Change::Put { path, .. }
            | Change::Delete { path, .. } => path,
        }
    }

    /// The record it writes; none for a delete.
    pub fn record(&self) -> Option<&Ipld> {
        match self {
            Change::Create { record, .. } | Change::Put { record, .. } => Some(record),
            Change::Delete { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    /// The word the firehose uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// What a change did to one path: the new record CID (none for a delete) and the one it
/// replaced (the firehose's `prev`, Sync v1.1).
#[derive(Clone, Debug)]
pub struct CommitOp {
    pub action: Action,
    pub path: String,
    pub cid: Option<Cid>,
    pub prev: Option<Cid>,
}

/// Where the repo stands before the changes.
pub struct Head<'a> {
    pub did: &'a str,
    /// The MST as it is: the stored root (`Mst::load`), or the empty tree for a new repo.
    pub tree: Mst,
}

/// The next commit and everything that comes with it.
pub struct CommitData {
    pub cid: Cid,
    pub rev: String,
    /// The new MST root.
    pub data: Cid,
    /// Blocks to store: the commit, new MST nodes, new records.
    pub blocks: MemoryBlocks,
    /// The changes that changed something, in order.
    pub ops: Vec<CommitOp>,
    /// The firehose CAR: the commit, the new blocks and the covering proof of every
    /// touched path, so consumers can invert the ops.
    pub slice: Vec<u8>,
    /// The tree after the changes (its new nodes in memory), for the next build to start
    /// from once these blocks are stored ([`Mst::settled`]).
    pub tree: Mst,
}

/// What a build came to.
pub struct Built {
    /// Per change, in order: the record CID it left (none for a delete).
    pub results: Vec<Option<Cid>>,
    /// None when nothing changed (only deletes of absent records) and the head was not
    /// new: no commit is due.
    pub commit: Option<CommitData>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("record already exists: {0}")]
    Exists(String),
    #[error("record {0} has changed")]
    Swapped(String),
    #[error("record is {0} bytes; the limit is {MAX_RECORD_BYTES}")]
    RecordTooLarge(usize),
    /// The reference PDS's words for the same refusal.
    #[error("Too many writes. Max event size: 2MB")]
    SliceTooLarge,
    #[error("{0}")]
    Repo(#[from] RepoError),
}

/// Blocks made by this build, in front of the source.
struct Overlay<'a> {
    new: &'a MemoryBlocks,
    src: &'a dyn BlockSource,
}

impl BlockSource for Overlay<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        match self.new.get(cid) {
            Some(b) => Ok(Some(b.to_vec())),
            None => self.src.get_block(cid),
        }
    }
}

/// Applies `changes` to `head` and signs the result as `rev` with `key`. With no change
/// that changes anything, a new repo (`is_new`) still gets its first commit; an existing
/// one gets none.
pub fn build(
    src: &dyn BlockSource,
    head: Head<'_>,
    is_new: bool,
    changes: &[Change],
    rev: Tid,
    key: &Keypair,
) -> Result<Built, BuildError> {
    let Head { did, mut tree } = head;
    let mut records = MemoryBlocks::new();
    let mut ops = Vec::new();
    let mut results = Vec::with_capacity(changes.len());
    for change in changes {
        let (path, record, must_be_new, swap) = match change {
            Change::Create { path, record } => (path, Some(record), true, None),
            Change::Put { path, record, swap } => (path, Some(record), false, *swap),
            Change::Delete { path, swap } => (path, None, false, swap.map(Some)),
        };
        let key = path.as_bytes();
        // The tree is changed first and the old value checked after: one walk down the
        // path, not a lookup and then an insert. A refused change fails the whole build,
        // so the changed tree is dropped with it.
        let checked = |old: Option<Cid>| {
            if must_be_new && old.is_some() {
                return Err(BuildError::Exists(path.clone()));
            }
            if let Some(expected) = swap
                && expected != old
            {
                return Err(BuildError::Swapped(path.clone()));
            }
            Ok(old)
        };
        match record {
            Some(record) => {
                let (cid, bytes) = cbor::encode_with_cid(record);
                let old = checked(tree.insert(src, key, cid)?)?;
                if bytes.len() > MAX_RECORD_BYTES {
                    return Err(BuildError::RecordTooLarge(bytes.len()));
                }
                records.insert(cid, bytes);
                ops.push(CommitOp {
                    action: if old.is_some() {
                        Action::Update
                    } else {
                        Action::Create
                    },
                    path: path.clone(),
                    cid: Some(cid),
                    prev: old,
                });
                results.push(Some(cid));
            }
            None => {
                let old = checked(tree.remove(src, key)?)?;
                results.push(None);
                let Some(old) = old else { continue };
                ops.push(CommitOp {
                    action: Action::Delete,
                    path: path.clone(),
                    cid: None,
                    prev: Some(old),
                });
            }
        }
    }
    if ops.is_empty() && !is_new {
        return Ok(Built {
            results,
            commit: None,
        });
    }

    let data = tree.root_cid();
    let (cid, commit_bytes) = Commit::sign(did, data, rev, key).to_block();
    let nodes = tree.unstored_blocks();
    let mut slice = MemoryBlocks::new();
    {
        let overlay = Overlay { new: &nodes, src };
        for op in &ops {
            slice.extend(covering_proof(&overlay, &tree, op.path.as_bytes())?);
        }
    }
    let mut blocks = nodes;
    blocks.extend(records);
    blocks.insert(cid, commit_bytes);
    for (c, b) in blocks.iter() {
        slice.insert(*c, b.clone());
    }
    // The cap is on the CAR as sent, framing included, not on the payload.
    let car = write_car(&[cid], slice.iter().map(|(c, b)| (c, b.as_slice())));
    if car.len() > MAX_COMMIT_BLOCKS_BYTES {
        return Err(BuildError::SliceTooLarge);
    }
    Ok(Built {
        results,
        commit: Some(CommitData {
            cid,
            rev: rev.to_string(),
            data,
            blocks,
            ops,
            slice: car,
            tree,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyType;

    fn key() -> Keypair {
        Keypair::generate(KeyType::K256, &mut rand_core::OsRng)
    }

    fn post(text: &str) -> Ipld {
        cbor::from_json(&serde_json::json!({"$type": "app.bsky.feed.post", "text": text})).unwrap()
    }

    fn create(path: &str, text: &str) -> Change {
        Change::Create {
            path: path.into(),
            record: post(text),
        }
    }

    /// Stores a build's blocks in `store` as a server would.
    fn keep(store: &mut MemoryBlocks, c: &CommitData) {
        for (cid, b) in c.blocks.iter() {
            store.insert(*cid, b.clone());
        }
    }

    #[test]
    fn a_new_repo_gets_a_first_commit_over_the_empty_tree() {
        let k = key();
        let head = Head {
            did: "did:plc:x",
            tree: Mst::new(),
        };
        let built = build(&MemoryBlocks::new(), head, true, &[], Tid::new(1, 0), &k).unwrap();
        let c = built.commit.expect("a first commit");
        assert_eq!(c.data, Mst::new().root_cid());
        assert!(c.ops.is_empty());
        let commit = Commit::decode(c.blocks.get(&c.cid).unwrap()).unwrap();
        commit.verify(&k.public_key()).unwrap();
        assert_eq!(commit.rev, Tid::new(1, 0));
    }

    #[test]
    fn ops_carry_prev_and_the_tree_matches_one_built_from_scratch() {
        let k = key();
        let mut store = MemoryBlocks::new();
        let first = build(
            &store,
            Head {
                did: "did:plc:x",
                tree: Mst::new(),
            },
            true,
            &[create("a.b/1", "one"), create("a.b/2", "two")],
            Tid::new(1, 0),
            &k,
        )
        .unwrap()
        .commit
        .unwrap();
        keep(&mut store, &first);
        let one = first.ops[0].cid.unwrap();
        let second = build(
            &store,
            Head {
                did: "did:plc:x",
                tree: Mst::load(first.data),
            },
            false,
            &[
                Change::Put {
                    path: "a.b/1".into(),
                    record: post("uno"),
                    swap: Some(Some(one)),
                },
                Change::Delete {
                    path: "a.b/2".into(),
                    swap: None,
                },
                Change::Delete {
                    path: "a.b/3".into(),
                    swap: None,
                },
            ],
            Tid::new(2, 0),
            &k,
        )
        .unwrap();
        assert_eq!(second.results.len(), 3);
        assert!(second.results[2].is_none(), "absent delete");
        let c = second.commit.unwrap();
        let actions: Vec<_> = c.ops.iter().map(|o| (o.action, o.prev.is_some())).collect();
        assert_eq!(actions, [(Action::Update, true), (Action::Delete, true)]);
        assert_eq!(c.ops[0].prev, Some(one));
        let (uno, _) = cbor::encode_with_cid(&post("uno"));
        let scratch = Mst::from_entries(&MemoryBlocks::new(), [(b"a.b/1".to_vec(), uno)]).unwrap();
        assert_eq!(c.data, scratch.root_cid());
        // The slice holds the commit and can be read back.
        let mut car =
            crate::repo::car::CarReader::new(c.slice.as_slice(), Default::default()).unwrap();
        assert_eq!(car.roots(), [c.cid]);
        let mut n = 0;
        while car.next_block().unwrap().is_some() {
            n += 1;
        }
        assert!(n >= c.blocks.len(), "{n} blocks in the slice");
    }

    #[test]
    fn refusals_name_the_path_and_nothing_is_built() {
        let k = key();
        let mut store = MemoryBlocks::new();
        let first = build(
            &store,
            Head {
                did: "did:plc:x",
                tree: Mst::new(),
            },
            true,
            &[create("a.b/1", "one")],
            Tid::new(1, 0),
            &k,
        )
        .unwrap()
        .commit
        .unwrap();
        keep(&mut store, &first);
        let again = |changes: &[Change]| {
            build(
                &store,
                Head {
                    did: "did:plc:x",
                    tree: Mst::load(first.data),
                },
                false,
                changes,
                Tid::new(2, 0),
                &k,
            )
        };
        assert!(
            matches!(again(&[create("a.b/1", "x")]), Err(BuildError::Exists(p)) if p == "a.b/1")
        );
        let stale = Change::Delete {
            path: "a.b/1".into(),
            swap: Some(cbor::encode_with_cid(&post("other")).0),
        };
        assert!(matches!(again(&[stale]), Err(BuildError::Swapped(_))));
        let nothing = again(&[Change::Delete {
            path: "a.b/9".into(),
            swap: None,
        }])
        .unwrap();
        assert!(nothing.commit.is_none());
        let big = Change::Create {
            path: "a.b/2".into(),
            record: Ipld::Bytes(vec![0; MAX_RECORD_BYTES + 1]),
        };
        assert!(matches!(again(&[big]), Err(BuildError::RecordTooLarge(_))));
    }
}
