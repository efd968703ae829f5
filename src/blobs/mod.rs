//! Content-addressed blob files on disk.
//!
//! This module owns the *bytes* of blobs; which blobs exist, who references
//! them and whether they are still temporary is metadata kept elsewhere (the
//! SQLite store). Nothing here touches SQL.
//!
//! # Layout
//!
//! ```text
//! <root>/                      e.g. <data_dir>/blobs, mode 0700
//!   tmp/<temp_key>             uploads that no committed record references yet
//!   <xx>/<cid>                 permanent blobs, named by their CID string
//! ```
//!
//! Every blob CID is CIDv1 / raw (0x55) / sha2-256, so its string form always
//! starts with the constant `bafkrei`. The fan-out directory `<xx>` is the two
//! characters right after that prefix. The first of them carries three bits of
//! the digest (`a`..`h`) and the second five (`a`..`z`, `2`..`7`), giving 256
//! evenly filled buckets: a home PDS with 100 000 blobs keeps ~400 entries per
//! directory. Fan-out names are two characters and can never collide with
//! `tmp`.
//!
//! # Durability
//!
//! Uploads stream into `tmp/` (never buffered whole in memory: [`WRITE_CHUNK`]s
//! at a time) while the SHA-256 and size are computed on the same pass; the
//! temp file is `sync_all`ed before [`BlobStore::write_temp`] returns. Promoting
//! a blob ([`BlobStore::make_permanent`]) is a `rename` into its final path
//! followed by an fsync of the fan-out directory so the rename itself survives
//! a crash; an upload is acknowledged only after that, so the temp name itself
//! is never synced. Deleting fsyncs the directory too.
//!
//! # Path safety
//!
//! Only names this module produced reach the file system: temp keys must be
//! 1..=64 characters of `[a-z0-9]`, and CIDs must be raw/sha2-256 CIDv1 whose
//! canonical string is lowercase base32 (`[a-z2-7]`). Anything else is refused
//! with [`BlobError::BadTempKey`] / [`BlobError::BadCid`] before a path is
//! built.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, ReadBuf};

use crate::cid::{self, Cid};
use crate::fsutil::sync_dir;

pub mod sniff;

/// Name of the temp-upload subdirectory under the store root.
const TMP_DIR: &str = "tmp";
/// Chunk size for streaming reads ([`FileBody`]).
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Upload bytes gathered before one blocking write: a 1 MiB upload costs four hand-offs
/// to the blocking pool, and an upload holds at most two such buffers.
const WRITE_CHUNK: usize = 256 * 1024;
/// The spec's floor for how long an unreferenced upload must be kept.
pub const MIN_TEMP_GRACE: Duration = Duration::from_secs(60 * 60);
/// A recommended grace period for [`BlobStore::gc_temps`] ("several hours").
pub const DEFAULT_TEMP_GRACE: Duration = Duration::from_secs(6 * 60 * 60);
/// Longest temp key accepted.
const MAX_TEMP_KEY_LEN: usize = 64;
/// Constant string prefix of every raw / sha2-256 CIDv1.
const RAW_SHA256_PREFIX: &str = "bafkrei";

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob I/O error: {0}")]
    Io(#[from] io::Error),
    /// Reading the request body failed (client went away, protocol error...).
    #[error("error reading upload body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("blob is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    /// The body length disagrees with the declared `Content-Length`.
    /// `actual` is a lower bound when the upload was cut short for being long.
    #[error("blob body is {actual} bytes but Content-Length said {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("not a valid blob CID (must be CIDv1, raw codec, sha2-256)")]
    BadCid,
    #[error("invalid temp blob key")]
    BadTempKey,
}

/// A fully written, fsynced upload in `tmp/`, not yet referenced by a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempBlob {
    /// CIDv1, raw codec, sha2-256 of the exact uploaded bytes.
    pub cid: Cid,
    /// Size in bytes (may be 0).
    pub size: u64,
    /// File name under `tmp/`; store it with the metadata to find the file again.
    pub temp_key: String,
    /// The media type the first bytes show ([`sniff::sniff`]); `None` when
    /// they show none, or for a handle rebuilt from metadata.
    pub sniffed: Option<&'static str>,
    path: PathBuf,
}

