//! The `#commit` frames perch emits (reliability plan item 12), checked the
//! way a relay checks them, over a seeded random run of creates, updates,
//! deletes and applyWrites batches against a real `perch serve --dev`, plus
//! a search for the largest batch the server accepts (the body-size edge).
//!
//! For every frame: seq is the previous one plus one. For every `#commit`:
//! the frame is at most 5,000,000 bytes, `blocks` at most 2,000,000, at most
//! 200 ops; rev strictly increases and `since` is the previous rev;
//! `prevData` is the previous commit's data; the commit is signed by the key
//! in the account's DID document; and undoing the ops on the MST of the new
//! commit, using only the frame's blocks, gives back `prevData`.
//!
//! `PERCH_FIREHOSE_SEED` replays a run; `PERCH_FIREHOSE_STEPS` (default 60)
//! makes it longer.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use perch::cbor::{self, Ipld};
use perch::cid::Cid;
use perch::crypto::PublicKey;
use perch::repo::car::{CarLimits, CarReader};
use perch::repo::commit::Commit;
use perch::repo::mst::Mst;
use perch::repo::{BlockSource, MemoryBlocks};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::Perch;
use crate::support::firehose::{self, split_frame};
use crate::support::rng::Rng;

const MAX_FRAME: usize = 5_000_000;
const MAX_BLOCKS: usize = 2_000_000;
const MAX_OPS: usize = 200;
/// Collections without a Lexicon here, so records of any size and key are data only.
const COLLECTIONS: [&str; 3] = [
    "com.example.perch.note",
    "com.example.perch.mark",
    "com.example.perch.other",
];

fn record(collection: &str, text_len: usize) -> Value {
    json!({"$type": collection, "text": "x".repeat(text_len), "createdAt": "2026-01-01T00:00:00Z"})
}

/// What the test has written and the server acknowledged.
struct Writes<'a> {
    p: &'a Perch,
    rng: Rng,
    /// (collection, rkey) of every record that exists.
    live: BTreeSet<(String, String)>,
    next_key: u64,
    /// Commit CIDs the server acknowledged, in order.
    commits: Vec<String>,
}

