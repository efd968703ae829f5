//! One repo write, applied inside the writer's transaction.

use std::collections::BTreeSet;

use super::{RepoState, WriteError};
use crate::cbor::{self, Ipld};
use crate::cid::Cid;
use crate::firehose::events::{self, CommitEvent, EventOp, Kind};
use crate::repo::build::{Change, CommitOp, Head, build};
use crate::repo::cache::BlockCache;
use crate::repo::mst::Mst;
use crate::store::{Db, SqlBlocks, blobs, repo, repo::RepoRoot};
use crate::tid::TidClock;

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
    /// `Some(Some(c))` = current CID must be `c`. `unchanged_is_noop`: when this is the
    /// write's only op and the record is already there as given, nothing is committed
    /// (putRecord, as the reference; its applyWrites commits an unchanged update).
    Put {
        collection: String,
        rkey: String,
        record: Ipld,
        swap_record: Option<Option<Cid>>,
        unchanged_is_noop: bool,
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

/// A blob a record references, with the type and size the record states for it.
struct BlobClaim {
    cid: Cid,
    mime_type: Option<String>,
    size: Option<i64>,
}

fn blob_claims(v: &Ipld, out: &mut Vec<BlobClaim>) {
    match v {
        Ipld::Map(m) => {
            if m.get("$type").and_then(Ipld::as_str) == Some("blob")
                && let Some(c) = m.get("ref").and_then(Ipld::as_link)
            {
                out.push(BlobClaim {
                    cid: *c,
                    mime_type: m.get("mimeType").and_then(Ipld::as_str).map(str::to_owned),
                    size: m.get("size").and_then(Ipld::as_integer),
                });
            }
            m.values().for_each(|x| blob_claims(x, out));
        }
        Ipld::List(l) => l.iter().for_each(|x| blob_claims(x, out)),
        _ => {}
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
    conn: &Db,
    state: Option<&mut RepoState>,
    clock: &mut TidClock,
    cache: &BlockCache,
    w: RepoWrite,
    orphaned: &mut Vec<String>,
) -> Result<CommitOutcome, WriteError> {
    let state = state.ok_or(WriteError::NoAccount)?;
    // Checked here, in the transaction, so no write lands after a deactivation's `#account`.
    if let Some(status) = crate::store::account::status(conn)?
        && status != crate::store::account::AccountStatus::Active
    {
        return Err(WriteError::AccountInactive(status));
    }
    if w.ops.len() > MAX_OPS {
        return Err(invalid(format!("too many writes: at most {MAX_OPS}")));
    }
    if let Some(out) = unchanged_put(conn, state, &w)? {
        return Ok(out);
    }
    if let Some(expected) = w.swap_commit
        && expected != state.root.commit_cid
    {
        return Err(WriteError::InvalidSwap(format!(
            "commit was at {}",
            state.root.commit_cid
        )));
    }
    let changes: Vec<Change> = w.ops.into_iter().map(change).collect();
    // A rev must exceed the last one even if it was made by another clock
    // (account creation, an import, or a host with a faster clock).
    if let Ok(t) = crate::tid::Tid::parse(&state.root.rev) {
        clock.observe(t);
    }
    let now_us = now_micros();
    let rev = clock.next(now_us);
    let tree = match &state.tree {
        Some(t) if t.root_cid() == state.root.data_cid => t.clone(),
        _ => Mst::load(state.root.data_cid),
    };
    let head = Head {
        did: &state.did,
        tree,
    };
    let built = build(
        &cache.over(SqlBlocks(conn)),
        head,
        false,
        &changes,
        rev,
        &state.key,
    )?;
    let results = changes
        .iter()
        .zip(&built.results)
        .map(|(c, cid)| OpResult {
            uri: format!("at://{}/{}", state.did, c.path()),
            cid: *cid,
        })
        .collect();
    let Some(commit) = built.commit else {
        return Ok(CommitOutcome {
            commit: None,
            results,
        });
    };
    let tree = commit.tree.settled();

    // Durable state, all in the caller's transaction: blocks, the record index with its
    // blob references, the root, the event.
    for (c, b) in commit.blocks.iter() {
        repo::put_block(conn, c, &commit.rev, b)?;
    }
    // The new MST nodes are the path the next write walks (TIDs all land on the right
    // edge), so they go into the cache; records and the commit are not read again. Content
    // addressing keeps this right even if the transaction rolls back: a cached node is
    // only reached from a root that was stored.
    let records: BTreeSet<&Cid> = built.results.iter().flatten().collect();
    for (c, b) in commit.blocks.iter() {
        if *c != commit.cid && !records.contains(c) {
            cache.put(c, b);
        }
    }
    let mut released = BTreeSet::new();
    for (op, value) in commit.ops.iter().zip(changed_values(&changes, &commit.ops)) {
        let (collection, rkey) = op.path.split_once('/').unwrap_or((&op.path, ""));
        released.extend(blobs::remove_record_blobs(conn, &op.path)?);
        match (op.cid, value) {
            (Some(cid), Some(v)) => {
                repo::put_record(conn, collection, rkey, &cid, &commit.rev)?;
                link_blobs(conn, &op.path, v)?;
            }
            _ => repo::delete_record(conn, collection, rkey)?,
        }
    }
    for b in released {
        if blobs::delete_if_unreferenced(conn, &b)? {
            orphaned.push(b);
        }
    }
    let root = RepoRoot {
        commit_cid: commit.cid,
        rev: commit.rev.clone(),
        data_cid: commit.data,
    };
    repo::set_root(conn, &root)?;
    let time = crate::syntax::format_datetime_millis((now_us / 1000) as i64);
    count_creates(conn, &time, &commit.ops)?;
    let body = events::commit_body(CommitEvent {
        did: &state.did,
        commit: commit.cid,
        rev: &commit.rev,
        since: Some(&state.root.rev),
        blocks: commit.slice,
        ops: commit
            .ops
            .into_iter()
            .map(|o| EventOp {
                action: o.action.as_str(),
                path: o.path,
                cid: o.cid,
                prev: o.prev,
            })
            .collect(),
        prev_data: state.root.data_cid,
        time: &time,
    });
    events::append(conn, Kind::Commit, &time, body)?;
    state.root = root;
    state.tree = Some(tree);
    Ok(CommitOutcome {
        commit: Some((commit.cid, commit.rev)),
        results,
    })
}

/// Adds the records this commit created to the day's rollup (the owner's page plots them).
fn count_creates(conn: &Db, time: &str, ops: &[CommitOp]) -> Result<(), WriteError> {
    let mut counts = [0u64; 4];
    for op in ops.iter().filter(|o| o.action.as_str() == "create") {
        let collection = op.path.split_once('/').map_or(op.path.as_str(), |(c, _)| c);
        counts[match collection {
            "app.bsky.feed.post" => 0,
            "app.bsky.feed.like" => 1,
            "app.bsky.graph.follow" => 2,
            _ => 3,
        }] += 1;
    }
    let day = time.get(..10).unwrap_or(time);
    for (kind, n) in ["post", "like", "follow", "other"].iter().zip(counts) {
        if n > 0 {
            crate::store::stats::add_writes(conn, day, kind, n)?;
        }
    }
    Ok(())
}

fn change(op: WriteOp) -> Change {
    match op {
        WriteOp::Create {
            collection,
            rkey,
            record,
        } => Change::Create {
            path: format!("{collection}/{rkey}"),
            record,
        },
        WriteOp::Put {
            collection,
            rkey,
            record,
            swap_record,
            unchanged_is_noop: _,
        } => Change::Put {
            path: format!("{collection}/{rkey}"),
            record,
            swap: swap_record,
        },
        WriteOp::Delete {
            collection,
            rkey,
            swap_record,
        } => Change::Delete {
            path: format!("{collection}/{rkey}"),
            swap: swap_record,
        },
    }
}

/// The record each op left, from the change that made it: ops are the changes that changed
/// something, in order, so the walk pairs them by path.
fn changed_values<'a>(changes: &'a [Change], ops: &'a [CommitOp]) -> Vec<Option<&'a Ipld>> {
    let mut rest = changes.iter();
    ops.iter()
        .map(|op| {
            rest.by_ref()
                .find(|c| c.path() == op.path)
                .and_then(Change::record)
        })
        .collect()
}

/// Holds every blob a record references to the stored blob: what the record says about
/// it must be true of the stored one (the schema's `accept` and `maxSize` were checked
/// against the claim), then links it to the record.
fn link_blobs(conn: &Db, path: &str, record: &Ipld) -> Result<(), WriteError> {
    let mut claims = vec![];
    blob_claims(record, &mut claims);
    let mut linked = BTreeSet::new();
    for claim in claims {
        let b = claim.cid.to_string();
        let Some(stored) = blobs::get_blob(conn, &b)? else {
            return Err(WriteError::BlobNotFound(b));
        };
        let claimed_mime = claim.mime_type.unwrap_or_default();
        if claimed_mime != stored.mime_type {
            return Err(WriteError::InvalidMimeType(format!(
                "Referenced Mimetype does not match stored blob. Expected: {}, \
                 Got: {claimed_mime}",
                stored.mime_type
            )));
        }
        if claim.size != Some(stored.size) {
            return Err(WriteError::InvalidSize(format!(
                "Referenced Size does not match stored blob. Expected: {}, Got: {}",
                stored.size,
                claim.size.map_or("none".into(), |s| s.to_string())
            )));
        }
        if linked.insert(b.clone()) {
            blobs::add_record_blob(conn, &b, path)?;
        }
    }
    Ok(())
}

/// A putRecord of the record already stored changes nothing: no commit, no event, and the
/// swaps are not consulted (the reference answers with the record as it is).
fn unchanged_put(
    conn: &Db,
    state: &RepoState,
    w: &RepoWrite,
) -> Result<Option<CommitOutcome>, WriteError> {
    let [
        WriteOp::Put {
            collection,
            rkey,
            record,
            unchanged_is_noop: true,
            ..
        },
    ] = w.ops.as_slice()
    else {
        return Ok(None);
    };
    let Some(current) = repo::get_record(conn, collection, rkey)? else {
        return Ok(None);
    };
    let (cid, _) = cbor::encode_with_cid(record);
    if cid != current {
        return Ok(None);
    }
    Ok(Some(CommitOutcome {
        commit: None,
        results: vec![OpResult {
            uri: format!("at://{}/{collection}/{rkey}", state.did),
            cid: Some(cid),
        }],
    }))
}

fn now_micros() -> u64 {
    crate::clock::unix_micros()
}

/// An empty repo for `did`: the empty MST and a first commit signed by `key`, stored as the
/// root; returns the writer's view and the commit's CAR slice. Announces nothing: the caller
/// decides which events (none for an account that arrives deactivated, as the reference).
pub fn empty_repo(
    conn: &Db,
    did: &str,
    key: std::sync::Arc<crate::crypto::Keypair>,
    clock: &mut TidClock,
) -> Result<(RepoState, Vec<u8>), WriteError> {
    let rev = clock.next(now_micros());
    let head = Head {
        did,
        tree: Mst::new(),
    };
    let empty = crate::repo::MemoryBlocks::new();
    let commit = build(&empty, head, true, &[], rev, &key)?
        .commit
        .ok_or_else(|| invalid("a new repo always gets a first commit"))?;
    for (c, b) in commit.blocks.iter() {
        repo::put_block(conn, c, &commit.rev, b)?;
    }
    let root = RepoRoot {
        commit_cid: commit.cid,
        rev: commit.rev,
        data_cid: commit.data,
    };
    repo::set_root(conn, &root)?;
    let state = RepoState {
        did: did.to_owned(),
        key,
        root,
        tree: None,
    };
    Ok((state, commit.slice))
}

/// Create the account's repo: an empty MST and a first signed commit, plus
/// the `#identity`, `#account` and `#commit` events a new repo announces.
pub fn create_repo(
    conn: &Db,
    did: &str,
    handle: &str,
    key: std::sync::Arc<crate::crypto::Keypair>,
    clock: &mut TidClock,
) -> Result<RepoState, WriteError> {
    let (state, blocks) = empty_repo(conn, did, key, clock)?;
    let time = crate::syntax::format_datetime_millis((now_micros() / 1000) as i64);
    events::append(
        conn,
        Kind::Identity,
        &time,
        events::identity_body(did, Some(handle), &time),
    )?;
    events::append(
        conn,
        Kind::Account,
        &time,
        events::account_body(did, true, None, &time),
    )?;
    let body = events::commit_body(CommitEvent {
        did,
        commit: state.root.commit_cid,
        rev: &state.root.rev,
        since: None,
        blocks,
        ops: Vec::new(),
        prev_data: state.root.data_cid,
        time: &time,
    });
    events::append(conn, Kind::Commit, &time, body)?;
    Ok(state)
}
