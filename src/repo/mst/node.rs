//! MST node representation and its DAG-CBOR form.
//!
//! Wire form: `{e: [{k, p, t, v}...], l}` with `l`/`t` always present (null
//! when empty), `p` the prefix shared with the previous entry's full key and
//! `k` the remaining suffix.

use std::sync::{Arc, OnceLock};

use crate::cbor::{self, Ipld, Limits, Writer};
use crate::cid::{self, Cid};
use crate::repo::{BlockSource, RepoError};

/// Hard cap on entries in one node of an untrusted tree. Honest trees average
/// four per node; thousands means someone mined keys to blow up our memory.
pub const MAX_NODE_ENTRIES: usize = 4096;
/// Keys are repo paths: bounded by NSID (317) + `/` + record key (512).
pub const MAX_KEY_LEN: usize = 1024;

/// A link to a subtree: absent, not yet loaded, or in memory.
#[derive(Clone, Debug)]
pub enum Link {
    Empty,
    Stored(Cid),
    Loaded(Arc<Node>),
}

impl Link {
    pub fn is_empty(&self) -> bool {
        matches!(self, Link::Empty)
    }
    /// CID of the subtree, encoding in-memory nodes as needed.
    pub fn cid(&self) -> Option<Cid> {
        match self {
            Link::Empty => None,
            Link::Stored(c) => Some(*c),
            Link::Loaded(n) => Some(n.cid()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Cid,
    pub right: Link,
}

#[derive(Debug)]
pub struct Node {
    pub layer: u32,
    pub left: Link,
    pub entries: Vec<Entry>,
    /// True when the node came from a block source (it need not be written).
    pub stored: bool,
    cid: OnceLock<Cid>,
    /// A new node's encoding, made once with its CID: the commit stores these bytes.
    encoded: OnceLock<Vec<u8>>,
}

impl Node {
    pub fn new(layer: u32, left: Link, entries: Vec<Entry>) -> Node {
        Node {
            layer,
            left,
            entries,
            stored: false,
            cid: OnceLock::new(),
            encoded: OnceLock::new(),
        }
    }

    pub fn empty() -> Node {
        Node::new(0, Link::Empty, Vec::new())
    }

    /// The child to the left of entry `i` (`i == entries.len()` gives the
    /// right-most child).
    pub fn gap(&self, i: usize) -> &Link {
        if i == 0 {
            &self.left
        } else {
            &self.entries[i - 1].right
        }
    }

    pub fn cid(&self) -> Cid {
        *self.cid.get_or_init(|| {
            if self.stored {
                return cid::for_cbor(&self.encode());
            }
            cid::for_cbor(self.encoded.get_or_init(|| self.encode()))
        })
    }

    /// The block of a node made in memory: encoded and hashed once however often asked.
    pub fn block(&self) -> (Cid, Vec<u8>) {
        let c = self.cid();
        let bytes = match self.encoded.get() {
            Some(b) => b.clone(),
            None => self.encode(),
        };
        (c, bytes)
    }

    /// The same node as stored (a commit has written it), without its kept encoding.
    pub fn as_stored(&self, left: Link, entries: Vec<Entry>) -> Node {
        let n = Node {
            layer: self.layer,
            left,
            entries,
            stored: true,
            cid: OnceLock::new(),
            encoded: OnceLock::new(),
        };
        let _ = n.cid.set(self.cid());
        n
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.entries.len() * 96);
        w.map(2);
        w.text("e");
        w.array(self.entries.len());
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let p = common_prefix_len(prev, &e.key);
            w.map(4);
            w.text("k");
            w.bytes(&e.key[p..]);
            w.text("p");
            w.int(p as i64);
            w.text("t");
            w.link_or_null(e.right.cid().as_ref());
            w.text("v");
            w.link(&e.value);
            prev = &e.key;
        }
        w.text("l");
        w.link_or_null(self.left.cid().as_ref());
        w.into_bytes()
    }

    /// Parse and check a stored node. `layer` is the layer the parent says
    /// this node sits at, or `None` for a root (derived from its keys).
    pub fn decode(
        src: &dyn BlockSource,
        cid: Cid,
        bytes: &[u8],
        layer: Option<u32>,
    ) -> Result<Node, RepoError> {
        let invalid = |m: &str| RepoError::invalid_node(cid, m);
        let (left, entries) = parse_fields(cid, bytes)?;
        let layer = match (layer, entries.first()) {
            (Some(l), _) => {
                if entries.is_empty() && left.is_empty() {
                    return Err(invalid("empty non-root node"));
                }
                l
            }
            (None, Some(e)) => key_height(&e.key),
            (None, None) => untrimmed_root_layer(src, cid, &left)?,
        };
        if entries.iter().any(|e| key_height(&e.key) != layer) {
            return Err(invalid("entry at the wrong layer"));
        }
        if layer == 0 && (!left.is_empty() || entries.iter().any(|e| !e.right.is_empty())) {
            return Err(invalid("layer-0 node with children"));
        }
        let node = Node {
            layer,
            left,
            entries,
            stored: true,
            cid: OnceLock::new(),
            encoded: OnceLock::new(),
        };
        let _ = node.cid.set(cid);
        Ok(node)
    }
}

/// The fields of a node block, with prefix compression undone and the
/// canonical-form rules checked; layer rules are the caller's.
fn parse_fields(cid: Cid, bytes: &[u8]) -> Result<(Link, Vec<Entry>), RepoError> {
    // A well-formed node has exactly one encoding, which the pull reader takes without
    // building a value tree (the writer and exports load nodes all the time). Anything
    // else goes the general way, which says what is wrong with it.
    match parse_canonical(bytes) {
        Some(fields) => Ok(fields),
        None => parse_general(cid, bytes),
    }
}

/// [`parse_fields`] through the general decoder.
fn parse_general(cid: Cid, bytes: &[u8]) -> Result<(Link, Vec<Entry>), RepoError> {
    let invalid = |m: &str| RepoError::invalid_node(cid, m);
    let limits = Limits {
        max_depth: 4,
        max_container_len: MAX_NODE_ENTRIES,
        max_key_len: 8,
        max_size: 1 << 20,
    };
    let v = cbor::decode_with(bytes, &limits).map_err(|e| RepoError::Decode(Box::new(cid), e))?;
    let m = v.as_map().ok_or_else(|| invalid("not a map"))?;
    if m.len() != 2 {
        return Err(invalid("node must have exactly the fields e and l"));
    }
    let left = link_field(m.get("l")).ok_or_else(|| invalid("bad l"))?;
    let raw = m
        .get("e")
        .and_then(Ipld::as_list)
        .ok_or_else(|| invalid("bad e"))?;
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    for item in raw {
        let em = item.as_map().ok_or_else(|| invalid("entry not a map"))?;
        if em.len() != 4 {
            return Err(invalid("entry must have exactly k, p, t, v"));
        }
        let p = em
            .get("p")
            .and_then(Ipld::as_integer)
            .ok_or_else(|| invalid("bad p"))?;
        let suffix = em
            .get("k")
            .and_then(Ipld::as_bytes)
            .ok_or_else(|| invalid("bad k"))?;
        let value = *em
            .get("v")
            .and_then(Ipld::as_link)
            .ok_or_else(|| invalid("bad v"))?;
        let right = link_field(em.get("t")).ok_or_else(|| invalid("bad t"))?;
        push_entry(&mut entries, p, suffix, value, right).map_err(invalid)?;
    }
    Ok((left, entries))
}

/// A node in its one canonical encoding (`{"e": [{"k","p","t","v"}…], "l"}`, keys in
/// this order), or `None` for anything else, valid or not.
fn parse_canonical(bytes: &[u8]) -> Option<(Link, Vec<Entry>)> {
    let link = |c: Option<Cid>| c.map_or(Link::Empty, Link::Stored);
    let mut r = cbor::Reader::new(bytes).ok()?;
    if bytes.len() > 1 << 20 || r.map().ok()? != 2 || r.text().ok()? != "e" {
        return None;
    }
    let n = r.array().ok()?;
    if n > MAX_NODE_ENTRIES {
        return None;
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(n);
    let mut suffix = Vec::new();
    for _ in 0..n {
        if r.map().ok()? != 4 || r.text().ok()? != "k" {
            return None;
        }
        suffix.clear();
        suffix.extend_from_slice(r.bytes().ok()?);
        if r.text().ok()? != "p" {
            return None;
        }
        let p = r.int().ok()?;
        if r.text().ok()? != "t" {
            return None;
        }
        let right = link(r.link_or_null().ok()?);
        if r.text().ok()? != "v" {
            return None;
        }
        let value = r.link().ok()?;
        push_entry(&mut entries, p, &suffix, value, right).ok()?;
    }
    if r.text().ok()? != "l" {
        return None;
    }
    let left = link(r.link_or_null().ok()?);
    r.finish().ok()?;
    Some((left, entries))
}

/// Appends the entry whose key is `p` bytes of the previous key and then `suffix`, if the
/// compression is maximal and the key in order and of a valid length.
fn push_entry(
    entries: &mut Vec<Entry>,
    p: i64,
    suffix: &[u8],
    value: Cid,
    right: Link,
) -> Result<(), &'static str> {
    let prev = entries.last().map_or(&[][..], |e| e.key.as_slice());
    let p = usize::try_from(p).map_err(|_| "negative p")?;
    if p > prev.len() {
        return Err("prefix longer than previous key");
    }
    let mut key = Vec::with_capacity(p + suffix.len());
    key.extend_from_slice(&prev[..p]);
    key.extend_from_slice(suffix);
    // Canonical compression: p must be the whole shared prefix.
    if common_prefix_len(prev, &key) != p {
        return Err("prefix length not maximal");
    }
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err("key length");
    }
    if !entries.is_empty() && prev >= key.as_slice() {
        return Err("keys out of order");
    }
    entries.push(Entry { key, value, right });
    Ok(())
}

