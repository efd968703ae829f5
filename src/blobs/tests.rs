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
async fn the_type_is_read_from_the_first_bytes_across_frames() {
    let (_d, store) = store().await;
    let mut gif = b"GIF89a".to_vec();
    gif.extend(pattern(100_000));
    for frame in [1, 2, 5, 70_000] {
        let t = store
            .write_temp(chunked(&gif, frame), None, LIMIT)
            .await
            .unwrap();
        assert_eq!(t.sniffed, Some("image/gif"), "frames of {frame}");
    }
    let t = store.write_temp_bytes(b"plain words", LIMIT).await.unwrap();
    assert_eq!(t.sniffed, None);
    let t = store.write_temp_bytes(b"", LIMIT).await.unwrap();
    assert_eq!(t.sniffed, None);
}

/// Uploads longer than one write chunk go to the file in several writes, one of them under
/// way while the next chunk gathers: every split must leave the same bytes and hash.
#[tokio::test]
async fn uploads_over_many_write_chunks_keep_every_byte() {
    let (_d, store) = store().await;
    for (len, frame) in [
        (WRITE_CHUNK * 3 + 17, 7_000),
        (WRITE_CHUNK * 2, 65_536),
        (WRITE_CHUNK * 2 + 1, WRITE_CHUNK * 2 + 1),
        (WRITE_CHUNK - 1, 1_000),
        (WRITE_CHUNK * 5 / 2, WRITE_CHUNK + 3),
    ] {
        let data = pattern(len);
        let t = store
            .write_temp(chunked(&data, frame), Some(len as u64), LIMIT)
            .await
            .unwrap();
        assert_eq!(t.cid, cid::for_raw(&data), "{len} in frames of {frame}");
        assert_eq!(t.size, len as u64);
        assert_eq!(
            std::fs::read(t.path()).unwrap(),
            data,
            "{len} in frames of {frame}"
        );
    }
}

/// A body that passes the limit after a chunk went to the file still leaves no temp file.
#[tokio::test]
async fn over_limit_after_a_written_chunk_removes_temp() {
    let (_d, store) = store().await;
    let data = pattern(WRITE_CHUNK * 3);
    let limit = WRITE_CHUNK as u64 * 2;
    let err = store
        .write_temp(chunked(&data, 10_000), None, limit)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BlobError::TooLarge { limit: l } if l == limit),
        "{err:?}"
    );
    assert_eq!(temp_count(&store), 0);
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
