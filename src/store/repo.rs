//! Repository state: the root pointer, blocks, the records index, and the
//! firehose event log.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
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

pub fn get_root(conn: &Connection) -> Result<Option<RepoRoot>, StoreError> {
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

pub fn set_root(conn: &Connection, root: &RepoRoot) -> Result<(), StoreError> {
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

pub fn get_block(conn: &Connection, c: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT data FROM block WHERE cid = ?1")?
        .query_row([c.to_bytes()], |r| r.get(0))
        .optional()?)
}

/// Store a block written by revision `rev`. Blocks are immutable, but a
/// block that comes back (a record re-created, a tree node that reappears
/// after a delete) takes the new rev, so `getRepo?since=` includes it.
pub fn put_block(conn: &Connection, c: &Cid, rev: &str, data: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO block (cid, rev, data) VALUES (?1, ?2, ?3)
         ON CONFLICT (cid) DO UPDATE SET rev = excluded.rev WHERE excluded.rev > block.rev",
    )?
    .execute(params![c.to_bytes(), rev, data])?;
    Ok(())
}

pub fn block_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM block", [], |r| r.get(0))?)
}

/// Receives blocks one at a time.
pub type BlockSink<'a> = dyn FnMut(Cid, &[u8]) -> Result<(), StoreError> + 'a;

/// Blocks written after revision `since`, in rev order, to `f`.
pub fn blocks_since(
    conn: &Connection,
    since: &str,
    f: &mut BlockSink<'_>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("SELECT cid, data FROM block WHERE rev > ?1 ORDER BY rev")?;
    let mut rows = st.query([since])?;
    while let Some(r) = rows.next()? {
        let raw: Vec<u8> = r.get(0)?;
        let c = cid::from_bytes(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let data: Vec<u8> = r.get(1)?;
        f(c, &data)?;
    }
    Ok(())
}

pub fn get_record(
    conn: &Connection,
    collection: &str,
    rkey: &str,
) -> Result<Option<Cid>, StoreError> {
    let s: Option<String> = conn
        .prepare_cached("SELECT cid FROM record WHERE collection = ?1 AND rkey = ?2")?
        .query_row([collection, rkey], |r| r.get(0))
        .optional()?;
    s.map(|s| parse_cid(&s)).transpose()
}

pub fn put_record(
    conn: &Connection,
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

pub fn delete_record(conn: &Connection, collection: &str, rkey: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM record WHERE collection = ?1 AND rkey = ?2")?
        .execute([collection, rkey])?;
    Ok(())
}

/// Records of a collection by rkey, newest (highest) first unless
/// `reverse`, strictly after `cursor` in that order.
pub fn list_records(
    conn: &Connection,
    collection: &str,
    cursor: Option<&str>,
    limit: u32,
    reverse: bool,
) -> Result<Vec<(String, Cid)>, StoreError> {
    let sql = match (reverse, cursor.is_some()) {
        (false, false) => {
            "SELECT rkey, cid FROM record WHERE collection = ?1 ORDER BY rkey DESC LIMIT ?3"
        }
        (false, true) => {
            "SELECT rkey, cid FROM record WHERE collection = ?1 AND rkey < ?2 ORDER BY rkey DESC LIMIT ?3"
        }
        (true, false) => {
            "SELECT rkey, cid FROM record WHERE collection = ?1 ORDER BY rkey ASC LIMIT ?3"
        }
        (true, true) => {
            "SELECT rkey, cid FROM record WHERE collection = ?1 AND rkey > ?2 ORDER BY rkey ASC LIMIT ?3"
        }
    };
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(params![collection, cursor.unwrap_or(""), limit], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rkey, c) = row?;
        out.push((rkey, parse_cid(&c)?));
    }
    Ok(out)
}

pub fn collections(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT DISTINCT collection FROM record ORDER BY collection")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM record", [], |r| r.get(0))?)
}

/// Append a firehose event; returns its `seq`.
pub fn append_event(
    conn: &Connection,
    kind: &str,
    time: &str,
    body: &[u8],
) -> Result<i64, StoreError> {
    conn.prepare_cached("INSERT INTO event (kind, time, body) VALUES (?1, ?2, ?3)")?
        .execute(params![kind, time, body])?;
    Ok(conn.last_insert_rowid())
}

#[derive(Clone, Debug)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    pub time: String,
    pub body: Vec<u8>,
}

pub fn events_after(conn: &Connection, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT seq, kind, time, body FROM event WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![seq, limit], |r| {
        Ok(Event {
            seq: r.get(0)?,
            kind: r.get(1)?,
            time: r.get(2)?,
            body: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn last_seq(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row("SELECT max(seq) FROM event", [], |r| r.get(0))?)
}

/// The highest seq ever handed out: the last event's, or the counter's when
/// trimming or `bump_seq` moved it past the events that remain. Backups
/// record this; a restore must never let seq fall below it.
pub fn highest_seq(conn: &Connection) -> Result<i64, StoreError> {
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
pub fn first_seq_since(conn: &Connection, time: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        conn.query_row("SELECT min(seq) FROM event WHERE time >= ?1", [time], |r| {
            r.get(0)
        })?,
    )
}

/// Drop events older than `time` (outside the backfill window). The seq
/// counter lives in `sqlite_sequence`, so new events still count up from
/// the highest seq ever used.
pub fn trim_events_before(conn: &Connection, time: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM event WHERE time < ?1", [time])?)
}

/// Move the seq counter forward so the next event gets at least `next`
/// (after restoring an old backup, consumers must not see reused seqs).
pub fn bump_seq(conn: &Connection, next: i64) -> Result<(), StoreError> {
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
