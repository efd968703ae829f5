//! Malformed repositories for `com.atproto.repo.importRepo` (reliability plan
//! items 9 and 11, figure 6) against a real `perch serve --dev`.
//!
//! Every case starts from a valid CAR the same server exported
//! (`getRepo`) and breaks one thing: the CAR framing, the commit, the MST,
//! or a record (the DAG-CBOR bombs of item 9 arrive as record blocks, the one
//! place perch takes DAG-CBOR from outside). Cases that need a valid
//! signature are signed with the account's own repo key, read from the data
//! directory as its owner could, so the one broken thing is what is refused.
//! Each must get a 400 (413 for the oversized body) with a message naming
//! the fault, leave every repository table as it was (compared through a
//! read-only SQLite connection), and leave the server answering.
//!
//! Prints `car: cases=N rejected=N db_unchanged=N` (scripts/reliability.sh,
//! figure 6) and one `cbor case=… ms=…` line per bomb (time is measured,
//! not asserted). With `PERCH_FUZZ_SEEDS=DIR` the cases are also written to
//! `DIR/car_read/` and `DIR/cbor_decode/` as fuzzing seeds.

use std::collections::BTreeMap;
use std::time::Instant;

use perch::cbor::{self, Ipld};
use perch::cid::{self, Cid};
use perch::crypto::{KeyType, Keypair};
use perch::repo::MemoryBlocks;
use perch::repo::car::{CarLimits, CarReader, write_car};
use perch::repo::commit::Commit;
use perch::repo::mst::{Mst, key_height};
use serde_json::{Value, json};

use crate::support::client::raw;
use crate::support::in_process::{Boot, InProcess};
use crate::support::stand_in::did_web_server;
use crate::support::{Perch, assert_xrpc_error, db};

/// A CAR taken apart: header roots and blocks in file order.
#[derive(Clone)]
struct Car {
    roots: Vec<Cid>,
    blocks: Vec<(Cid, Vec<u8>)>,
}

impl Car {
    fn parse(bytes: &[u8]) -> Car {
        let r = CarReader::new(bytes, CarLimits::default()).unwrap();
        let roots = r.roots().to_vec();
        let blocks = r.collect::<Result<Vec<_>, _>>().unwrap();
        Car { roots, blocks }
    }

    fn bytes(&self) -> Vec<u8> {
        write_car(
            &self.roots,
            self.blocks.iter().map(|(c, b)| (c, b.as_slice())),
        )
    }

    fn store(&self) -> MemoryBlocks {
        let mut m = MemoryBlocks::new();
        for (c, b) in &self.blocks {
            m.insert(*c, b.clone());
        }
        m
    }

    fn get(&self, c: &Cid) -> &[u8] {
        &self.blocks.iter().find(|(x, _)| x == c).unwrap().1
    }

    fn commit(&self) -> Commit {
        Commit::decode(self.get(&self.roots[0])).unwrap()
    }

    fn without(&self, c: &Cid) -> Car {
        let mut out = self.clone();
        out.blocks.retain(|(x, _)| x != c);
        out
    }

    fn put(&mut self, c: Cid, b: Vec<u8>) {
        if !self.blocks.iter().any(|(x, _)| *x == c) {
            self.blocks.push((c, b));
        }
    }

    /// The same blocks under a new commit block (first, as exports put it).
    fn with_commit_block(&self, bytes: Vec<u8>) -> Car {
        let old = self.roots[0];
        let c = cid::for_cbor(&bytes);
        let mut out = self.without(&old);
        out.blocks.insert(0, (c, bytes));
        out.roots = vec![c];
        out
    }

    /// A commit over `data` for `did`, signed by `key`; `extra` blocks added.
    fn recommit(&self, did: &str, data: Cid, extra: &MemoryBlocks, key: &Keypair) -> Car {
        let old = self.commit();
        let (_, bytes) = Commit::sign(did, data, old.rev, key).to_block();
        let mut out = self.with_commit_block(bytes);
        for (c, b) in extra.iter() {
            out.put(*c, b.clone());
        }
        out
    }
}

