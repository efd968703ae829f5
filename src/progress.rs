//! How far a long operation (backup, restore, export) has got, told to whoever watches: the
//! command line draws a bar on a terminal and writes a line now and then to the journal;
//! the scheduled backup inside the server tells no one.

/// A watcher of one operation. Every method has a do-nothing default.
pub trait Progress: Sync {
    /// The work ahead: `items` (files, blobs) holding `bytes` in all.
    fn total(&self, _items: u64, _bytes: u64) {}
    /// One more item, of `bytes`, done.
    fn step(&self, _bytes: u64) {}
}

/// Tells no one.
pub struct Quiet;

impl Progress for Quiet {}
