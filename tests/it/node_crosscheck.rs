//! Cross-check with the official implementation: `@atproto/repo` (run by
//! `tests/node/build-repo.mjs`) and perch build the same 1,000-record repo
//! from the same seed; the MST root and the block sets must be identical.
use crate::support::seeded;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use perch::cbor;
use perch::repo::MemoryBlocks;
use perch::repo::mst::Mst;

fn node_output(seed: u64, n: usize) -> Option<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir.join("node_modules/@atproto/repo").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/node/node_modules missing: run `npm ci --prefix tests/node`"
        );
        eprintln!("skipped: run `npm ci --prefix tests/node` to enable the Node cross-check");
        return None;
    }
    let out = Command::new("node")
        .arg(dir.join("build-repo.mjs"))
        .arg(seed.to_string())
        .arg(n.to_string())
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "build-repo.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from build-repo.mjs"))
}

fn set(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn same_repo_as_atproto_repo() {
    let (seed, n) = (42, 1000);
    let Some(reference) = node_output(seed, n) else {
        return;
    };

    let store = MemoryBlocks::new();
    let mut tree = Mst::new();
    let mut records = BTreeSet::new();
    for (collection, rkey, json) in seeded::seeded_records(seed, n) {
        let value = cbor::record_from_json(&json).unwrap();
        let (cid, _) = cbor::encode_with_cid(&value);
        records.insert(cid.to_string());
        let key = format!("{collection}/{rkey}");
        assert!(tree.insert(&store, key.as_bytes(), cid).unwrap().is_none());
    }
    let nodes: BTreeSet<String> = tree
        .unstored_blocks()
        .iter()
        .map(|(c, _)| c.to_string())
        .collect();

    assert_eq!(reference["n"].as_u64(), Some(n as u64));
    assert_eq!(
        tree.root_cid().to_string(),
        reference["root"].as_str().unwrap()
    );
    assert_eq!(records, set(&reference["records"]), "record blocks differ");
    assert_eq!(nodes, set(&reference["nodes"]), "MST node blocks differ");
}
