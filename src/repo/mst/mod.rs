//! Merkle Search Tree: the ordered map from repo path to record CID whose
//! root hash commits to a repository's whole content.
//!
//! Each key's height is the number of leading zero bit-pairs of its SHA-256
//! (fanout 4). A node at layer L holds, in order, the keys of height L within
//! its range, with a child subtree (layer L-1) in each gap between them. The
//! shape depends only on the set of keys, never on the order of operations,
//! so two implementations with the same records agree on the root CID.
//!
//! `Mst` is a persistent value: operations return new nodes and share the
//! rest. Nodes not yet in memory are loaded on demand from a `BlockSource`
//! and checked (layer, order, canonical prefix compression) as they load.

mod diff;
pub mod node;
mod ops;
mod proof;

use std::ops::Bound;
use std::sync::Arc;

pub use diff::{Diff, DiffOp, diff};
pub use node::{Link, Node, common_prefix_len, key_height};
pub use proof::{covering_proof, path_proof};

use crate::cid::Cid;
use crate::repo::{BlockSource, MemoryBlocks, RepoError};

#[derive(Clone, Debug)]
pub struct Mst {
    root: Link,
}

impl Default for Mst {
    fn default() -> Self {
        Self::new()
    }
}

/// What a pre-order walk sees: a node block, or a leaf's record CID.
pub enum Visit<'a> {
    Node(&'a Cid, &'a [u8]),
    Leaf(&'a [u8], &'a Cid),
}

impl Mst {
    /// The empty tree.
    pub fn new() -> Mst {
        Mst {
            root: Link::Loaded(Arc::new(Node::empty())),
        }
    }

    /// A tree whose root node is stored under `root` (loaded lazily).
    pub fn load(root: Cid) -> Mst {
        Mst {
            root: Link::Stored(root),
        }
    }

    /// Build a tree from (key, value) pairs in any order.
    pub fn from_entries<I>(src: &dyn BlockSource, items: I) -> Result<Mst, RepoError>
    where
        I: IntoIterator<Item = (Vec<u8>, Cid)>,
    {
        let mut t = Mst::new();
        for (k, v) in items {
            t.insert(src, &k, v)?;
        }
        Ok(t)
    }

    fn root_node(&self, src: &dyn BlockSource) -> Result<Arc<Node>, RepoError> {
        match &self.root {
            Link::Loaded(n) => Ok(Arc::clone(n)),
            Link::Stored(c) => Ok(Arc::new(node::load(src, *c, None)?)),
            Link::Empty => Ok(Arc::new(Node::empty())),
        }
    }

    /// Root CID (encodes any in-memory nodes that changed).
    pub fn root_cid(&self) -> Cid {
        match &self.root {
            Link::Stored(c) => *c,
            Link::Loaded(n) => n.cid(),
            Link::Empty => Node::empty().cid(),
        }
    }

    /// Insert or replace; returns the previous value.
    pub fn insert(
        &mut self,
        src: &dyn BlockSource,
        key: &[u8],
        value: Cid,
    ) -> Result<Option<Cid>, RepoError> {
        check_key(key)?;
        let root = self.root_node(src)?;
        let (root, old) = ops::insert(src, &root, key, key_height(key), value)?;
        self.root = Link::Loaded(root);
        Ok(old)
    }

    /// Remove; returns the value that was there.
    pub fn remove(&mut self, src: &dyn BlockSource, key: &[u8]) -> Result<Option<Cid>, RepoError> {
        let root = self.root_node(src)?;
        let (root, old) = ops::remove(src, &root, key)?;
        if old.is_some() {
            self.root = Link::Loaded(root);
        }
        Ok(old)
    }

    pub fn get(&self, src: &dyn BlockSource, key: &[u8]) -> Result<Option<Cid>, RepoError> {
        let mut n = self.root_node(src)?;
        loop {
            let i = match n.entries.binary_search_by(|e| e.key.as_slice().cmp(key)) {
                Ok(i) => return Ok(Some(n.entries[i].value)),
                Err(i) => i,
            };
            if n.layer == 0 {
                return Ok(None);
            }
            match node::resolve(src, n.gap(i), n.layer - 1)? {
                Some(c) => n = c,
                None => return Ok(None),
            }
        }
    }

