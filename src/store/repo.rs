//! Repository state: the root pointer, blocks, the records index, and the
//! firehose event log.

use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};
use crate::cid::{self, Cid};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRoot {
    pub commit_cid: Cid,
    pub rev: String,
    pub data_cid: Cid,
}

fn parse_cid(s: &str) -> Result<Cid, StoreError> {
    cid::parse(s).map_err(|e| StoreError::Corrupt(format!("bad CID {s:?}: {e}")))
}

pub fn get_root(conn: &Db) -> Result<Option<RepoRoot>, StoreError> {
    let row = conn
        .prepare_cached("SELECT commit_cid, rev, data_cid FROM repo_root WHERE id = 1")?
        .query_row([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    row.map(|(c, rev, d)| {
        Ok(RepoRoot {
            commit_cid: parse_cid(&c)?,
            rev,
            data_cid: parse_cid(&d)?,
        })
    })
    .transpose()
}

pub fn set_root(conn: &Db, root: &RepoRoot) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO repo_root (id, commit_cid, rev, data_cid) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET commit_cid = ?1, rev = ?2, data_cid = ?3",
    )?
    .execute(params![
        root.commit_cid.to_string(),
        root.rev,
        root.data_cid.to_string()
    ])?;
    Ok(())
}

pub fn get_block(conn: &Db, c: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT data FROM block WHERE cid = ?1")?
        .query_row([c.to_bytes()], |r| r.get(0))
        .optional()?)
}

/// CIDs looked up per statement by [`get_blocks`].
const LOOKUP_CHUNK: usize = 64;

/// `SELECT` of up to [`LOOKUP_CHUNK`] blocks by CID (`?1` is the size cap), made once.
fn lookup_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let marks: Vec<String> = (2..LOOKUP_CHUNK + 2).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT cid, CASE WHEN length(data) <= ?1 THEN data END FROM block WHERE cid IN ({})",
            marks.join(",")
        )
    })
}

/// The blocks of `cids` no longer than `max_len`, in the order asked; `None` for a block
/// that is absent or longer (see `BlockSource::get_blocks`). One statement per
/// [`LOOKUP_CHUNK`] CIDs: SQLite sorts the list and walks the index in order, where one
/// statement per block paid for a statement and a read snapshot each.
pub fn get_blocks(
    conn: &Db,
    cids: &[Cid],
    max_len: usize,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out = vec![None; cids.len()];
    let mut st = conn.prepare_cached(lookup_sql())?;
    for (n, chunk) in cids.chunks(LOOKUP_CHUNK).enumerate() {
        // Which positions want which CID, by CID bytes, to place the rows (which come in
        // the index's order, not the asked one).
        let mut wanted: Vec<(Vec<u8>, usize)> = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_bytes(), n * LOOKUP_CHUNK + i))
            .collect();
        wanted.sort_unstable();
        let cap = i64::try_from(max_len).unwrap_or(i64::MAX);
        st.raw_bind_parameter(1, cap)?;
        for i in 0..LOOKUP_CHUNK {
            // A short last chunk repeats its first CID: `IN` ignores duplicates.
            let key = &wanted[i.min(wanted.len() - 1)].0;
            st.raw_bind_parameter(i + 2, key.as_slice())?;
        }
        let mut rows = st.raw_query();
        while let Some(r) = rows.next()? {
            let key = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            let data = r
                .get_ref(1)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?;
            let Some(data) = data else { continue };
            let first = wanted.partition_point(|(k, _)| k.as_slice() < key);
            for (_, at) in wanted[first..].iter().take_while(|(k, _)| k == key) {
                out[*at] = Some(data.to_vec());
            }
        }
    }
    Ok(out)
}

/// Store a block written by revision `rev`. Blocks are immutable, but a
/// block that comes back (a record re-created, a tree node that reappears
/// after a delete) takes the new rev, so `getRepo?since=` includes it.
pub fn put_block(conn: &Db, c: &Cid, rev: &str, data: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO block (cid, rev, data) VALUES (?1, ?2, ?3)
         ON CONFLICT (cid) DO UPDATE SET rev = excluded.rev WHERE excluded.rev > block.rev",
    )?
    .execute(params![c.to_bytes(), rev, data])?;
    Ok(())
}

pub fn block_count(conn: &Db) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM block", [], |r| r.get(0))?)
}

