//! Rebuilding a data dir from a backup, and the rule that keeps a restored
//! server from reusing firehose seqs.
//!
//! A backup knows the seq it was taken at, not the events the old server
//! sent after it. Relays remember the last seq they saw from us; if a
//! restored server numbered new events from the backup's seq, relays
//! would see numbers they already had (and skip or reject the events). So
//! a restore leaves a marker in the data dir, `perch serve` refuses to
//! start while it is there, and `perch seq bump --to N` (N above anything
//! the old server can have used) moves the counter and clears it.
//! `perch restore --seq-floor N` does both at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::files;
use super::manifest::Manifest;
use super::{BackupError, DB_FILE, MANIFEST};
use crate::store::{self, SqlBlocks, Store};

/// Left in a restored data dir until the seq has been moved on.
pub const MARKER: &str = "restore-pending.json";
/// Held by `perch serve` for as long as it runs, and by a restore, so the
/// two never touch one data dir at once.
const SERVE_LOCK: &str = ".serve.lock";
/// Suggested distance above the backup's seq: far more events than one
/// account makes between a backup and a restore (a busy account writes a
/// few hundred a day). A gap in seqs costs nothing; a reused seq does.
pub const SEQ_MARGIN: i64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The backup directory restored from.
    pub backup: String,
    pub backup_created_at: String,
    pub backup_seq: i64,
    /// The highest seq of the database the restore replaced, if there was one.
    pub replaced_seq: Option<i64>,
    /// That database's repo rev: the commit announced after the restore
    /// gets a higher one.
    #[serde(default)]
    pub replaced_rev: Option<String>,
    pub restored_at: String,
    /// False while files are still being moved into place.
    pub complete: bool,
}

impl Marker {
    /// The lowest seq the old server is known to have reached.
    pub fn floor(&self) -> i64 {
        self.backup_seq.max(self.replaced_seq.unwrap_or(0))
    }

    /// A next seq safely past anything the old server can have used.
    pub fn suggested_next(&self) -> i64 {
        self.floor() + SEQ_MARGIN
    }

    /// What to run before the server may start, in words.
    pub fn instructions(&self) -> String {
        format!(
            "before perch serves again, move the firehose seq past anything the old server \
             sent after the backup (seq {}), so relays never see a seq twice:\n\n    \
             perch seq bump --to {}\n\n\
             (any N above the old server's last seq works; {} is the backup's seq plus \
             {SEQ_MARGIN}. If you are sure nothing was written after the backup, \
             --to {} is enough.)",
            self.floor(),
            self.suggested_next(),
            self.suggested_next(),
            self.floor() + 1
        )
    }
}

pub fn read_marker(data_dir: &Path) -> Result<Option<Marker>, BackupError> {
    let path = data_dir.join(MARKER);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            BackupError::Damaged(format!(
                "{} is not valid ({e}); run perch restore again with --force",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io(path.display(), e)),
    }
}

fn write_marker(data_dir: &Path, m: &Marker) -> Result<(), BackupError> {
    let path = data_dir.join(MARKER);
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| BackupError::io(path.display(), std::io::Error::other(e)))?;
    crate::fsutil::write_private(&path, &json).map_err(|e| BackupError::io(path.display(), e))
}

/// For `perch serve`: an error saying exactly what to run while the data
/// dir holds a restore that has not had its seq moved on (or did not
/// finish).
pub fn refuse_if_pending(data_dir: &Path) -> Result<(), BackupError> {
    match read_marker(data_dir)? {
        None => Ok(()),
        Some(m) if !m.complete => Err(incomplete(data_dir, &m)),
        Some(m) => Err(BackupError::Refused(format!(
            "{} was restored from the backup {}; {}",
            data_dir.display(),
            m.backup,
            m.instructions()
        ))),
    }
}

fn incomplete(data_dir: &Path, m: &Marker) -> BackupError {
    BackupError::Refused(format!(
        "a restore into {} did not finish; run it again: perch restore {} --force --data-dir {}",
        data_dir.display(),
        m.backup,
        data_dir.display()
    ))
}

/// An exclusive hold on a data dir: `perch serve` keeps one while it runs.
pub type DataDirLock = super::FileLock;

