//! Blob uploads and their clean-up: bytes from the network become a durable file under its
//! content address first and a row second, so a row never points at a missing file; a disk
//! that fails while doing it puts the server in the read-only state a failed commit does.
//! Uploads no record picked up are deleted after a grace period.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body;

use crate::blobs::{BlobError, BlobStore};
use crate::cid::Cid;
use crate::store::{StoreError, blobs as blob_rows};
use crate::writer::Writer;

/// What the upload service works with.
pub struct Uploads<'a> {
    pub blobs: &'a BlobStore,
    pub writer: &'a Writer,
    /// The largest blob accepted, in bytes.
    pub limit: u64,
}

/// A stored blob, as `uploadBlob` answers it.
#[derive(Debug)]
pub struct Uploaded {
    pub cid: Cid,
    /// The type stored for these bytes (sniffed, declared, or the first upload's).
    pub mime_type: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("storage has failed; the server is read-only until restarted")]
    StorageUnhealthy,
    #[error("blob is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("body length does not match Content-Length")]
    LengthMismatch,
    #[error("could not read the upload")]
    Body,
    #[error("upload too slow")]
    TooSlow,
    #[error("{0}")]
    Blob(BlobError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Uploads<'_> {
    /// Streams `body` (of `expected` bytes, when the client said) to a temp file, makes it
    /// permanent, then records it. `declared` is the request's `Content-Type`.
    pub async fn upload<B>(
        &self,
        body: B,
        expected: Option<u64>,
        declared: Option<&str>,
    ) -> Result<Uploaded, UploadError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.writer.health().failure().is_some() {
            return Err(UploadError::StorageUnhealthy);
        }
        let temp = tokio::time::timeout(
            deadline(self.limit),
            self.blobs.write_temp(body, expected, self.limit),
        )
        .await
        .map_err(|_| UploadError::TooSlow)?
        .map_err(|e| match e {
            BlobError::TooLarge { limit } => UploadError::TooLarge { limit },
            BlobError::LengthMismatch { .. } => UploadError::LengthMismatch,
            BlobError::Body(_) => UploadError::Body,
            other => self.disk_failure(other),
        })?;
        self.blobs
            .make_permanent(&temp)
            .await
            .map_err(|e| self.disk_failure(e))?;
        // The bytes decide the type when they can (clients send octet-stream or `*/*` for
        // pictures); a second upload of the same bytes does not change the stored type.
        let (mime, sniffed) = crate::blobs::sniff::blob_type(temp.sniffed, declared);
        let meta = blob_rows::BlobMeta {
            cid: temp.cid.to_string(),
            mime_type: mime,
            size: i64::try_from(temp.size).unwrap_or(i64::MAX),
            created_at: crate::clock::unix_secs(),
        };
        let mime_type = self
            .writer
            .exec(move |c, _| blob_rows::insert_upload(c, &meta, sniffed))
            .await?;
        Ok(Uploaded {
            cid: temp.cid,
            mime_type,
            size: temp.size,
        })
    }

    /// A blob file that could not be written or made durable means the disk failed.
    fn disk_failure(&self, e: BlobError) -> UploadError {
        match e {
            BlobError::Io(io) if crate::health::io_failure(&io) => {
                self.writer
                    .health()
                    .fail(format!("blob write failed: {io}"));
                UploadError::StorageUnhealthy
            }
            other => UploadError::Blob(other),
        }
    }

    /// Deletes uploads older than `grace` that no record references (rows first, in the
    /// writer, then the files) and temp files older than `grace`; returns how many blobs.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<usize, StoreError> {
        let before = crate::clock::unix_secs() - i64::try_from(grace.as_secs()).unwrap_or(0);
        let cids = self
            .writer
            .exec(move |c, _| {
                let cids = blob_rows::unreferenced_before(c, before)?;
                for cid in &cids {
                    blob_rows::delete_blob(c, cid)?;
                }
                Ok(cids)
            })
            .await?;
        let n = cids.len();
        let blobs = self.blobs.clone();
        let _ = tokio::task::spawn_blocking(move || blobs.delete_many_blocking(&cids)).await;
        let _ = self.blobs.gc_temps(grace).await;
        Ok(n)
    }
}

/// Allow a slow home uplink: at least 60 s, plus 1 s per 64 KiB of limit.
fn deadline(limit: u64) -> Duration {
    Duration::from_secs(60 + limit / (64 * 1024))
}
