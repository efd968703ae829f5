//! Durable private files: what a power cut may leave is the old file or the new one, never a
//! torn mix, and nobody but the service user can read it. And how much room is left.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` (mode 0600) through a temporary file, fsync and rename, then
/// fsyncs the directory so the rename itself survives a power cut.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()?;
    // On FAT (the SD image's boot partition) a renamed file's size and first cluster
    // live in its new directory entry, which the kernel writes with the file's inode,
    // not with the directory: without this a power cut leaves an empty file.
    fs::File::open(path)?.sync_all()
}

/// Make a directory's entries (new files, renames) durable. Filesystems
/// that cannot fsync a directory (some FUSE and FAT drivers) say
/// `InvalidInput`; their entries are as durable as they get.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match fs::File::open(path)?.sync_all() {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        r => r,
    }
}

/// Creates `dir` (and parents) and makes it private (0700).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Bytes free for an unprivileged user on the file system holding `path`, as `df` reports
/// them (`df` rather than statvfs(2): no unsafe code, and coreutils is on every Debian).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_atomically_with_private_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
