//! Blob metadata and which records reference which blobs.

use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub cid: String,
    pub mime_type: String,
    pub size: i64,
    pub created_at: i64,
}

/// Record an uploaded blob (a no-op if it is already known).
pub fn insert_blob(conn: &Db, b: &BlobMeta) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO blob (cid, mime_type, size, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![b.cid, b.mime_type, b.size, b.created_at])?;
    Ok(())
}

/// Record an upload and return the one media type the blob now has. The
/// first upload's type stays, except that a type read from the bytes
/// (`sniffed`) replaces one that was only declared: the same bytes always
/// sniff the same, so this only corrects rows stored before sniffing, and a
/// second upload of unsniffable bytes with another declared type changes
/// nothing.
pub fn insert_upload(conn: &Db, b: &BlobMeta, sniffed: bool) -> Result<String, StoreError> {
    conn.prepare_cached(
        "INSERT INTO blob (cid, mime_type, size, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (cid) DO UPDATE SET mime_type = excluded.mime_type WHERE ?5",
    )?
    .execute(params![b.cid, b.mime_type, b.size, b.created_at, sniffed])?;
    Ok(conn
        .prepare_cached("SELECT mime_type FROM blob WHERE cid = ?1")?
        .query_row([&b.cid], |r| r.get(0))?)
}

pub fn get_blob(conn: &Db, cid: &str) -> Result<Option<BlobMeta>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT cid, mime_type, size, created_at FROM blob WHERE cid = ?1")?
        .query_row([cid], |r| {
            Ok(BlobMeta {
                cid: r.get(0)?,
                mime_type: r.get(1)?,
                size: r.get(2)?,
                created_at: r.get(3)?,
            })
        })
        .optional()?)
}

pub fn is_referenced(conn: &Db, cid: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM record_blob WHERE blob_cid = ?1 LIMIT 1")?
        .query_row([cid], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn add_record_blob(conn: &Db, blob_cid: &str, path: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO record_blob (blob_cid, record_path) VALUES (?1, ?2)",
    )?
    .execute([blob_cid, path])?;
    Ok(())
}

/// Drop a record's blob references; returns the blobs it referenced.
pub fn remove_record_blobs(conn: &Db, path: &str) -> Result<Vec<String>, StoreError> {
    let cids: Vec<String> = {
        let mut st =
            conn.prepare_cached("SELECT blob_cid FROM record_blob WHERE record_path = ?1")?;
        st.query_map([path], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    conn.prepare_cached("DELETE FROM record_blob WHERE record_path = ?1")?
        .execute([path])?;
    Ok(cids)
}

/// Delete a blob's metadata if no record references it; true if deleted
/// (the caller then removes the file once the transaction is durable).
pub fn delete_if_unreferenced(conn: &Db, cid: &str) -> Result<bool, StoreError> {
    if is_referenced(conn, cid)? {
        return Ok(false);
    }
    Ok(conn
        .prepare_cached("DELETE FROM blob WHERE cid = ?1")?
        .execute([cid])?
        == 1)
}

/// Referenced blobs (the public ones), by CID, after `cursor`; with `since` (a rev), only
/// those referenced by a record written at a later rev (as the reference: `repoRev > since`).
pub fn list_blobs(
    conn: &Db,
    since: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let cursor = cursor.unwrap_or("");
    let Some(since) = since else {
        let mut st = conn.prepare_cached(
            "SELECT DISTINCT blob_cid FROM record_blob WHERE blob_cid > ?1 \
             ORDER BY blob_cid LIMIT ?2",
        )?;
        let rows = st.query_map(params![cursor, limit], |r| r.get(0))?;
        return Ok(rows.collect::<Result<_, _>>()?);
    };
    // record_path is "collection/rkey"; collections (NSIDs) contain no '/'.
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT rb.blob_cid FROM record_blob rb JOIN record r
           ON r.collection = substr(rb.record_path, 1, instr(rb.record_path, '/') - 1)
          AND r.rkey = substr(rb.record_path, instr(rb.record_path, '/') + 1)
         WHERE r.rev > ?1 AND rb.blob_cid > ?2
         ORDER BY rb.blob_cid LIMIT ?3",
    )?;
    let rows = st.query_map(params![since, cursor, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Blobs referenced by records but not present (after an import).
pub fn list_missing_blobs(
    conn: &Db,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT rb.blob_cid, min(rb.record_path) FROM record_blob rb
         LEFT JOIN blob b ON b.cid = rb.blob_cid
         WHERE b.cid IS NULL AND rb.blob_cid > ?1
         GROUP BY rb.blob_cid ORDER BY rb.blob_cid LIMIT ?2",
    )?;
    let rows = st.query_map(params![cursor.unwrap_or(""), limit], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Uploaded blobs that no record references and that are older than
/// `before` (unix seconds): garbage to collect.
pub fn unreferenced_before(conn: &Db, before: i64) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT b.cid FROM blob b WHERE b.created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM record_blob rb WHERE rb.blob_cid = b.cid)",
    )?;
    let rows = st.query_map([before], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_blob(conn: &Db, cid: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM blob WHERE cid = ?1", [cid])?;
    Ok(())
}

pub fn blob_counts(conn: &Db) -> Result<(i64, i64), StoreError> {
    let expected: i64 = conn.query_row(
        "SELECT count(DISTINCT blob_cid) FROM record_blob",
        [],
        |r| r.get(0),
    )?;
    let imported: i64 = conn.query_row(
        "SELECT count(*) FROM blob b WHERE EXISTS (SELECT 1 FROM record_blob rb WHERE rb.blob_cid = b.cid)",
        [],
        |r| r.get(0),
    )?;
    Ok((expected, imported))
}

/// How many blobs are stored and their bytes in all.
pub fn totals(conn: &Db) -> Result<(u64, u64), StoreError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(size), 0) FROM blob",
        [],
        |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        },
    )?)
}