/// An MST node block as plain data: full keys, values, child links.
#[derive(Clone, Debug)]
struct RawNode {
    left: Option<Cid>,
    entries: Vec<(Vec<u8>, Cid, Option<Cid>)>,
}

fn link(v: Option<&Ipld>) -> Option<Cid> {
    v.and_then(Ipld::as_link).copied()
}

impl RawNode {
    fn decode(bytes: &[u8]) -> RawNode {
        let v = cbor::decode(bytes).unwrap();
        let mut prev: Vec<u8> = Vec::new();
        let entries = v
            .get("e")
            .and_then(Ipld::as_list)
            .unwrap()
            .iter()
            .map(|e| {
                let p = e.get("p").and_then(Ipld::as_integer).unwrap() as usize;
                let mut key = prev[..p].to_vec();
                key.extend_from_slice(e.get("k").and_then(Ipld::as_bytes).unwrap());
                prev = key.clone();
                let value = *e.get("v").and_then(Ipld::as_link).unwrap();
                (key, value, link(e.get("t")))
            })
            .collect();
        RawNode {
            left: link(v.get("l")),
            entries,
        }
    }

    /// Canonical bytes (maximal prefix compression), whatever the order.
    fn encode(&self) -> Vec<u8> {
        let opt = |c: Option<Cid>| c.map_or(Ipld::Null, Ipld::Link);
        let mut prev: &[u8] = &[];
        let mut list = Vec::new();
        for (k, v, t) in &self.entries {
            let p = prev.iter().zip(k).take_while(|(a, b)| a == b).count();
            list.push(perch::ipld_map! {
                "k" => Ipld::Bytes(k[p..].to_vec()),
                "p" => Ipld::Integer(p as i64),
                "t" => opt(*t),
                "v" => Ipld::Link(*v),
            });
            prev = k;
        }
        cbor::encode(&perch::ipld_map! { "e" => Ipld::List(list), "l" => opt(self.left) })
    }

    fn children(&self) -> Vec<Cid> {
        self.left
            .iter()
            .chain(self.entries.iter().filter_map(|e| e.2.as_ref()))
            .copied()
            .collect()
    }

    fn layer(&self) -> Option<u32> {
        self.entries.first().map(|e| key_height(&e.0))
    }
}

/// Every node of the tree under `root`, parents before children.
fn nodes(car: &Car, root: Cid) -> Vec<(Cid, RawNode)> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(c) = todo.pop() {
        let n = RawNode::decode(car.get(&c));
        todo.extend(n.children());
        out.push((c, n));
    }
    out
}

/// Replace node `target` by `new` (bytes) and re-link every node above it;
/// the new nodes go into `out`. Returns the new root.
fn rewrite(car: &Car, root: Cid, target: Cid, new: &[u8], out: &mut MemoryBlocks) -> Option<Cid> {
    if root == target {
        let c = cid::for_cbor(new);
        out.insert(c, new.to_vec());
        return Some(c);
    }
    let mut n = RawNode::decode(car.get(&root));
    let mut changed = false;
    if let Some(l) = n.left
        && let Some(c) = rewrite(car, l, target, new, out)
    {
        n.left = Some(c);
        changed = true;
    }
    for e in &mut n.entries {
        if let Some(t) = e.2
            && let Some(c) = rewrite(car, t, target, new, out)
        {
            e.2 = Some(c);
            changed = true;
        }
    }
    changed.then(|| {
        let b = n.encode();
        let c = cid::for_cbor(&b);
        out.insert(c, b);
        c
    })
}

/// A key for `collection` whose MST height is `height`.
fn key_at_height(collection: &str, height: u32, tag: &str) -> Vec<u8> {
    (0..)
        .map(|i| format!("{collection}/{tag}{i}").into_bytes())
        .find(|k| key_height(k) == height)
        .unwrap()
}

