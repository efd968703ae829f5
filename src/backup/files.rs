//! File plumbing shared by backup and restore: hashed copies, hard links,
//! private directories and directory fsyncs.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;

/// Size and SHA-256 of some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sum {
    pub size: u64,
    pub sha256: [u8; 32],
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copy `src` to a new file `dst` (mode `mode`, never an existing file),
/// hashing the bytes as they pass, and fsync it.
pub fn copy_hashed(src: &Path, dst: &Path, mode: u32) -> io::Result<Sum> {
    let mut from = File::open(src).map_err(|e| with_path(src, e))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dst)
        .map_err(|e| with_path(dst, e))?;
    let r = (|| {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n])?;
            size += n as u64;
        }
        to.sync_all()?;
        Ok(Sum {
            size,
            sha256: hasher.finalize().into(),
        })
    })();
    if r.is_err() {
        let _ = fs::remove_file(dst);
    }
    r
}

/// Size and SHA-256 of a file's contents.
pub fn hash_file(path: &Path) -> io::Result<Sum> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Sum {
        size,
        sha256: hasher.finalize().into(),
    })
}

/// Create one private (0700) directory; an existing one is fine.
pub fn private_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r,
    }
}

/// Create a private directory and any missing parents.
pub fn private_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
}

pub use crate::fsutil::sync_dir;

/// Write a new small file (mode 0600) and fsync it.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    f.write_all(bytes).map_err(|e| with_path(path, e))?;
    f.sync_all().map_err(|e| with_path(path, e))
}

/// The error with the path it happened on ("File exists (os error 17)" alone names nothing).
pub fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The regular files directly in `dir`, in name order. Dot files are
/// skipped: they are the temporaries of `fsutil::write_private`, never
/// finished data. (Keys and ACME state are flat directories.)
pub fn list_files(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copy_hashes_what_it_writes_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, b"hello").unwrap();
        let b = d.path().join("b");
        let sum = copy_hashed(&a, &b, 0o600).unwrap();
        assert_eq!(sum.size, 5);
        assert_eq!(
            hex(&sum.sha256),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(sum, hash_file(&b).unwrap());
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(copy_hashed(&a, &b, 0o600).is_err());
        assert_eq!(fs::read(&b).unwrap(), b"hello");
    }

    #[test]
    fn listing_skips_temporaries() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/x"), b"").unwrap();
        fs::write(d.path().join("y"), b"").unwrap();
        fs::write(d.path().join("a"), b"").unwrap();
        fs::write(d.path().join(".y.tmp"), b"").unwrap();
        assert_eq!(list_files(d.path()).unwrap(), ["a", "y"]);
    }
}
