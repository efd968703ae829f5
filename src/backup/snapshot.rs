//! Taking a backup while the server keeps running.
//!
//! The database snapshot is the source of truth: the backup holds exactly
//! the blob files the snapshot lists. Blob files are immutable and named
//! by their hash, and the server writes a file before its row and deletes
//! it only after the row's removal has committed, so a file the snapshot
//! lists exists at snapshot time. It can still vanish before it is copied
//! (its last record deleted a moment later); then the snapshot is taken
//! again, and the blobs already copied are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, Sum};
use super::manifest::{FORMAT, FileEntry, Manifest, RepoFacts};
use super::{BackupError, DB_FILE, MANIFEST, TMP_PREFIX};
use crate::store::snapshot::{self as db, SnapshotFacts};

/// How many times the snapshot is retaken when blobs it lists disappear
/// before they are copied. Each retake only has to catch up on blobs
/// uploaded in the last moments, so this converges at once in practice.
const SNAPSHOT_ATTEMPTS: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// After a successful backup, keep only this many (the newest).
    pub keep: Option<usize>,
}

/// A finished backup.
#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Bytes of blob files copied (not hard-linked).
    pub copied_bytes: u64,
    /// Blob files hard-linked from the previous backup or the data dir.
    pub linked: usize,
    pub elapsed: Duration,
    /// Old backups pruned afterwards.
    pub pruned: Vec<String>,
}