impl Writes<'_> {
    fn fresh_key(&mut self) -> (String, String) {
        self.next_key += 1;
        let c = COLLECTIONS[self.rng.below(3) as usize].to_owned();
        (c, format!("k{:06}r{}", self.next_key, self.rng.below(1000)))
    }

    fn some_live(&mut self) -> Option<(String, String)> {
        let n = self.live.len() as u64;
        (n > 0).then(|| {
            self.live
                .iter()
                .nth(self.rng.below(n) as usize)
                .cloned()
                .unwrap()
        })
    }

    fn text_len(&mut self) -> usize {
        match self.rng.below(20) {
            0 => 20_000 + self.rng.below(80_000) as usize,
            1..=4 => 1_000 + self.rng.below(4_000) as usize,
            _ => self.rng.below(200) as usize,
        }
    }

    async fn send(&mut self, nsid: &str, body: Value) -> (u16, Value) {
        let (st, b) = self.p.post(nsid, &body).await;
        if st == 200 {
            let commit = b["commit"]["cid"].as_str().map(str::to_owned);
            if let Some(c) = commit {
                self.commits.push(c);
            }
        }
        (st, b)
    }

    /// One random write; the model follows only what was acknowledged.
    async fn random_step(&mut self) {
        let did = self.p.did.clone();
        match self.rng.below(10) {
            0..=3 => {
                let (c, r) = self.fresh_key();
                let len = self.text_len();
                let (st, b) = self
                    .send(
                        "com.atproto.repo.createRecord",
                        json!({"repo": did, "collection": c, "rkey": r, "record": record(&c, len)}),
                    )
                    .await;
                assert_eq!(st, 200, "{b}");
                self.live.insert((c, r));
            }
            4 | 5 => {
                let Some((c, r)) = self.some_live() else {
                    return;
                };
                let len = self.text_len();
                let (st, b) = self
                    .send(
                        "com.atproto.repo.putRecord",
                        json!({"repo": did, "collection": c, "rkey": r, "record": record(&c, len)}),
                    )
                    .await;
                assert_eq!(st, 200, "{b}");
            }
            6 | 7 => {
                let (c, r) = match self.some_live() {
                    Some(k) if self.rng.below(5) > 0 => k,
                    // Deleting what is not there commits nothing.
                    _ => self.fresh_key(),
                };
                let (st, b) = self
                    .send(
                        "com.atproto.repo.deleteRecord",
                        json!({"repo": did, "collection": c, "rkey": r}),
                    )
                    .await;
                assert_eq!(st, 200, "{b}");
                self.live.remove(&(c, r));
            }
            _ => {
                let n = 1 + self.rng.below(20) as usize;
                self.batch(n).await;
            }
        }
    }

    /// applyWrites of `n` mixed writes on distinct paths.
    async fn batch(&mut self, n: usize) -> (u16, Value) {
        let mut writes = Vec::new();
        let mut after = self.live.clone();
        let mut used = BTreeSet::new();
        for _ in 0..n {
            let existing = self.some_live().filter(|k| !used.contains(k));
            let kind = self.rng.below(3);
            let w = match (kind, existing) {
                (1, Some((c, r))) => {
                    used.insert((c.clone(), r.clone()));
                    let len = self.text_len().min(2_000);
                    json!({"$type": "com.atproto.repo.applyWrites#update", "collection": c, "rkey": r, "value": record(&c, len)})
                }
                (2, Some((c, r))) => {
                    used.insert((c.clone(), r.clone()));
                    after.remove(&(c.clone(), r.clone()));
                    json!({"$type": "com.atproto.repo.applyWrites#delete", "collection": c, "rkey": r})
                }
                _ => {
                    let (c, r) = self.fresh_key();
                    after.insert((c.clone(), r.clone()));
                    let len = self.text_len().min(2_000);
                    json!({"$type": "com.atproto.repo.applyWrites#create", "collection": c, "rkey": r, "value": record(&c, len)})
                }
            };
            writes.push(w);
        }
        let did = self.p.did.clone();
        let (st, b) = self
            .send(
                "com.atproto.repo.applyWrites",
                json!({"repo": did, "writes": writes}),
            )
            .await;
        if st == 200 {
            self.live = after;
        }
        (st, b)
    }

    /// applyWrites updating `a` and `b` to records whose encodings add up
    /// to exactly `total` bytes.
    async fn update_pair(
        &mut self,
        a: &(String, String),
        b: &(String, String),
        total: usize,
    ) -> u16 {
        let did = self.p.did.clone();
        // Two different records: equal ones would share one block.
        let writes: Vec<Value> = [(a, total / 2, "a"), (b, total - total / 2, "b")]
            .into_iter()
            .map(|((c, r), size, slot)| {
                json!({"$type": "com.atproto.repo.applyWrites#update", "collection": c, "rkey": r, "value": record_of_size(c, size, slot)})
            })
            .collect();
        let (st, body) = self
            .send(
                "com.atproto.repo.applyWrites",
                json!({"repo": did, "writes": writes}),
            )
            .await;
        // Refused for its size: the body (1,000,000 bytes at most, as at the reference
        // PDS) or, were the body allowed, the event (2 MB).
        if st != 200 {
            let body_limit = st == 413 && body["error"] == "PayloadTooLarge";
            let event_limit = st == 400
                && body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Max event size");
            assert!(body_limit || event_limit, "{st} {body}");
        }
        st
    }
}

/// A record for `collection` whose DAG-CBOR encoding is exactly `size` bytes,
/// marked with `slot`.
fn record_of_size(collection: &str, size: usize, slot: &str) -> Value {
    let bytes = |v: &Value| cbor::encode(&cbor::record_from_json(v).unwrap()).len();
    let marked = |n: usize| {
        let mut v = record(collection, n);
        v["slot"] = json!(slot);
        v
    };
    let mut n = size.saturating_sub(bytes(&marked(0)));
    loop {
        let v = marked(n);
        match bytes(&v).cmp(&size) {
            std::cmp::Ordering::Equal => return v,
            std::cmp::Ordering::Greater => n -= 1,
            std::cmp::Ordering::Less => n += 1,
        }
    }
}

