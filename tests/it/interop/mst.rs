//! MST vectors: key heights, common prefixes, and the Sync v1.1
//! commit-proof fixtures (roots before/after, proof blocks, and inverting
//! the ops in every order using only the proof blocks).

use perch::cid::{self, Cid};
use perch::repo::mst::{Mst, common_prefix_len, covering_proof, key_height};
use perch::repo::{BlockSource, MemoryBlocks};

#[test]
fn key_heights() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let v = super::read_json(&dir.join("mst/key_heights.json"));
    let v = v.as_array().unwrap();
    assert!(!v.is_empty());
    for c in v {
        let key = c["key"].as_str().unwrap();
        assert_eq!(
            u64::from(key_height(key.as_bytes())),
            c["height"].as_u64().unwrap(),
            "{key}"
        );
    }
}

#[test]
fn common_prefixes() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let v = super::read_json(&dir.join("mst/common_prefix.json"));
    let v = v.as_array().unwrap();
    assert!(!v.is_empty());
    for c in v {
        let (l, r) = (c["left"].as_str().unwrap(), c["right"].as_str().unwrap());
        assert_eq!(
            common_prefix_len(l.as_bytes(), r.as_bytes()) as u64,
            c["len"].as_u64().unwrap(),
            "{l:?} {r:?}"
        );
    }
}

#[test]
fn example_keys_have_their_stated_height() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let keys = super::vector_lines(&dir.join("mst/example_keys.txt"));
    assert!(keys.len() > 100);
    for k in keys {
        let stated: u32 = k[1..2].parse().unwrap();
        assert_eq!(key_height(k.as_bytes()), stated, "{k}");
    }
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn permutations(items: &[Op]) -> Vec<Vec<Op>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

#[derive(Clone)]
enum Op {
    UndoAdd(String),
    UndoDel(String),
}

/// A block source that only has the proof blocks: reading anything else
/// fails the inversion, which is the point of the test.
struct Only<'a>(&'a MemoryBlocks);
impl BlockSource for Only<'_> {
    fn get_block(&self, c: &Cid) -> Result<Option<Vec<u8>>, perch::repo::RepoError> {
        self.0.get_block(c)
    }
}

#[test]
fn commit_proof_fixtures() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let v = super::read_json(&dir.join("firehose/commit-proof-fixtures.json"));
    let fixtures = v.as_array().unwrap();
    assert!(!fixtures.is_empty());
    for f in fixtures {
        let name = f["comment"].as_str().unwrap();
        let leaf = cid::parse(f["leafValue"].as_str().unwrap()).unwrap();
        let mut store = MemoryBlocks::new();
        let mut t = Mst::new();
        for k in strs(&f["keys"]) {
            t.insert(&store, k.as_bytes(), leaf).unwrap();
        }
        assert_eq!(
            t.root_cid().to_string(),
            f["rootBeforeCommit"],
            "{name}: before"
        );
        store.extend(t.unstored_blocks());
        let before = Mst::load(t.root_cid());
        let mut t = before.clone();
        let (adds, dels) = (strs(&f["adds"]), strs(&f["dels"]));
        for k in &adds {
            t.insert(&store, k.as_bytes(), leaf).unwrap();
        }
        for k in &dels {
            assert!(
                t.remove(&store, k.as_bytes()).unwrap().is_some(),
                "{name}: del {k}"
            );
        }
        assert_eq!(
            t.root_cid().to_string(),
            f["rootAfterCommit"],
            "{name}: after"
        );
        store.extend(t.unstored_blocks());
        let after = Mst::load(t.root_cid());

        // The covering proofs of every touched key, computed on the new tree.
        let mut proof = MemoryBlocks::new();
        for k in adds.iter().chain(&dels) {
            proof.extend(covering_proof(&store, &after, k.as_bytes()).unwrap());
        }
        for c in strs(&f["blocksInProof"]) {
            assert!(
                proof.contains(&cid::parse(&c).unwrap()),
                "{name}: proof lacks {c}"
            );
        }

        // Invert in every order with only the proof blocks.
        let ops: Vec<Op> = adds
            .iter()
            .map(|k| Op::UndoAdd(k.clone()))
            .chain(dels.iter().map(|k| Op::UndoDel(k.clone())))
            .collect();
        let only = Only(&proof);
        for order in permutations(&ops) {
            let mut t = after.clone();
            for op in order {
                match op {
                    Op::UndoAdd(k) => {
                        t.remove(&only, k.as_bytes()).unwrap();
                    }
                    Op::UndoDel(k) => {
                        t.insert(&only, k.as_bytes(), leaf).unwrap();
                    }
                }
            }
            assert_eq!(t.root_cid(), before.root_cid(), "{name}: inversion");
        }
    }
}