/// Back up `data_dir` into a new timestamped directory under `root`.
pub fn take(
    data_dir: &Path,
    root: &Path,
    opts: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Outcome, BackupError> {
    let started = Instant::now();
    let db_path = data_dir.join(DB_FILE);
    if !db_path.is_file() {
        return Err(BackupError::Refused(format!(
            "no database at {}: is data_dir right?",
            db_path.display()
        )));
    }
    prepare_root(data_dir, root)?;
    let _lock = super::lock_root(root)?;
    super::sweep_leftovers(root)?;
    let previous = super::list_complete(root)
        .map_err(|e| BackupError::io(root.display(), e))?
        .pop();

    let name = free_name(root, super::unix_millis_now());
    let tmp = root.join(format!("{TMP_PREFIX}{name}"));
    files::private_dir(&tmp).map_err(|e| BackupError::io(tmp.display(), e))?;
    let built = build(data_dir, &tmp, previous.as_deref(), progress);
    let (manifest, copied_bytes, linked) = match built {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let dir = root.join(&name);
    std::fs::rename(&tmp, &dir).map_err(|e| BackupError::io(dir.display(), e))?;
    files::sync_dir(root).map_err(|e| BackupError::io(root.display(), e))?;
    let pruned = match opts.keep {
        Some(keep) => super::prune_locked(root, keep)?,
        None => Vec::new(),
    };
    Ok(Outcome {
        dir,
        manifest,
        copied_bytes,
        linked,
        elapsed: started.elapsed(),
        pruned,
    })
}

/// The backup dir must exist already: a missing one is usually a USB disk that is not
/// mounted, and writing to the empty mount point would fill the SD card.
fn prepare_root(data_dir: &Path, root: &Path) -> Result<(), BackupError> {
    if let (Some(r), Ok(d)) = (resolve(root), data_dir.canonicalize())
        && r.starts_with(&d)
    {
        return Err(BackupError::Refused(format!(
            "the backup directory {} is inside the data dir {}; choose a directory \
             elsewhere (ideally another disk)",
            root.display(),
            data_dir.display()
        )));
    }
    if !root.exists() {
        return Err(BackupError::Refused(format!(
            "backup directory {} does not exist (is the disk mounted?); create it first \
             (install -d -m 0700 DIR)",
            root.display()
        )));
    }
    if !root.is_dir() {
        return Err(BackupError::Refused(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists (the rest appended).
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return Some(rest.iter().rev().fold(c, |acc, part| acc.join(part)));
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
        if existing.as_os_str().is_empty() {
            existing = Path::new(".");
        }
    }
}

/// The timestamp name, with `-2`, `-3`… if a backup already has it.
fn free_name(root: &Path, unix_millis: i64) -> String {
    let base = super::backup_name(unix_millis);
    let mut name = base.clone();
    let mut n = 2;
    while root.join(&name).exists() {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Fill `tmp` with the snapshot, blobs, keys, ACME state and manifest.
/// Returns the manifest, bytes copied and files linked.
fn build(
    data_dir: &Path,
    tmp: &Path,
    previous: Option<&Path>,
    progress: &dyn crate::progress::Progress,
) -> Result<(Manifest, u64, usize), BackupError> {
    let db_src = data_dir.join(DB_FILE);
    let db_dst = tmp.join(DB_FILE);
    let live_blobs = data_dir.join("blobs");
    let blob_dst = tmp.join("blobs");
    files::private_dir(&blob_dst).map_err(|e| BackupError::io(blob_dst.display(), e))?;

    // cid → (relative path, sum) of every blob placed so far.
    let mut placed: BTreeMap<String, (String, Sum)> = BTreeMap::new();
    let mut copied_bytes = 0u64;
    let mut linked = 0usize;
    let mut facts: SnapshotFacts;
    let mut snapshot_at;
    let mut attempt = 0;
    let missing = loop {
        attempt += 1;
        if db_dst.exists() {
            std::fs::remove_file(&db_dst).map_err(|e| BackupError::io(db_dst.display(), e))?;
        }
        snapshot_at = super::unix_millis_now();
        facts = db::online_backup(&db_src, &db_dst)?;
        let mut vanished = Vec::new();
        let mut damaged = Vec::new();
        progress.total(
            facts.blobs.len() as u64,
            facts.blobs.iter().map(|b| b.size.max(0) as u64).sum(),
        );
        for row in &facts.blobs {
            progress.step(row.size.max(0) as u64);
            if placed.contains_key(&row.cid) {
                continue;
            }
            match place_blob(&row.cid, row.size, &live_blobs, &blob_dst, previous) {
                Ok(Placed::Linked(rel, sum)) => {
                    linked += 1;
                    placed.insert(row.cid.clone(), (rel, sum));
                }
                Ok(Placed::Copied(rel, sum)) => {
                    copied_bytes += sum.size;
                    placed.insert(row.cid.clone(), (rel, sum));
                }
                Err(BlobProblem::Vanished) => vanished.push(row.cid.clone()),
                Err(BlobProblem::Damaged(why)) => {
                    tracing::warn!("blob {} is damaged in the data dir: {why}", row.cid);
                    damaged.push(row.cid.clone());
                }
                Err(BlobProblem::Io(e)) => return Err(BackupError::io(&row.cid, e)),
            }
        }
        if vanished.is_empty() || attempt >= SNAPSHOT_ATTEMPTS {
            // Still gone after several snapshots: the data dir lost the
            // file (the server cannot serve it either). Say so rather than
            // fail: a backup with a known gap beats none.
            for cid in &vanished {
                tracing::warn!("blob {cid} is listed in the database but its file is missing");
            }
            let mut all = damaged;
            all.extend(vanished);
            break all;
        }
    };

    // Blobs placed for an earlier snapshot that the final one no longer
    // lists (deleted meanwhile) do not belong in this backup.
    let wanted: std::collections::BTreeSet<&str> =
        facts.blobs.iter().map(|b| b.cid.as_str()).collect();
    let stale: Vec<String> = placed
        .keys()
        .filter(|c| !wanted.contains(c.as_str()))
        .cloned()
        .collect();
    for cid in stale {
        if let Some((rel, _)) = placed.remove(&cid) {
            let _ = std::fs::remove_file(tmp.join(&rel));
        }
    }

    let mut entries = Vec::new();
    let db_sum = files::hash_file(&db_dst).map_err(|e| BackupError::io(db_dst.display(), e))?;
    entries.push(entry(DB_FILE, db_sum));
    for (rel, sum) in placed.values() {
        entries.push(entry(rel, *sum));
    }
    for sub in ["keys", "acme"] {
        for (rel, sum) in copy_private_tree(&data_dir.join(sub), &tmp.join(sub), sub)? {
            entries.push(entry(&rel, sum));
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = Manifest {
        format: FORMAT.into(),
        perch_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::syntax::format_datetime_millis(snapshot_at),
        schema_version: facts.schema_version,
        did: facts.did.clone(),
        handle: facts.handle.clone(),
        seq: facts.seq,
        repo: facts.root.as_ref().map(|r| RepoFacts {
            rev: r.rev.clone(),
            commit: r.commit_cid.to_string(),
            data: r.data_cid.to_string(),
        }),
        records: facts.records,
        files: entries,
        missing_blobs: missing,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::io(MANIFEST, std::io::Error::other(e)))?;

    // Every directory's entries durable before the manifest, and the
    // manifest before the rename that publishes the backup.
    let mut dirs: Vec<PathBuf> = placed
        .values()
        .filter_map(|(rel, _)| tmp.join(rel).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.extend([blob_dst, tmp.join("keys"), tmp.join("acme")]);
    for d in dirs.iter().filter(|d| d.is_dir()) {
        files::sync_dir(d).map_err(|e| BackupError::io(d.display(), e))?;
    }
    let mpath = tmp.join(MANIFEST);
    files::write_new(&mpath, &json).map_err(|e| BackupError::io(mpath.display(), e))?;
    files::sync_dir(tmp).map_err(|e| BackupError::io(tmp.display(), e))?;
    Ok((manifest, copied_bytes, linked))
}

fn entry(path: &str, sum: Sum) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        size: sum.size,
        sha256: files::hex(&sum.sha256),
    }
}

enum Placed {
    Linked(String, Sum),
    Copied(String, Sum),
}

enum BlobProblem {
    /// No file (deleted after the snapshot, or lost).
    Vanished,
    /// The file's bytes do not match its CID or the recorded size.
    Damaged(String),
    Io(std::io::Error),
}

/// Put blob `cid` into the backup's `blobs/`: a hard link to the previous
/// backup's copy or the live file when the filesystem allows (blob files
/// never change, so sharing them is safe), else a copy checked against
/// the CID as it is written.
fn place_blob(
    cid_str: &str,
    size: i64,
    live: &Path,
    dst_root: &Path,
    previous: Option<&Path>,
) -> Result<Placed, BlobProblem> {
    let c = crate::blobs::parse_blob_cid(cid_str)
        .map_err(|_| BlobProblem::Damaged("the database row has a malformed CID".into()))?;
    let rel_in_blobs = crate::blobs::relative_path(&c);
    let rel = format!("blobs/{}", rel_in_blobs.to_string_lossy());
    let digest: [u8; 32] = c
        .hash()
        .digest()
        .try_into()
        .map_err(|_| BlobProblem::Damaged("not a sha2-256 CID".into()))?;
    let expected = Sum {
        size: u64::try_from(size).unwrap_or(u64::MAX),
        sha256: digest,
    };
    let dst = dst_root.join(&rel_in_blobs);
    if let Some(parent) = dst.parent() {
        files::private_dir(parent).map_err(BlobProblem::Io)?;
    }
    // The previous backup's copy first: same bytes (the name is the hash),
    // no read of the live file, and it still counts if the live file was
    // deleted a moment ago.
    if let Some(prev) = previous {
        let old = prev.join("blobs").join(&rel_in_blobs);
        if std::fs::metadata(&old).is_ok_and(|m| m.len() == expected.size)
            && std::fs::hard_link(&old, &dst).is_ok()
        {
            return Ok(Placed::Linked(rel, expected));
        }
    }
    let src = live.join(&rel_in_blobs);
    let live_len = match std::fs::metadata(&src) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobProblem::Vanished),
        Err(e) => return Err(BlobProblem::Io(e)),
    };
    if live_len != expected.size {
        return Err(BlobProblem::Damaged(format!(
            "the file has {live_len} bytes, the database says {}",
            expected.size
        )));
    }
    if std::fs::hard_link(&src, &dst).is_ok() {
        return Ok(Placed::Linked(rel, expected));
    }
    match files::copy_hashed(&src, &dst, 0o600) {
        Ok(sum) if sum == expected => Ok(Placed::Copied(rel, sum)),
        Ok(_) => {
            let _ = std::fs::remove_file(&dst);
            Err(BlobProblem::Damaged(
                "its bytes do not match its CID".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobProblem::Vanished),
        Err(e) => Err(BlobProblem::Io(e)),
    }
}

/// Copy the regular files of a small private directory (keys, ACME state)
/// with mode 0600; returns each file's path (prefixed with `label/`) and sum.
fn copy_private_tree(
    src: &Path,
    dst: &Path,
    label: &str,
) -> Result<Vec<(String, Sum)>, BackupError> {
    if !src.is_dir() {
        return Ok(Vec::new());
    }
    files::private_dir(dst).map_err(|e| BackupError::io(dst.display(), e))?;
    let mut out = Vec::new();
    for name in files::list_files(src).map_err(|e| BackupError::io(src.display(), e))? {
        let from = src.join(&name);
        if super::manifest::safe_relative(&format!("{label}/{name}")).is_err() {
            // Not something perch wrote; a restore would refuse the name.
            tracing::warn!("not backing up {}: unexpected file name", from.display());
            continue;
        }
        let sum = files::copy_hashed(&from, &dst.join(&name), 0o600)
            .map_err(|e| BackupError::io(from.display(), e))?;
        out.push((format!("{label}/{name}"), sum));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, blobs as blob_rows};

    /// A data dir with a database listing `blobs` (bytes), of which those
    /// in `without_file` have no file, and a key file.
    fn data_dir(blobs: &[&[u8]], without_file: &[usize]) -> (tempfile::TempDir, Vec<String>) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join(DB_FILE)).unwrap();
        let conn = store.open_writer().unwrap();
        let mut cids = Vec::new();
        for (i, bytes) in blobs.iter().enumerate() {
            let c = crate::cid::for_raw(bytes);
            blob_rows::insert_blob(
                &conn,
                &blob_rows::BlobMeta {
                    cid: c.to_string(),
                    mime_type: "image/png".into(),
                    size: bytes.len() as i64,
                    created_at: 0,
                },
            )
            .unwrap();
            if !without_file.contains(&i) {
                let p = d.path().join("blobs").join(crate::blobs::relative_path(&c));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
            cids.push(c.to_string());
        }
        std::fs::create_dir_all(d.path().join("keys")).unwrap();
        std::fs::write(d.path().join("keys").join("session-secret"), "00").unwrap();
        (d, cids)
    }

    fn opts(keep: Option<usize>) -> Options {
        Options { keep }
    }

    #[test]
    fn second_backup_links_blobs_and_pruning_keeps_the_newest() {
        let (d, cids) = data_dir(&[b"one", b"two"], &[]);
        let root = tempfile::tempdir().unwrap();
        let first = take(d.path(), root.path(), &opts(None), &crate::progress::Quiet).unwrap();
        let paths: Vec<&str> = first
            .manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        assert!(paths.contains(&"perch.sqlite") && paths.contains(&"keys/session-secret"));
        for c in &cids {
            assert!(
                paths.iter().any(|p| p.ends_with(c.as_str())),
                "{c} in {paths:?}"
            );
        }
        assert!(first.manifest.missing_blobs.is_empty());
        let second = take(
            d.path(),
            root.path(),
            &opts(Some(1)),
            &crate::progress::Quiet,
        )
        .unwrap();
        assert_eq!(second.linked, 2, "blobs linked from the previous backup");
        assert_eq!(second.copied_bytes, 0);
        assert_eq!(second.pruned.len(), 1);
        assert!(!first.dir.exists());
        let left = super::super::list_complete(root.path()).unwrap();
        assert_eq!(left, vec![second.dir.clone()]);
        // What it wrote restores: every checksum matches.
        let m = Manifest::read(&second.dir).unwrap();
        for f in &m.files {
            let sum = files::hash_file(&second.dir.join(&f.path)).unwrap();
            assert_eq!(files::hex(&sum.sha256), f.sha256, "{}", f.path);
        }
        assert!(!root.path().join(format!("{TMP_PREFIX}x")).exists());
    }

    #[test]
    fn a_blob_file_lost_from_the_data_dir_is_reported_not_fatal() {
        let (d, cids) = data_dir(&[b"kept", b"lost"], &[1]);
        let root = tempfile::tempdir().unwrap();
        let out = take(d.path(), root.path(), &opts(None), &crate::progress::Quiet).unwrap();
        assert_eq!(out.manifest.missing_blobs, vec![cids[1].clone()]);
        assert!(
            out.manifest
                .files
                .iter()
                .any(|f| f.path.ends_with(&cids[0]))
        );
    }

    #[test]
    fn refusals() {
        let (d, _) = data_dir(&[], &[]);
        let missing = d.path().join("..").join("no-such-usb-disk");
        let e = take(
            d.path(),
            &missing,
            &Options::default(),
            &crate::progress::Quiet,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is the disk mounted"), "{e}");
        let e = take(
            d.path(),
            &d.path().join("backups"),
            &opts(None),
            &crate::progress::Quiet,
        )
        .unwrap_err();
        assert!(e.to_string().contains("inside the data dir"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = take(
            empty.path(),
            &d.path().join("x"),
            &opts(None),
            &crate::progress::Quiet,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no database"), "{e}");
    }
}
