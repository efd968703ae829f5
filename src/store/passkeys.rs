//! The owner's passkeys.

use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id, base64url.
    pub id: String,
    pub name: String,
    /// SEC1 uncompressed P-256 point.
    pub public_key: Vec<u8>,
    pub sign_count: u32,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<Passkey> {
    Ok(Passkey {
        id: r.get(0)?,
        name: r.get(1)?,
        public_key: r.get(2)?,
        sign_count: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
    })
}

const COLUMNS: &str = "id, name, public_key, sign_count, created_at, last_used_at";

/// Insert; false if a passkey with that id is already registered.
pub fn insert(conn: &Db, p: &Passkey) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "INSERT INTO passkey (id, name, public_key, sign_count, created_at, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
        params![
            p.id,
            p.name,
            p.public_key,
            i64::from(p.sign_count),
            p.created_at,
            p.last_used_at
        ],
    )? == 1)
}

pub fn list(conn: &Db) -> Result<Vec<Passkey>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM passkey ORDER BY created_at"
    ))?;
    let rows = st.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(conn: &Db, id: &str) -> Result<Option<Passkey>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM passkey WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// Records a sign-in with it: its new counter and the time.
pub fn used(conn: &Db, id: &str, sign_count: u32, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE passkey SET sign_count = ?2, last_used_at = ?3 WHERE id = ?1",
        params![id, i64::from(sign_count), now],
    )?;
    Ok(())
}

pub fn delete(conn: &Db, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM passkey WHERE id = ?1", [id])? == 1)
}
