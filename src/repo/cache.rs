//! A bounded cache of blocks in front of a `BlockSource`, so the writer does not read the
//! same MST nodes from the database on every write. Blocks are content-addressed, so an
//! entry can never be stale; the only question is memory. Two generations bound it: hits
//! move a block to the young one, and when the young one is full it becomes the old one and
//! the old one is dropped. Nothing is held above `capacity` bytes.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{BlockSource, RepoError};
use crate::cid::Cid;

pub struct BlockCache {
    /// Bytes one generation may hold; the cache holds at most twice this.
    generation: usize,
    inner: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Cid, Vec<u8>>,
    young_bytes: usize,
    old: HashMap<Cid, Vec<u8>>,
}

impl BlockCache {
    /// A cache of at most `capacity` bytes of blocks.
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            generation: capacity / 2,
            inner: Mutex::default(),
        }
    }

    fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        let mut g = self.inner.lock().ok()?;
        if let Some(b) = g.young.get(cid) {
            return Some(b.clone());
        }
        let b = g.old.remove(cid)?;
        let copy = b.clone();
        g.put(cid, b, self.generation);
        Some(copy)
    }

    /// Adds a block (the writer's new MST nodes, which the next write walks again).
    pub fn put(&self, cid: &Cid, bytes: &[u8]) {
        if let Ok(mut g) = self.inner.lock() {
            g.put(cid, bytes.to_vec(), self.generation);
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |g| {
            g.young_bytes + g.old.values().map(Vec::len).sum::<usize>()
        })
    }

    /// `src` with this cache in front.
    pub fn over<S: BlockSource>(&self, src: S) -> Cached<'_, S> {
        Cached { cache: self, src }
    }
}

impl Generations {
    fn put(&mut self, cid: &Cid, bytes: Vec<u8>, generation: usize) {
        if bytes.len() > generation {
            return;
        }
        if self.young_bytes + bytes.len() > generation {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        self.young_bytes += bytes.len();
        if let Some(prev) = self.young.insert(*cid, bytes) {
            self.young_bytes -= prev.len();
        }
    }
}

/// A block source read through a [`BlockCache`].
pub struct Cached<'a, S> {
    cache: &'a BlockCache,
    src: S,
}

impl<S: BlockSource> BlockSource for Cached<'_, S> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        if let Some(b) = self.cache.get(cid) {
            return Ok(Some(b));
        }
        let found = self.src.get_block(cid)?;
        if let Some(b) = &found {
            self.cache.put(cid, b);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::MemoryBlocks;
    use std::cell::Cell;

    /// Counts the reads that reach it.
    struct Counting<'a>(&'a MemoryBlocks, &'a Cell<usize>);

    impl BlockSource for Counting<'_> {
        fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
            self.1.set(self.1.get() + 1);
            self.0.get_block(cid)
        }
    }

    fn block(i: u32) -> (Cid, Vec<u8>) {
        let bytes = vec![u8::try_from(i % 251).unwrap(); 100 + i as usize % 7];
        (
            crate::cid::for_raw(&[&bytes[..], &i.to_be_bytes()].concat()),
            bytes,
        )
    }

    #[test]
    fn repeated_reads_stop_reaching_the_source_and_memory_stays_bounded() {
        let mut store = MemoryBlocks::new();
        let blocks: Vec<_> = (0..1000).map(block).collect();
        for (c, b) in &blocks {
            store.insert(*c, b.clone());
        }
        let reads = Cell::new(0);
        let cache = BlockCache::new(10_000);
        let src = cache.over(Counting(&store, &reads));
        for _ in 0..3 {
            assert_eq!(
                src.get_block(&blocks[0].0).unwrap().as_ref(),
                Some(&blocks[0].1)
            );
        }
        assert_eq!(reads.get(), 1, "one read reaches the source");
        for (c, b) in &blocks {
            assert_eq!(src.get_block(c).unwrap().as_ref(), Some(b));
            assert!(cache.bytes() <= 10_000, "{} bytes held", cache.bytes());
        }
        // A missing block is not remembered as missing: it may be stored later.
        let (absent, _) = block(5000);
        assert_eq!(src.get_block(&absent).unwrap(), None);
        assert_eq!(src.get_block(&absent).unwrap(), None);
        let before = reads.get();
        src.get_block(&absent).unwrap();
        assert_eq!(reads.get(), before + 1);
    }
}
