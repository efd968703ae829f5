//! The one SQLite database: the only module that speaks SQL.
//!
//! WAL mode with `synchronous=FULL`, so a commit is on disk when it returns.
//! One connection writes (owned by the writer thread, see `crate::writer`);
//! reads use a small pool of read-only connections that WAL lets run while
//! the writer works. Queries are plain functions over a [`Db`] (a connection
//! only this module can speak SQL on), so the same code serves readers and the
//! writer's transaction, and the SQL of perch lives here and nowhere else.

pub mod account;
pub mod blobs;
mod db;
pub mod oauth;
pub mod passkeys;
pub mod repo;
mod schema;
pub mod snapshot;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

use crate::cid::Cid;
use crate::repo::{BlockSource, RepoError};
pub use db::Db;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {0} is newer than this perch understands ({1})")]
    TooNew(i64, i64),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("background task failed")]
    Join,
    /// The file itself is unreadable or fails SQLite's own check at open.
    #[error(
        "the database {0} is damaged ({1}); perch will not start on it. Stop here, keep a copy \
         of the data directory, and restore your latest backup with `perch restore BACKUP \
         --force` (it then tells you the `perch seq bump` to run so the firehose continues \
         above what relays have seen)"
    )]
    Damaged(PathBuf, String),
    /// The request does not fit the account's state (not a storage failure).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed earlier (or just now); no write is attempted until a
    /// restart (see `crate::health`).
    #[error("storage is unhealthy: {0}")]
    Unhealthy(String),
}

/// How many read connections to keep open at most.
const MAX_IDLE_READERS: usize = 4;

pub struct Store {
    path: PathBuf,
    readers: Mutex<Vec<Db>>,
}

/// Set only by `perch serve --dev` with `PERCH_UNSAFE_SYNC_NORMAL=1`, for
/// the power-cut test's control run, which must show that NORMAL loses
/// acknowledged writes. Never read from the config file.
static UNSAFE_SYNC_NORMAL: AtomicBool = AtomicBool::new(false);

/// Commit with `synchronous=NORMAL` from now on: a commit may be lost in a
/// power cut (the WAL is synced only at checkpoints). For tests only.
pub fn use_unsafe_synchronous_normal() {
    UNSAFE_SYNC_NORMAL.store(true, Ordering::Relaxed);
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let sync = if UNSAFE_SYNC_NORMAL.load(Ordering::Relaxed) {
        "NORMAL"
    } else {
        "FULL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Statement journals (savepoints) and sorts stay in memory instead of
    // a temp file created and deleted on every commit.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl Store {
    /// Open (creating if needed), check and migrate the database at `path`.
    /// A file SQLite cannot read, or one that fails `quick_check`, is
    /// [`StoreError::Damaged`]: serving from it would hand out wrong data or
    /// fail on the first write, where a refusal points the owner at the backup.
    pub fn open(path: &Path) -> Result<Arc<Store>, StoreError> {
        Self::open_with(path, true)
    }

    /// [`Store::open`], refusing a database with no perch schema yet unless
    /// `new_allowed`: beside an existing signing key, an empty database is a
    /// lost one, and starting fresh would serve an empty repo and restart the
    /// firehose at seq 1.
    pub fn open_with(path: &Path, new_allowed: bool) -> Result<Arc<Store>, StoreError> {
        Self::open_checked(path, new_allowed).map_err(|e| match e {
            StoreError::Sqlite(ref err) if is_damage(err) => {
                StoreError::Damaged(path.to_owned(), err.to_string())
            }
            other => other,
        })
    }

    fn open_checked(path: &Path, new_allowed: bool) -> Result<Arc<Store>, StoreError> {
        make_private(path)?;
        let mut conn = Connection::open(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot enable WAL (got {mode})"
            )));
        }
        configure(&conn)?;
        // quick_check reads every page (not the index contents): seconds on
        // a Pi for a personal repo, once per start.
        let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Damaged(
                path.to_owned(),
                check.replace('\n', "; "),
            ));
        }
        if !new_allowed && schema::version(&conn)? == 0 {
            return Err(StoreError::Damaged(
                path.to_owned(),
                "it holds no perch data, but keys/ holds this server's signing key; move keys/ \
                 away too if you really mean to start a new server"
                    .into(),
            ));
        }
        schema::migrate(&mut conn)?;
        Ok(Arc::new(Store {
            path: path.to_owned(),
            readers: Mutex::new(vec![]),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read-write connection, for the single writer.
    pub fn open_writer(&self) -> Result<Db, StoreError> {
        let conn = Connection::open(&self.path)?;
        configure(&conn)?;
        Ok(Db::new(conn))
    }

    fn take_reader(&self) -> Result<Db, StoreError> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Up to MAX_IDLE_READERS + a few of these exist; SQLite's default
        // 2 MiB page cache each would dominate RSS on a small board. The OS
        // page cache still holds the hot pages.
        conn.pragma_update(None, "cache_size", -512)?;
        Ok(Db::new(conn))
    }

    fn give_back(&self, conn: Db) {
        if let Ok(mut v) = self.readers.lock()
            && v.len() < MAX_IDLE_READERS
        {
            v.push(conn);
        }
    }

    /// Run a read on a pooled connection, on the current thread.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take_reader()?;
        let r = f(&conn);
        self.give_back(conn);
        r
    }

    /// Run a read off the async runtime.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|_| StoreError::Join)?
    }
}

/// The database holds password hashes and sessions: it is created 0600 whatever the umask
/// (SQLite would make it 0644), and an existing one, with its WAL and shared-memory files
/// (which SQLite creates with the database's mode), is narrowed to 0600.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError::Corrupt(format!("{}: {e}", path.display()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(meta) = std::fs::metadata(&p)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

impl StoreError {
    /// An error that means the file or the disk under it failed (see `crate::health`):
    /// I/O, a full disk, a file that cannot be opened or written, corruption.
    pub fn is_storage_failure(&self) -> bool {
        use rusqlite::ErrorCode::*;
        matches!(
            self,
            StoreError::Sqlite(e) if matches!(
                e.sqlite_error_code(),
                Some(SystemIoFailure | DiskFull | CannotOpen | ReadOnly | DatabaseCorrupt | NotADatabase)
            )
        )
    }
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Repo blocks as a `BlockSource`, over any connection or transaction.
pub struct SqlBlocks<'a>(pub &'a Db);

impl BlockSource for SqlBlocks<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        repo::get_block(self.0, cid).map_err(|e| RepoError::Store(e.to_string()))
    }
    fn get_blocks(&self, cids: &[Cid], max_len: usize) -> Result<Vec<Option<Vec<u8>>>, RepoError> {
        repo::get_blocks(self.0, cids, max_len).map_err(|e| RepoError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
