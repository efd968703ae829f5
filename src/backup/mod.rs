//! Backups and exports of the data dir.
//!
//! A backup is a directory `<backup_dir>/<YYYYMMDDTHHMMSSZ>/` holding a
//! consistent SQLite snapshot (`perch.sqlite`), every blob file the
//! snapshot lists (`blobs/<xx>/<cid>`), the keys, the ACME state and a
//! `manifest.json` with a checksum per file. It is built under a dot-named
//! temporary directory and renamed into place only when everything is on
//! disk, so a directory with a timestamp name is always complete.
//!
//! - `snapshot`: taking a backup while the server runs (`perch backup`,
//!   and the scheduled task in `schedule`);
//! - `restore`: rebuilding a data dir from one, and the restore marker
//!   that keeps `perch serve` from reusing firehose seqs;
//! - `archive`: `perch export`, one tar with the repo CAR, blobs and
//!   preferences.

pub mod archive;
mod files;
pub mod manifest;
pub mod restore;
pub mod schedule;
pub mod snapshot;
mod verify;

use std::io;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

pub use manifest::Manifest;

pub const MANIFEST: &str = "manifest.json";
pub const DB_FILE: &str = "perch.sqlite";
/// Held (flock) by whoever writes into a backup dir, so two backups (the
/// scheduled one and a manual one) never interleave or prune each other.
const LOCK_FILE: &str = ".lock";
/// Prefix of a backup still being written.
const TMP_PREFIX: &str = ".tmp-";
/// Prefix of an old backup being deleted.
const DELETING_PREFIX: &str = ".deleting-";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}: {1}")]
    Io(String, io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The request cannot be done as asked; the message says what to do.
    #[error("{0}")]
    Refused(String),
    /// A backup's contents do not match its manifest.
    #[error("{0}")]
    Damaged(String),
}

impl BackupError {
    pub(crate) fn io(what: impl std::fmt::Display, e: io::Error) -> BackupError {
        BackupError::Io(what.to_string(), e)
    }
}

/// The directory name for a backup taken at `unix_millis`:
/// `YYYYMMDDTHHMMSSZ` (sorts by time; no `:` so FAT/exFAT disks take it).
pub fn backup_name(unix_millis: i64) -> String {
    let iso = crate::syntax::format_datetime_millis(unix_millis);
    // "2025-01-02T03:04:05.678Z" → "20250102T030405Z"
    let (date_time, _) = iso.split_once('.').unwrap_or((&iso, ""));
    let mut name: String = date_time
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    name.push('Z');
    name
}

/// Whether `name` is a backup directory name: `YYYYMMDDTHHMMSSZ`, maybe
/// with `-N` when two backups fall in the same second.
pub fn is_backup_name(name: &str) -> bool {
    let (base, suffix) = match name.split_once('-') {
        Some((b, s)) => (b, Some(s)),
        None => (name, None),
    };
    let b = base.as_bytes();
    let base_ok = b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z';
    let suffix_ok = suffix.is_none_or(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()));
    base_ok && suffix_ok
}

/// Complete backups under `root`, oldest first.
pub fn list_complete(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_backup_name(name) && entry.path().join(MANIFEST).is_file() {
            out.push(entry.path());
        }
    }
    out.sort_by_key(|p| order_key(p));
    Ok(out)
}

/// Name order, except that `-10` comes after `-9`.
fn order_key(p: &Path) -> (String, u64) {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once('-') {
        Some((base, n)) => (base.to_owned(), n.parse().unwrap_or(0)),
        None => (name, 0),
    }
}