impl TempBlob {
    /// Where the temp file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The blob file store rooted at one directory (normally `<data_dir>/blobs`).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Open (creating if needed, mode 0700) the store at `root` and its `tmp/`.
    pub async fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = root.as_ref().to_path_buf();
        create_dir_private(&root.join(TMP_DIR)).await?;
        // The directories' own names must be durable before any blob in
        // them is acknowledged: fsyncing a file, or the directory holding
        // it, does not make the directory's entry in *its* parent durable.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent).await?;
        }
        fsync_dir(&root).await?;
        Ok(Self { root })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    fn temp_path(&self, temp_key: &str) -> Result<PathBuf, BlobError> {
        validate_temp_key(temp_key)?;
        Ok(self.tmp_dir().join(temp_key))
    }

    /// Final content-addressed path of `cid`: `<root>/<xx>/<cid>`.
    ///
    /// Pure path arithmetic; it does not check that `cid` is a blob CID (the
    /// methods that touch the file system do). For any CID the result stays
    /// inside the root, because CID strings contain only alphanumerics.
    pub fn path_for(&self, cid: &Cid) -> PathBuf {
        self.root.join(relative_path(cid))
    }

    fn checked_path(&self, cid: &Cid) -> Result<PathBuf, BlobError> {
        check_blob_cid(cid)?;
        Ok(self.path_for(cid))
    }

    /// Stream `body` into a new temp file, hashing as it goes.
    ///
    /// `expected_len` is the request's `Content-Length` if it sent one; a body
    /// of any other length is refused with [`BlobError::LengthMismatch`]. More
    /// than `limit` bytes aborts with [`BlobError::TooLarge`] as soon as the
    /// limit is passed (or up front, if `expected_len` already exceeds it). On
    /// every error the temp file is removed.
    pub async fn write_temp<B>(
        &self,
        body: B,
        expected_len: Option<u64>,
        limit: u64,
    ) -> Result<TempBlob, BlobError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(expected) = expected_len
            && expected > limit
        {
            return Err(BlobError::TooLarge { limit });
        }
        let mut writer = TempWriter::create(self).await?;
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.as_mut().frame().await {
            let frame = frame.map_err(|e| BlobError::Body(e.into()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry no blob bytes
            };
            writer.push(&data, limit).await?;
            if let Some(expected) = expected_len
                && writer.size > expected
            {
                return Err(BlobError::LengthMismatch {
                    expected,
                    actual: writer.size,
                });
            }
        }
        if let Some(expected) = expected_len
            && writer.size != expected
        {
            return Err(BlobError::LengthMismatch {
                expected,
                actual: writer.size,
            });
        }
        writer.finish().await
    }

    /// [`write_temp`](Self::write_temp) for bytes already in memory.
    pub async fn write_temp_bytes(&self, data: &[u8], limit: u64) -> Result<TempBlob, BlobError> {
        if data.len() as u64 > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let mut writer = TempWriter::create(self).await?;
        writer.push(data, limit).await?;
        writer.finish().await
    }

    /// Rebuild a [`TempBlob`] handle from stored metadata (key, CID, size),
    /// e.g. when a later record commit promotes an earlier upload.
    pub fn temp_blob(&self, temp_key: &str, cid: Cid, size: u64) -> Result<TempBlob, BlobError> {
        check_blob_cid(&cid)?;
        let path = self.temp_path(temp_key)?;
        Ok(TempBlob {
            cid,
            size,
            temp_key: temp_key.to_string(),
            sniffed: None,
            path,
        })
    }

    /// Move a temp upload to its content-addressed path and make the rename
    /// durable. If the blob is already permanent (same CID, hence same bytes)
    /// the temp file is just removed. Idempotent: calling it again after
    /// success returns the same path.
    ///
    /// The temp file's contents are trusted to match `temp.cid` (this store
    /// wrote and hashed it); they are not re-hashed.
    pub async fn make_permanent(&self, temp: &TempBlob) -> Result<PathBuf, BlobError> {
        let final_path = self.checked_path(&temp.cid)?;
        let temp_path = self.temp_path(&temp.temp_key)?;
        let root = self.root.clone();
        // One trip to the blocking pool for the whole promotion, not one per call.
        Ok(blocking(move || promote(&root, &temp_path, final_path)).await?)
    }

    /// Open a permanent blob for streaming: the file and its length, or
    /// `None` if there is no such blob. (Temp uploads are never found here.)
    pub async fn open_blob(&self, cid: &Cid) -> Result<Option<(tokio::fs::File, u64)>, BlobError> {
        let path = self.checked_path(cid)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some((file, meta.len())))
    }

    /// Whether a permanent blob file exists for `cid`.
    pub async fn exists(&self, cid: &Cid) -> Result<bool, BlobError> {
        Ok(exists(&self.checked_path(cid)?).await?)
    }

    /// Delete a permanent blob. A missing blob is not an error.
    pub async fn delete(&self, cid: &Cid) -> Result<(), BlobError> {
        let path = self.checked_path(cid)?;
        if remove_if_present(&path).await?
            && let Some(dir) = path.parent()
        {
            fsync_dir(dir).await?;
        }
        Ok(())
    }

    /// Delete permanent blobs from a non-async thread (the writer, once the
    /// transaction that dropped their last reference is durable). Failures
    /// are logged: a leftover file wastes space but loses nothing.
    pub fn delete_many_blocking(&self, cids: &[String]) {
        for s in cids {
            let Ok(cid) = parse_blob_cid(s) else { continue };
            let Ok(path) = self.checked_path(&cid) else {
                continue;
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("could not delete blob {s}: {e}"),
            }
        }
    }

    /// Delete a temp upload. A missing file is not an error.
    pub async fn delete_temp(&self, temp_key: &str) -> Result<(), BlobError> {
        let path = self.temp_path(temp_key)?;
        remove_if_present(&path).await?;
        Ok(())
    }

    /// Remove temp files whose mtime is more than `older_than` ago; returns
    /// how many were removed. Choosing the grace period is the caller's job:
    /// never less than [`MIN_TEMP_GRACE`], [`DEFAULT_TEMP_GRACE`] recommended.
    /// An upload in progress keeps bumping its mtime, so it is not collected.
    pub async fn gc_temps(&self, older_than: Duration) -> io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(self.tmp_dir()).await?;
        while let Some(entry) = entries.next_entry().await? {
            let meta = match entry.metadata().await {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                continue;
            }
            let age = now
                .duration_since(meta.modified()?)
                .unwrap_or(Duration::ZERO);
            if age > older_than && remove_if_present(&entry.path()).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `<xx>/<cid>`: where `cid` lives under any blob root (the data dir's, or
/// a backup's, which keeps the same layout).
pub fn relative_path(cid: &Cid) -> PathBuf {
    let s = cid.to_string();
    let bucket = match s.get(RAW_SHA256_PREFIX.len()..RAW_SHA256_PREFIX.len() + 2) {
        Some(b) if b.bytes().all(|c| c.is_ascii_alphanumeric()) => b.to_string(),
        _ => "__".to_string(),
    };
    Path::new(&bucket).join(s)
}

/// Parse and check a blob CID coming from outside (e.g. getBlob's `cid`
/// parameter): must be the canonical lowercase base32 string of a CIDv1 with
/// the raw codec and a sha2-256 digest.
pub fn parse_blob_cid(s: &str) -> Result<Cid, BlobError> {
    if !s.starts_with(RAW_SHA256_PREFIX)
        || s.len() > 2 * cid::MAX_CID_BYTES
        || !s.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7'))
    {
        return Err(BlobError::BadCid);
    }
    let parsed = cid::parse(s).map_err(|_| BlobError::BadCid)?;
    check_blob_cid(&parsed)?;
    if parsed.to_string() != s {
        return Err(BlobError::BadCid);
    }
    Ok(parsed)
}

/// Refuse anything that is not a CIDv1 / raw / sha2-256 blob CID.
pub fn check_blob_cid(cid: &Cid) -> Result<(), BlobError> {
    if cid.version() == ::cid::Version::V1
        && cid.codec() == cid::RAW
        && cid.hash().code() == cid::SHA2_256
        && cid.hash().size() == 32
    {
        Ok(())
    } else {
        Err(BlobError::BadCid)
    }
}

/// Temp keys are 1..=64 characters of `[a-z0-9]`.
pub fn validate_temp_key(key: &str) -> Result<(), BlobError> {
    if !key.is_empty()
        && key.len() <= MAX_TEMP_KEY_LEN
        && key
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(BlobError::BadTempKey)
    }
}

fn new_temp_key() -> String {
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes its path on drop unless disarmed: cleans up a temp file when an
/// upload fails or its future is dropped mid-stream.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An upload being written into `tmp/`.
///
/// Bytes gather in `buf` until [`WRITE_CHUNK`]; then one blocking task hashes and writes
/// them while the next chunk arrives from the network. At most one such task runs; it owns
/// the file and the hasher until it hands them back.
struct TempWriter {
    /// The file and the hash so far, while no write is under way.
    idle: Option<(std::fs::File, Sha256)>,
    /// The write under way: it returns the file, the hash and its emptied buffer.
    pending: Option<tokio::task::JoinHandle<io::Result<Chunked>>>,
    buf: Vec<u8>,
    /// The buffer of the last finished write, emptied, for the chunk after the next.
    spare: Option<Vec<u8>>,
    size: u64,
    /// The first [`sniff::SNIFF_LEN`] bytes, for the media type.
    head: Vec<u8>,
    key: String,
    guard: RemoveOnDrop,
}

type Chunked = (std::fs::File, Sha256, Vec<u8>);

impl TempWriter {
    async fn create(store: &BlobStore) -> Result<Self, BlobError> {
        // 128 random bits: a collision is not a practical concern, but
        // create_new makes one an error rather than a shared file.
        let key = new_temp_key();
        let path = store.temp_path(&key)?;
        let open = path.clone();
        let file = blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(open)
        })
        .await?;
        Ok(Self {
            idle: Some((file, Sha256::new())),
            pending: None,
            // small uploads (most are) never reach a chunk's size
            buf: Vec::new(),
            spare: None,
            size: 0,
            head: Vec::new(),
            key,
            guard: RemoveOnDrop(Some(path)),
        })
    }

    async fn push(&mut self, data: &[u8], limit: u64) -> Result<(), BlobError> {
        let size = self.size.saturating_add(data.len() as u64);
        if size > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let keep = sniff::SNIFF_LEN
            .saturating_sub(self.head.len())
            .min(data.len());
        self.head.extend_from_slice(&data[..keep]);
        self.buf.extend_from_slice(data);
        self.size = size;
        if self.buf.len() >= WRITE_CHUNK {
            let (file, hasher) = self.settle().await?;
            let next = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 4));
            let full = std::mem::replace(&mut self.buf, next);
            self.pending = Some(tokio::task::spawn_blocking(move || {
                write_chunk(file, hasher, full)
            }));
        }
        Ok(())
    }

    /// Waits for the write under way, if any, and takes the file and the hash back.
    async fn settle(&mut self) -> io::Result<(std::fs::File, Sha256)> {
        if let Some(task) = self.pending.take() {
            let (file, hasher, emptied) = task.await.map_err(io::Error::other)??;
            // two buffers take turns: no allocation per chunk
            self.spare = Some(emptied);
            return Ok((file, hasher));
        }
        self.idle
            .take()
            .ok_or_else(|| io::Error::other("upload file already closed"))
    }

    /// Writes what is left and syncs the file. Its name in `tmp/` is not synced: nothing
    /// acknowledges an upload before [`BlobStore::make_permanent`] has renamed it and
    /// synced the directory it went to.
    async fn finish(mut self) -> Result<TempBlob, BlobError> {
        let (file, hasher) = self.settle().await?;
        let rest = std::mem::take(&mut self.buf);
        let hasher = blocking(move || {
            let (file, hasher, _) = write_chunk(file, hasher, rest)?;
            file.sync_all()?;
            Ok(hasher)
        })
        .await?;
        let digest: [u8; 32] = hasher.finalize().into();
        let path = self.guard.0.take().unwrap_or_default();
        Ok(TempBlob {
            cid: cid::from_sha256(cid::RAW, &digest),
            size: self.size,
            temp_key: std::mem::take(&mut self.key),
            sniffed: sniff::sniff(&self.head, self.size),
            path,
        })
    }
}

