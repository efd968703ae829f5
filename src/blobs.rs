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
//! Uploads stream into `tmp/` (never buffered whole in memory) while the
//! SHA-256 and size are computed; the temp file is `sync_all`ed and the `tmp/`
//! directory fsynced before [`BlobStore::write_temp`] returns. Promoting a
//! blob ([`BlobStore::make_permanent`]) is a `rename` into its final path
//! followed by an fsync of the fan-out directory so the rename itself survives
//! a crash. Deleting fsyncs the directory too.
//!
//! # Path safety
//!
//! Only names this module produced reach the file system: temp keys must be
//! 1..=64 characters of `[a-z0-9]`, and CIDs must be raw/sha2-256 CIDv1 whose
//! canonical string is lowercase base32 (`[a-z2-7]`). Anything else is refused
//! with [`BlobError::BadTempKey`] / [`BlobError::BadCid`] before a path is
//! built.

use std::io;
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
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter, ReadBuf};

use crate::cid::{self, Cid};

/// Name of the temp-upload subdirectory under the store root.
const TMP_DIR: &str = "tmp";
/// Chunk size for streaming reads ([`FileBody`]) and the upload write buffer.
pub const CHUNK_SIZE: usize = 64 * 1024;
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
        writer.finish(self).await
    }

    /// [`write_temp`](Self::write_temp) for bytes already in memory.
    pub async fn write_temp_bytes(&self, data: &[u8], limit: u64) -> Result<TempBlob, BlobError> {
        if data.len() as u64 > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let mut writer = TempWriter::create(self).await?;
        writer.push(data, limit).await?;
        writer.finish(self).await
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
        let dir = final_path
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?
            .to_path_buf();

        if exists(&final_path).await? {
            remove_if_present(&temp_path).await?;
            // It may be there from an upload whose directory fsync failed.
            fsync_dir(&dir).await?;
            return Ok(final_path);
        }
        if !exists(&dir).await? {
            create_dir_private(&dir).await?;
            // make the new fan-out directory's entry in the root durable
            fsync_dir(&self.root).await?;
        }
        match tokio::fs::rename(&temp_path, &final_path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // a concurrent/earlier call may have promoted it already
                if exists(&final_path).await? {
                    return Ok(final_path);
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        fsync_dir(&dir).await?;
        fsync_dir(&self.tmp_dir()).await?;
        Ok(final_path)
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
struct TempWriter {
    file: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
    key: String,
    guard: RemoveOnDrop,
}

impl TempWriter {
    async fn create(store: &BlobStore) -> Result<Self, BlobError> {
        // 128 random bits: a collision is not a practical concern, but
        // create_new makes one an error rather than a shared file.
        let key = new_temp_key();
        let path = store.temp_path(&key)?;
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let file = opts.open(&path).await?;
        Ok(Self {
            file: BufWriter::with_capacity(CHUNK_SIZE, file),
            hasher: Sha256::new(),
            size: 0,
            key,
            guard: RemoveOnDrop(Some(path)),
        })
    }

    async fn push(&mut self, data: &[u8], limit: u64) -> Result<(), BlobError> {
        let size = self.size.saturating_add(data.len() as u64);
        if size > limit {
            return Err(BlobError::TooLarge { limit });
        }
        self.hasher.update(data);
        self.file.write_all(data).await?;
        self.size = size;
        Ok(())
    }

    async fn finish(mut self, store: &BlobStore) -> Result<TempBlob, BlobError> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        fsync_dir(&store.tmp_dir()).await?;
        let digest: [u8; 32] = self.hasher.finalize_reset().into();
        let path = self.guard.0.take().unwrap_or_default();
        Ok(TempBlob {
            cid: cid::from_sha256(cid::RAW, &digest),
            size: self.size,
            temp_key: std::mem::take(&mut self.key),
            path,
        })
    }
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

async fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(dir).await
}

async fn fsync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
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
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    const LIMIT: u64 = 10 * 1024 * 1024;

    async fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).await.unwrap();
        (dir, store)
    }

    fn temp_count(store: &BlobStore) -> usize {
        std::fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    /// A body delivering `data` in frames of `frame` bytes.
    fn chunked(data: &[u8], frame: usize) -> impl Body<Data = Bytes, Error = io::Error> {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = data
            .chunks(frame.max(1))
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        FrameStream(frames.into_iter())
    }

    /// Minimal body over an iterator of frames (no futures crate here).
    struct FrameStream<I>(I);
    impl<I> Body for FrameStream<I>
    where
        I: Iterator<Item = Result<Frame<Bytes>, io::Error>> + Unpin,
    {
        type Data = Bytes;
        type Error = io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            Poll::Ready(self.get_mut().0.next())
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[tokio::test]
    async fn write_temp_computes_raw_cid_and_size() {
        let (_d, store) = store().await;
        let data = pattern(200_000);
        let t = store
            .write_temp(chunked(&data, 7_000), Some(data.len() as u64), LIMIT)
            .await
            .unwrap();
        assert_eq!(t.cid, cid::for_raw(&data));
        assert!(t.cid.to_string().starts_with("bafkrei"));
        assert_eq!(t.size, data.len() as u64);
        assert_eq!(std::fs::read(t.path()).unwrap(), data);
        validate_temp_key(&t.temp_key).unwrap();

        // no Content-Length (chunked upload) is fine too
        let t2 = store
            .write_temp(Full::new(Bytes::from_static(b"hello")), None, LIMIT)
            .await
            .unwrap();
        assert_eq!(t2.cid, cid::for_raw(b"hello"));
        assert_ne!(t.temp_key, t2.temp_key);

        let t3 = store.write_temp_bytes(b"hello", LIMIT).await.unwrap();
        assert_eq!(t3.cid, t2.cid);
        assert_eq!(t3.size, 5);
    }

    #[tokio::test]
    async fn over_limit_aborts_and_removes_temp() {
        let (_d, store) = store().await;
        let data = pattern(10_000);
        let err = store
            .write_temp(chunked(&data, 1_000), None, 4_096)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 4_096 }));
        assert_eq!(temp_count(&store), 0);

        // declared length over the limit is refused before reading
        let err = store
            .write_temp(chunked(&data, 1_000), Some(10_000), 4_096)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        assert_eq!(temp_count(&store), 0);

        let err = store.write_temp_bytes(&data, 9_999).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        assert_eq!(temp_count(&store), 0);

        // exactly at the limit is fine
        let t = store.write_temp_bytes(&data, 10_000).await.unwrap();
        assert_eq!(t.size, 10_000);
    }

    #[tokio::test]
    async fn length_mismatch_is_rejected_and_cleaned_up() {
        let (_d, store) = store().await;
        let data = pattern(5_000);
        for expected in [4_999, 5_001, 0] {
            let err = store
                .write_temp(chunked(&data, 512), Some(expected), LIMIT)
                .await
                .unwrap_err();
            assert!(
                matches!(err, BlobError::LengthMismatch { expected: e, .. } if e == expected),
                "{err:?}"
            );
            assert_eq!(temp_count(&store), 0);
        }
    }

    #[tokio::test]
    async fn body_error_removes_temp() {
        let (_d, store) = store().await;
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        ];
        let err = store
            .write_temp(FrameStream(frames.into_iter()), None, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::Body(_)));
        assert_eq!(temp_count(&store), 0);
    }

    #[tokio::test]
    async fn make_permanent_is_idempotent_and_readable() {
        let (_d, store) = store().await;
        let data = pattern(70_000);
        let cid = cid::for_raw(&data);
        assert!(store.open_blob(&cid).await.unwrap().is_none());

        let t = store.write_temp_bytes(&data, LIMIT).await.unwrap();
        // temp blobs are not visible as permanent ones
        assert!(store.open_blob(&cid).await.unwrap().is_none());

        let p1 = store.make_permanent(&t).await.unwrap();
        assert_eq!(p1, store.path_for(&cid));
        let p2 = store.make_permanent(&t).await.unwrap();
        assert_eq!(p1, p2);
        assert!(!t.path().exists());
        assert_eq!(temp_count(&store), 0);

        // path layout: <root>/<2 chars after bafkrei>/<cid>
        let s = cid.to_string();
        assert_eq!(p1, store.root().join(&s[7..9]).join(&s));

        // re-upload of the same bytes: temp is dropped, file unchanged
        let again = store.write_temp_bytes(&data, LIMIT).await.unwrap();
        assert_eq!(store.make_permanent(&again).await.unwrap(), p1);
        assert_eq!(temp_count(&store), 0);

        let (file, len) = store.open_blob(&cid).await.unwrap().unwrap();
        assert_eq!(len, data.len() as u64);
        let got = FileBody::new(file, len).collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[..]);
        assert!(store.exists(&cid).await.unwrap());

        // handle rebuilt from metadata works the same
        let t3 = store.write_temp_bytes(b"other", LIMIT).await.unwrap();
        let rebuilt = store.temp_blob(&t3.temp_key, t3.cid, t3.size).unwrap();
        assert_eq!(rebuilt, t3);
        store.make_permanent(&rebuilt).await.unwrap();
        assert!(store.open_blob(&t3.cid).await.unwrap().is_some());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn directories_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, store) = store().await;
        let t = store.write_temp_bytes(b"secret-ish", LIMIT).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(t.path()), 0o600);
        let p = store.make_permanent(&t).await.unwrap();
        assert_eq!(mode(store.root()), 0o700);
        assert_eq!(mode(&store.tmp_dir()), 0o700);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
    }

    #[tokio::test]
    async fn file_body_streams_in_frames() {
        let (_d, store) = store().await;
        let data = pattern(1024 * 1024 + 12_345);
        let t = store.write_temp_bytes(&data, LIMIT).await.unwrap();
        store.make_permanent(&t).await.unwrap();
        let (file, len) = store.open_blob(&t.cid).await.unwrap().unwrap();
        let mut body = stream_file(file, len);
        assert_eq!(body.size_hint().exact(), Some(len));
        let mut out = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK_SIZE);
            out.extend_from_slice(&chunk);
            frames += 1;
        }
        assert!(body.is_end_stream());
        assert!(frames >= 17, "only {frames} frames");
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn file_body_reports_short_file() {
        let (_d, store) = store().await;
        let t = store.write_temp_bytes(b"short", LIMIT).await.unwrap();
        let file = tokio::fs::File::open(t.path()).await.unwrap();
        let err = FileBody::new(file, 100).collect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // and never more than `len` bytes
        let file = tokio::fs::File::open(t.path()).await.unwrap();
        let got = FileBody::new(file, 3).collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"sho");
    }

    #[tokio::test]
    async fn gc_removes_only_old_temps() {
        let (_d, store) = store().await;
        let old = store.write_temp_bytes(b"old", LIMIT).await.unwrap();
        let fresh = store.write_temp_bytes(b"fresh", LIMIT).await.unwrap();
        let past = SystemTime::now() - Duration::from_secs(3 * 60 * 60);
        std::fs::OpenOptions::new()
            .write(true)
            .open(old.path())
            .unwrap()
            .set_modified(past)
            .unwrap();
        // a permanent blob is never touched by temp GC
        let perm = store.write_temp_bytes(b"perm", LIMIT).await.unwrap();
        store.make_permanent(&perm).await.unwrap();

        assert_eq!(
            store
                .gc_temps(Duration::from_secs(4 * 60 * 60))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.gc_temps(MIN_TEMP_GRACE).await.unwrap(), 1);
        assert!(!old.path().exists());
        assert!(fresh.path().exists());
        assert!(store.open_blob(&perm.cid).await.unwrap().is_some());
        assert_eq!(store.gc_temps(MIN_TEMP_GRACE).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn delete_and_delete_temp() {
        let (_d, store) = store().await;
        let t = store.write_temp_bytes(b"bye", LIMIT).await.unwrap();
        store.make_permanent(&t).await.unwrap();
        store.delete(&t.cid).await.unwrap();
        assert!(store.open_blob(&t.cid).await.unwrap().is_none());
        store.delete(&t.cid).await.unwrap(); // missing is fine

        let t2 = store.write_temp_bytes(b"tmp", LIMIT).await.unwrap();
        store.delete_temp(&t2.temp_key).await.unwrap();
        assert!(!t2.path().exists());
        store.delete_temp(&t2.temp_key).await.unwrap();
        // promoting a deleted temp that never became permanent fails
        assert!(matches!(
            store.make_permanent(&t2).await,
            Err(BlobError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[tokio::test]
    async fn zero_length_blob_is_valid() {
        let (_d, store) = store().await;
        let t = store
            .write_temp(Full::new(Bytes::new()), Some(0), LIMIT)
            .await
            .unwrap();
        assert_eq!(t.size, 0);
        assert_eq!(t.cid, cid::for_raw(b""));
        store.make_permanent(&t).await.unwrap();
        let (file, len) = store.open_blob(&t.cid).await.unwrap().unwrap();
        assert_eq!(len, 0);
        let mut body = FileBody::new(file, len);
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
        // and with a zero limit
        let t0 = store.write_temp_bytes(b"", 0).await.unwrap();
        assert_eq!(t0.cid, t.cid);
    }

    #[tokio::test]
    async fn path_traversal_is_rejected() {
        let (dir, store) = store().await;
        let outside = dir.path().join("victim");
        std::fs::write(&outside, b"keep me").unwrap();
        for key in [
            "../victim",
            "../../etc/passwd",
            "..",
            ".",
            "",
            "a/b",
            "ABC",
            "key\0",
            "/abs",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(store.delete_temp(key).await, Err(BlobError::BadTempKey)),
                "{key:?}"
            );
            assert!(
                matches!(
                    store.temp_blob(key, cid::for_raw(b"x"), 1),
                    Err(BlobError::BadTempKey)
                ),
                "{key:?}"
            );
        }
        assert!(outside.exists());

        // non-blob CIDs are refused before touching paths
        let cbor = cid::for_cbor(b"\xa0");
        assert!(matches!(
            store.open_blob(&cbor).await,
            Err(BlobError::BadCid)
        ));
        assert!(matches!(store.delete(&cbor).await, Err(BlobError::BadCid)));
        assert!(matches!(
            store.temp_blob("abc", cbor, 1),
            Err(BlobError::BadCid)
        ));

        // CID strings from outside
        let good = cid::for_raw(b"x");
        assert_eq!(parse_blob_cid(&good.to_string()).unwrap(), good);
        for bad in [
            "../bafkreixyz".to_string(),
            "bafkrei/../../x".to_string(),
            good.to_string().to_uppercase(),
            cbor.to_string(),
            format!("{good}/.."),
            String::new(),
            "bafkrei".to_string(),
        ] {
            assert!(
                matches!(parse_blob_cid(&bad), Err(BlobError::BadCid)),
                "{bad:?}"
            );
        }
    }
}