fn lock_data_dir(data_dir: &Path, busy: &str) -> Result<DataDirLock, BackupError> {
    super::try_lock_file(&data_dir.join(SERVE_LOCK), || {
        format!("{busy} ({} is in use)", data_dir.display())
    })
}

pub fn serve_guard(data_dir: &Path) -> Result<DataDirLock, BackupError> {
    files::private_dir_all(data_dir).map_err(|e| BackupError::io(data_dir.display(), e))?;
    let lock = lock_data_dir(
        data_dir,
        "another perch serve, or a perch restore, is using this data dir",
    )?;
    refuse_if_pending(data_dir)?;
    Ok(lock)
}

/// For `perch seq bump --to NEXT`: with a restore marker present, NEXT
/// must be above the seq the old server is known to have reached.
/// Returns the marker, which the caller clears once the bump is durable.
pub fn check_bump(data_dir: &Path, next: i64) -> Result<Option<Marker>, BackupError> {
    let Some(m) = read_marker(data_dir)? else {
        return Ok(None);
    };
    if !m.complete {
        return Err(incomplete(data_dir, &m));
    }
    if next <= m.floor() {
        return Err(BackupError::Refused(format!(
            "--to must be above {}, the seq of the backup this data dir was restored from \
             (suggested: --to {})",
            m.floor(),
            m.suggested_next()
        )));
    }
    Ok(Some(m))
}

