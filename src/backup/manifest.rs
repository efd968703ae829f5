//! `manifest.json`: what a backup holds and the checksum of every file, so
//! a restore can prove the copy is whole before it touches a data dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;

/// Names this format; a different value is a different layout.
pub const FORMAT: &str = "perch-backup-1";
/// A manifest larger than this is not one perch wrote (100,000 blobs take
/// about 15 MB).
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Top-level entries a backup may contain; anything else in a manifest
/// is refused, so a tampered one cannot write elsewhere in the data dir.
const TOP_LEVEL: &[&str] = &[super::DB_FILE, "keys", "acme", "blobs"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFacts {
    pub rev: String,
    pub commit: String,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub perch_version: String,
    /// When the database snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    pub schema_version: i64,
    pub did: Option<String>,
    pub handle: Option<String>,
    /// The highest firehose seq handed out when the snapshot was taken.
    pub seq: i64,
    pub repo: Option<RepoFacts>,
    pub records: i64,
    pub files: Vec<FileEntry>,
    /// Blobs the database lists whose files were gone or damaged in the
    /// data dir itself (not lost by the backup).
    #[serde(default)]
    pub missing_blobs: Vec<String>,
}

impl Manifest {
    /// Total bytes of the files listed.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Read and check `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(super::MANIFEST);
        let meta = std::fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BackupError::Refused(format!(
                    "{} is not a complete perch backup (no {})",
                    dir.display(),
                    super::MANIFEST
                ))
            } else {
                BackupError::io(path.display(), e)
            }
        })?;
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(BackupError::Damaged(format!(
                "{} is {} bytes, too large to be a perch manifest",
                path.display(),
                meta.len()
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| BackupError::io(path.display(), e))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::Damaged(format!("{} is not valid: {e}", path.display())))?;
        m.validate()
            .map_err(|e| BackupError::Damaged(format!("{}: {e}", path.display())))?;
        Ok(m)
    }

    /// The rules every manifest keeps: the known format, one database,
    /// safe relative paths listed once, well-formed checksums.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "unknown backup format {:?} (this perch reads {FORMAT:?})",
                self.format
            ));
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            safe_relative(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(format!("{} is listed twice", f.path));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!("{} has a malformed sha256", f.path));
            }
        }
        if !seen.contains(super::DB_FILE) {
            return Err(format!("no {} listed", super::DB_FILE));
        }
        if self.seq < 0 {
            return Err("negative seq".into());
        }
        Ok(())
    }
}

/// A `/`-separated relative path under one of the known top-level entries,
/// with plain names only (no `..`, no absolute paths, no odd characters).
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && !p.starts_with('.')
            && p.len() <= 255
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if parts.len() > 3 || !parts.iter().all(ok_part) || !TOP_LEVEL.contains(&parts[0]) {
        return Err(format!("{path:?} is not a path a perch backup holds"));
    }
    if parts[0] == super::DB_FILE && parts.len() != 1 {
        return Err(format!("{path:?} is not a path a perch backup holds"));
    }
    Ok(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            perch_version: "0.1.0".into(),
            created_at: "2025-01-01T00:00:00.000Z".into(),
            schema_version: 2,
            did: Some("did:plc:abc".into()),
            handle: Some("a.test".into()),
            seq: 7,
            repo: None,
            records: 0,
            files: vec![FileEntry {
                path: "perch.sqlite".into(),
                size: 1,
                sha256: "0".repeat(64),
            }],
            missing_blobs: vec![],
        }
    }

    #[test]
    fn paths_must_stay_inside_the_known_entries() {
        for good in [
            "perch.sqlite",
            "keys/repo-signing.k256",
            "blobs/ab/bafkreiabc",
        ] {
            assert!(safe_relative(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "keys/../../x",
            "blobs//x",
            "blobs/./x",
            "other/x",
            "perch.sqlite/x",
            "keys/.hidden",
            "blobs/a/b/c",
            "keys/a b",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation() {
        assert_eq!(sample().validate(), Ok(()));
        let mut m = sample();
        m.format = "perch-backup-9".into();
        assert!(m.validate().unwrap_err().contains("unknown backup format"));
        let mut m = sample();
        m.files.push(m.files[0].clone());
        assert!(m.validate().unwrap_err().contains("twice"));
        let mut m = sample();
        m.files[0].sha256 = "XYZ".into();
        assert!(m.validate().unwrap_err().contains("sha256"));
        let mut m = sample();
        m.files[0].path = "keys/x".into();
        assert!(m.validate().unwrap_err().contains("perch.sqlite"));
    }

    #[test]
    fn json_round_trip() {
        let m = sample();
        let text = serde_json::to_string_pretty(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