/// Where a paged `blocks_since` walk stopped: the last block's (rev, CID bytes).
pub type SinceCursor = (String, Vec<u8>);

/// Blocks written after revision `since`, in (rev, CID) order, from just after `after`
/// (where an earlier page stopped), to `f` until it returns false; the cursor of the last
/// block given, or None when there are no more. Ascending order loses nothing to writes
/// between pages: a block's rev only ever moves up (see `put_block`), so a block not yet
/// reached stays ahead of the cursor (one already given may come again).
pub fn blocks_since_page(
    conn: &Db,
    since: &str,
    after: Option<&SinceCursor>,
    f: &mut dyn FnMut(Cid, &[u8]) -> bool,
) -> Result<Option<SinceCursor>, StoreError> {
    let (rev0, cid0) = after.map_or(("", &[][..]), |(r, c)| (r.as_str(), c.as_slice()));
    let mut st = conn.prepare_cached(
        "SELECT rev, cid, data FROM block WHERE rev > ?1 AND (rev, cid) > (?2, ?3)
         ORDER BY rev, cid",
    )?;
    let mut rows = st.query(params![since, rev0, cid0])?;
    while let Some(r) = rows.next()? {
        let rev: String = r.get(0)?;
        let raw: Vec<u8> = r.get(1)?;
        let c = cid::from_bytes(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let data: Vec<u8> = r.get(2)?;
        if !f(c, &data) {
            return Ok(Some((rev, raw)));
        }
    }
    Ok(None)
}

pub fn get_record(conn: &Db, collection: &str, rkey: &str) -> Result<Option<Cid>, StoreError> {
    let s: Option<String> = conn
        .prepare_cached("SELECT cid FROM record WHERE collection = ?1 AND rkey = ?2")?
        .query_row([collection, rkey], |r| r.get(0))
        .optional()?;
    s.map(|s| parse_cid(&s)).transpose()
}

/// A record in the index with the rev that wrote it.
#[derive(Clone, Debug)]
pub struct RecordRow {
    pub collection: String,
    pub rkey: String,
    pub cid: Cid,
    pub rev: String,
}

/// Records of `collection` written after `rev`, newest first, at most `limit`.
pub fn records_since(
    conn: &Db,
    collection: &str,
    rev: &str,
    limit: u32,
) -> Result<Vec<RecordRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT rkey, cid, rev FROM record WHERE rev > ?1 AND collection = ?2
         ORDER BY rev DESC LIMIT ?3",
    )?;
    let rows = st.query_map(params![rev, collection, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rkey, cid, rev) = row?;
        out.push(RecordRow {
            collection: collection.to_owned(),
            rkey,
            cid: parse_cid(&cid)?,
            rev,
        });
    }
    Ok(out)
}

pub fn put_record(
    conn: &Db,
    collection: &str,
    rkey: &str,
    c: &Cid,
    rev: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO record (collection, rkey, cid, rev) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (collection, rkey) DO UPDATE SET cid = ?3, rev = ?4",
    )?
    .execute(params![collection, rkey, c.to_string(), rev])?;
    Ok(())
}

pub fn delete_record(conn: &Db, collection: &str, rkey: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM record WHERE collection = ?1 AND rkey = ?2")?
        .execute([collection, rkey])?;
    Ok(())
}

/// The statements of [`list_records`] by `2 × reverse + has cursor`. No `LIMIT ?`: SQLite
/// plans with a bound LIMIT's value, so each new binding made it compile the statement
/// again (a fifth of a listRecords). The rows come in the primary key's order, so stopping
/// after `limit` of them gives the same page.
pub(super) const LIST_SQL: [&str; 4] = [
    "SELECT rkey, cid FROM record WHERE collection = ?1 ORDER BY rkey DESC",
    "SELECT rkey, cid FROM record WHERE collection = ?1 AND rkey < ?2 ORDER BY rkey DESC",
    "SELECT rkey, cid FROM record WHERE collection = ?1 ORDER BY rkey ASC",
    "SELECT rkey, cid FROM record WHERE collection = ?1 AND rkey > ?2 ORDER BY rkey ASC",
];