pub fn clear_marker(data_dir: &Path) -> Result<(), BackupError> {
    let path = data_dir.join(MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => files::sync_dir(data_dir).map_err(|e| BackupError::io(data_dir.display(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::io(path.display(), e)),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Restore into a non-empty data dir, moving what is there aside.
    pub force: bool,
    /// Continue firehose seqs at this number (instead of leaving the
    /// marker for `perch seq bump`).
    pub seq_floor: Option<i64>,
}

#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// Records in the restored repo, each checked against its CID.
    pub records: u64,
    /// Where the data dir's previous contents went (with `--force`).
    pub moved_aside: Option<PathBuf>,
    /// Set when the seq still has to be moved on.
    pub marker: Option<Marker>,
    pub elapsed: Duration,
}

/// Restore the backup in `backup` into `data_dir`. Nothing in `data_dir`
/// changes until every file has been copied and checked against the
/// manifest and the repo has been verified.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    opts: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Restored, BackupError> {
    let started = Instant::now();
    let manifest = read_backup_manifest(backup)?;
    if manifest.schema_version > store::snapshot::schema_version() {
        return Err(BackupError::Refused(format!(
            "this backup was made by perch {} with database schema {}, newer than this \
             perch understands ({}); restore it with that perch version or later",
            manifest.perch_version,
            manifest.schema_version,
            store::snapshot::schema_version()
        )));
    }
    if let Some(n) = opts.seq_floor
        && n <= manifest.seq
    {
        return Err(BackupError::Refused(format!(
            "--seq-floor must be above the backup's seq {} (suggested: {})",
            manifest.seq,
            manifest.seq + SEQ_MARGIN
        )));
    }

    files::private_dir_all(data_dir).map_err(|e| BackupError::io(data_dir.display(), e))?;
    let _lock = lock_data_dir(
        data_dir,
        "perch serve is running on this data dir; stop it first (systemctl stop perch)",
    )?;
    let existing = entries_except(data_dir, &[SERVE_LOCK])?;
    if !existing.is_empty() && !opts.force {
        return Err(BackupError::Refused(format!(
            "{} is not empty; restore into an empty or new directory (--data-dir DIR), or add \
             --force to move what is there into {}/.replaced-<time>/ first",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let (replaced_seq, replaced_rev) = existing_head(data_dir).unzip();
    let replaced_rev = replaced_rev.flatten();
    if let Some(t) = replaced_seq
        && t > manifest.seq
        && opts.seq_floor.is_none_or(|n| n <= t)
    {
        return Err(BackupError::Refused(format!(
            "the database in {} has firehose seq {t}, ahead of this backup's seq {}: relays \
             have seen seqs up to {t}, and restoring would make seq go backwards. Restore a \
             newer backup, or add --seq-floor N with N above {t} (e.g. --seq-floor {}) to \
             continue numbering from there",
            data_dir.display(),
            manifest.seq,
            t + SEQ_MARGIN
        )));
    }

    let staging = data_dir.join(format!(".restore-{}", std::process::id()));
    let floor = opts.seq_floor.map(|n| (n, replaced_rev.clone()));
    let staged = stage(backup, &manifest, &staging, floor, progress);
    let records = match staged {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(match e {
                BackupError::Damaged(m) => BackupError::Damaged(format!(
                    "{m}; nothing in {} was changed. Try an older backup",
                    data_dir.display()
                )),
                other => other,
            });
        }
    };

    // From here on the data dir changes: the marker goes first, so a crash
    // halfway leaves a dir that `perch serve` refuses.
    let mut marker = Marker {
        backup: backup
            .canonicalize()
            .unwrap_or_else(|_| backup.to_path_buf())
            .display()
            .to_string(),
        backup_created_at: manifest.created_at.clone(),
        backup_seq: manifest.seq,
        replaced_seq,
        replaced_rev,
        restored_at: crate::syntax::format_datetime_millis(super::unix_millis_now()),
        complete: false,
    };
    write_marker(data_dir, &marker)?;
    let moved_aside = if existing.is_empty() {
        None
    } else {
        let aside = data_dir.join(format!(
            ".replaced-{}",
            super::backup_name(super::unix_millis_now())
        ));
        files::private_dir(&aside).map_err(|e| BackupError::io(aside.display(), e))?;
        for name in &existing {
            if name != MARKER {
                rename(&data_dir.join(name), &aside.join(name))?;
            }
        }
        Some(aside)
    };
    for name in entries_except(&staging, &[])? {
        rename(&staging.join(&name), &data_dir.join(&name))?;
    }
    std::fs::remove_dir(&staging).map_err(|e| BackupError::io(staging.display(), e))?;
    files::sync_dir(data_dir).map_err(|e| BackupError::io(data_dir.display(), e))?;
    let marker = if opts.seq_floor.is_some() {
        clear_marker(data_dir)?;
        None
    } else {
        marker.complete = true;
        write_marker(data_dir, &marker)?;
        Some(marker)
    };
    Ok(Restored {
        manifest,
        records,
        moved_aside,
        marker,
        elapsed: started.elapsed(),
    })
}

/// The manifest of the backup at `dir`; when `dir` is a backup directory
/// holding several backups, say which to pick.
fn read_backup_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    if !dir.exists() {
        return Err(BackupError::Refused(format!(
            "{} does not exist",
            dir.display()
        )));
    }
    if !dir.join(MANIFEST).exists() && dir.is_dir() {
        let all = super::list_complete(dir).unwrap_or_default();
        if let Some(newest) = all.last() {
            return Err(BackupError::Refused(format!(
                "{} holds {} backup(s); name the one to restore, e.g. the newest: perch \
                 restore {}",
                dir.display(),
                all.len(),
                newest.display()
            )));
        }
    }
    Manifest::read(dir)
}

/// Names in `dir` other than `skip`.
fn entries_except(dir: &Path, skip: &[&str]) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    let it = std::fs::read_dir(dir).map_err(|e| BackupError::io(dir.display(), e))?;
    for entry in it {
        let entry = entry.map_err(|e| BackupError::io(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !skip.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn rename(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::rename(from, to).map_err(|e| BackupError::io(format!("moving {}", from.display()), e))
}

/// The highest seq and the repo rev of the database already in `data_dir`,
/// if one is there and readable (a damaged one, the usual reason to
/// restore, is not).
fn existing_head(data_dir: &Path) -> Option<(i64, Option<String>)> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return None;
    }
    let read = store::snapshot::open_read_only(&path).and_then(|c| {
        let seq = store::repo::highest_seq(&c)?;
        Ok((seq, store::repo::get_root(&c)?.map(|r| r.rev)))
    });
    match read {
        Ok(head) => Some(head),
        Err(e) => {
            tracing::warn!(
                "cannot read the firehose seq of {}: {e}; relying on the backup's",
                path.display()
            );
            None
        }
    }
}

/// Copy every file of the backup into `staging`, checking each against
/// the manifest; then open the database, check the account and verify
/// the repo. Returns the number of records verified.
fn stage(
    backup: &Path,
    manifest: &Manifest,
    staging: &Path,
    seq_floor: Option<(i64, Option<String>)>,
    progress: &dyn crate::progress::Progress,
) -> Result<u64, BackupError> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| BackupError::io(staging.display(), e))?;
    }
    files::private_dir(staging).map_err(|e| BackupError::io(staging.display(), e))?;
    let mut dirs = std::collections::BTreeSet::new();
    progress.total(
        manifest.files.len() as u64,
        manifest.files.iter().map(|f| f.size).sum(),
    );
    for f in &manifest.files {
        progress.step(f.size);
        let rel = super::manifest::safe_relative(&f.path).map_err(BackupError::Damaged)?;
        let src = backup.join(&rel);
        let dst = staging.join(&rel);
        if let Some(parent) = dst.parent() {
            files::private_dir_all(parent).map_err(|e| BackupError::io(parent.display(), e))?;
            dirs.insert(parent.to_path_buf());
        }
        let sum = if f.path.starts_with("blobs/") && std::fs::hard_link(&src, &dst).is_ok() {
            files::hash_file(&dst)
        } else {
            files::copy_hashed(&src, &dst, 0o600)
        };
        let sum = sum.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BackupError::Damaged(format!("the backup is missing {}", f.path))
            } else {
                BackupError::io(src.display(), e)
            }
        })?;
        if sum.size != f.size || files::hex(&sum.sha256) != f.sha256 {
            return Err(BackupError::Damaged(format!(
                "{} in the backup does not match its checksum ({} bytes, sha256 {}; the \
                 manifest says {} bytes, sha256 {})",
                f.path,
                sum.size,
                files::hex(&sum.sha256),
                f.size,
                f.sha256
            )));
        }
    }
    for d in dirs.iter().chain(std::iter::once(&staging.to_path_buf())) {
        files::sync_dir(d).map_err(|e| BackupError::io(d.display(), e))?;
    }
    let records = check_database(staging, manifest, seq_floor)?;
    files::sync_dir(staging).map_err(|e| BackupError::io(staging.display(), e))?;
    Ok(records)
}

