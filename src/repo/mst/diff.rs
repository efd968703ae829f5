//! Difference between two trees: the record operations that turn `a` into
//! `b`, the node blocks `b` has that `a` lacks, and the reverse.
//!
//! Both trees are walked side by side in key order; a subtree with the same
//! CID on both sides is skipped whole, so the cost follows the size of the
//! change, not the size of the repo.

use std::collections::HashSet;
use std::sync::Arc;

use super::node::{Link, Node, resolve};
use crate::cid::Cid;
use crate::repo::{BlockSource, MemoryBlocks, RepoError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffOp {
    pub key: Vec<u8>,
    /// Value in `a` (None: created).
    pub old: Option<Cid>,
    /// Value in `b` (None: deleted).
    pub new: Option<Cid>,
}

#[derive(Debug, Default)]
pub struct Diff {
    /// Ascending by key.
    pub ops: Vec<DiffOp>,
    /// Node blocks in `b` but not in `a`.
    pub new_nodes: MemoryBlocks,
    /// Node CIDs in `a` but not in `b`.
    pub removed_nodes: Vec<Cid>,
}

enum Item {
    Leaf(Vec<u8>, Cid),
    Tree(Link, u32),
}

/// A cursor over one tree's slots in key order, descending on demand.
struct Cursor<'s> {
    src: &'s dyn BlockSource,
    stack: Vec<std::vec::IntoIter<Item>>,
    head: Option<Item>,
    seen: Vec<(Cid, Vec<u8>)>,
}

impl<'s> Cursor<'s> {
    fn new(src: &'s dyn BlockSource, root: Arc<Node>) -> Self {
        let layer = root.layer;
        Cursor {
            src,
            stack: Vec::new(),
            head: Some(Item::Tree(Link::Loaded(root), layer)),
            seen: Vec::new(),
        }
    }
    fn advance(&mut self) {
        self.head = None;
        while let Some(top) = self.stack.last_mut() {
            if let Some(item) = top.next() {
                self.head = Some(item);
                return;
            }
            self.stack.pop();
        }
    }
    /// Replace the head subtree by its contents.
    fn descend(&mut self) -> Result<(), RepoError> {
        let Some(Item::Tree(link, layer)) = self.head.take() else {
            return Ok(());
        };
        if let Some(n) = resolve(self.src, &link, layer)? {
            self.seen.push((n.cid(), n.encode()));
            let child_layer = layer.saturating_sub(1);
            let mut items = Vec::with_capacity(2 * n.entries.len() + 1);
            let tree = |l: &Link| (!l.is_empty()).then(|| Item::Tree(l.clone(), child_layer));
            items.extend(tree(&n.left));
            for e in &n.entries {
                items.push(Item::Leaf(e.key.clone(), e.value));
                items.extend(tree(&e.right));
            }
            self.stack.push(items.into_iter());
        }
        self.advance();
        Ok(())
    }
}

pub fn diff(src: &dyn BlockSource, a: &super::Mst, b: &super::Mst) -> Result<Diff, RepoError> {
    let mut ca = Cursor::new(src, a.root_node(src)?);
    let mut cb = Cursor::new(src, b.root_node(src)?);
    let mut ops = Vec::new();
    loop {
        match (&ca.head, &cb.head) {
            (None, None) => break,
            (Some(Item::Tree(..)), None) => ca.descend()?,
            (None, Some(Item::Tree(..))) => cb.descend()?,
            (Some(Item::Leaf(k, v)), None) => {
                ops.push(op(k, Some(*v), None));
                ca.advance();
            }
            (None, Some(Item::Leaf(k, v))) => {
                ops.push(op(k, None, Some(*v)));
                cb.advance();
            }
            (Some(Item::Tree(la, ya)), Some(Item::Tree(lb, yb))) => {
                if la.cid() == lb.cid() {
                    ca.advance();
                    cb.advance();
                } else if ya > yb {
                    ca.descend()?;
                } else if yb > ya {
                    cb.descend()?;
                } else {
                    ca.descend()?;
                    cb.descend()?;
                }
            }
            (Some(Item::Tree(..)), Some(Item::Leaf(..))) => ca.descend()?,
            (Some(Item::Leaf(..)), Some(Item::Tree(..))) => cb.descend()?,
            (Some(Item::Leaf(ka, va)), Some(Item::Leaf(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    ops.push(op(ka, Some(*va), None));
                    ca.advance();
                }
                std::cmp::Ordering::Greater => {
                    ops.push(op(kb, None, Some(*vb)));
                    cb.advance();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        ops.push(op(ka, Some(*va), Some(*vb)));
                    }
                    ca.advance();
                    cb.advance();
                }
            },
        }
    }
    let a_seen: HashSet<Cid> = ca.seen.iter().map(|(c, _)| *c).collect();
    let b_seen: HashSet<Cid> = cb.seen.iter().map(|(c, _)| *c).collect();
    let mut new_nodes = MemoryBlocks::new();
    for (c, bytes) in cb.seen {
        if !a_seen.contains(&c) {
            new_nodes.insert(c, bytes);
        }
    }
    let removed_nodes = ca
        .seen
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| !b_seen.contains(c))
        .collect();
    Ok(Diff {
        ops,
        new_nodes,
        removed_nodes,
    })
}

fn op(k: &[u8], old: Option<Cid>, new: Option<Cid>) -> DiffOp {
    DiffOp {
        key: k.to_vec(),
        old,
        new,
    }
}