/// Delete all but the newest `keep` complete backups under `root` (the
/// caller holds the lock); returns the names removed. Each is renamed to a
/// dot name first, so a crash mid-delete never leaves something that looks
/// like a complete backup.
fn prune_locked(root: &Path, keep: usize) -> Result<Vec<String>, BackupError> {
    let all = list_complete(root).map_err(|e| BackupError::io(root.display(), e))?;
    let excess = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for dir in &all[..excess] {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doomed = root.join(format!("{DELETING_PREFIX}{name}"));
        std::fs::rename(dir, &doomed).map_err(|e| BackupError::io(dir.display(), e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| BackupError::io(doomed.display(), e))?;
        removed.push(name);
    }
    if !removed.is_empty() {
        files::sync_dir(root).map_err(|e| BackupError::io(root.display(), e))?;
    }
    Ok(removed)
}

/// Remove what interrupted runs left (half-written backups, half-deleted
/// old ones). Only called with the lock held, so none of it is in use.
fn sweep_leftovers(root: &Path) -> Result<(), BackupError> {
    let entries = std::fs::read_dir(root).map_err(|e| BackupError::io(root.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io(root.display(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(TMP_PREFIX) || name.starts_with(DELETING_PREFIX))
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| BackupError::io(entry.path().display(), e))?;
        }
    }
    Ok(())
}

/// An exclusive advisory lock on a file, held until dropped.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Takes the lock on `path` (created 0600) without waiting; `busy` is the refusal when
/// another process holds it.
fn try_lock_file(path: &Path, busy: impl FnOnce() -> String) -> Result<FileLock, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackupError::io(path.display(), e))?;
    match f.try_lock() {
        Ok(()) => Ok(FileLock(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Refused(busy())),
        Err(std::fs::TryLockError::Error(e)) => Err(BackupError::io(path.display(), e)),
    }
}

/// An exclusive hold on a backup dir.
fn lock_root(root: &Path) -> Result<FileLock, BackupError> {
    try_lock_file(&root.join(LOCK_FILE), || {
        format!(
            "another backup into {} is running; try again when it has finished",
            root.display()
        )
    })
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn unix_millis_now() -> i64 {
    crate::clock::unix_millis()
}

/// Whether two existing paths are on the same file system (a backup there does not survive
/// that disk).
pub fn on_same_disk(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!(
        (std::fs::metadata(a), std::fs::metadata(b)),
        (Ok(x), Ok(y)) if x.dev() == y.dev()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let a = backup_name(1_700_000_000_000);
        assert_eq!(a, "20231114T221320Z");
        assert!(is_backup_name(&a));
        assert!(is_backup_name("20231114T221320Z-2"));
        assert!(backup_name(1_700_000_000_000) < backup_name(1_700_000_001_000));
        for bad in [
            "",
            "20231114T221320",
            "20231114T221320Z-",
            "20231114T221320Z-x",
            ".tmp-20231114T221320Z",
            "2023111aT221320Z",
        ] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }

    fn fake_backup(root: &Path, name: &str, complete: bool) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        if complete {
            std::fs::write(d.join(MANIFEST), "{}").unwrap();
        }
    }

    #[test]
    fn pruning_keeps_the_newest_complete_backups_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for n in [
            "20240101T000000Z",
            "20240102T000000Z",
            "20240103T000000Z",
            "20240103T000000Z-2",
            "20240103T000000Z-10",
            "20240104T000000Z",
        ] {
            fake_backup(r, n, true);
        }
        // Not backups: incomplete, in progress, foreign.
        fake_backup(r, "20240105T000000Z", false);
        fake_backup(r, ".tmp-20240106T000000Z", true);
        fake_backup(r, "photos", true);

        let removed = prune_locked(r, 3).unwrap();
        assert_eq!(
            removed,
            ["20240101T000000Z", "20240102T000000Z", "20240103T000000Z"]
        );
        let left: Vec<String> = list_complete(r)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            [
                "20240103T000000Z-2",
                "20240103T000000Z-10",
                "20240104T000000Z"
            ]
        );
        assert!(
            r.join("20240105T000000Z").is_dir(),
            "incomplete is not pruned"
        );
        assert!(r.join("photos").is_dir(), "foreign dirs are left alone");
        assert!(!r.join(".deleting-20240101T000000Z").exists());

        // keep = 0 is treated as 1: the newest backup is never deleted.
        assert_eq!(prune_locked(r, 0).unwrap().len(), 2);
        assert_eq!(list_complete(r).unwrap().len(), 1);

        sweep_leftovers(r).unwrap();
        assert!(!r.join(".tmp-20240106T000000Z").exists());
    }

    #[test]
    fn a_second_writer_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let held = lock_root(root.path()).unwrap();
        let e = lock_root(root.path()).err().unwrap();
        assert!(e.to_string().contains("another backup"), "{e}");
        drop(held);
        lock_root(root.path()).unwrap();
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
