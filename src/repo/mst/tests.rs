use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;

use super::*;
use crate::cid;
use crate::repo::MemoryBlocks;

fn val(i: u32) -> Cid {
    cid::for_cbor(&i.to_be_bytes())
}

fn key(i: u32) -> Vec<u8> {
    format!("com.example.record/{i:08}").into_bytes()
}

/// Persist a tree's new blocks into `store` and reload it from its root, so
/// later operations exercise the lazy loading path.
fn persist(t: &Mst, store: &mut MemoryBlocks) -> Mst {
    store.extend(t.unstored_blocks());
    Mst::load(t.root_cid())
}

#[test]
fn empty_tree_root_matches_reference() {
    // Root of the empty MST as computed by @atproto/repo.
    assert_eq!(
        Mst::new().root_cid().to_string(),
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    );
}

#[test]
fn insert_get_remove_and_reload() {
    let mut store = MemoryBlocks::new();
    let mut t = Mst::new();
    for i in 0..500 {
        assert_eq!(t.insert(&store, &key(i), val(i)).unwrap(), None);
    }
    let mut t = persist(&t, &mut store);
    for i in 0..500 {
        assert_eq!(t.get(&store, &key(i)).unwrap(), Some(val(i)));
    }
    assert_eq!(t.get(&store, b"com.example.record/zzz").unwrap(), None);
    assert_eq!(t.insert(&store, &key(7), val(9999)).unwrap(), Some(val(7)));
    assert_eq!(t.remove(&store, &key(8)).unwrap(), Some(val(8)));
    assert_eq!(t.remove(&store, &key(8)).unwrap(), None);
    let t = persist(&t, &mut store);
    assert_eq!(t.get(&store, &key(7)).unwrap(), Some(val(9999)));
    assert_eq!(t.get(&store, &key(8)).unwrap(), None);
    assert_eq!(t.entries(&store).unwrap().len(), 499);
}

#[test]
fn removing_everything_gives_the_empty_root() {
    let store = MemoryBlocks::new();
    let mut t = Mst::new();
    for i in 0..200 {
        t.insert(&store, &key(i), val(i)).unwrap();
    }
    for i in (0..200).rev() {
        assert_eq!(t.remove(&store, &key(i)).unwrap(), Some(val(i)));
    }
    assert_eq!(t.root_cid(), Mst::new().root_cid());
}

#[test]
fn range_bounds_reverse_and_limit() {
    let store = MemoryBlocks::new();
    let mut t = Mst::new();
    for i in 0..300 {
        t.insert(&store, &key(i), val(i)).unwrap();
    }
    let lo = key(100);
    let hi = key(110);
    let got = t
        .range(
            &store,
            Bound::Excluded(&lo),
            Bound::Included(&hi),
            false,
            100,
        )
        .unwrap();
    let want: Vec<_> = (101..=110).map(|i| (key(i), val(i))).collect();
    assert_eq!(got, want);
    let got = t
        .range(&store, Bound::Unbounded, Bound::Excluded(&hi), true, 3)
        .unwrap();
    let want: Vec<_> = [109, 108, 107].iter().map(|&i| (key(i), val(i))).collect();
    assert_eq!(got, want);
}

#[test]
fn hostile_nodes_are_rejected() {
    let mut store = MemoryBlocks::new();
    let mut t = Mst::new();
    for i in 0..50 {
        t.insert(&store, &key(i), val(i)).unwrap();
    }
    let t = persist(&t, &mut store);
    // A node whose entries are out of order.
    let bad = crate::ipld_map! {
        "e" => crate::cbor::Ipld::List(vec![
            crate::ipld_map! { "k" => crate::cbor::Ipld::Bytes(b"b".to_vec()), "p" => crate::cbor::Ipld::Integer(0), "t" => crate::cbor::Ipld::Null, "v" => crate::cbor::Ipld::Link(val(1)) },
            crate::ipld_map! { "k" => crate::cbor::Ipld::Bytes(b"a".to_vec()), "p" => crate::cbor::Ipld::Integer(0), "t" => crate::cbor::Ipld::Null, "v" => crate::cbor::Ipld::Link(val(2)) },
        ]),
        "l" => crate::cbor::Ipld::Null,
    };
    let (c, b) = crate::cbor::encode_with_cid(&bad);
    store.insert(c, b);
    assert!(Mst::load(c).get(&store, b"a").is_err());
    // A missing block is an error, not a panic.
    let empty = MemoryBlocks::new();
    assert!(matches!(
        t.get(&empty, &key(1)),
        Err(RepoError::MissingBlock(_))
    ));
    // Garbage bytes under a CID.
    let junk = cid::for_cbor(b"junk");
    store.insert(junk, b"\xff\x00".to_vec());
    assert!(Mst::load(junk).get(&store, b"x").is_err());
}

