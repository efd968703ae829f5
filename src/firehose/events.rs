//! Firehose event bodies, built in the writer's transaction with the change they
//! describe, and [`append`], which gives each its `seq` and stores it encoded once: the
//! stored bytes are the body subscribers get.

use crate::cbor::{self, Ipld};
use crate::cid::Cid;
use crate::ipld_map;
use crate::store::{Db, StoreError, repo};

pub struct EventOp {
    pub action: &'static str,
    pub path: String,
    pub cid: Option<Cid>,
    pub prev: Option<Cid>,
}

pub struct CommitEvent<'a> {
    pub did: &'a str,
    pub commit: Cid,
    pub rev: &'a str,
    pub since: Option<&'a str>,
    pub blocks: Vec<u8>,
    pub ops: Vec<EventOp>,
    pub prev_data: Cid,
    pub time: &'a str,
}

/// The kinds of event perch emits (the frame header's `t`, without the `#`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Commit,
    Identity,
    Account,
    Sync,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Identity => "identity",
            Kind::Account => "account",
            Kind::Sync => "sync",
        }
    }
}

/// Stores an event: `body` gets the next `seq` and is encoded once, as subscribers get it.
/// Returns the seq. Only the writer calls this, inside its transaction.
pub fn append(db: &Db, kind: Kind, time: &str, body: Ipld) -> Result<i64, StoreError> {
    let seq = repo::next_seq(db)?;
    let Ipld::Map(mut map) = body else {
        return Err(StoreError::Corrupt("an event body must be a map".into()));
    };
    map.insert("seq".into(), Ipld::Integer(seq));
    repo::insert_event(db, seq, kind.as_str(), time, &cbor::encode(&Ipld::Map(map)))?;
    Ok(seq)
}

/// Body of a `#commit` event (Sync v1.1 fields included).
pub fn commit_body(e: CommitEvent<'_>) -> Ipld {
    let ops = e
        .ops
        .into_iter()
        .map(|op| {
            let mut m = ipld_map! {
                "action" => Ipld::String(op.action.into()),
                "path" => Ipld::String(op.path),
                "cid" => op.cid.map_or(Ipld::Null, Ipld::Link),
            };
            if let (Some(p), Ipld::Map(mm)) = (op.prev, &mut m) {
                mm.insert("prev".into(), Ipld::Link(p));
            }
            m
        })
        .collect();
    ipld_map! {
        "repo" => Ipld::String(e.did.into()),
        "commit" => Ipld::Link(e.commit),
        "rev" => Ipld::String(e.rev.into()),
        "since" => e.since.map_or(Ipld::Null, |s| Ipld::String(s.into())),
        "blocks" => Ipld::Bytes(e.blocks),
        "ops" => Ipld::List(ops),
        "prevData" => Ipld::Link(e.prev_data),
        "time" => Ipld::String(e.time.into()),
        "rebase" => Ipld::Bool(false),
        "tooBig" => Ipld::Bool(false),
        "blobs" => Ipld::List(vec![]),
    }
}

/// Body of an `#identity` event.
pub fn identity_body(did: &str, handle: Option<&str>, time: &str) -> Ipld {
    let mut m = ipld_map! {
        "did" => Ipld::String(did.into()),
        "time" => Ipld::String(time.into()),
    };
    if let (Some(h), Ipld::Map(mm)) = (handle, &mut m) {
        mm.insert("handle".into(), Ipld::String(h.into()));
    }
    m
}

/// Body of an `#account` event.
pub fn account_body(did: &str, active: bool, status: Option<&str>, time: &str) -> Ipld {
    let mut m = ipld_map! {
        "did" => Ipld::String(did.into()),
        "time" => Ipld::String(time.into()),
        "active" => Ipld::Bool(active),
    };
    if let (Some(s), Ipld::Map(mm)) = (status, &mut m) {
        mm.insert("status".into(), Ipld::String(s.into()));
    }
    m
}

/// Body of a `#sync` event: the current commit, announced without a diff (after an import or
/// an activation, when relays must reset their view of the repo).
pub fn sync_body(did: &str, blocks: Vec<u8>, rev: &str, time: &str) -> Ipld {
    ipld_map! {
        "did" => Ipld::String(did.into()),
        "blocks" => Ipld::Bytes(blocks),
        "rev" => Ipld::String(rev.into()),
        "time" => Ipld::String(time.into()),
    }
}
