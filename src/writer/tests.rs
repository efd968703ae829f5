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
                    unchanged_is_noop: true,
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
                unchanged_is_noop: true,
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

fn put(rkey: &str, text: &str, unchanged_is_noop: bool) -> WriteOp {
    WriteOp::Put {
        collection: "app.bsky.feed.post".into(),
        rkey: rkey.into(),
        record: post(text),
        swap_record: None,
        unchanged_is_noop,
    }
}

async fn one(writer: &Writer, op: WriteOp) -> Result<CommitOutcome, WriteError> {
    writer
        .write(RepoWrite {
            ops: vec![op],
            swap_commit: None,
        })
        .await
}

#[tokio::test]
async fn an_unchanged_put_record_commits_nothing() {
    let (_dir, store, writer, _key) = setup().await;
    let first = one(&writer, put("p", "same", true)).await.unwrap();
    let (head, _) = first.commit.unwrap();
    let seq = store.read(repo::last_seq).await.unwrap();
    // The same record again: no commit, no event, the record's URI and CID; the swaps are
    // not consulted, as the reference's putRecord.
    let again = writer
        .write(RepoWrite {
            ops: vec![WriteOp::Put {
                collection: "app.bsky.feed.post".into(),
                rkey: "p".into(),
                record: post("same"),
                swap_record: Some(None),
                unchanged_is_noop: true,
            }],
            swap_commit: Some(crate::cid::for_cbor(b"\xa0")),
        })
        .await
        .unwrap();
    assert!(again.commit.is_none());
    assert_eq!(again.results[0].cid, first.results[0].cid);
    assert_eq!(again.results[0].uri, first.results[0].uri);
    assert_eq!(store.read(repo::last_seq).await.unwrap(), seq);
    assert_eq!(
        store
            .read(repo::get_root)
            .await
            .unwrap()
            .unwrap()
            .commit_cid,
        head
    );
    // applyWrites' update commits even an unchanged record (so does the reference's).
    let update = one(&writer, put("p", "same", false)).await.unwrap();
    assert!(update.commit.is_some());
    // A changed record is a commit.
    let changed = one(&writer, put("p", "other", true)).await.unwrap();
    assert!(changed.commit.is_some());
}

/// Stores the account row of `DID` with `status`.
fn account_row(
    c: &Db,
    status: crate::store::account::AccountStatus,
) -> Result<(), crate::store::StoreError> {
    crate::store::account::create_account(
        c,
        &crate::store::account::Account {
            did: DID.into(),
            handle: "alice.test".into(),
            email: None,
            email_confirmed_at: None,
            password_hash: "x".into(),
            status,
            created_at: "2026-01-01T00:00:00.000Z".into(),
        },
    )
}

#[tokio::test]
async fn an_account_that_is_not_active_takes_no_writes() {
    let (_dir, store, writer, _key) = setup().await;
    writer
        .exec(|c, _| account_row(c, crate::store::account::AccountStatus::Active))
        .await
        .unwrap();
    one(&writer, create("a", "while active")).await.unwrap();
    let seq = store.read(repo::last_seq).await.unwrap();
    use crate::store::account::AccountStatus;
    for status in [
        AccountStatus::Deactivated,
        AccountStatus::Takendown,
        AccountStatus::Suspended,
    ] {
        writer
            .exec(move |c, _| crate::store::account::set_status(c, status))
            .await
            .unwrap();
        for op in [
            create("b", "refused"),
            put("a", "refused", true),
            WriteOp::Delete {
                collection: "app.bsky.feed.post".into(),
                rkey: "a".into(),
                swap_record: None,
            },
        ] {
            match one(&writer, op).await {
                Err(WriteError::AccountInactive(s)) => assert_eq!(s, status),
                other => panic!("{status}: {other:?}"),
            }
        }
    }
    assert_eq!(store.read(repo::last_seq).await.unwrap(), seq);
    assert_eq!(store.read(repo::record_count).await.unwrap(), 1);
}

#[tokio::test]
async fn deleting_the_account_leaves_only_the_deletion_on_the_firehose() {
    let (_dir, store, writer, _key) = setup().await;
    writer
        .exec(|c, _| {
            account_row(c, crate::store::account::AccountStatus::Active)?;
            crate::store::account::insert_action_token(c, "delete_account", "AAAAA-BBBBB", 2000, 1)
        })
        .await
        .unwrap();
    for i in 0..5 {
        one(&writer, create(&format!("r{i}"), "soon gone"))
            .await
            .unwrap();
    }
    let before = store.read(repo::highest_seq).await.unwrap();
    let gone = writer
        .delete_account(DID.into(), "AAAAA-BBBBB".into(), 1000)
        .await
        .unwrap();
    assert!(gone.is_some());
    let events = store.read(|c| repo::events_after(c, 0, 100)).await.unwrap();
    assert_eq!(events.len(), 1, "only the deletion stays");
    assert_eq!(events[0].kind, "account");
    assert!(events[0].seq > before, "seq keeps increasing");
    let body = cbor::decode(&events[0].body).unwrap();
    assert_eq!(body.get("status").and_then(Ipld::as_str), Some("deleted"));
    assert_eq!(store.read(repo::highest_seq).await.unwrap(), events[0].seq);
}

#[tokio::test]
async fn a_moving_account_without_a_repo_gets_the_empty_one_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("perch.sqlite")).unwrap();
    let writer = Writer::spawn(&store, None, |_| {}).unwrap();
    let key = Arc::new(Keypair::from_secret_bytes(KeyType::K256, &[1u8; 32]).unwrap());
    // What an older perch's createAccount left: the account, deactivated, and no repo.
    writer
        .exec(|c, _| account_row(c, crate::store::account::AccountStatus::Deactivated))
        .await
        .unwrap();
    writer
        .ensure_repo(DID.into(), Arc::clone(&key))
        .await
        .unwrap();
    let root = store.read(repo::get_root).await.unwrap().unwrap();
    let commit = crate::repo::commit::Commit::decode(
        &store
            .read(move |c| repo::get_block(c, &root.commit_cid))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(commit.verify(&key.public_key()).is_ok());
    assert_eq!(commit.data, Mst::new().root_cid());
    assert_eq!(
        store.read(repo::last_seq).await.unwrap(),
        None,
        "nothing is announced"
    );
    // Once there is a repo, nothing changes.
    writer
        .ensure_repo(DID.into(), Arc::clone(&key))
        .await
        .unwrap();
    assert_eq!(store.read(repo::get_root).await.unwrap().unwrap(), root);
}

#[tokio::test]
async fn a_commit_over_the_firehose_cap_is_refused_whole() {
    let (_d, store, writer, _key) = setup().await;
    let before = store.read(repo::get_root).await.unwrap();
    // Three records of 800 KB: each fine, together over the 2,000,000-byte event cap.
    let big = |rkey: &str| WriteOp::Create {
        collection: "com.example.perch.note".into(),
        rkey: rkey.into(),
        record: ipld_map! {
            "$type" => Ipld::String("com.example.perch.note".into()),
            "data" => Ipld::Bytes(vec![rkey.len() as u8; 800_000]),
        },
    };
    let err = writer
        .write(RepoWrite {
            ops: vec![big("a"), big("bb"), big("ccc")],
            swap_commit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Too many writes. Max event size: 2MB");
    assert_eq!(store.read(repo::get_root).await.unwrap(), before);
    writer
        .write(RepoWrite {
            ops: vec![big("a"), big("bb")],
            swap_commit: None,
        })
        .await
        .expect("two fit");
}
