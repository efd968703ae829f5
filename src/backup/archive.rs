//! `perch export`: one plain tar (POSIX ustar, so any `tar` reads it) with
//! the repo as a CAR, every referenced blob and the preferences:
//!
//! ```text
//! export.json          who, which commit, when, how many records and blobs
//! repo.car             the whole repo (what com.atproto.sync.getRepo serves)
//! preferences.json     {"preferences": [...]} (app.bsky.actor.putPreferences takes it)
//! blobs/<cid>          each blob's bytes
//! ```
//!
//! Everything is streamed: the CAR is written twice inside one read
//! transaction (once to learn its length for the tar header, once for
//! real), so neither it nor a blob is ever held whole in memory.

use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::json;

use super::BackupError;
use crate::repo::export::write_repo_car;
use crate::store::{self, SqlBlocks};

const BLOCK: usize = 512;
/// The largest size an ustar header can state (11 octal digits).
const MAX_USTAR_SIZE: u64 = 0o77_777_777_777;

/// A minimal ustar writer: regular files and directories, names up to the
/// format's 100 (+155 prefix) bytes.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    /// Bytes written so far.
    total: u64,
}

impl<W: Write> TarWriter<W> {
    /// Entries get modification time `mtime` (unix seconds).
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            out,
            mtime,
            total: 0,
        }
    }

    /// A directory entry (`name` without the trailing `/`).
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        let h = header(&format!("{name}/"), 0, 0o700, b'5', self.mtime)?;
        self.put(&h)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.total += bytes.len() as u64;
        Ok(())
    }

    /// A regular file of exactly `size` bytes read from `data`. A reader
    /// that ends early or has more is an error (the archive would be torn).
    pub fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let h = header(name, size, 0o600, b'0', self.mtime)?;
        self.put(&h)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        self.total += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, got {copied}"),
            ));
        }
        let mut probe = [0u8; 1];
        if data.read(&mut probe)? != 0 {
            return Err(io::Error::other(format!(
                "{name}: longer than {size} bytes"
            )));
        }
        self.pad(size)
    }

    /// A regular file from memory.
    pub fn bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.file(name, data.len() as u64, &mut &data[..])
    }

    /// A regular file whose contents `produce` writes; it must write
    /// exactly `size` bytes.
    pub fn streamed(
        &mut self,
        name: &str,
        size: u64,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let h = header(name, size, 0o600, b'0', self.mtime)?;
        self.put(&h)?;
        let mut counted = Counted {
            inner: &mut self.out,
            n: 0,
            limit: size,
        };
        produce(&mut counted)?;
        self.total += counted.n;
        if counted.n != size {
            return Err(io::Error::other(format!(
                "{name}: expected {size} bytes, got {}",
                counted.n
            )));
        }
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// The two zero blocks that end an archive; returns the writer and
    /// the archive's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok((self.out, self.total))
    }
}

/// Counts bytes and refuses to pass more than `limit`.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
    limit: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.n + buf.len() as u64 > self.limit {
            return Err(io::Error::other("more bytes than the tar header announced"));
        }
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts what would be written.
#[derive(Default)]
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `value` as `width - 1` zero-padded octal digits and a NUL.
fn octal(field: &mut [u8], value: u64) -> io::Result<()> {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        return Err(io::Error::other(format!(
            "{value} does not fit a tar header field"
        )));
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    Ok(())
}

/// Split a path into ustar's (prefix, name): name ≤ 100 bytes, prefix ≤
/// 155, split at a `/`.
fn split_name(path: &str) -> io::Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let too_long = || io::Error::other(format!("path too long for a tar header: {path}"));
    let limit = path.len().min(156);
    let cut = path[..limit].rfind('/').ok_or_else(too_long)?;
    let (prefix, name) = (&path[..cut], &path[cut + 1..]);
    if name.is_empty() || name.len() > 100 || prefix.len() > 155 {
        return Err(too_long());
    }
    Ok((prefix, name))
}