/// Heights come from 256-bit hashes, two bits a layer.
const MAX_LAYER: u32 = 128;

/// A root with no entries and only a left child should have been trimmed;
/// tolerate it (other implementations may write it) by following the chain
/// down to the first node with entries, iteratively and bounded.
fn untrimmed_root_layer(src: &dyn BlockSource, cid: Cid, left: &Link) -> Result<u32, RepoError> {
    let mut link = left.clone();
    let mut above = 1;
    loop {
        let (child_left, child_entries) = match &link {
            Link::Empty => return Ok(0),
            Link::Loaded(n) => (n.left.clone(), n.entries.clone()),
            Link::Stored(c) => {
                let bytes = src.get_block(c)?.ok_or_else(|| RepoError::missing(*c))?;
                parse_fields(*c, &bytes)?
            }
        };
        if let Some(e) = child_entries.first() {
            return Ok(key_height(&e.key) + above);
        }
        above += 1;
        if above > MAX_LAYER {
            return Err(RepoError::invalid_node(cid, "untrimmed chain too long"));
        }
        link = child_left;
    }
}

fn link_field(v: Option<&Ipld>) -> Option<Link> {
    match v? {
        Ipld::Null => Some(Link::Empty),
        Ipld::Link(c) => Some(Link::Stored(*c)),
        _ => None,
    }
}

