//! Firehose event bodies, built in the same transaction as the commit they
//! describe. Stored without `seq`: the sequencer adds it when it frames the
//! event, since `seq` is the event row's own key.

use crate::cbor::{self, Ipld};
use crate::cid::Cid;
use crate::ipld_map;

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

/// DAG-CBOR body of a `#commit` event (Sync v1.1 fields included).
pub fn commit_body(e: CommitEvent<'_>) -> Vec<u8> {
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
    cbor::encode(&ipld_map! {
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
    })
}

/// Body of an `#identity` event.
pub fn identity_body(did: &str, handle: Option<&str>, time: &str) -> Vec<u8> {
    let mut m = ipld_map! {
        "did" => Ipld::String(did.into()),
        "time" => Ipld::String(time.into()),
    };
    if let (Some(h), Ipld::Map(mm)) = (handle, &mut m) {
        mm.insert("handle".into(), Ipld::String(h.into()));
    }
    cbor::encode(&m)
}

/// Body of an `#account` event.
pub fn account_body(did: &str, active: bool, status: Option<&str>, time: &str) -> Vec<u8> {
    let mut m = ipld_map! {
        "did" => Ipld::String(did.into()),
        "time" => Ipld::String(time.into()),
        "active" => Ipld::Bool(active),
    };
    if let (Some(s), Ipld::Map(mm)) = (status, &mut m) {
        mm.insert("status".into(), Ipld::String(s.into()));
    }
    cbor::encode(&m)
}

/// Body of a `#sync` event: the current commit, announced without a diff (after an import or
/// an activation, when relays must reset their view of the repo).
pub fn sync_body(did: &str, blocks: Vec<u8>, rev: &str, time: &str) -> Vec<u8> {
    cbor::encode(&ipld_map! {
        "did" => Ipld::String(did.into()),
        "blocks" => Ipld::Bytes(blocks),
        "rev" => Ipld::String(rev.into()),
        "time" => Ipld::String(time.into()),
    })
}