    /// Entries with keys in `(lo, hi)`, ascending (or descending with
    /// `reverse`), at most `limit` of them.
    pub fn range(
        &self,
        src: &dyn BlockSource,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Cid)>, RepoError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let root = self.root_node(src)?;
        let r = Range {
            lo,
            hi,
            reverse,
            limit,
        };
        r.walk(src, &root, &mut out)?;
        Ok(out)
    }

    /// Every entry, ascending.
    pub fn entries(&self, src: &dyn BlockSource) -> Result<Vec<(Vec<u8>, Cid)>, RepoError> {
        self.range(src, Bound::Unbounded, Bound::Unbounded, false, usize::MAX)
    }

    /// Pre-order walk: each node, then for each slot in order its left
    /// subtree, the entry's leaf, and so on (the CAR streaming order).
    pub fn walk(
        &self,
        src: &dyn BlockSource,
        f: &mut dyn FnMut(Visit<'_>) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let root = self.root_node(src)?;
        walk_node(src, &root, f)
    }

    /// Blocks of nodes that exist only in memory (new since load): what a
    /// commit must write.
    pub fn unstored_blocks(&self) -> MemoryBlocks {
        let mut out = MemoryBlocks::new();
        if let Link::Loaded(n) = &self.root {
            collect_unstored(n, &mut out);
        }
        out
    }

    /// This tree once a commit has stored its new nodes: they stay in memory, marked
    /// stored, and every other subtree goes back to a link, so the next write walks the
    /// path the last one made without loading it, and the tree holds one commit's nodes,
    /// never more.
    pub fn settled(&self) -> Mst {
        match &self.root {
            Link::Loaded(n) if !n.stored => Mst {
                root: Link::Loaded(Arc::new(settle(n))),
            },
            Link::Loaded(n) => Mst {
                root: Link::Stored(n.cid()),
            },
            other => Mst {
                root: other.clone(),
            },
        }
    }

    /// Every node block of the tree.
    pub fn all_blocks(&self, src: &dyn BlockSource) -> Result<MemoryBlocks, RepoError> {
        let mut out = MemoryBlocks::new();
        self.walk(src, &mut |v| {
            if let Visit::Node(c, b) = v {
                out.insert(*c, b.to_vec());
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn check_key(key: &[u8]) -> Result<(), RepoError> {
    if key.is_empty() || key.len() > node::MAX_KEY_LEN {
        return Err(RepoError::InvalidKey(format!("length {}", key.len())));
    }
    Ok(())
}

/// A new node as stored, with its new children likewise and its other children as links.
fn settle(n: &Node) -> Node {
    let link = |l: &Link| match l {
        Link::Loaded(c) if !c.stored => Link::Loaded(Arc::new(settle(c))),
        Link::Loaded(c) => Link::Stored(c.cid()),
        other => other.clone(),
    };
    let entries = n
        .entries
        .iter()
        .map(|e| node::Entry {
            key: e.key.clone(),
            value: e.value,
            right: link(&e.right),
        })
        .collect();
    n.as_stored(link(&n.left), entries)
}

fn collect_unstored(n: &Node, out: &mut MemoryBlocks) {
    if n.stored {
        return;
    }
    let (c, bytes) = n.block();
    out.insert(c, bytes);
    for link in std::iter::once(&n.left).chain(n.entries.iter().map(|e| &e.right)) {
        if let Link::Loaded(c) = link {
            collect_unstored(c, out);
        }
    }
}

fn walk_node(
    src: &dyn BlockSource,
    n: &Node,
    f: &mut dyn FnMut(Visit<'_>) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let bytes = n.encode();
    f(Visit::Node(&n.cid(), &bytes))?;
    let child = |link: &Link| -> Result<Option<Arc<Node>>, RepoError> {
        if n.layer == 0 {
            return Ok(None);
        }
        node::resolve(src, link, n.layer - 1)
    };
    if let Some(c) = child(&n.left)? {
        walk_node(src, &c, f)?;
    }
    for e in &n.entries {
        f(Visit::Leaf(&e.key, &e.value))?;
        if let Some(c) = child(&e.right)? {
            walk_node(src, &c, f)?;
        }
    }
    Ok(())
}

struct Range<'a> {
    lo: Bound<&'a [u8]>,
    hi: Bound<&'a [u8]>,
    reverse: bool,
    limit: usize,
}

impl Range<'_> {
    fn above_lo(&self, k: &[u8]) -> bool {
        match self.lo {
            Bound::Unbounded => true,
            Bound::Included(l) => k >= l,
            Bound::Excluded(l) => k > l,
        }
    }
    fn below_hi(&self, k: &[u8]) -> bool {
        match self.hi {
            Bound::Unbounded => true,
            Bound::Included(h) => k <= h,
            Bound::Excluded(h) => k < h,
        }
    }

    /// Returns false once the limit is reached.
    fn walk(
        &self,
        src: &dyn BlockSource,
        n: &Node,
        out: &mut Vec<(Vec<u8>, Cid)>,
    ) -> Result<bool, RepoError> {
        let count = n.entries.len();
        // Slots: gap 0, entry 0, gap 1, entry 1, ..., gap count.
        let slots: Box<dyn Iterator<Item = usize>> = if self.reverse {
            Box::new((0..=2 * count).rev())
        } else {
            Box::new(0..=2 * count)
        };
        for s in slots {
            if s % 2 == 1 {
                let e = &n.entries[s / 2];
                if self.above_lo(&e.key) && self.below_hi(&e.key) {
                    out.push((e.key.clone(), e.value));
                    if out.len() >= self.limit {
                        return Ok(false);
                    }
                }
                continue;
            }
            let g = s / 2;
            if n.layer == 0 {
                continue;
            }
            // Skip gaps wholly outside the range: gap g lies strictly
            // between entry g-1 and entry g.
            if g > 0 && !self.below_hi(&n.entries[g - 1].key) {
                continue;
            }
            if g < count && !self.above_lo(&n.entries[g].key) {
                continue;
            }
            if let Some(c) = node::resolve(src, n.gap(g), n.layer - 1)?
                && !self.walk(src, &c, out)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