#[test]
fn diff_reports_ops_and_new_nodes() {
    let mut store = MemoryBlocks::new();
    let mut a = Mst::new();
    for i in 0..400 {
        a.insert(&store, &key(i), val(i)).unwrap();
    }
    let a = persist(&a, &mut store);
    let mut b = a.clone();
    b.insert(&store, &key(1000), val(1000)).unwrap();
    b.insert(&store, &key(5), val(55)).unwrap();
    b.remove(&store, &key(77)).unwrap();
    let new_blocks = b.unstored_blocks();
    let b = persist(&b, &mut store);
    let d = diff(&store, &a, &b).unwrap();
    assert_eq!(
        d.ops,
        vec![
            DiffOp {
                key: key(5),
                old: Some(val(5)),
                new: Some(val(55))
            },
            DiffOp {
                key: key(77),
                old: Some(val(77)),
                new: None
            },
            DiffOp {
                key: key(1000),
                old: None,
                new: Some(val(1000))
            },
        ]
    );
    let mut got: Vec<_> = d.new_nodes.iter().map(|(c, _)| *c).collect();
    // In-memory nodes can coincide with nodes `a` already has (a path
    // rebuilt into its old shape); those are not new.
    let a_blocks = a.all_blocks(&store).unwrap();
    let mut want: Vec<_> = new_blocks
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !a_blocks.contains(c))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(!d.removed_nodes.is_empty());
}

fn build(store: &MemoryBlocks, items: &[(Vec<u8>, Cid)]) -> Mst {
    Mst::from_entries(store, items.iter().cloned()).unwrap()
}

fn arb_keys() -> impl Strategy<Value = BTreeMap<Vec<u8>, u32>> {
    proptest::collection::btree_map("[a-c]{1,2}\\.[a-z]{1,3}/[a-z0-9]{1,6}", 0u32..1000, 0..120)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn root_independent_of_insertion_order(m in arb_keys(), seed in any::<u64>()) {
        let store = MemoryBlocks::new();
        let items: Vec<_> = m.iter().map(|(k, v)| (k.clone(), val(*v))).collect();
        let sorted = build(&store, &items);
        let mut shuffled = items.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let t = build(&store, &shuffled);
        prop_assert_eq!(t.root_cid(), sorted.root_cid());
        let reversed: Vec<_> = items.iter().rev().cloned().collect();
        prop_assert_eq!(build(&store, &reversed).root_cid(), sorted.root_cid());
    }

    #[test]
    fn delete_is_inverse_of_insert(m in arb_keys(), extra in arb_keys()) {
        let store = MemoryBlocks::new();
        let base: Vec<_> = m.iter().map(|(k, v)| (k.clone(), val(*v))).collect();
        let t0 = build(&store, &base);
        let mut t = t0.clone();
        let added: Vec<_> = extra.keys().filter(|k| !m.contains_key(*k)).cloned().collect();
        for k in &added {
            t.insert(&store, k, val(7)).unwrap();
        }
        for k in &added {
            t.remove(&store, k).unwrap();
        }
        prop_assert_eq!(t.root_cid(), t0.root_cid());
    }

    #[test]
    fn applying_diff_a_to_b_gives_b(ma in arb_keys(), mb in arb_keys()) {
        let mut store = MemoryBlocks::new();
        let a = build(&store, &ma.iter().map(|(k, v)| (k.clone(), val(*v))).collect::<Vec<_>>());
        let b = build(&store, &mb.iter().map(|(k, v)| (k.clone(), val(*v))).collect::<Vec<_>>());
        let a = persist(&a, &mut store);
        let b = persist(&b, &mut store);
        let d = diff(&store, &a, &b).unwrap();
        let mut t = a.clone();
        for op in &d.ops {
            match op.new {
                Some(v) => { t.insert(&store, &op.key, v).unwrap(); }
                None => { t.remove(&store, &op.key).unwrap(); }
            }
        }
        prop_assert_eq!(t.root_cid(), b.root_cid());
        // Every new node block of b is reported.
        for (c, _) in t.unstored_blocks().iter() {
            prop_assert!(d.new_nodes.contains(c) || a.all_blocks(&store).unwrap().contains(c));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A settled tree (the writer's, kept between commits) writes exactly the blocks a tree
    /// loaded from the stored root writes, batch after batch of changes.
    #[test]
    fn a_settled_tree_writes_what_a_loaded_one_writes(
        batches in proptest::collection::vec(arb_keys(), 1..6),
    ) {
        let mut store = MemoryBlocks::new();
        let mut kept = Mst::new();
        store.extend(kept.unstored_blocks());
        kept = kept.settled();
        prop_assert!(kept.unstored_blocks().is_empty());
        for (n, batch) in batches.iter().enumerate() {
            let mut loaded = Mst::load(kept.root_cid());
            let mut settled = kept.clone();
            for (k, v) in batch {
                // Every other batch removes what it names, the rest insert.
                if n % 2 == 1 && v % 2 == 0 {
                    prop_assert_eq!(loaded.remove(&store, k).unwrap(), settled.remove(&store, k).unwrap());
                } else {
                    prop_assert_eq!(
                        loaded.insert(&store, k, val(*v)).unwrap(),
                        settled.insert(&store, k, val(*v)).unwrap()
                    );
                }
            }
            prop_assert_eq!(settled.root_cid(), loaded.root_cid());
            let (a, b) = (settled.unstored_blocks(), loaded.unstored_blocks());
            let mut a: Vec<_> = a.iter().map(|(c, x)| (*c, x.clone())).collect();
            let mut b: Vec<_> = b.iter().map(|(c, x)| (*c, x.clone())).collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
            store.extend(settled.unstored_blocks());
            kept = settled.settled();
            prop_assert!(kept.unstored_blocks().is_empty());
            prop_assert_eq!(kept.root_cid(), loaded.root_cid());
        }
    }
}