fn header(path: &str, size: u64, mode: u32, kind: u8, mtime: u64) -> io::Result<[u8; BLOCK]> {
    if size > MAX_USTAR_SIZE {
        return Err(io::Error::other(format!(
            "{path} is larger than a plain tar entry can be (8 GiB)"
        )));
    }
    let (prefix, name) = split_name(path)?;
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode))?;
    octal(&mut h[108..116], 0)?; // uid
    octal(&mut h[116..124], 0)?; // gid
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], mtime)?;
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is summed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub records: i64,
    pub blobs: usize,
    pub bytes: u64,
    /// Referenced blobs with no file (skipped).
    pub missing_blobs: Vec<String>,
}

/// Write the export archive of the data dir's account to `out`. Reads the
/// database through one read transaction, so the CAR, the blob list and
/// the preferences describe one moment even while the server writes.
pub fn export<W: Write>(
    data_dir: &Path,
    out: W,
    progress: &dyn crate::progress::Progress,
) -> Result<(W, Exported), BackupError> {
    let db = data_dir.join(super::DB_FILE);
    if !db.is_file() {
        return Err(BackupError::Refused(format!(
            "no database at {}: is data_dir right?",
            db.display()
        )));
    }
    let conn = store::snapshot::open_read_only(&db)?;
    let tx = conn.begin_read()?;
    let account = store::account::get_account(&tx)?
        .ok_or_else(|| BackupError::Refused("there is no account to export".into()))?;
    let root = store::repo::get_root(&tx)?
        .ok_or_else(|| BackupError::Refused("the account has no repo yet".into()))?;
    let records = store::repo::record_count(&tx)?;
    let prefs = store::account::get_preferences(&tx)?;
    let blobs = store::snapshot::referenced_blobs(&tx)?;

    let prefs_value: serde_json::Value = prefs
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| BackupError::Damaged(format!("stored preferences are not JSON: {e}")))?
        .unwrap_or_else(|| json!([]));
    let now = super::unix_millis_now();
    let info = json!({
        "format": "perch-export-1",
        "perch_version": env!("CARGO_PKG_VERSION"),
        "created_at": crate::syntax::format_datetime_millis(now),
        "did": account.did,
        "handle": account.handle,
        "rev": root.rev,
        "commit": root.commit_cid.to_string(),
        "records": records,
        "blobs": blobs.len(),
    });
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: io::Error| BackupError::io(what, e)
    };

    let mut tar = TarWriter::new(out, (now / 1000).max(0) as u64);
    let info_bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
    tar.bytes("export.json", &info_bytes)
        .map_err(io("export.json"))?;

    let src = SqlBlocks(&tx);
    let car_err = |e: crate::repo::export::ExportError| match e {
        crate::repo::export::ExportError::Io(e) => BackupError::io("repo.car", e),
        other => BackupError::Damaged(format!("the repo cannot be exported: {other}")),
    };
    let car_len = write_repo_car(&src, &root.commit_cid, Sink::default())
        .map_err(car_err)?
        .0;
    let mut car_result = Ok(());
    tar.streamed("repo.car", car_len, |w| {
        if let Err(e) = write_repo_car(&src, &root.commit_cid, w) {
            let msg = e.to_string();
            car_result = Err(car_err(e));
            return Err(io::Error::other(msg));
        }
        Ok(())
    })
    .map_err(|e| match std::mem::replace(&mut car_result, Ok(())) {
        Err(inner) => inner,
        Ok(()) => BackupError::io("repo.car", e),
    })?;

    let prefs_bytes =
        serde_json::to_vec_pretty(&json!({ "preferences": prefs_value })).unwrap_or_default();
    tar.bytes("preferences.json", &prefs_bytes)
        .map_err(io("preferences.json"))?;

    tar.dir("blobs").map_err(io("blobs/"))?;
    let live = data_dir.join("blobs");
    let mut written = 0;
    let mut missing = Vec::new();
    // Sizes are learnt file by file: the bar counts blobs.
    progress.total(blobs.len() as u64, 0);
    for cid in &blobs {
        let Ok(c) = crate::blobs::parse_blob_cid(cid) else {
            missing.push(cid.clone());
            continue;
        };
        let path = live.join(crate::blobs::relative_path(&c));
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cid.clone());
                continue;
            }
            Err(e) => return Err(BackupError::io(path.display(), e)),
        };
        let size = f
            .metadata()
            .map_err(|e| BackupError::io(path.display(), e))?
            .len();
        tar.file(&format!("blobs/{cid}"), size, &mut f)
            .map_err(|e| BackupError::io(path.display(), e))?;
        progress.step(size);
        written += 1;
    }
    let (out, bytes) = tar.finish().map_err(io("the archive"))?;
    drop(tx);
    Ok((
        out,
        Exported {
            records,
            blobs: written,
            bytes,
            missing_blobs: missing,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read back (name, size, contents) of each entry, checking checksums.
    fn entries(archive: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let h = &archive[pos..pos + BLOCK];
            if h.iter().all(|&b| b == 0) {
                assert!(archive[pos + BLOCK..].iter().all(|&b| b == 0));
                assert_eq!(archive.len() - pos, 2 * BLOCK);
                return out;
            }
            let field = |r: std::ops::Range<usize>| {
                String::from_utf8(h[r].iter().take_while(|&&b| b != 0).copied().collect()).unwrap()
            };
            let num = |r| u64::from_str_radix(field(r).trim(), 8).unwrap();
            let mut sum = 0u32;
            for (i, &b) in h.iter().enumerate() {
                sum += if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                };
            }
            assert_eq!(u64::from(sum), num(148..154), "checksum");
            assert_eq!(&h[257..263], b"ustar\0");
            let prefix = field(345..500);
            let name = field(0..100);
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let size = num(124..136) as usize;
            let data = archive[pos + BLOCK..pos + BLOCK + size].to_vec();
            out.push((full, h[156], data));
            pos += BLOCK + size.div_ceil(BLOCK) * BLOCK;
        }
    }

    #[test]
    fn ustar_round_trip() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let mut t = TarWriter::new(Vec::new(), 1_700_000_000);
        t.dir("blobs").unwrap();
        t.bytes("a.txt", b"hello").unwrap();
        t.bytes("empty", b"").unwrap();
        t.bytes(&long, &[7u8; 1024]).unwrap();
        t.streamed("s", 3, |w| w.write_all(b"abc")).unwrap();
        let (bytes, total) = t.finish().unwrap();
        assert_eq!(bytes.len() as u64, total);
        assert_eq!(bytes.len() % BLOCK, 0);
        let e = entries(&bytes);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["blobs/", "a.txt", "empty", long.as_str(), "s"]);
        assert_eq!(e[0].1, b'5');
        assert_eq!(e[1].2, b"hello");
        assert_eq!(e[3].2, vec![7u8; 1024]);
        assert_eq!(e[4].2, b"abc");
    }

    #[test]
    fn sizes_must_match_what_was_announced() {
        let mut t = TarWriter::new(Vec::new(), 0);
        assert!(t.file("short", 10, &mut &b"abc"[..]).is_err());
        let mut t = TarWriter::new(Vec::new(), 0);
        assert!(t.file("long", 2, &mut &b"abc"[..]).is_err());
        let mut t = TarWriter::new(Vec::new(), 0);
        assert!(t.streamed("s", 2, |w| w.write_all(b"abc")).is_err());
        let mut t = TarWriter::new(Vec::new(), 0);
        assert!(t.streamed("s", 4, |w| w.write_all(b"abc")).is_err());
        assert!(header("x", MAX_USTAR_SIZE + 1, 0o600, b'0', 0).is_err());
        assert!(header(&"n".repeat(101), 0, 0o600, b'0', 0).is_err());
    }
}
