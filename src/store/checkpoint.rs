//! WAL checkpoints on a thread of their own. Left to SQLite, the commit that crosses the
//! WAL's threshold copies the pages back into the database and syncs it before it returns,
//! on the writer's thread: a seventh of the writer's time, and the slow tail of
//! write-to-firehose latency. Here the writer's connection only checkpoints as a last
//! resort (a WAL of [`WRITER_FALLBACK_PAGES`]), and this thread checkpoints a moment after
//! commits, in `PASSIVE` mode: it never waits for the writer or for readers, and a
//! checkpoint is crash-safe whenever it is interrupted.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::{Store, StoreError};

/// How long commits gather before a checkpoint copies them all.
const PAUSE: Duration = Duration::from_millis(500);

/// The writer's own threshold, in pages, should this thread stop or fall behind.
pub const WRITER_FALLBACK_PAGES: i64 = 8000;

/// The handle the writer nudges after each commit; the thread ends when it is dropped.
pub struct Checkpointer {
    tx: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own. `on_error` hears about a checkpoint
    /// that failed (the disk under the database, usually).
    pub fn spawn(
        store: &Arc<Store>,
        on_error: impl Fn(StoreError) + Send + 'static,
    ) -> Result<Checkpointer, StoreError> {
        let conn = store.open_writer()?;
        let (tx, rx) = sync_channel(1);
        std::thread::Builder::new()
            .name("perch-checkpoint".into())
            .spawn(move || run(&conn, &rx, &on_error))
            .map_err(|_| StoreError::Join)?;
        Ok(Checkpointer { tx })
    }

    /// Commits were made: checkpoint soon. Never blocks.
    pub fn nudge(&self) {
        match self.tx.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(conn: &super::Db, rx: &Receiver<()>, on_error: &dyn Fn(StoreError)) {
    while rx.recv().is_ok() {
        std::thread::sleep(PAUSE);
        // Nudges that came meanwhile are covered by this checkpoint.
        while rx.try_recv().is_ok() {}
        if let Err(e) = passive(conn) {
            on_error(e);
        }
    }
}

/// Copies what it can of the WAL into the database without waiting for anyone; returns
/// (frames in the WAL, frames copied).
pub fn passive(conn: &super::Db) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}
