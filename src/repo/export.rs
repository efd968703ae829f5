//! Whole-repository CARs: streaming export in the preferred block order,
//! and loading plus full verification of an untrusted export.

use std::io::{Read, Write};

use super::car::{CarError, CarLimits, CarReader, CarWriter};
use super::commit::Commit;
use super::mst::{Mst, Visit};
use super::{BlockSource, MemoryBlocks, RepoError};
use crate::cid::Cid;
use crate::crypto::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Car(#[from] CarError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Stream the repo whose signed commit is `commit` as a CAR: the commit,
/// then a pre-order walk of the MST with each record after its left subtree.
/// Memory use is one path of nodes, never the whole repo.
pub fn write_repo_car<W: Write>(
    src: &dyn BlockSource,
    commit_cid: &Cid,
    w: W,
) -> Result<W, ExportError> {
    let commit_bytes = src
        .get_block(commit_cid)?
        .ok_or_else(|| RepoError::missing(*commit_cid))?;
    let commit = Commit::decode(&commit_bytes)?;
    let mut car = CarWriter::new(w, &[*commit_cid])?;
    car.write_block(commit_cid, &commit_bytes)?;
    let tree = Mst::load(commit.data);
    let mut io_err = None;
    tree.walk(src, &mut |v| {
        let r = match v {
            Visit::Node(c, b) => car.write_block(c, b),
            Visit::Leaf(_, c) => match src.get_block(c)? {
                Some(b) => car.write_block(c, &b),
                None => return Err(RepoError::missing(*c)),
            },
        };
        r.map_err(|e| {
            let msg = e.to_string();
            io_err = Some(e);
            RepoError::Store(msg)
        })
    })
    .map_err(|e| match io_err.take() {
        Some(io) => ExportError::Io(io),
        None => ExportError::Repo(e),
    })?;
    Ok(car.finish()?)
}

/// A repository read from a CAR and checked end to end.
pub struct LoadedRepo {
    pub commit_cid: Cid,
    pub commit: Commit,
    /// Only the blocks reachable from the commit (stray blocks dropped).
    pub blocks: MemoryBlocks,
    pub record_count: usize,
}

/// Read a full-repo CAR: every block hash-checked, the commit parsed (and
/// its signature checked when `key` is given), every MST node verified and
/// every record present. Blocks unreachable from the commit are dropped so a
/// CAR cannot smuggle foreign data into the store.
pub fn load_repo_car<R: Read>(
    r: R,
    limits: CarLimits,
    key: Option<&PublicKey>,
) -> Result<LoadedRepo, ExportError> {
    let mut reader = CarReader::new(r, limits)?;
    let root = *reader
        .roots()
        .first()
        .ok_or_else(|| RepoError::InvalidCommit("CAR has no root".into()))?;
    let mut all = MemoryBlocks::new();
    while let Some((c, b)) = reader.next_block()? {
        all.insert(c, b);
    }
    let commit_bytes = all
        .get(&root)
        .ok_or_else(|| RepoError::missing(root))?
        .to_vec();
    let commit = Commit::decode(&commit_bytes)?;
    if let Some(k) = key {
        commit.verify(k)?;
    }
    let mut blocks = MemoryBlocks::new();
    blocks.insert(root, commit_bytes);
    let mut record_count = 0;
    Mst::load(commit.data).walk(&all, &mut |v| {
        match v {
            Visit::Node(c, b) => blocks.insert(*c, b.to_vec()),
            Visit::Leaf(_, c) => {
                let b = all.get(c).ok_or_else(|| RepoError::missing(*c))?;
                blocks.insert(*c, b.to_vec());
                record_count += 1;
            }
        }
        Ok(())
    })?;
    Ok(LoadedRepo {
        commit_cid: root,
        commit,
        blocks,
        record_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor;
    use crate::crypto::{KeyType, Keypair};
    use crate::tid::Tid;

    fn sample(n: u32) -> (MemoryBlocks, Cid, Keypair) {
        let key = Keypair::from_secret_bytes(KeyType::K256, &[3u8; 32]).unwrap();
        let mut store = MemoryBlocks::new();
        let mut tree = Mst::new();
        for i in 0..n {
            let rec = crate::ipld_map! {
                "$type" => cbor::Ipld::String("app.bsky.feed.post".into()),
                "text" => cbor::Ipld::String(format!("post {i}")),
            };
            let (c, b) = cbor::encode_with_cid(&rec);
            store.insert(c, b);
            tree.insert(&store, format!("app.bsky.feed.post/{i:06}").as_bytes(), c)
                .unwrap();
        }
        store.extend(tree.unstored_blocks());
        let commit = Commit::sign(
            "did:plc:abcdefghijklmnopqrstuvwx",
            tree.root_cid(),
            Tid::new(1_700_000_000_000_000, 0),
            &key,
        );
        let (cc, cb) = commit.to_block();
        store.insert(cc, cb);
        (store, cc, key)
    }

    #[test]
    fn export_then_load_verifies_everything() {
        let (store, commit_cid, key) = sample(300);
        let car = write_repo_car(&store, &commit_cid, Vec::new()).unwrap();
        let loaded = load_repo_car(
            car.as_slice(),
            CarLimits::default(),
            Some(&key.public_key()),
        )
        .unwrap();
        assert_eq!(loaded.commit_cid, commit_cid);
        assert_eq!(loaded.record_count, 300);
        assert_eq!(loaded.blocks.len(), store.len());
        // First block after the header is the commit.
        let mut r = CarReader::new(car.as_slice(), CarLimits::default()).unwrap();
        assert_eq!(r.next_block().unwrap().unwrap().0, commit_cid);
    }

    #[test]
    fn missing_record_or_wrong_key_is_rejected() {
        let (store, commit_cid, _) = sample(20);
        let car = write_repo_car(&store, &commit_cid, Vec::new()).unwrap();
        let other = Keypair::from_secret_bytes(KeyType::K256, &[4u8; 32]).unwrap();
        assert!(
            load_repo_car(
                car.as_slice(),
                CarLimits::default(),
                Some(&other.public_key())
            )
            .is_err()
        );
        // Drop the last block (a record) from the CAR.
        let mut r = CarReader::new(car.as_slice(), CarLimits::default()).unwrap();
        let roots = r.roots().to_vec();
        let mut blocks: Vec<_> = std::iter::from_fn(|| r.next_block().unwrap()).collect();
        blocks.pop();
        let short =
            super::super::car::write_car(&roots, blocks.iter().map(|(c, b)| (c, b.as_slice())));
        assert!(matches!(
            load_repo_car(short.as_slice(), CarLimits::default(), None),
            Err(ExportError::Repo(RepoError::MissingBlock(_)))
        ));
    }
}
