//! `perch backup`: what it prints. It does not open the server's `App`:
//! it works beside a running server.

use std::path::PathBuf;

use super::CliError;
use crate::backup::{human_bytes, snapshot};
use crate::config::Config;

fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Message(e.to_string())
}

pub fn backup(config: &Config, dir: Option<PathBuf>, keep: Option<usize>) -> Result<(), CliError> {
    let create_root = dir.is_some();
    let root = dir.or_else(|| config.backup_dir.clone()).ok_or_else(|| {
        msg("where to? give a directory (perch backup /mnt/usb/perch-backups) or set backup_dir")
    })?;
    if keep == Some(0) {
        return Err(msg("--keep must be at least 1"));
    }
    let out = snapshot::take(
        &config.data_dir,
        &root,
        &snapshot::Options { create_root, keep },
    )
    .map_err(msg)?;
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
        "  took {:.1} s ({} of blob data copied)",
        out.elapsed.as_secs_f64(),
        human_bytes(out.copied_bytes)
    );
    if !out.pruned.is_empty() {
        println!("  removed older backups: {}", out.pruned.join(", "));
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
