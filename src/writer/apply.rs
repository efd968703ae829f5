//! One repo write, applied inside the writer's transaction.

use std::collections::BTreeSet;

use rusqlite::Connection;

use super::event::{self, CommitEvent, EventOp};
use super::{RepoState, WriteError};
use crate::cbor::{self, Ipld};
use crate::cid::Cid;
use crate::repo::car::write_car;
use crate::repo::commit::Commit;
use crate::repo::mst::{Mst, covering_proof};
use crate::repo::{BlockSource, MemoryBlocks, RepoError};
use crate::store::{SqlBlocks, blobs, repo, repo::RepoRoot};
use crate::tid::TidClock;

/// The firehose caps a commit's CAR slice at this many bytes.
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2_000_000;
/// Largest encoded record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most ops in one commit.
pub const MAX_OPS: usize = 200;

#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Fails if the record exists.
    Create {
        collection: String,
        rkey: String,
        record: Ipld,
    },
    /// Create or replace. `swap_record`: `Some(None)` = must not exist,
    /// `Some(Some(c))` = current CID must be `c`.
    Put {
        collection: String,
        rkey: String,
        record: Ipld,
        swap_record: Option<Option<Cid>>,
    },
    /// A no-op when the record is absent.
    Delete {
        collection: String,
        rkey: String,
        swap_record: Option<Cid>,
    },
}

#[derive(Clone, Debug, Default)]
pub struct RepoWrite {
    pub ops: Vec<WriteOp>,
    pub swap_commit: Option<Cid>,
}

#[derive(Clone, Debug)]
pub struct OpResult {
    pub uri: String,
    /// The record's new CID (None for deletes).
    pub cid: Option<Cid>,
}

#[derive(Clone, Debug)]
pub struct CommitOutcome {
    /// New commit CID and rev; None when nothing changed.
    pub commit: Option<(Cid, String)>,
    pub results: Vec<OpResult>,
}

/// Blocks the writer has made but not stored yet, in front of the database.
struct Overlay<'a> {
    mem: &'a MemoryBlocks,
    db: SqlBlocks<'a>,
}

impl BlockSource for Overlay<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        match self.mem.get(cid) {
            Some(b) => Ok(Some(b.to_vec())),
            None => self.db.get_block(cid),
        }
    }
}

/// CIDs of the blobs a record references (`{"$type": "blob", "ref": …}`).
pub fn blob_refs(v: &Ipld, out: &mut BTreeSet<Cid>) {
    match v {
        Ipld::Map(m) => {
            if m.get("$type").and_then(Ipld::as_str) == Some("blob")
                && let Some(c) = m.get("ref").and_then(Ipld::as_link)
            {
                out.insert(*c);
            }
            m.values().for_each(|x| blob_refs(x, out));
        }
        Ipld::List(l) => l.iter().for_each(|x| blob_refs(x, out)),
        _ => {}
    }
}

fn invalid(m: impl Into<String>) -> WriteError {
    WriteError::InvalidRequest(m.into())
}