fn write_chunk(
    mut file: std::fs::File,
    mut hasher: Sha256,
    mut buf: Vec<u8>,
) -> io::Result<Chunked> {
    hasher.update(&buf);
    file.write_all(&buf)?;
    buf.clear();
    Ok((file, hasher, buf))
}

/// Runs file system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// A response body that streams a file in [`CHUNK_SIZE`] frames, so serving
/// a blob never holds the whole thing in memory. It yields exactly `len`
/// bytes (the size reported as an exact size hint, which hyper turns into
/// `Content-Length`); a file shorter than `len` ends with an
/// `UnexpectedEof` error.
#[derive(Debug)]
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    /// Stream `len` bytes of `file` from its current position.
    pub fn new(file: tokio::fs::File, len: u64) -> Self {
        Self {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

/// Wrap a file opened by [`BlobStore::open_blob`] as a hyper response body.
pub fn stream_file(file: tokio::fs::File, len: u64) -> FileBody {
    FileBody::new(file, len)
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK_SIZE as u64) as usize;
        if this.buf.len() != want {
            this.buf.clear();
            this.buf.resize(want, 0);
        }
        let read = {
            let mut rb = ReadBuf::new(&mut this.buf[..]);
            match ready!(Pin::new(&mut this.file).poll_read(cx, &mut rb)) {
                Ok(()) => rb.filled().len(),
                Err(e) => {
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        };
        if read == 0 {
            this.remaining = 0;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file is shorter than its recorded length",
            ))));
        }
        this.remaining -= read as u64;
        let chunk = this.buf.split_to(read).freeze();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// [`BlobStore::make_permanent`]'s file system steps, on a blocking thread.
