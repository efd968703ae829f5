//! Proof that a restored database holds a whole, correctly signed repo:
//! the commit's signature against the repo key, and every MST node and
//! record present and matching its CID. It streams over the database, so
//! a large repo is checked without being held in memory.

use crate::cid::{self, Cid};
use crate::crypto::PublicKey;
use crate::repo::commit::Commit;
use crate::repo::mst::{Mst, Visit};
use crate::repo::{BlockSource, RepoError};

fn check_hash(c: &Cid, bytes: &[u8]) -> Result<(), RepoError> {
    let digest = cid::sha256(bytes);
    if c.hash().digest() == digest {
        Ok(())
    } else {
        Err(RepoError::Store(format!(
            "block {c} does not match its hash"
        )))
    }
}

/// Verify the repo whose commit is `commit_cid`, signed by `key`; returns
/// how many records it holds.
pub fn verify_repo(
    src: &dyn BlockSource,
    commit_cid: &Cid,
    key: &PublicKey,
) -> Result<u64, RepoError> {
    let bytes = src
        .get_block(commit_cid)?
        .ok_or_else(|| RepoError::missing(*commit_cid))?;
    check_hash(commit_cid, &bytes)?;
    let commit = Commit::decode(&bytes)?;
    commit.verify(key)?;
    let mut records = 0u64;
    Mst::load(commit.data).walk(src, &mut |v| match v {
        Visit::Node(c, b) => check_hash(c, b),
        Visit::Leaf(_, c) => {
            let b = src.get_block(c)?.ok_or_else(|| RepoError::missing(*c))?;
            records += 1;
            check_hash(c, &b)
        }
    })?;
    Ok(records)
}
