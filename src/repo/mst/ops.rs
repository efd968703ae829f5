//! Insert and delete as pure functions from one tree to another. Nodes are
//! immutable and shared; a change copies only the path it touches.
//!
//! The canonical shape follows from one rule: a node at layer L exists for a
//! key range exactly when that range holds at least one key, and it holds the
//! keys of height L in that range. So inserting a key of height h splits the
//! subtrees below h along the key, and deleting one merges the subtrees on
//! either side of it.

use std::sync::Arc;

use super::node::{Entry, Link, Node, resolve};
use crate::cid::Cid;
use crate::repo::{BlockSource, RepoError};

type Src<'a> = &'a dyn BlockSource;

/// Position of `key` in `entries`: `Ok(i)` if present, `Err(i)` for the gap.
fn search(entries: &[Entry], key: &[u8]) -> Result<usize, usize> {
    entries.binary_search_by(|e| e.key.as_slice().cmp(key))
}

/// A node, or `Empty` when it would hold nothing (no keys below it).
fn make(layer: u32, left: Link, entries: Vec<Entry>) -> Link {
    if entries.is_empty() && left.is_empty() {
        Link::Empty
    } else {
        Link::Loaded(Arc::new(Node::new(layer, left, entries)))
    }
}

fn set_gap(left: &mut Link, entries: &mut [Entry], i: usize, link: Link) {
    if i == 0 {
        *left = link;
    } else {
        entries[i - 1].right = link;
    }
}

/// A subtree at `layer` holding only `key` (height `h <= layer`).
fn single(layer: u32, key: &[u8], h: u32, value: Cid) -> Link {
    let mut link = Link::Loaded(Arc::new(Node::new(
        h,
        Link::Empty,
        vec![Entry {
            key: key.to_vec(),
            value,
            right: Link::Empty,
        }],
    )));
    for l in h + 1..=layer {
        link = Link::Loaded(Arc::new(Node::new(l, link, Vec::new())));
    }
    link
}

/// Insert or replace `key` in the tree rooted at `root`. Returns the new
/// root and the previous value.
pub fn insert(
    src: Src<'_>,
    root: &Arc<Node>,
    key: &[u8],
    h: u32,
    value: Cid,
) -> Result<(Arc<Node>, Option<Cid>), RepoError> {
    if root.entries.is_empty() && root.left.is_empty() {
        return Ok((node_of(single(h, key, h, value)), None));
    }
    if h > root.layer {
        // The key becomes the new root's only entry; everything else splits
        // around it and hangs below, padded down to layer h-1.
        let (lo, hi) = split(src, &Link::Loaded(Arc::clone(root)), root.layer, key)?;
        let lo = pad(lo, root.layer, h - 1);
        let hi = pad(hi, root.layer, h - 1);
        let n = Node::new(
            h,
            lo,
            vec![Entry {
                key: key.to_vec(),
                value,
                right: hi,
            }],
        );
        return Ok((Arc::new(n), None));
    }
    insert_in(src, root, key, h, value)
}

fn node_of(link: Link) -> Arc<Node> {
    match link {
        Link::Loaded(n) => n,
        _ => Arc::new(Node::empty()),
    }
}

/// Wrap a subtree at layer `from` in empty parents up to layer `to`.
fn pad(mut link: Link, from: u32, to: u32) -> Link {
    if link.is_empty() {
        return link;
    }
    for l in from + 1..=to {
        link = Link::Loaded(Arc::new(Node::new(l, link, Vec::new())));
    }
    link
}

fn insert_in(
    src: Src<'_>,
    node: &Arc<Node>,
    key: &[u8],
    h: u32,
    value: Cid,
) -> Result<(Arc<Node>, Option<Cid>), RepoError> {
    let layer = node.layer;
    let mut left = node.left.clone();
    let mut entries = node.entries.clone();
    match search(&node.entries, key) {
        Ok(i) => {
            let old = entries[i].value;
            if old == value {
                return Ok((Arc::clone(node), Some(old)));
            }
            entries[i].value = value;
            Ok((Arc::new(Node::new(layer, left, entries)), Some(old)))
        }
        Err(i) if h == layer => {
            let (lo, hi) = split(src, node.gap(i), layer.saturating_sub(1), key)?;
            set_gap(&mut left, &mut entries, i, lo);
            entries.insert(
                i,
                Entry {
                    key: key.to_vec(),
                    value,
                    right: hi,
                },
            );
            Ok((Arc::new(Node::new(layer, left, entries)), None))
        }
        Err(i) => {
            // h < layer: the key belongs in the subtree of gap i.
            let (child, old) = match resolve(src, node.gap(i), layer - 1)? {
                None => (single(layer - 1, key, h, value), None),
                Some(c) => {
                    let (c, old) = insert_in(src, &c, key, h, value)?;
                    (Link::Loaded(c), old)
                }
            };
            set_gap(&mut left, &mut entries, i, child);
            Ok((Arc::new(Node::new(layer, left, entries)), old))
        }
    }
}