/// What the previous `#commit` left, for the chain checks.
struct Prev {
    rev: String,
    data: Cid,
}

struct Figures {
    frames: usize,
    commits: usize,
    max_frame: usize,
    max_blocks: usize,
    max_ops: usize,
}

/// Checks one `#commit` body; returns what the next one must continue from.
fn check_commit(body: &Ipld, key: &PublicKey, prev: Option<&Prev>, fig: &mut Figures) -> Prev {
    let blocks = body.get("blocks").and_then(Ipld::as_bytes).expect("blocks");
    let ops = body.get("ops").and_then(Ipld::as_list).expect("ops");
    fig.max_blocks = fig.max_blocks.max(blocks.len());
    fig.max_ops = fig.max_ops.max(ops.len());
    assert!(
        blocks.len() <= MAX_BLOCKS,
        "blocks of {} bytes",
        blocks.len()
    );
    assert!(ops.len() <= MAX_OPS, "{} ops", ops.len());
    let rev = body.get("rev").and_then(Ipld::as_str).expect("rev");
    let prev_data = *body
        .get("prevData")
        .and_then(Ipld::as_link)
        .expect("prevData present");
    let commit_cid = *body.get("commit").and_then(Ipld::as_link).expect("commit");
    let mut mem = MemoryBlocks::new();
    let reader = CarReader::new(blocks, CarLimits::default()).expect("blocks are a CAR");
    assert_eq!(reader.roots(), [commit_cid], "the CAR's root is the commit");
    for b in reader {
        let (c, d) = b.expect("every block hashes to its CID");
        mem.insert(c, d);
    }
    let commit = Commit::decode(mem.get(&commit_cid).expect("commit block in the frame")).unwrap();
    commit
        .verify(key)
        .expect("commit signed by the DID document's key");
    assert_eq!(commit.rev.to_string(), rev);
    if let Some(p) = prev {
        assert!(rev > p.rev.as_str(), "rev {rev} after {}", p.rev);
        assert_eq!(
            body.get("since").and_then(Ipld::as_str),
            Some(p.rev.as_str()),
            "since is the previous rev"
        );
        assert_eq!(prev_data, p.data, "prevData is the previous commit's data");
    }
    // Undo the ops, last first, on the new tree with the frame's blocks only.
    let mut tree = Mst::load(commit.data);
    for op in ops.iter().rev() {
        let path = op.get("path").and_then(Ipld::as_str).expect("path");
        let action = op.get("action").and_then(Ipld::as_str).expect("action");
        let cid = op.get("cid").and_then(Ipld::as_link).copied();
        let before = op.get("prev").and_then(Ipld::as_link).copied();
        let now = tree
            .get(&mem, path.as_bytes())
            .expect("path proof in the frame");
        assert_eq!(now, cid, "{action} {path}: the tree holds the op's cid");
        if let Some(c) = cid {
            assert!(
                mem.get_block(&c).unwrap().is_some(),
                "{path}: record block in the frame"
            );
        }
        match (action, before) {
            ("create", None) => {
                tree.remove(&mem, path.as_bytes())
                    .expect("covering proof for the removal");
            }
            ("update" | "delete", Some(b)) => {
                tree.insert(&mem, path.as_bytes(), b)
                    .expect("covering proof for the insertion");
            }
            other => panic!("{path}: op {other:?} is not a valid action/prev pair"),
        }
    }
    assert_eq!(
        tree.root_cid(),
        prev_data,
        "inverting the ops gives prevData (rev {rev})"
    );
    Prev {
        rev: rev.to_owned(),
        data: commit.data,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_frames_stay_in_bounds_and_invert_to_prev_data() {
    let seed = std::env::var("PERCH_FIREHOSE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let steps: usize = std::env::var("PERCH_FIREHOSE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    println!("firehose: seed={seed} steps={steps}");
    let p = Perch::start().await;

    // The key relays would use: the one the DID document publishes.
    let (st, doc) = p
        .fetch("GET", "/.well-known/did.json", &[], Vec::new())
        .await;
    assert_eq!(st, 200);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    let key =
        PublicKey::from_did_key(&perch::identity::resolve::signing_key(&doc).unwrap()).unwrap();

    let ws = firehose::connect(p.addr, Some(0)).await;
    let (tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (_, mut read) = ws.split();
        while let Some(Ok(m)) = read.next().await {
            if let Message::Binary(b) = m
                && tx.send(b.to_vec()).is_err()
            {
                break;
            }
        }
    });

    let mut w = Writes {
        p: &p,
        rng: Rng(seed),
        live: BTreeSet::new(),
        next_key: 0,
        commits: Vec::new(),
    };
    for _ in 0..steps {
        w.random_step().await;
    }
    // The op limit, from both sides.
    let (st, b) = w.batch(MAX_OPS).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = w.batch(MAX_OPS + 1).await;
    assert_eq!(st, 400, "{b}");
    // The size edge: two records updated together, again and again. The
    // tree keeps its shape, so the commit grows byte for byte with them and
    // a bisection finds the largest batch the server takes: the body limit
    // (1,000,000 bytes) comes before the event cap (2 MB), so frames stay
    // about half the cap.
    let mut pair = Vec::new();
    for _ in 0..2 {
        let (c, r) = w.fresh_key();
        let (st, b) = w
            .send(
                "com.atproto.repo.createRecord",
                json!({"repo": p.did, "collection": c, "rkey": r, "record": record(&c, 10)}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        w.live.insert((c.clone(), r.clone()));
        pair.push((c, r));
    }
    let (mut lo, mut hi) = (800_000usize, 1_100_000usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if w.update_pair(&pair[0], &pair[1], mid).await == 200 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let largest = lo;

    let mut fig = Figures {
        frames: 0,
        commits: 0,
        max_frame: 0,
        max_blocks: 0,
        max_ops: 0,
    };
    let mut last_seq = 0i64;
    let mut prev: Option<Prev> = None;
    let mut seen = BTreeSet::new();
    let want: BTreeSet<String> = w.commits.iter().cloned().collect();
    while !want.is_subset(&seen) {
        let bytes = tokio::time::timeout(Duration::from_secs(30), frames.recv())
            .await
            .expect("every acknowledged commit arrives on the firehose")
            .expect("the firehose stays open");
        fig.frames += 1;
        fig.max_frame = fig.max_frame.max(bytes.len());
        assert!(bytes.len() <= MAX_FRAME, "frame of {} bytes", bytes.len());
        let (h, body) = split_frame(&bytes).expect("frame is header + body");
        assert_eq!(h.get("op"), Some(&Ipld::Integer(1)), "{h:?} {body:?}");
        let seq = body.get("seq").and_then(Ipld::as_integer).expect("seq");
        assert_eq!(seq, last_seq + 1, "seq follows {last_seq} with no gap");
        last_seq = seq;
        if h.get("t").and_then(Ipld::as_str) == Some("#commit") {
            fig.commits += 1;
            prev = Some(check_commit(&body, &key, prev.as_ref(), &mut fig));
            let c = body.get("commit").and_then(Ipld::as_link).unwrap();
            seen.insert(c.to_string());
        }
    }
    println!(
        "firehose: seed={seed} frames={} commits={} max_frame={} max_blocks={} max_ops={} largest_pair={largest}",
        fig.frames, fig.commits, fig.max_frame, fig.max_blocks, fig.max_ops
    );
    assert!(fig.max_ops == MAX_OPS, "the 200-op batch was seen");
    // The bisection reached the edge: a batch within a write's JSON framing of
    // the body limit was written, and its frame (checked above) carried it.
    assert!(largest > 990_000, "largest batch {largest} bytes");
    assert!(
        fig.max_blocks > largest && fig.max_blocks < MAX_BLOCKS,
        "largest frame {} bytes",
        fig.max_blocks
    );
}
