//! Server hot paths, each against the way it was done before in the same run, so the
//! figures are ratios on one machine (run with `cargo bench --bench paths`; `BENCH_QUICK=1`
//! for the small sizes CI uses only to see that it still runs). One JSON object on stdout.
//!
//! - commit build + sign: 500 creates into a 10k-record repo, the tree loaded from its
//!   root for every commit (before) or kept between commits (`Mst::settled`, now)
//! - MST insert into a 100k-record tree, kept between inserts
//! - getRepo of 10k and 100k records from a real SQLite file: one lookup per block
//!   (before) against batched lookups in one snapshot per batch (now); total and time to
//!   the first 128 KiB
//! - a listRecords page of 50 records as JSON: decode + value trees + serialise (before)
//!   against transcoding straight from DAG-CBOR (now)
//! - a firehose frame: made from a stored body, and taken from the shared recent frames
#[path = "../tests/it/support/seeded.rs"]
mod seeded;

use std::hint::black_box;
use std::time::Instant;

use perch::cbor::{self, Ipld};
use perch::cid::Cid;
use perch::crypto::{KeyType, Keypair};
use perch::repo::build::{Change, Head, build};
use perch::repo::export::ExportWalk;
use perch::repo::mst::Mst;
use perch::repo::{BlockSource, MemoryBlocks, RepoError};
use perch::store::{Db, SqlBlocks, Store, repo};
use perch::tid::Tid;

const DID: &str = "did:plc:benchbenchbenchbenchbenc";

fn records(n: usize) -> Vec<(String, Ipld)> {
    seeded::seeded_records(7, n)
        .into_iter()
        .map(|(c, r, v)| {
            (
                format!("{c}/{r}"),
                cbor::record_from_json(&v).expect("record"),
            )
        })
        .collect()
}

/// A tree of `recs` with its blocks in `store`.
fn tree_of(store: &mut MemoryBlocks, recs: &[(String, Ipld)]) -> Mst {
    let mut tree = Mst::new();
    for (path, v) in recs {
        let (cid, bytes) = cbor::encode_with_cid(v);
        store.insert(cid, bytes);
        tree.insert(store, path.as_bytes(), cid).expect("insert");
    }
    store.extend(tree.unstored_blocks());
    tree.settled()
}

/// Microseconds per commit for `writes` creates on `tree`, starting each from the stored
/// root (`keep` false) or from the last commit's settled tree.
fn commits(store: &MemoryBlocks, root: Cid, writes: usize, keep: bool) -> f64 {
    let key = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).expect("key");
    let mut store = store.clone();
    let mut tree = Mst::load(root);
    let post = cbor::record_from_json(&serde_json::json!({
        "$type": "app.bsky.feed.post", "text": "a post", "createdAt": "2026-12-04T00:00:00.000Z"
    }))
    .expect("post");
    let t = Instant::now();
    for i in 0..writes {
        let head = Head {
            did: DID,
            tree: if keep {
                tree.clone()
            } else {
                Mst::load(tree.root_cid())
            },
        };
        let rev = Tid::new(1_800_000_000_000_000 + i as u64, 0);
        let change = Change::Create {
            path: format!("app.bsky.feed.post/{}", rev),
            record: post.clone(),
        };
        let built = build(&store, head, false, &[change], rev, &key).expect("build");
        let commit = built.commit.expect("a commit");
        for (c, b) in commit.blocks.iter() {
            store.insert(*c, b.clone());
        }
        tree = commit.tree.settled();
    }
    t.elapsed().as_secs_f64() * 1e6 / writes as f64
}

/// A source that answers one block at a time (the export before batching).
struct OneByOne<'a>(SqlBlocks<'a>);

impl BlockSource for OneByOne<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        self.0.get_block(cid)
    }
}