/// Records of a collection by rkey, newest (highest) first unless
/// `reverse`, strictly after `cursor` in that order.
pub fn list_records(
    conn: &Db,
    collection: &str,
    cursor: Option<&str>,
    limit: u32,
    reverse: bool,
) -> Result<Vec<(String, Cid)>, StoreError> {
    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String)> {
        Ok((r.get(0)?, r.get(1)?))
    }
    let mut st =
        conn.prepare_cached(LIST_SQL[2 * usize::from(reverse) + usize::from(cursor.is_some())])?;
    let rows = match cursor {
        Some(c) => st.query_map(params![collection, c], row)?,
        None => st.query_map(params![collection], row)?,
    };
    let mut out = Vec::new();
    for r in rows.take(limit as usize) {
        let (rkey, c) = r?;
        out.push((rkey, parse_cid(&c)?));
    }
    Ok(out)
}

pub fn collections(conn: &Db) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT DISTINCT collection FROM record ORDER BY collection")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record_count(conn: &Db) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM record", [], |r| r.get(0))?)
}

/// The seq the next event gets: above every seq ever handed out (trimmed events and
/// `bump_seq` included). Only the writer appends, inside its transaction, so this is the
/// seq [`insert_event`] will store.
pub fn next_seq(conn: &Db) -> Result<i64, StoreError> {
    Ok(highest_seq(conn)? + 1)
}

/// Stores a firehose event whose body (which carries `seq` itself) was encoded by the
/// caller for `seq` from [`next_seq`].
pub fn insert_event(
    conn: &Db,
    seq: i64,
    kind: &str,
    time: &str,
    body: &[u8],
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO event (seq, kind, time, body) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![seq, kind, time, body])?;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    pub time: String,
    pub body: Vec<u8>,
}

pub fn events_after(conn: &Db, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
    let mut st = conn.prepare_cached(
        // In rowid order, so `take` is the LIMIT (see `list_records` for why not `LIMIT ?`).
        "SELECT seq, kind, time, body FROM event WHERE seq > ?1 ORDER BY seq",
    )?;
    let rows = st.query_map(params![seq], |r| {
        Ok(Event {
            seq: r.get(0)?,
            kind: r.get(1)?,
            time: r.get(2)?,
            body: r.get(3)?,
        })
    })?;
    Ok(rows.take(limit as usize).collect::<Result<_, _>>()?)
}

/// Records per collection, the largest first.
pub fn record_counts(conn: &Db) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT collection, count(*) FROM record GROUP BY collection ORDER BY 2 DESC, 1",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn last_seq(conn: &Db) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row("SELECT max(seq) FROM event", [], |r| r.get(0))?)
}

/// The highest seq ever handed out: the last event's, or the counter's when
/// trimming or `bump_seq` moved it past the events that remain. Backups
/// record this; a restore must never let seq fall below it.
pub fn highest_seq(conn: &Db) -> Result<i64, StoreError> {
    let counter: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'event'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(last_seq(conn)?.unwrap_or(0).max(counter.unwrap_or(0)))
}

/// The first event at or after `time` (an RFC 3339 string in the stored
/// format), i.e. where the backfill window starts.
pub fn first_seq_since(conn: &Db, time: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        conn.query_row("SELECT min(seq) FROM event WHERE time >= ?1", [time], |r| {
            r.get(0)
        })?,
    )
}

/// Drop events older than `time` (outside the backfill window). The seq
/// counter lives in `sqlite_sequence`, so new events still count up from
/// the highest seq ever used.
pub fn trim_events_before(conn: &Db, time: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM event WHERE time < ?1", [time])?)
}

/// Drop the events before `seq` (the seq counter keeps its value).
pub fn delete_events_before(conn: &Db, seq: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM event WHERE seq < ?1", [seq])?)
}

/// Move the seq counter forward so the next event gets at least `next`
/// (after restoring an old backup, consumers must not see reused seqs).
pub fn bump_seq(conn: &Db, next: i64) -> Result<(), StoreError> {
    let last = last_seq(conn)?.unwrap_or(0);
    let counter: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'event'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let target = (next - 1).max(last).max(counter);
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'event'", [])?;
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('event', ?1)",
        [target],
    )?;
    Ok(())
}

/// Empties the repository (blocks, the record index, blob references) for an import that
/// replaces it; the account, blob rows and the firehose stay.
pub fn clear_repo(conn: &Db) -> Result<(), StoreError> {
    conn.execute_batch("DELETE FROM block; DELETE FROM record; DELETE FROM record_blob;")?;
    Ok(())
}