/// One hostile upload: what it is, the bytes, and what must come back.
struct Case {
    name: String,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
    /// A piece of the message that names the fault.
    says: &'static str,
}

fn case(name: &str, body: Vec<u8>, says: &'static str) -> Case {
    Case {
        name: name.into(),
        body,
        status: 400,
        error: "InvalidRequest",
        says,
    }
}

/// The CAR cases: framing, commit, MST.
fn car_cases(base: &Car, did: &str, key: &Keypair) -> Vec<Case> {
    let mut cases = Vec::new();
    let data = base.commit().data;
    let store = base.store();
    let tree_nodes = nodes(base, data);
    let (root_cid, root) = tree_nodes[0].clone();
    let leaf_nodes: Vec<&(Cid, RawNode)> = tree_nodes
        .iter()
        .filter(|(_, n)| n.layer() == Some(0))
        .collect();
    assert!(
        root.layer().unwrap_or(0) >= 1 && leaf_nodes.len() >= 2,
        "the sample repo needs an MST of two layers at least"
    );
    let records: Vec<Cid> = Mst::load(data)
        .entries(&store)
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();

    // Framing.
    let mut c = base.clone();
    c.roots.clear();
    cases.push(case("zero roots", c.bytes(), "exactly one root"));
    let mut c = base.clone();
    c.roots.push(records[0]);
    cases.push(case("two roots", c.bytes(), "exactly one root"));
    let mut c = base.clone();
    let i = c.blocks.iter().position(|(x, _)| *x == records[0]).unwrap();
    c.blocks[i].1.push(0);
    cases.push(case(
        "block CID does not match its bytes",
        c.bytes(),
        "does not hash to its CID",
    ));
    let header_len = {
        let empty = write_car(&base.roots, std::iter::empty());
        empty.len()
    };
    let mut b = base.bytes()[..header_len].to_vec();
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    b.extend_from_slice(&[0u8; 64]);
    cases.push(case("section length varint 2^64-1", b, "block too large"));
    let mut b = base.bytes()[..header_len].to_vec();
    b.extend_from_slice(&[0x80; 10]);
    b.push(0x01);
    cases.push(case("section length varint over 64 bits", b, "bad varint"));
    let mut b = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    b.extend_from_slice(&base.bytes());
    cases.push(case("header length varint 2^63-1", b, "header size"));
    let mut b = base.bytes();
    let (last_cid, last) = base.blocks.last().unwrap();
    let section = last_cid.to_bytes().len() + last.len();
    let cut = b.len() - section;
    b.truncate(cut);
    // The varint before the last section, rewritten to promise more.
    let mut v = Vec::new();
    let mut n = (section + 1000) as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(byte);
            break;
        }
        v.push(byte | 0x80);
    }
    let old_len = {
        let mut n = section as u64;
        let mut k = 1;
        while n >= 0x80 {
            n >>= 7;
            k += 1;
        }
        k
    };
    b.truncate(b.len() - old_len);
    b.extend_from_slice(&v);
    b.extend_from_slice(&last_cid.to_bytes());
    b.extend_from_slice(last);
    cases.push(case(
        "block length beyond the end of the file",
        b,
        "ends in the middle",
    ));
    let mut c = base.clone();
    for i in 0u32..100_000 {
        let d = i.to_be_bytes().to_vec();
        c.blocks.push((cid::for_raw(&d), d));
    }
    cases.push(case(
        "100,000 tiny blocks the repo does not use",
        c.bytes(),
        "does not use",
    ));
    let mut h = write_car(&base.roots, std::iter::empty());
    // The header's `version: 1` is its last byte.
    *h.last_mut().unwrap() = 0x02;
    let mut b = h;
    b.extend_from_slice(&base.bytes()[header_len..]);
    cases.push(case("CAR version 2", b, "version must be 1"));
    cases.push(case("empty body", Vec::new(), "ends in the middle"));

    // The commit.
    let c = base.without(&base.roots[0]);
    cases.push(case("commit block missing", c.bytes(), "is missing"));
    let c = base.recommit(
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        data,
        &MemoryBlocks::new(),
        key,
    );
    cases.push(case("commit for another DID", c.bytes(), "belongs to"));
    let mut bad = base.commit();
    bad.sig[10] ^= 0x01;
    cases.push(case(
        "commit signature altered",
        base.with_commit_block(bad.encode()).bytes(),
        "signature",
    ));
    let stranger = Keypair::generate(KeyType::K256, &mut rand_core::OsRng);
    let c = base.recommit(did, data, &MemoryBlocks::new(), &stranger);
    cases.push(case("commit signed by another key", c.bytes(), "signature"));
    let mut b = base.get(&base.roots[0]).to_vec();
    b.push(0x00);
    cases.push(case(
        "commit with trailing bytes",
        base.with_commit_block(b).bytes(),
        "trailing bytes",
    ));
    let mut v = cbor::decode(base.get(&base.roots[0])).unwrap();
    if let Ipld::Map(m) = &mut v {
        m.insert("version".into(), Ipld::Integer(4));
    }
    cases.push(case(
        "commit version 4",
        base.with_commit_block(cbor::encode(&v)).bytes(),
        "unsupported version",
    ));
    let c = base.without(&root_cid);
    cases.push(case("MST root missing", c.bytes(), "is missing"));

    // The MST, every variant re-signed so only the tree is wrong.
    let signed =
        |new_root: Cid, extra: &MemoryBlocks| base.recommit(did, new_root, extra, key).bytes();
    let (leaf_cid, leaf) = leaf_nodes
        .iter()
        .find(|(_, n)| n.entries.len() >= 2)
        .map(|x| (*x).clone())
        .expect("a leaf with two keys");
    let mut out = MemoryBlocks::new();
    let mut n = leaf.clone();
    n.entries.swap(0, 1);
    let r = rewrite(base, data, leaf_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST keys unsorted in a node",
        signed(r, &out),
        "out of order",
    ));
    let mut out = MemoryBlocks::new();
    let mut n = leaf.clone();
    n.entries[1].0 = n.entries[0].0.clone();
    let r = rewrite(base, data, leaf_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST key duplicated in a node",
        signed(r, &out),
        "out of order",
    ));
    // A key that sorts after everything, in the left-most leaf: each node is
    // in order, the tree is not.
    let (first_leaf_cid, first_leaf) = leaf_nodes
        .iter()
        .min_by_key(|(_, n)| n.entries[0].0.clone())
        .map(|x| (*x).clone())
        .unwrap();
    let mut out = MemoryBlocks::new();
    let mut n = first_leaf.clone();
    n.entries
        .push((key_at_height("zz.perch.test", 0, "late"), records[0], None));
    let r = rewrite(base, data, first_leaf_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST key in the wrong subtree",
        signed(r, &out),
        "not in order",
    ));
    // The same key in two leaves.
    let (other_cid, other) = leaf_nodes
        .iter()
        .find(|(c, _)| *c != first_leaf_cid)
        .map(|x| (*x).clone())
        .unwrap();
    let mut out = MemoryBlocks::new();
    let mut n = first_leaf.clone();
    n.entries.push(other.entries[0].clone());
    let r = rewrite(base, data, first_leaf_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST key duplicated across nodes",
        signed(r, &out),
        "not in order",
    ));
    // A key of height 1 among height-0 keys.
    let mut out = MemoryBlocks::new();
    let mut n = other.clone();
    let high = key_at_height("app.bsky.feed.post", 1, "high");
    n.entries.push((high, records[0], None));
    n.entries.sort_by(|a, b| a.0.cmp(&b.0));
    let r = rewrite(base, data, other_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST key on the wrong layer",
        signed(r, &out),
        "wrong layer",
    ));
    // An empty node where a subtree was.
    let mut out = MemoryBlocks::new();
    let empty = RawNode {
        left: None,
        entries: Vec::new(),
    };
    let r = rewrite(base, data, other_cid, &empty.encode(), &mut out).unwrap();
    cases.push(case(
        "empty non-root MST node",
        signed(r, &out),
        "empty non-root",
    ));
    // A node reachable twice (two gaps share one subtree): a DAG, which
    // repeats its keys. A true cycle cannot be built, as a node would have
    // to contain its own hash; the forged-CID version follows.
    let (parent_cid, parent) = tree_nodes
        .iter()
        .find(|(_, n)| n.children().len() >= 2)
        .cloned()
        .unwrap();
    let mut out = MemoryBlocks::new();
    let mut n = parent.clone();
    let first_child = n.children()[0];
    let slot = n
        .entries
        .iter()
        .position(|e| e.2.is_some_and(|t| t != first_child))
        .unwrap();
    n.entries[slot].2 = Some(first_child);
    let r = rewrite(base, data, parent_cid, &n.encode(), &mut out).unwrap();
    cases.push(case(
        "MST subtree linked twice",
        signed(r, &out),
        "not in order",
    ));
    let mut n = root.clone();
    n.left = Some(root_cid);
    let mut c = base.clone();
    let i = c.blocks.iter().position(|(x, _)| *x == root_cid).unwrap();
    c.blocks[i].1 = n.encode();
    cases.push(case(
        "MST cycle A→A under a forged CID",
        c.bytes(),
        "does not hash to its CID",
    ));
    let c = base.without(&records[1]);
    cases.push(case("record block missing", c.bytes(), "is missing"));
    let c = base.without(&other_cid);
    cases.push(case("inner MST node missing", c.bytes(), "is missing"));

    // Leaves that are not records.
    let mut tree = Mst::load(data);
    tree.insert(&store, b"nocollection", records[0]).unwrap();
    let r = tree.root_cid();
    let out = tree.unstored_blocks();
    cases.push(case(
        "MST key without a collection",
        signed(r, &out),
        "record path",
    ));
    let mut tree = Mst::load(data);
    tree.insert(&store, b"Not An NSID/abc", records[0]).unwrap();
    let out = tree.unstored_blocks();
    cases.push(case(
        "MST key with a bad collection",
        signed(tree.root_cid(), &out),
        "record path",
    ));
    let raw_record = b"{\"$type\":\"app.bsky.feed.post\"}".to_vec();
    let raw_cid = cid::for_raw(&raw_record);
    let mut extra = MemoryBlocks::new();
    extra.insert(raw_cid, raw_record);
    let mut tree = Mst::load(data);
    tree.insert(&store, b"app.bsky.feed.post/rawcodec", raw_cid)
        .unwrap();
    extra.extend(tree.unstored_blocks());
    cases.push(case(
        "record block with the raw codec",
        signed(tree.root_cid(), &extra),
        "not DAG-CBOR",
    ));
    cases
}