/// (total ms, ms to the first batch, SHA-256 of the CAR) of exporting `commit` in 128 KiB
/// batches.
fn export(store: &Store, commit: Cid, batched: bool) -> (f64, f64, [u8; 32]) {
    use sha2::Digest;
    let mut batches = Vec::new();
    let t = Instant::now();
    let mut walk = ExportWalk::new(commit);
    let mut first = None;
    let mut bytes = 0;
    loop {
        let mut out = Vec::with_capacity(128 * 1024);
        let done = store
            .read_blocking(|c: &Db| {
                let done = if batched {
                    let txn = c.begin_read()?;
                    walk.next_batch(&SqlBlocks(&txn), &mut out, 128 * 1024)
                } else {
                    walk.next_batch(&OneByOne(SqlBlocks(c)), &mut out, 128 * 1024)
                };
                Ok(done.expect("export"))
            })
            .expect("read");
        first.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
        bytes += out.len();
        batches.push(out); // hashed after the clock stops
        if done {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(bytes > 0);
    let mut car = sha2::Sha256::new();
    for b in &batches {
        car.update(b);
    }
    (ms, first.unwrap_or(0.0), car.finalize().into())
}

/// A SQLite repo of `n` records in `dir`; its commit CID.
fn sqlite_repo(dir: &std::path::Path, n: usize) -> (std::sync::Arc<Store>, Cid) {
    let mut blocks = MemoryBlocks::new();
    let tree = tree_of(&mut blocks, &records(n));
    let key = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).expect("key");
    let commit = perch::repo::commit::Commit::sign(DID, tree.root_cid(), Tid::new(1, 0), &key);
    let (cc, cb) = commit.to_block();
    blocks.insert(cc, cb);
    let store = Store::open(&dir.join("perch.sqlite")).expect("store");
    let w = store.open_writer().expect("writer");
    w.begin_write().expect("begin");
    for (c, b) in blocks.iter() {
        repo::put_block(&w, c, "3l000000000aa", b).expect("put");
    }
    w.commit().expect("commit");
    (store, cc)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let mut out = serde_json::json!({ "quick": quick });

    // Commit build + sign.
    let (base_n, writes) = if quick { (500, 20) } else { (10_000, 500) };
    let mut store = MemoryBlocks::new();
    let root = tree_of(&mut store, &records(base_n)).root_cid();
    let loaded = commits(&store, root, writes, false);
    let kept = commits(&store, root, writes, true);
    out["commit_build_sign_us_loaded"] = loaded.into();
    out["commit_build_sign_us_kept"] = kept.into();
    out["commit_build_sign_ratio"] = (loaded / kept).into();
    let key = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).expect("key");
    let t = Instant::now();
    for i in 0..200u32 {
        black_box(key.sign(&i.to_be_bytes()));
    }
    out["k256_sign_us"] = (t.elapsed().as_secs_f64() * 1e6 / 200.0).into();

    // MST insert into a big tree, kept between inserts as the writer keeps it.
    let big_n = if quick { 2_000 } else { 100_000 };
    let mut store = MemoryBlocks::new();
    let mut tree = tree_of(&mut store, &records(big_n));
    let inserts = if quick { 100 } else { 2_000 };
    let t = Instant::now();
    for i in 0..inserts {
        let k = format!("app.bsky.feed.like/3l{:011}", i);
        tree.insert(
            &store,
            k.as_bytes(),
            perch::cid::for_raw(&(i as u32).to_be_bytes()),
        )
        .expect("insert");
        black_box(tree.root_cid());
    }
    out[format!("mst_insert_into_{big_n}_us")] =
        (t.elapsed().as_secs_f64() * 1e6 / inserts as f64).into();

    // getRepo from SQLite.
    let sizes: &[usize] = if quick { &[1_000] } else { &[10_000, 100_000] };
    for &n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, commit) = sqlite_repo(dir.path(), n);
        let runs = if quick { 1 } else { 5 };
        let mut one = Vec::new();
        let mut batched = Vec::new();
        let mut ttfb = (Vec::new(), Vec::new());
        export(&store, commit, true); // warm the OS cache for both
        for _ in 0..runs {
            let (a, fa, car_a) = export(&store, commit, false);
            let (b, fb, car_b) = export(&store, commit, true);
            // Both ways must give the same CAR, or the figures compare different work.
            assert_eq!(car_a, car_b, "getRepo of {n}: the batched export differs");
            one.push(a);
            batched.push(b);
            ttfb.0.push(fa);
            ttfb.1.push(fb);
        }
        let (a, b) = (median(one), median(batched));
        out[format!("getrepo_{n}_ms_one_by_one")] = a.into();
        out[format!("getrepo_{n}_ms_batched")] = b.into();
        out[format!("getrepo_{n}_ratio")] = (a / b).into();
        out[format!("getrepo_{n}_ttfb_ms_one_by_one")] = median(ttfb.0).into();
        out[format!("getrepo_{n}_ttfb_ms_batched")] = median(ttfb.1).into();
    }

    // A listRecords page of 50.
    let page: Vec<(String, Cid, Vec<u8>)> = records(50)
        .into_iter()
        .map(|(path, v)| {
            let (c, b) = cbor::encode_with_cid(&v);
            (format!("at://{DID}/{path}"), c, b)
        })
        .collect();
    let rounds = if quick { 20 } else { 2_000 };
    let by_trees = || {
        let records: Vec<serde_json::Value> = page
            .iter()
            .map(|(uri, c, b)| {
                serde_json::json!({
                    "uri": uri, "cid": c.to_string(),
                    "value": cbor::to_json(&cbor::decode(b).expect("decode")),
                })
            })
            .collect();
        serde_json::json!({ "records": records }).to_string()
    };
    let transcoded = || {
        let mut s = Vec::with_capacity(16 * 1024);
        s.extend_from_slice(b"{\"records\":[");
        for (i, (uri, c, b)) in page.iter().enumerate() {
            if i > 0 {
                s.push(b',');
            }
            s.extend_from_slice(b"{\"uri\":");
            cbor::json_string(uri, &mut s);
            s.extend_from_slice(b",\"cid\":");
            cbor::json_string(&c.to_string(), &mut s);
            s.extend_from_slice(b",\"value\":");
            cbor::to_json_text(b, &mut s).expect("transcode");
            s.push(b'}');
        }
        s.extend_from_slice(b"]}");
        s
    };
    // Both ways must give the same page, or the figures compare different work.
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&transcoded()).expect("json"),
        serde_json::from_str::<serde_json::Value>(&by_trees()).expect("json"),
    );
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(by_trees());
    }
    let trees = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(transcoded());
    }
    let direct = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    out["list_page_50_us_value_trees"] = trees.into();
    out["list_page_50_us_transcoded"] = direct.into();
    out["list_page_ratio"] = (trees / direct).into();

    // Firehose frames.
    let body = cbor::encode(
        &cbor::record_from_json(&serde_json::json!({
            "seq": 12345, "repo": DID, "rev": "3l000000000aa", "since": "3l0000000009z",
            "commit": {"$link": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"},
            "blocks": {"$bytes": "AAAA".repeat(300)}, "ops": [], "time": "2026-12-04T00:00:00.000Z",
            "tooBig": false, "rebase": false, "blobs": []
        }))
        .expect("body"),
    );
    let rounds = if quick { 100 } else { 100_000 };
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(perch::firehose::frames::event("commit", &body));
    }
    out["frame_from_stored_body_us"] = (t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)).into();
    let recent = perch::firehose::recent::Recent::default();
    for seq in 0..256 {
        recent.push(seq, perch::firehose::frames::event("commit", &body).into());
    }
    let t = Instant::now();
    for i in 0..rounds {
        black_box(recent.after(254 - i64::from(i % 8), 100));
    }
    out["frame_from_recent_us"] = (t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)).into();
    println!("{out}");
}