fn promote(root: &Path, temp_path: &Path, final_path: PathBuf) -> io::Result<PathBuf> {
    let dir = final_path
        .parent()
        .ok_or_else(|| io::Error::other("blob path has no parent"))?;
    if final_path.try_exists()? {
        match std::fs::remove_file(temp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // It may be there from an upload whose directory fsync failed.
        sync_dir(dir)?;
        return Ok(final_path);
    }
    if !dir.try_exists()? {
        crate::fsutil::private_dir(dir)?;
        // make the new fan-out directory's entry in the root durable
        sync_dir(root)?;
    }
    match std::fs::rename(temp_path, &final_path) {
        Ok(()) => {}
        // a concurrent/earlier call may have promoted it already
        Err(e) if e.kind() == io::ErrorKind::NotFound && final_path.try_exists()? => {
            return Ok(final_path);
        }
        Err(e) => return Err(e),
    }
    // The new name is what must survive a crash; a temp name that outlives the rename
    // is an unreferenced file that `gc_temps` removes.
    sync_dir(dir)?;
    Ok(final_path)
}

async fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(dir).await
}

async fn fsync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    blocking(move || sync_dir(&dir)).await
}

async fn exists(path: &Path) -> io::Result<bool> {
    tokio::fs::try_exists(path).await
}

/// Remove a file; `Ok(false)` if it was already gone.
async fn remove_if_present(path: &Path) -> io::Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
