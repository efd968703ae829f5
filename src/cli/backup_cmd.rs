//! `perch backup`, `perch restore` and `perch export`: what they print.
//! None of them opens the server's `App`: they work beside a running
//! server (backup, export) or on a stopped one (restore).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::backup::{self, human_bytes, restore, snapshot};
use crate::config::Config;

fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Message(e.to_string())
}

pub fn backup(config: &Config, dir: Option<PathBuf>, keep: Option<usize>) -> Result<(), CliError> {
    let root = dir.or_else(|| config.backup_dir.clone()).ok_or_else(|| {
        msg("where to? give a directory (perch backup /mnt/usb/perch-backups) or set backup_dir")
    })?;
    if keep == Some(0) {
        return Err(msg("--keep must be at least 1"));
    }
    let bar = super::progress::Reporter::new("backup", "blobs");
    let out = snapshot::take(&config.data_dir, &root, &snapshot::Options { keep }, &bar);
    bar.finish();
    let out = out.map_err(msg)?;
    let m = &out.manifest;
    let blobs = m
        .files
        .iter()
        .filter(|f| f.path.starts_with("blobs/"))
        .count();
    println!("backup written to {}", out.dir.display());
    println!(
        "  {} in {} files ({blobs} blobs: {} copied, {} hard-linked)",
        human_bytes(m.total_bytes()),
        m.files.len(),
        blobs - out.linked.min(blobs),
        out.linked,
    );
    if let Some(repo) = &m.repo {
        println!(
            "  {} ({}), {} records, rev {}, firehose seq {}",
            m.handle.as_deref().unwrap_or("?"),
            m.did.as_deref().unwrap_or("?"),
            m.records,
            repo.rev,
            m.seq
        );
    }
    println!(
        "  took {:.2} s ({} of blob data copied)",
        out.elapsed.as_secs_f64(),
        human_bytes(out.copied_bytes)
    );
    if !out.pruned.is_empty() {
        println!("  removed older backups: {}", out.pruned.join(", "));
    }
    if backup::on_same_disk(&config.data_dir, &root) {
        eprintln!(
            "perch: warning: {} is on the same disk as the data ({}): this backup protects \
             against mistakes, not against that disk failing; keep copies on another disk",
            root.display(),
            config.data_dir.display()
        );
    }
    if !m.missing_blobs.is_empty() {
        eprintln!(
            "perch: warning: {} blob(s) the database lists are missing or damaged in the data \
             dir itself and are not in the backup: {}",
            m.missing_blobs.len(),
            m.missing_blobs.join(", ")
        );
    }
    Ok(())
}

pub fn restore(
    config: &Config,
    backup_dir: &Path,
    force: bool,
    seq_floor: Option<i64>,
) -> Result<(), CliError> {
    let opts = restore::Options { force, seq_floor };
    let bar = super::progress::Reporter::new("restore", "files");
    let r = restore::restore(backup_dir, &config.data_dir, &opts, &bar);
    bar.finish();
    let r = r.map_err(msg)?;
    let m = &r.manifest;
    println!(
        "restored {} (taken {}) into {}",
        backup_dir.display(),
        m.created_at,
        config.data_dir.display()
    );
    println!(
        "  {} in {} files checked against the manifest; repo verified: {} records{}",
        human_bytes(m.total_bytes()),
        m.files.len(),
        r.records,
        m.repo
            .as_ref()
            .map(|x| format!(", rev {}", x.rev))
            .unwrap_or_default()
    );
    println!("  took {:.2} s", r.elapsed.as_secs_f64());
    if let Some(aside) = &r.moved_aside {
        println!(
            "  the data dir's previous contents are in {}; delete them once the restored \
             server works",
            aside.display()
        );
    }
    if !m.missing_blobs.is_empty() {
        println!(
            "  note: {} blob(s) were already missing when the backup was taken",
            m.missing_blobs.len()
        );
    }
    match (&r.marker, seq_floor) {
        (Some(marker), _) => println!("\n{}", capitalize(&marker.instructions())),
        (None, Some(n)) => println!("  firehose seqs continue at {n}; perch serve can start"),
        (None, None) => {}
    }
    println!(
        "\nThe config file (/etc/perch/perch.toml) is not part of a backup: on a new box, copy \
         it over too and run perch config check."
    );
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub fn export(config: &Config, file: Option<PathBuf>) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    if file.as_deref() == Some(Path::new("-")) {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            return Err(msg(
                "not writing a tar archive to a terminal; redirect it: perch export - > FILE.tar",
            ));
        }
        let stdout = std::io::stdout().lock();
        let bar = super::progress::Reporter::new("export", "blobs");
        let done = backup::archive::export(&config.data_dir, std::io::BufWriter::new(stdout), &bar);
        bar.finish();
        let (w, e) = done.map_err(msg)?;
        drop(w);
        report_export(&e, "stdout", started);
        return Ok(());
    }
    let path = file.unwrap_or_else(|| {
        PathBuf::from(format!(
            "perch-export-{}.tar",
            backup::backup_name(crate::clock::unix_millis())
        ))
    });
    // Written under a temporary name and renamed, so a file with the
    // final name is always a whole archive.
    let tmp = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let result = (|| -> Result<backup::archive::Exported, CliError> {
        // 0600: preferences (muted words, for one) are private.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| msg(format!("{}: {e}", tmp.display())))?;
        let bar = super::progress::Reporter::new("export", "blobs");
        let done = backup::archive::export(&config.data_dir, std::io::BufWriter::new(f), &bar);
        bar.finish();
        let (w, e) = done.map_err(msg)?;
        let f = w
            .into_inner()
            .map_err(|e| msg(format!("{}: {}", tmp.display(), e.error())))?;
        f.sync_all()
            .map_err(|e| msg(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        Ok(e)
    })();
    let e = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    report_export(&e, &path.display().to_string(), started);
    Ok(())
}

/// To stderr: stdout may be the archive itself.
fn report_export(e: &backup::archive::Exported, to: &str, started: std::time::Instant) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "exported {} records and {} blobs ({}) to {to} in {:.2} s",
        e.records,
        e.blobs,
        human_bytes(e.bytes),
        started.elapsed().as_secs_f64()
    );
    if !e.missing_blobs.is_empty() {
        let _ = writeln!(
            err,
            "perch: warning: {} referenced blob(s) have no file here and are not in the \
             archive: {}",
            e.missing_blobs.len(),
            e.missing_blobs.join(", ")
        );
    }
}
