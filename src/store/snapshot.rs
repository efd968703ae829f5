//! Copies of the whole database for backups: SQLite's online-backup API
//! (consistent while the server keeps writing from another process) and
//! the facts a backup records about the copy it made.

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::repo::{self, RepoRoot};
use super::{Db, StoreError};

/// How long to keep retrying while the source is locked (a checkpoint or
/// a schema change in the server holds it only briefly).
const BUSY_RETRIES: u32 = 200;

/// A read-only connection to a database that another process may be
/// writing (the running server).
pub fn open_read_only(path: &Path) -> Result<Db, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Corrupt(format!(
            "no database at {}",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(Db::new(conn))
}

/// Copy the database at `src` into a new file `dst` as one consistent
/// snapshot, check it, and return what it holds.
///
/// All pages are copied in one step: a step that spans the whole file
/// runs inside one read transaction, so the copy is a single committed
/// state even while the server commits (WAL lets it keep writing). Small
/// steps would restart from scratch after every foreign write and might
/// never finish on a busy server. The copy is switched out of WAL mode so
/// it is one self-contained file that checksums stay valid for.
pub fn online_backup(src: &Path, dst: &Path) -> Result<SnapshotFacts, StoreError> {
    let source = open_read_only(src)?;
    // Created first with mode 0600: SQLite would make it world-readable,
    // and it holds password hashes.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", dst.display())))?;
    }
    let mut dest = Connection::open(dst)?;
    {
        let backup = Backup::new(source.raw(), &mut dest)?;
        let mut tries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    tries += 1;
                    if tries > BUSY_RETRIES {
                        return Err(StoreError::Corrupt(
                            "the database stayed locked; is something holding a write lock?".into(),
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                // StepResult is non-exhaustive; anything new is a failure
                // rather than a silently partial copy.
                _ => return Err(StoreError::Corrupt("unexpected backup step result".into())),
            }
        }
    }
    drop(source);
    let mode: String =
        dest.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Corrupt(format!(
            "cannot take the copy out of WAL mode (got {mode})"
        )));
    }
    let dest = Db::new(dest);
    let check = quick_check(&dest)?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the snapshot fails quick_check: {check}"
        )));
    }
    let facts = facts(&dest)?;
    Ok(facts)
}

/// `PRAGMA quick_check`'s first line: `ok`, or the first problem found.
pub fn quick_check(conn: &Db) -> Result<String, StoreError> {
    Ok(conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?)
}

/// A blob the database knows, and whether any record references it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRow {
    pub cid: String,
    pub size: i64,
    pub referenced: bool,
}

/// What one database copy holds, as a backup manifest records it.
#[derive(Clone, Debug)]
pub struct SnapshotFacts {
    pub schema_version: i64,
    pub did: Option<String>,
    pub handle: Option<String>,
    pub root: Option<RepoRoot>,
    /// The highest firehose seq ever handed out (see [`repo::highest_seq`]).
    pub seq: i64,
    pub records: i64,
    pub blobs: Vec<BlobRow>,
}

/// Read the facts a backup manifest records from `conn`.
pub fn facts(conn: &Db) -> Result<SnapshotFacts, StoreError> {
    let account = super::account::get_account(conn)?;
    let mut st = conn.prepare(
        "SELECT b.cid, b.size,
                EXISTS (SELECT 1 FROM record_blob rb WHERE rb.blob_cid = b.cid)
         FROM blob b ORDER BY b.cid",
    )?;
    let blobs = st
        .query_map([], |r| {
            Ok(BlobRow {
                cid: r.get(0)?,
                size: r.get(1)?,
                referenced: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SnapshotFacts {
        schema_version: super::schema::version(conn.raw())?,
        did: account.as_ref().map(|a| a.did.clone()),
        handle: account.map(|a| a.handle),
        root: repo::get_root(conn)?,
        seq: repo::highest_seq(conn)?,
        records: repo::record_count(conn)?,
        blobs,
    })
}

/// Blobs that records reference and whose bytes are here (what an export
/// carries), by CID.
pub fn referenced_blobs(conn: &Db) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare(
        "SELECT DISTINCT rb.blob_cid FROM record_blob rb
         JOIN blob b ON b.cid = rb.blob_cid ORDER BY rb.blob_cid",
    )?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The schema version this perch writes.
pub fn schema_version() -> i64 {
    super::schema::VERSION
}