pub fn apply(
    conn: &Connection,
    state: Option<&mut RepoState>,
    clock: &mut TidClock,
    w: RepoWrite,
    orphaned: &mut Vec<String>,
) -> Result<CommitOutcome, WriteError> {
    let state = state.ok_or(WriteError::NoAccount)?;
    if w.ops.len() > MAX_OPS {
        return Err(invalid(format!("too many writes: at most {MAX_OPS}")));
    }
    if let Some(expected) = w.swap_commit
        && expected != state.root.commit_cid
    {
        return Err(WriteError::InvalidSwap(format!(
            "commit was at {}",
            state.root.commit_cid
        )));
    }
    let src = SqlBlocks(conn);
    let mut tree = Mst::load(state.root.data_cid);
    let mut records = MemoryBlocks::new();
    let mut ops: Vec<EventOp> = Vec::new();
    let mut results = Vec::new();
    // (path, new record value) for blob bookkeeping after the MST is done.
    let mut touched: Vec<(String, String, String, Option<Ipld>)> = Vec::new();

    for op in w.ops {
        // (record to write or None to delete, must not exist yet, swap check)
        let (collection, rkey, record, must_be_new, swap) = match op {
            WriteOp::Create {
                collection,
                rkey,
                record,
            } => (collection, rkey, Some(record), true, None),
            WriteOp::Put {
                collection,
                rkey,
                record,
                swap_record,
            } => (collection, rkey, Some(record), false, swap_record),
            WriteOp::Delete {
                collection,
                rkey,
                swap_record,
            } => (collection, rkey, None, false, swap_record.map(Some)),
        };
        let path = format!("{collection}/{rkey}");
        let old = tree.get(&src, path.as_bytes())?;
        if must_be_new && old.is_some() {
            return Err(invalid(format!("record already exists: {path}")));
        }
        if let Some(expected) = swap
            && expected != old
        {
            return Err(WriteError::InvalidSwap(format!(
                "record {path} has changed"
            )));
        }
        let uri = format!("at://{}/{path}", state.did);
        match record {
            Some(record) => {
                let cid = put_record_block(&mut records, &record)?;
                tree.insert(&src, path.as_bytes(), cid)?;
                ops.push(EventOp {
                    action: if old.is_some() { "update" } else { "create" },
                    path: path.clone(),
                    cid: Some(cid),
                    prev: old,
                });
                results.push(OpResult {
                    uri,
                    cid: Some(cid),
                });
                touched.push((path, collection, rkey, Some(record)));
            }
            None => {
                results.push(OpResult { uri, cid: None });
                // Deleting a missing record is a no-op.
                let Some(old) = old else { continue };
                tree.remove(&src, path.as_bytes())?;
                ops.push(EventOp {
                    action: "delete",
                    path: path.clone(),
                    cid: None,
                    prev: Some(old),
                });
                touched.push((path, collection, rkey, None));
            }
        }
    }
    if ops.is_empty() {
        return Ok(CommitOutcome {
            commit: None,
            results,
        });
    }

    let now_us = now_micros();
    // A rev must exceed the last one even if it was made by another clock
    // (account creation, an import, or a host with a faster clock).
    if let Ok(t) = crate::tid::Tid::parse(&state.root.rev) {
        clock.observe(t);
    }
    let rev = clock.next(now_us);
    let rev_s = rev.to_string();
    let data = tree.root_cid();
    let commit = Commit::sign(&state.did, data, rev, &state.key);
    let (commit_cid, commit_bytes) = commit.to_block();
    let nodes = tree.unstored_blocks();

    // The firehose slice: commit, new nodes, new records, and the covering
    // proof of every touched key so consumers can invert the ops.
    let mut slice = MemoryBlocks::new();
    slice.insert(commit_cid, commit_bytes.clone());
    {
        let overlay = Overlay {
            mem: &nodes,
            db: SqlBlocks(conn),
        };
        for op in &ops {
            slice.extend(covering_proof(&overlay, &tree, op.path.as_bytes())?);
        }
    }
    for (c, b) in nodes.iter().chain(records.iter()) {
        slice.insert(*c, b.clone());
    }
    // The cap is on the CAR as sent, framing included, not on the payload.
    let blocks = write_car(&[commit_cid], slice.iter().map(|(c, b)| (c, b.as_slice())));
    if blocks.len() > MAX_COMMIT_BLOCKS_BYTES {
        return Err(invalid(
            "commit too large: split the writes into smaller batches",
        ));
    }

    // Durable state, all in the caller's transaction.
    for (c, b) in nodes.iter().chain(records.iter()) {
        repo::put_block(conn, c, &rev_s, b)?;
    }
    repo::put_block(conn, &commit_cid, &rev_s, &commit_bytes)?;
    let mut released = BTreeSet::new();
    for (path, collection, rkey, value) in &touched {
        released.extend(blobs::remove_record_blobs(conn, path)?);
        match value {
            Some(v) => {
                let cid = tree
                    .get(&SqlBlocks(conn), path.as_bytes())?
                    .ok_or_else(|| invalid("record vanished"))?;
                repo::put_record(conn, collection, rkey, &cid, &rev_s)?;
                let mut refs = BTreeSet::new();
                blob_refs(v, &mut refs);
                for b in refs {
                    let b = b.to_string();
                    if blobs::get_blob(conn, &b)?.is_none() {
                        return Err(WriteError::BlobNotFound(b));
                    }
                    blobs::add_record_blob(conn, &b, path)?;
                }
            }
            None => repo::delete_record(conn, collection, rkey)?,
        }
    }
    for b in released {
        if blobs::delete_if_unreferenced(conn, &b)? {
            orphaned.push(b);
        }
    }
    let root = RepoRoot {
        commit_cid,
        rev: rev_s.clone(),
        data_cid: data,
    };
    repo::set_root(conn, &root)?;
    let time = crate::syntax::format_datetime_millis((now_us / 1000) as i64);
    let body = event::commit_body(CommitEvent {
        did: &state.did,
        commit: commit_cid,
        rev: &rev_s,
        since: Some(&state.root.rev),
        blocks,
        ops,
        prev_data: state.root.data_cid,
        time: &time,
    });
    repo::append_event(conn, "commit", &time, &body)?;
    state.root = root;
    Ok(CommitOutcome {
        commit: Some((commit_cid, rev_s)),
        results,
    })
}