/// Split the subtree at `layer` into the keys below and above `key` (which
/// is not in it).
fn split(src: Src<'_>, link: &Link, layer: u32, key: &[u8]) -> Result<(Link, Link), RepoError> {
    let Some(node) = resolve(src, link, layer)? else {
        return Ok((Link::Empty, Link::Empty));
    };
    let i = match search(&node.entries, key) {
        Ok(i) | Err(i) => i,
    };
    let (glo, ghi) = if layer == 0 {
        (Link::Empty, Link::Empty)
    } else {
        split(src, node.gap(i), layer - 1, key)?
    };
    if i == 0 {
        let lo = make(layer, glo, Vec::new());
        let hi = make(layer, ghi, node.entries.clone());
        return Ok((lo, hi));
    }
    let mut lo_entries = node.entries[..i].to_vec();
    if let Some(last) = lo_entries.last_mut() {
        last.right = glo;
    }
    let lo = make(layer, node.left.clone(), lo_entries);
    let hi = make(layer, ghi, node.entries[i..].to_vec());
    Ok((lo, hi))
}

/// Remove `key` from the tree. Returns the new root (trimmed) and the value
/// that was removed, or the same root and `None` if the key was absent.
pub fn remove(
    src: Src<'_>,
    root: &Arc<Node>,
    key: &[u8],
) -> Result<(Arc<Node>, Option<Cid>), RepoError> {
    let (link, old) = remove_in(src, root, key)?;
    if old.is_none() {
        return Ok((Arc::clone(root), None));
    }
    // Trim the top: a root with no entries hands over to its only child.
    let mut top = link;
    let mut layer = root.layer;
    loop {
        match resolve(src, &top, layer)? {
            None => return Ok((Arc::new(Node::empty()), old)),
            Some(n) if n.entries.is_empty() => {
                top = n.left.clone();
                layer = layer.saturating_sub(1);
            }
            Some(n) => return Ok((n, old)),
        }
    }
}

fn remove_in(src: Src<'_>, node: &Arc<Node>, key: &[u8]) -> Result<(Link, Option<Cid>), RepoError> {
    let layer = node.layer;
    let mut left = node.left.clone();
    let mut entries = node.entries.clone();
    match search(&node.entries, key) {
        Ok(i) => {
            let removed = entries.remove(i);
            let merged = if layer == 0 {
                Link::Empty
            } else {
                merge(src, node.gap(i), &removed.right, layer - 1)?
            };
            set_gap(&mut left, &mut entries, i, merged);
            Ok((make(layer, left, entries), Some(removed.value)))
        }
        Err(i) => {
            if layer == 0 {
                return Ok((Link::Loaded(Arc::clone(node)), None));
            }
            let Some(child) = resolve(src, node.gap(i), layer - 1)? else {
                return Ok((Link::Loaded(Arc::clone(node)), None));
            };
            let (c, old) = remove_in(src, &child, key)?;
            if old.is_none() {
                return Ok((Link::Loaded(Arc::clone(node)), None));
            }
            set_gap(&mut left, &mut entries, i, c);
            Ok((make(layer, left, entries), old))
        }
    }
}

/// Join two adjacent subtrees at `layer` (every key of `a` below every key
/// of `b`).
fn merge(src: Src<'_>, a: &Link, b: &Link, layer: u32) -> Result<Link, RepoError> {
    let Some(na) = resolve(src, a, layer)? else {
        return Ok(b.clone());
    };
    let Some(nb) = resolve(src, b, layer)? else {
        return Ok(Link::Loaded(na));
    };
    let mid = if layer == 0 {
        Link::Empty
    } else {
        merge(src, na.gap(na.entries.len()), &nb.left, layer - 1)?
    };
    let mut entries = na.entries.clone();
    let left = if let Some(last) = entries.last_mut() {
        last.right = mid;
        na.left.clone()
    } else {
        mid
    };
    entries.extend(nb.entries.iter().cloned());
    Ok(make(layer, left, entries))
}