/// Open the staged database (migrating an older schema), check that it is
/// the manifest's account and that its repo verifies against the repo key,
/// and apply the seq floor: above it, a fresh commit and `#identity` +
/// `#sync` tell relays to take the restored repo (the same as `perch seq
/// bump` does after a restore without a floor). The rev given with the
/// floor is one the new commit's must exceed.
fn check_database(
    staging: &Path,
    manifest: &Manifest,
    seq_floor: Option<(i64, Option<String>)>,
) -> Result<u64, BackupError> {
    let store = Store::open(&staging.join(DB_FILE))?;
    let conn = store.open_writer()?;
    let account = store::account::get_account(&conn)?;
    if account.as_ref().map(|a| &a.did) != manifest.did.as_ref() {
        return Err(BackupError::Damaged(
            "the database's account is not the one the manifest names".into(),
        ));
    }
    let mut records = 0;
    let mut key = None;
    if let Some(root) = store::repo::get_root(&conn)? {
        let k = crate::keys::KeyDir::open(staging)
            .and_then(|k| k.keypair(crate::keys::REPO_KEY))
            .map_err(|e| BackupError::Damaged(e.to_string()))?
            .ok_or_else(|| BackupError::Damaged("the backup has no repo signing key".into()))?;
        records = super::verify::verify_repo(&SqlBlocks(&conn), &root.commit_cid, &k.public_key())
            .map_err(|e| BackupError::Damaged(format!("the repo does not verify: {e}")))?;
        key = Some(k);
    }
    if let Some((n, rev)) = seq_floor {
        conn.begin_write()?;
        let moved = store::repo::bump_seq(&conn, n).and_then(|()| match &key {
            Some(k) => crate::writer::announce_restored(&conn, k, rev.as_deref()).map(|_| ()),
            None => Ok(()),
        });
        match moved {
            Ok(()) => conn.commit()?,
            Err(e) => {
                conn.rollback();
                return Err(e.into());
            }
        }
    }
    conn.close()?;
    Ok(records)
}