fn put_record_block(records: &mut MemoryBlocks, record: &Ipld) -> Result<Cid, WriteError> {
    let (cid, bytes) = cbor::encode_with_cid(record);
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(invalid(format!(
            "record is {} bytes; the limit is {MAX_RECORD_BYTES}",
            bytes.len()
        )));
    }
    records.insert(cid, bytes);
    Ok(cid)
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Create the account's repo: an empty MST and a first signed commit, plus
/// the `#identity`, `#account` and `#commit` events a new repo announces.
pub fn create_repo(
    conn: &Connection,
    did: &str,
    handle: &str,
    key: std::sync::Arc<crate::crypto::Keypair>,
    clock: &mut TidClock,
) -> Result<RepoState, WriteError> {
    let tree = Mst::new();
    let now_us = now_micros();
    let rev = clock.next(now_us);
    let rev_s = rev.to_string();
    let data = tree.root_cid();
    let commit = Commit::sign(did, data, rev, &key);
    let (commit_cid, commit_bytes) = commit.to_block();
    let mut slice = MemoryBlocks::new();
    for (c, b) in tree.unstored_blocks().iter() {
        repo::put_block(conn, c, &rev_s, b)?;
        slice.insert(*c, b.clone());
    }
    repo::put_block(conn, &commit_cid, &rev_s, &commit_bytes)?;
    slice.insert(commit_cid, commit_bytes);
    let root = RepoRoot {
        commit_cid,
        rev: rev_s.clone(),
        data_cid: data,
    };
    repo::set_root(conn, &root)?;
    let time = crate::syntax::format_datetime_millis((now_us / 1000) as i64);
    repo::append_event(
        conn,
        "identity",
        &time,
        &event::identity_body(did, Some(handle), &time),
    )?;
    repo::append_event(
        conn,
        "account",
        &time,
        &event::account_body(did, true, None, &time),
    )?;
    let blocks = write_car(&[commit_cid], slice.iter().map(|(c, b)| (c, b.as_slice())));
    let body = event::commit_body(CommitEvent {
        did,
        commit: commit_cid,
        rev: &rev_s,
        since: None,
        blocks,
        ops: Vec::new(),
        prev_data: data,
        time: &time,
    });
    repo::append_event(conn, "commit", &time, &body)?;
    Ok(RepoState {
        did: did.to_owned(),
        key,
        root,
    })
}
