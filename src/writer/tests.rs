use std::sync::Arc;

use super::*;
use crate::cbor::{self, Ipld};
use crate::crypto::KeyType;
use crate::ipld_map;
use crate::repo::MemoryBlocks;
use crate::repo::car::{CarLimits, CarReader};
use crate::repo::mst::Mst;
use crate::store::{SqlBlocks, repo};

const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";

async fn setup() -> (tempfile::TempDir, Arc<Store>, Writer, Arc<Keypair>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("perch.sqlite")).unwrap();
    let writer = Writer::spawn(&store, None, |_| {}).unwrap();
    let key = Arc::new(Keypair::from_secret_bytes(KeyType::K256, &[1u8; 32]).unwrap());
    writer
        .create_repo(DID.into(), "alice.test".into(), Arc::clone(&key))
        .await
        .unwrap();
    (dir, store, writer, key)
}

fn post(text: &str) -> Ipld {
    ipld_map! {
        "$type" => Ipld::String("app.bsky.feed.post".into()),
        "text" => Ipld::String(text.into()),
        "createdAt" => Ipld::String("2026-01-01T00:00:00.000Z".into()),
    }
}

fn create(rkey: &str, text: &str) -> WriteOp {
    WriteOp::Create {
        collection: "app.bsky.feed.post".into(),
        rkey: rkey.into(),
        record: post(text),
    }
}

/// Check a stored `#commit` event the way a relay does: load the tree at
/// the new root from the event's blocks alone and undo every op; the result
/// must be `prevData`.
fn check_commit_event(body: &[u8]) {
    let ev = cbor::decode(body).unwrap();
    let blocks = ev.get("blocks").and_then(Ipld::as_bytes).unwrap();
    let mut mem = MemoryBlocks::new();
    let reader = CarReader::new(blocks, CarLimits::default()).unwrap();
    let root = reader.roots()[0];
    for b in reader {
        let (c, d) = b.unwrap();
        mem.insert(c, d);
    }
    assert_eq!(Some(&Ipld::Link(root)), ev.get("commit"));
    let commit = crate::repo::commit::Commit::decode(mem.get(&root).unwrap()).unwrap();
    let mut tree = Mst::load(commit.data);
    for op in ev.get("ops").and_then(Ipld::as_list).unwrap() {
        let path = op.get("path").and_then(Ipld::as_str).unwrap().as_bytes();
        match op.get("prev").and_then(Ipld::as_link) {
            Some(prev) => {
                tree.insert(&mem, path, *prev).unwrap();
            }
            None => {
                tree.remove(&mem, path).unwrap();
            }
        }
        if let Some(Ipld::Link(c)) = op.get("cid") {
            assert!(mem.contains(c), "record block missing from the slice");
        }
    }
    assert_eq!(Some(&Ipld::Link(tree.root_cid())), ev.get("prevData"));
}

