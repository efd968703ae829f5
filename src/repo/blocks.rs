//! Where repository code reads blocks from. The store implements this over
//! SQLite; tests and CAR imports use `MemoryBlocks`.

use std::collections::HashMap;

use super::RepoError;
use crate::cid::Cid;

pub trait BlockSource {
    /// The bytes of block `cid`, or `None` if this source does not have it.
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError>;

    /// The blocks of `cids` that are at most `max_len` bytes long, in the order asked
    /// (a CID may come twice); `None` where the block is absent or longer, which the caller
    /// asks [`get_block`](Self::get_block) for. Sources where every lookup is a round trip
    /// of its own (SQLite) answer many in one, which is what exports and listings are made
    /// of; the cap keeps such a batch's memory small whatever the blocks are.
    fn get_blocks(&self, cids: &[Cid], max_len: usize) -> Result<Vec<Option<Vec<u8>>>, RepoError> {
        cids.iter()
            .map(|c| Ok(self.get_block(c)?.filter(|b| b.len() <= max_len)))
            .collect()
    }
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        (**self).get_block(cid)
    }
    fn get_blocks(&self, cids: &[Cid], max_len: usize) -> Result<Vec<Option<Vec<u8>>>, RepoError> {
        (**self).get_blocks(cids, max_len)
    }
}

/// An in-memory block map.
#[derive(Clone, Debug, Default)]
pub struct MemoryBlocks {
    blocks: HashMap<Cid, Vec<u8>>,
    bytes: usize,
}

impl MemoryBlocks {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        let n = bytes.len();
        if let Some(old) = self.blocks.insert(cid, bytes) {
            self.bytes -= old.len();
        }
        self.bytes += n;
    }
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(Vec::as_slice)
    }
    pub fn contains(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
    /// Total payload bytes held.
    pub fn byte_size(&self) -> usize {
        self.bytes
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &Vec<u8>)> {
        self.blocks.iter()
    }
    pub fn extend(&mut self, other: MemoryBlocks) {
        for (c, b) in other.blocks {
            self.insert(c, b);
        }
    }
}

impl BlockSource for MemoryBlocks {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self.blocks.get(cid).cloned())
    }
}