/// Load node `cid` from `src`, checking it sits at `layer`.
pub fn load(src: &dyn BlockSource, cid: Cid, layer: Option<u32>) -> Result<Node, RepoError> {
    let bytes = src
        .get_block(&cid)?
        .ok_or_else(|| RepoError::missing(cid))?;
    Node::decode(src, cid, &bytes, layer)
}

/// Resolve a link to a node (loading if needed). `None` for an empty link.
pub fn resolve(
    src: &dyn BlockSource,
    link: &Link,
    layer: u32,
) -> Result<Option<Arc<Node>>, RepoError> {
    match link {
        Link::Empty => Ok(None),
        Link::Loaded(n) => Ok(Some(Arc::clone(n))),
        Link::Stored(c) => Ok(Some(Arc::new(load(src, *c, Some(layer))?))),
    }
}

/// MST height of a key: leading zero bits of SHA-256(key), two per layer.
pub fn key_height(key: &[u8]) -> u32 {
    let h = cid::sha256(key);
    let mut zeros = 0;
    for b in h {
        if b == 0 {
            zeros += 8;
        } else {
            zeros += b.leading_zeros();
            break;
        }
    }
    zeros / 2
}

pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod canonical_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::repo::MemoryBlocks;
    use crate::repo::mst::Mst;

    /// The fields as their encoding, to compare two parses.
    fn bytes_of(f: &(Link, Vec<Entry>)) -> Vec<u8> {
        Node::new(0, f.0.clone(), f.1.clone()).encode()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The fast reader takes every node a tree writes, and on any damaged node says
        /// what the general decoder says.
        #[test]
        fn canonical_reader_agrees_with_the_decoder(
            keys in proptest::collection::btree_set("[a-c]\\.[a-z]{1,3}/[a-z0-9]{1,8}", 1..80),
            pos in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let store = MemoryBlocks::new();
            let mut t = Mst::new();
            for (i, k) in keys.iter().enumerate() {
                t.insert(&store, k.as_bytes(), crate::cid::for_raw(&i.to_be_bytes())).unwrap();
            }
            for (c, b) in t.unstored_blocks().iter() {
                let fast = parse_canonical(b).expect("a written node reads the fast way");
                let general = parse_general(*c, b).unwrap();
                prop_assert_eq!(bytes_of(&fast), bytes_of(&general));
                prop_assert_eq!(&bytes_of(&fast), b);
                let mut bad = b.clone();
                let i = pos % bad.len();
                bad[i] = byte;
                match (parse_fields(*c, &bad), parse_general(*c, &bad)) {
                    (Ok(x), Ok(y)) => prop_assert_eq!(bytes_of(&x), bytes_of(&y)),
                    (Err(x), Err(y)) => prop_assert_eq!(x.to_string(), y.to_string()),
                    (x, y) => prop_assert!(false, "{:?} vs {:?}", x.is_ok(), y.is_ok()),
                }
            }
        }
    }
}