/// DAG-CBOR bombs and non-canonical forms (item 9), each as a record.
fn cbor_bombs(some_cid: Cid) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    // `{"a": X}` around a hostile value X.
    let in_map = |x: &[u8]| [&[0xa1, 0x61, b'a'][..], x].concat();
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x01);
    let mut bad_prefix = vec![0xd8, 0x2a, 0x58, 0x25, 0x01];
    bad_prefix.extend_from_slice(&some_cid.to_bytes());
    let mut good_link = vec![0xd8, 0x2a, 0x58, 0x25, 0x00];
    good_link.extend_from_slice(&some_cid.to_bytes());
    vec![
        ("nesting depth 10,000", in_map(&deep), "nesting too deep"),
        (
            "array of declared length 2^31",
            in_map(&[0x9a, 0x80, 0, 0, 0]),
            "container too long",
        ),
        (
            "map of declared length 2^31",
            vec![0xba, 0x80, 0, 0, 0],
            "container too long",
        ),
        (
            "byte string of declared length 2^63",
            in_map(&[0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            "ends early",
        ),
        (
            "text string of declared length 2^63",
            in_map(&[0x7b, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            "ends early",
        ),
        (
            "indefinite-length array",
            in_map(&[0x9f, 0x01, 0xff]),
            "indefinite length",
        ),
        (
            "indefinite-length map",
            vec![0xbf, 0x61, b'a', 0x01, 0xff],
            "indefinite length",
        ),
        (
            "indefinite-length byte string",
            in_map(&[0x5f, 0x41, 0x00, 0xff]),
            "indefinite length",
        ),
        (
            "indefinite-length text string",
            in_map(&[0x7f, 0x61, b'x', 0xff]),
            "indefinite length",
        ),
        (
            "non-minimal integer",
            in_map(&[0x18, 0x01]),
            "shortest form",
        ),
        (
            "non-minimal length",
            in_map(&[0x78, 0x01, b'x']),
            "shortest form",
        ),
        (
            "duplicate map keys",
            vec![0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02],
            "duplicated or out of order",
        ),
        (
            "unsorted map keys",
            vec![0xa2, 0x62, b'b', b'b', 0x01, 0x61, b'a', 0x02],
            "duplicated or out of order",
        ),
        (
            "64-bit float",
            in_map(&[0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
            "floats",
        ),
        ("16-bit float", in_map(&[0xf9, 0x3c, 0x00]), "floats"),
        ("undefined", in_map(&[0xf7]), "simple value"),
        (
            "tag 1 (epoch time)",
            in_map(&[0xc1, 0x01]),
            "tag other than 42",
        ),
        (
            "CID tag without the 0x00 prefix",
            in_map(&bad_prefix),
            "0x00 multibase prefix",
        ),
        (
            "trailing bytes",
            [in_map(&good_link), vec![0x00]].concat(),
            "trailing bytes",
        ),
        ("a record that is not a map", vec![0x01], "not a map"),
    ]
}

async fn import(p: &Perch, body: Vec<u8>) -> (u16, Value) {
    p.post_raw(
        "com.atproto.repo.importRepo",
        "application/vnd.ipld.car",
        body,
    )
    .await
}

/// Writes a case as a fuzzing seed (at most 64 KiB, the fuzz runs' `-max_len`).
fn seed(dir: Option<&std::path::Path>, target: &str, name: &str, bytes: &[u8]) {
    if let Some(d) = dir.filter(|_| bytes.len() <= 64 * 1024) {
        let d = d.join(target);
        std::fs::create_dir_all(&d).unwrap();
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(d.join(format!("hostile-{file}")), bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_repositories_are_refused_and_change_nothing() {
    let seeds = std::env::var_os("PERCH_FUZZ_SEEDS").map(std::path::PathBuf::from);
    let p = Perch::start().await;
    // Enough records for an MST of two or more layers.
    for i in 0..60 {
        let collection = ["app.bsky.feed.post", "com.example.perch.note"][i % 2];
        p.create(
            collection,
            None,
            json!({"$type": collection, "text": format!("sample {i}"), "createdAt": "2026-01-01T00:00:00Z"}),
        )
        .await;
    }
    let exported = p.get_repo().await.to_vec();
    let base = Car::parse(&exported);
    let key = perch::keys::KeyDir::open(&p.data_dir())
        .unwrap()
        .keypair(perch::keys::REPO_KEY)
        .unwrap()
        .expect("the dev account's repo key");
    assert!(base.commit().verify(&key.public_key()).is_ok());
    let some_cid = base.blocks[1].0;

    // importRepo is for an account being moved in.
    let before = p.db_digest();
    let (st, b) = import(&p, exported.clone()).await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(b["message"].as_str().unwrap().contains("active"), "{b}");
    assert_eq!(p.db_digest(), before);
    let (st, b) = p
        .post("com.atproto.server.deactivateAccount", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    // The untouched export imports: the cases below fail for what they break.
    let (st, b) = import(&p, exported.clone()).await;
    assert_eq!(st, 200, "{b}\n{}", p.log());
    let before = p.db_digest();

    let mut cases = car_cases(&base, &p.did, &key);
    let (st, b) = p
        .post_raw(
            "com.atproto.repo.importRepo",
            "application/json",
            exported.clone(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    // Over the size cap: refused from the Content-Length, before the body.
    let oversized = format!(
        "POST /xrpc/com.atproto.repo.importRepo HTTP/1.1\r\nhost: localhost\r\n\
         authorization: {}\r\ncontent-type: application/vnd.ipld.car\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        p.bearer(),
        512 * 1024 * 1024 + 1
    );
    cases.push(Case {
        name: "body over the 512 MiB import cap".into(),
        body: oversized.into_bytes(),
        status: 413,
        error: "PayloadTooLarge",
        says: "larger than",
    });

    // The DAG-CBOR bombs, each a record in an otherwise valid repo.
    let data = base.commit().data;
    let store = base.store();
    let bombs = cbor_bombs(some_cid);
    let n_bombs = bombs.len();
    for (i, (name, bytes, says)) in bombs.into_iter().enumerate() {
        seed(seeds.as_deref(), "cbor_decode", name, &bytes);
        let rec = cid::for_cbor(&bytes);
        let mut extra = MemoryBlocks::new();
        extra.insert(rec, bytes);
        let mut tree = Mst::load(data);
        tree.insert(
            &store,
            format!("app.bsky.feed.post/bomb{i}").as_bytes(),
            rec,
        )
        .unwrap();
        extra.extend(tree.unstored_blocks());
        let car = base.recommit(&p.did, tree.root_cid(), &extra, &key);
        cases.push(Case {
            name: format!("cbor: {name}"),
            body: car.bytes(),
            status: 400,
            error: "InvalidRequest",
            says,
        });
    }

    let (mut rejected, mut unchanged, mut failures) = (0, 0, Vec::new());
    let mut bomb_ms = BTreeMap::new();
    for c in &cases {
        let started = Instant::now();
        let (st, b) = if c.status == 413 {
            raw(p.addr, &c.body).await
        } else {
            seed(seeds.as_deref(), "car_read", &c.name, &c.body);
            import(&p, c.body.clone()).await
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let message = b["message"].as_str().unwrap_or("");
        let ok = st == c.status && b["error"] == c.error && message.contains(c.says);
        if ok {
            rejected += 1;
        } else {
            failures.push(format!(
                "{}: want {} {} ~{:?}, got {st} {b}",
                c.name, c.status, c.error, c.says
            ));
        }
        assert!(p.alive().await, "{}: the server stopped answering", c.name);
        if p.db_digest() == before {
            unchanged += 1;
        } else {
            failures.push(format!("{}: the database changed", c.name));
        }
        println!(
            "car case={:?} status={st} ms={ms:.1} message={message:?}",
            c.name
        );
        if let Some(n) = c.name.strip_prefix("cbor: ") {
            bomb_ms.insert(n.to_owned(), ms);
        }
    }
    for (name, ms) in &bomb_ms {
        println!("cbor case={name:?} ms={ms:.1}");
    }
    println!(
        "cbor: cases={n_bombs} max_ms={:.1}",
        bomb_ms.values().copied().fold(0.0, f64::max)
    );
    println!(
        "car: cases={} rejected={rejected} db_unchanged={unchanged}",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Still a working server: the valid export imports again.
    let (st, b) = import(&p, exported).await;
    assert_eq!(st, 200, "{b}");
}

/// A repo of `n` posts for `did`, signed by `key`, as a CAR.
fn repo_signed_by(did: &str, n: usize, key: &Keypair) -> Vec<u8> {
    let mut blocks = MemoryBlocks::new();
    let mut tree = Mst::new();
    for i in 0..n {
        let rec = perch::ipld_map! {
            "$type" => Ipld::String("app.bsky.feed.post".into()),
            "text" => Ipld::String(format!("moved {i}")),
        };
        let (c, b) = cbor::encode_with_cid(&rec);
        blocks.insert(c, b);
        tree.insert(
            &blocks,
            format!("app.bsky.feed.post/3moved{i:06}").as_bytes(),
            c,
        )
        .unwrap();
    }
    blocks.extend(tree.unstored_blocks());
    let rev = perch::tid::Tid::new(1_700_000_000_000_000, 7);
    let (cc, cb) = Commit::sign(did, tree.root_cid(), rev, key).to_block();
    blocks.insert(cc, cb);
    perch::repo::export::write_repo_car(&blocks, &cc, Vec::new()).unwrap()
}

/// An account moving in from elsewhere: its repo is signed by the key its DID
/// document names (here a did:web on loopback whose key the test holds, as
/// the old server would), and nothing else is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_in_repo_must_be_signed_by_the_did_documents_key() {
    use std::sync::{Arc, Mutex};

    let old_key = Keypair::generate(KeyType::K256, &mut rand_core::OsRng);
    let doc = Arc::new(Mutex::new(Value::Null));
    let port = did_web_server(Arc::clone(&doc)).await;
    let did = format!("did:web:localhost%3A{port}");
    let doc_with = |key: &Keypair| {
        json!({
            "id": did,
            "alsoKnownAs": ["at://mover.test"],
            "verificationMethod": [{
                "id": format!("{did}#atproto"), "type": "Multikey", "controller": did,
                "publicKeyMultibase": key.public_key().to_multikey(),
            }],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "https://old.example.com"}],
        })
    };
    *doc.lock().unwrap() = doc_with(&old_key);

    let mut s = InProcess::boot(
        Boot {
            data: None,
            account: None,
        },
        |c| c.allow_loopback = true,
    )
    .await;
    let app = Arc::clone(&s.app);

    // createAccount with the DID, an invite, and the old server's token.
    let invite = app
        .accounts()
        .new_code(perch::account::Purpose::Invite)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": did, "aud": app.service_did, "lxm": "com.atproto.server.createAccount",
                        "iat": now, "exp": now + 60});
    let auth = perch::crypto::jwt::sign_es(&old_key, None, claims.as_object().unwrap());
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {auth}")),
            ],
            json!({"did": did, "handle": "mover.test", "password": "correct horse", "inviteCode": invite})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    s.token = b["accessJwt"].as_str().unwrap().to_owned();
    let s = &s;
    let import = |car: Vec<u8>| {
        s.post_raw(
            "com.atproto.repo.importRepo",
            "application/vnd.ipld.car",
            car,
        )
    };
    let db = app.config.data_dir.join("perch.sqlite");
    let stranger = Keypair::generate(KeyType::K256, &mut rand_core::OsRng);

    // Signed by someone else: refused, nothing stored.
    let before = db::digest(&db);
    let (st, b) = import(repo_signed_by(&did, 30, &stranger)).await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(b["message"].as_str().unwrap().contains("signature"), "{b}");
    assert_eq!(db::digest(&db), before);
    // Signed by the key the DID document names: imported.
    let (st, b) = import(repo_signed_by(&did, 30, &old_key)).await;
    assert_eq!(st, 200, "{b}");
    let after = db::digest(&db);
    assert_ne!(after, before);
    // The document now names another key: the old signature no longer counts.
    *doc.lock().unwrap() = doc_with(&stranger);
    let (st, b) = import(repo_signed_by(&did, 31, &old_key)).await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(b["message"].as_str().unwrap().contains("signature"), "{b}");
    // No document at all: the signature cannot be checked, so nothing is taken.
    *doc.lock().unwrap() = json!({"id": "did:web:elsewhere.example.com"});
    let (st, b) = import(repo_signed_by(&did, 31, &stranger)).await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("cannot check the repository's signature"),
        "{b}"
    );
    assert_eq!(db::digest(&db), after);
}
