//! The Merkle Search Tree. The input is read two ways:
//! - as a hostile MST node block: loading and walking it never panics;
//! - as a list of keys: the tree built from them verifies when reloaded
//!   from its blocks, holds exactly those keys in order, and its root does
//!   not depend on insertion order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch::repo::MemoryBlocks;
use perch::repo::mst::Mst;

fuzz_target!(|data: &[u8]| {
    // A hostile node as the root of a tree.
    let mut hostile = MemoryBlocks::new();
    let root = perch::cid::for_cbor(data);
    hostile.insert(root, data.to_vec());
    let t = Mst::load(root);
    let _ = t.entries(&hostile);
    let _ = t.walk(&hostile, &mut |_| Ok(()));
    let _ = t.get(&hostile, b"app.bsky.feed.post/3k");

    // Keys: one per line, value = CID of the line.
    let text = String::from_utf8_lossy(data);
    let keys: Vec<&str> = text.lines().take(200).collect();
    let empty = MemoryBlocks::new();
    let mut fwd = Mst::new();
    let mut accepted = std::collections::BTreeMap::new();
    for k in &keys {
        let v = perch::cid::for_raw(k.as_bytes());
        if fwd.insert(&empty, k.as_bytes(), v).is_ok() {
            accepted.insert(k.as_bytes().to_vec(), v);
        }
    }
    let mut rev = Mst::new();
    for (k, v) in accepted.iter().rev() {
        rev.insert(&empty, k, *v)
            .expect("a key accepted once is accepted again");
    }
    assert_eq!(
        fwd.root_cid(),
        rev.root_cid(),
        "root depends on insertion order"
    );
    // Reload from blocks only: the checked loader must accept our own tree.
    let blocks = fwd.unstored_blocks();
    let loaded = Mst::load(fwd.root_cid());
    let entries = loaded.entries(&blocks).expect("our own tree verifies");
    let want: Vec<_> = accepted.into_iter().collect();
    assert_eq!(entries, want);
    // Removing everything gives the empty tree.
    let mut t = loaded;
    for (k, _) in &want {
        assert!(t.remove(&blocks, k).unwrap().is_some());
    }
    assert_eq!(t.root_cid(), Mst::new().root_cid());
});