#[tokio::test]
async fn writes_commit_index_and_announce() {
    let (_dir, store, writer, key) = setup().await;
    let out = writer
        .write(RepoWrite {
            ops: vec![create("a1", "hello"), create("a2", "world")],
            swap_commit: None,
        })
        .await
        .unwrap();
    let (commit_cid, rev) = out.commit.clone().unwrap();
    assert_eq!(out.results.len(), 2);
    assert_eq!(
        out.results[0].uri,
        format!("at://{DID}/app.bsky.feed.post/a1")
    );

    let root = store.read(repo::get_root).await.unwrap().unwrap();
    assert_eq!(root.commit_cid, commit_cid);
    assert_eq!(root.rev, rev);
    let cid = store
        .read(|c| repo::get_record(c, "app.bsky.feed.post", "a1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cid, out.results[0].cid.unwrap());
    // The commit verifies with the account key and its tree holds the records.
    let (tree_ok, commit_ok) = store
        .read(move |c| {
            let src = SqlBlocks(c);
            let bytes = repo::get_block(c, &commit_cid)?.unwrap();
            let commit = crate::repo::commit::Commit::decode(&bytes).unwrap();
            let tree = Mst::load(commit.data);
            let n = tree.entries(&src).unwrap().len();
            Ok((n, commit))
        })
        .await
        .unwrap();
    assert_eq!(tree_ok, 2);
    commit_ok.verify(&key.public_key()).unwrap();

    // identity, account, the initial commit, then ours.
    let events = store.read(|c| repo::events_after(c, 0, 100)).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["identity", "account", "commit", "commit"]);
    check_commit_event(&events[3].body);
}

#[tokio::test]
async fn swaps_and_missing_deletes() {
    let (_dir, _store, writer, _key) = setup().await;
    let first = writer
        .write(RepoWrite {
            ops: vec![create("x", "one")],
            swap_commit: None,
        })
        .await
        .unwrap();
    let (c1, _) = first.commit.unwrap();
    // Duplicate create fails and changes nothing.
    assert!(matches!(
        writer
            .write(RepoWrite {
                ops: vec![create("x", "again")],
                swap_commit: None
            })
            .await,
        Err(WriteError::InvalidRequest(_))
    ));
    // Stale swapCommit.
    let stale = crate::cid::for_cbor(b"\xa0");
    assert!(matches!(
        writer
            .write(RepoWrite {
                ops: vec![create("y", "two")],
                swap_commit: Some(stale)
            })
            .await,
        Err(WriteError::InvalidSwap(_))
    ));
    // Matching swapCommit works.
    let second = writer
        .write(RepoWrite {
            ops: vec![create("y", "two")],
            swap_commit: Some(c1),
        })
        .await
        .unwrap();
    assert!(second.commit.is_some());
    // Deleting a missing record is a no-op with no commit.
    let none = writer
        .write(RepoWrite {
            ops: vec![WriteOp::Delete {
                collection: "app.bsky.feed.post".into(),
                rkey: "nope".into(),
                swap_record: None,
            }],
            swap_commit: None,
        })
        .await
        .unwrap();
    assert!(none.commit.is_none());
    // Wrong swapRecord on update.
    assert!(matches!(
        writer
            .write(RepoWrite {
                ops: vec![WriteOp::Put {
                    collection: "app.bsky.feed.post".into(),
                    rkey: "x".into(),
                    record: post("changed"),
                    swap_record: Some(None),
                }],
                swap_commit: None
            })
            .await,
        Err(WriteError::InvalidSwap(_))
    ));
}

#[tokio::test]
async fn concurrent_writes_are_serialised_and_chained() {
    let (_dir, store, writer, _key) = setup().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            w.write(RepoWrite {
                ops: vec![create(&format!("k{i:03}"), &format!("post {i}"))],
                swap_commit: None,
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = store
        .read(|c| repo::events_after(c, 0, 1000))
        .await
        .unwrap();
    let commits: Vec<_> = events.iter().filter(|e| e.kind == "commit").collect();
    assert_eq!(commits.len(), 41);
    // Each commit builds on the one before: since == previous rev,
    // prevData == previous data root, and every slice inverts.
    let mut prev: Option<(String, Ipld)> = None;
    for e in &commits {
        let ev = cbor::decode(&e.body).unwrap();
        let rev = ev.get("rev").and_then(Ipld::as_str).unwrap().to_owned();
        if let Some((prev_rev, prev_data)) = &prev {
            assert_eq!(
                ev.get("since").and_then(Ipld::as_str),
                Some(prev_rev.as_str())
            );
            assert_eq!(ev.get("prevData"), Some(prev_data));
            assert!(rev > *prev_rev);
            check_commit_event(&e.body);
        }
        let blocks = ev.get("blocks").and_then(Ipld::as_bytes).unwrap();
        let mut r = CarReader::new(blocks, CarLimits::default()).unwrap();
        let root = r.roots()[0];
        let mut data = None;
        while let Some((c, b)) = r.next_block().unwrap() {
            if c == root {
                data = Some(crate::repo::commit::Commit::decode(&b).unwrap().data);
            }
        }
        prev = Some((rev, Ipld::Link(data.unwrap())));
    }
    let n = store.read(repo::record_count).await.unwrap();
    assert_eq!(n, 40);
}

#[tokio::test]
async fn cached_tree_never_skips_writing_a_block() {
    let (_dir, store, writer, _key) = setup().await;
    // Creates, updates and deletes over the same keys, so cached paths are
    // rebuilt, reverted and merged; after each commit the whole tree must
    // load from the database alone and the event must invert.
    let mut expect = std::collections::BTreeMap::new();
    for i in 0..120u32 {
        let k = format!("k{:03}", (i * 37) % 50);
        let op = match i % 5 {
            3 if expect.contains_key(&k) => WriteOp::Delete {
                collection: "app.bsky.feed.post".into(),
                rkey: k.clone(),
                swap_record: None,
            },
            _ => WriteOp::Put {
                collection: "app.bsky.feed.post".into(),
                rkey: k.clone(),
                record: post(&format!("v{i}")),
                swap_record: None,
            },
        };
        let deleting = matches!(op, WriteOp::Delete { .. });
        let out = writer
            .write(RepoWrite {
                ops: vec![op],
                swap_commit: None,
            })
            .await
            .unwrap();
        if deleting {
            expect.remove(&k);
        } else {
            expect.insert(k, out.results[0].cid.unwrap());
        }
        let (n, last) = store
            .read(|c| {
                let root = repo::get_root(c)?.unwrap();
                let n = Mst::load(root.data_cid)
                    .entries(&SqlBlocks(c))
                    .unwrap()
                    .len();
                let last = repo::events_after(c, repo::last_seq(c)?.unwrap() - 1, 1)?;
                Ok((n, last))
            })
            .await
            .unwrap();
        assert_eq!(n, expect.len(), "after write {i}");
        check_commit_event(&last[0].body);
    }
}

#[tokio::test]
async fn head_seq_after_a_bump_is_the_counter() {
    let (dir, store, writer, _) = setup().await;
    drop(writer);
    let w = store.open_writer().unwrap();
    repo::bump_seq(&w, 1000).unwrap();
    drop(w);
    let store = Store::open(&dir.path().join("perch.sqlite")).unwrap();
    let writer = Writer::spawn(&store, None, |_| {}).unwrap();
    // A relay that saw seqs up to 999 from the old server is not "in the
    // future" of a restored one.
    assert_eq!(*writer.seq_watch().borrow(), 999);
}
