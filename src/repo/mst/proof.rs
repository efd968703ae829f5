//! Proofs: the node blocks a reader needs to check a key against a root.
//!
//! `path_proof` is the inclusion/exclusion proof of `sync.getRecord`: every
//! node from the root down to the key, or down to where the key would be.
//! `covering_proof` adds what a consumer needs to *undo* a write to that key
//! (Sync v1.1 inversion): removing a key merges the subtrees on either side
//! of it, which reads the right-most spine of the left one and the left-most
//! spine of the right one.

use std::sync::Arc;

use super::Mst;
use super::node::{Link, Node, resolve};
use crate::repo::{BlockSource, MemoryBlocks, RepoError};

fn add(out: &mut MemoryBlocks, n: &Node) {
    out.insert(n.cid(), n.encode());
}

pub fn path_proof(
    src: &dyn BlockSource,
    tree: &Mst,
    key: &[u8],
) -> Result<MemoryBlocks, RepoError> {
    let mut out = MemoryBlocks::new();
    walk_path(src, tree, key, &mut out, false)?;
    Ok(out)
}

pub fn covering_proof(
    src: &dyn BlockSource,
    tree: &Mst,
    key: &[u8],
) -> Result<MemoryBlocks, RepoError> {
    let mut out = MemoryBlocks::new();
    walk_path(src, tree, key, &mut out, true)?;
    Ok(out)
}

fn walk_path(
    src: &dyn BlockSource,
    tree: &Mst,
    key: &[u8],
    out: &mut MemoryBlocks,
    spines: bool,
) -> Result<(), RepoError> {
    let mut n: Arc<Node> = tree.root_node(src)?;
    loop {
        add(out, &n);
        if n.layer == 0 {
            return Ok(());
        }
        let child_layer = n.layer - 1;
        match n.entries.binary_search_by(|e| e.key.as_slice().cmp(key)) {
            Ok(i) => {
                if spines {
                    spine(src, n.gap(i), child_layer, true, out)?;
                    spine(src, &n.entries[i].right, child_layer, false, out)?;
                }
                return Ok(());
            }
            Err(i) => match resolve(src, n.gap(i), child_layer)? {
                Some(c) => n = c,
                None => return Ok(()),
            },
        }
    }
}

/// The chain of nodes along one edge of a subtree: right-most children if
/// `rightmost`, else left-most.
fn spine(
    src: &dyn BlockSource,
    link: &Link,
    mut layer: u32,
    rightmost: bool,
    out: &mut MemoryBlocks,
) -> Result<(), RepoError> {
    let mut cur = resolve(src, link, layer)?;
    while let Some(n) = cur {
        add(out, &n);
        if layer == 0 {
            break;
        }
        layer -= 1;
        let next = if rightmost {
            n.gap(n.entries.len())
        } else {
            &n.left
        };
        cur = resolve(src, next, layer)?;
    }
    Ok(())
}
