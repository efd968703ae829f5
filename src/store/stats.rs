//! Daily rollups for the owner's page plots: records created per day by kind, and storage
//! per day. Small (a row per day and kind), trimmed to [`KEEP_DAYS`].

use rusqlite::params;

use super::{Db, StoreError};

pub const KEEP_DAYS: i64 = 90;

/// Adds `n` records of `kind` created on `day` (`YYYY-MM-DD`).
pub fn add_writes(conn: &Db, day: &str, kind: &str, n: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO stat_writes (day, kind, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (day, kind) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![day, kind, n as i64])?;
    Ok(())
}

/// (day, kind, count) from `since` on, in day order.
pub fn writes_since(conn: &Db, since: &str) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT day, kind, n FROM stat_writes WHERE day >= ?1 ORDER BY day, kind",
    )?;
    let rows = st.query_map([since], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records the day's storage (the latest sample of the day wins).
pub fn set_storage(conn: &Db, day: &str, database: u64, blobs: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO stat_storage (day, database_bytes, blob_bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (day) DO UPDATE SET database_bytes = excluded.database_bytes,
         blob_bytes = excluded.blob_bytes",
        params![day, database as i64, blobs as i64],
    )?;
    Ok(())
}

/// (day, database bytes, blob bytes) from `since` on, in day order.
pub fn storage_since(conn: &Db, since: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT day, database_bytes, blob_bytes FROM stat_storage WHERE day >= ?1 ORDER BY day",
    )?;
    let rows = st.query_map([since], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, i64>(2)?.max(0) as u64,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops the rows of days before `day`.
pub fn trim_before(conn: &Db, day: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM stat_writes WHERE day < ?1", [day])?;
    conn.execute("DELETE FROM stat_storage WHERE day < ?1", [day])?;
    Ok(())
}
