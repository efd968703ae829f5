//! OAuth rows: pushed authorization requests, grants (one per signed-in app), values that
//! must never be accepted twice, remembered consent, and browsers signed in to the sign-in
//! page. Secrets (codes, refresh tokens, device cookies) are stored as SHA-256 hashes, so a
//! copy of the database (a backup) does not hand out live credentials.

use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub client_id: String,
    /// The PAR parameters kept, as JSON (the oauth service's own format).
    pub params: String,
    pub dpop_jkt: String,
    /// A confidential client's key (its JWK thumbprint); later requests must use it too.
    pub client_key: Option<String>,
    pub expires_at: i64,
    pub code_hash: Option<String>,
    pub grant_id: Option<String>,
}

pub fn insert_request(conn: &Db, r: &Request, now: i64) -> Result<(), StoreError> {
    // Expired requests go on the way in; a day's grace keeps a spent code's row (with the
    // grant it made) long enough for a reused code to revoke that grant.
    conn.execute(
        "DELETE FROM oauth_request WHERE expires_at < ?1",
        [now - 24 * 3600],
    )?;
    conn.execute(
        "INSERT INTO oauth_request
             (id, client_id, params, dpop_jkt, client_key, expires_at, code_hash, grant_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            r.id,
            r.client_id,
            r.params,
            r.dpop_jkt,
            r.client_key,
            r.expires_at,
            r.code_hash,
            r.grant_id
        ],
    )?;
    Ok(())
}

/// Requests not yet expired, at most this many at once (a bound on what anonymous PAR calls
/// can store).
pub fn count_live_requests(conn: &Db, now: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM oauth_request WHERE expires_at >= ?1",
        [now],
        |r| r.get(0),
    )?)
}

const REQUEST_COLUMNS: &str =
    "id, client_id, params, dpop_jkt, client_key, expires_at, code_hash, grant_id";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: r.get(0)?,
        client_id: r.get(1)?,
        params: r.get(2)?,
        dpop_jkt: r.get(3)?,
        client_key: r.get(4)?,
        expires_at: r.get(5)?,
        code_hash: r.get(6)?,
        grant_id: r.get(7)?,
    })
}

pub fn get_request(conn: &Db, id: &str) -> Result<Option<Request>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM oauth_request WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()?)
}

pub fn get_request_by_code(conn: &Db, code_hash: &str) -> Result<Option<Request>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM oauth_request WHERE code_hash = ?1"),
            [code_hash],
            request_row,
        )
        .optional()?)
}

/// Gives a request not yet answered more time (the owner is signing in).
pub fn extend_request(conn: &Db, id: &str, expires_at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE oauth_request SET expires_at = max(expires_at, ?2)
         WHERE id = ?1 AND code_hash IS NULL",
        params![id, expires_at],
    )?;
    Ok(())
}

/// The owner approved: the request now carries its code, valid until `expires_at`.
pub fn set_request_code(
    conn: &Db,
    id: &str,
    code_hash: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE oauth_request SET code_hash = ?2, expires_at = ?3
         WHERE id = ?1 AND code_hash IS NULL",
        params![id, code_hash, expires_at],
    )? == 1)
}

/// The code was exchanged for `grant_id`: a second exchange finds it spent.
pub fn spend_request_code(conn: &Db, id: &str, grant_id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE oauth_request SET grant_id = ?2 WHERE id = ?1 AND grant_id IS NULL",
        params![id, grant_id],
    )? == 1)
}

pub fn delete_request(conn: &Db, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM oauth_request WHERE id = ?1", [id])?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub scope: String,
    pub dpop_jkt: String,
    pub client_key: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// The end of the whole session, however often it is refreshed.
    pub expires_at: i64,
    pub refresh_hash: String,
    pub refresh_expires_at: i64,
}

const GRANT_COLUMNS: &str = "id, client_id, client_name, scope, dpop_jkt, client_key, \
     created_at, last_used_at, expires_at, refresh_hash, refresh_expires_at";

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        client_id: r.get(1)?,
        client_name: r.get(2)?,
        scope: r.get(3)?,
        dpop_jkt: r.get(4)?,
        client_key: r.get(5)?,
        created_at: r.get(6)?,
        last_used_at: r.get(7)?,
        expires_at: r.get(8)?,
        refresh_hash: r.get(9)?,
        refresh_expires_at: r.get(10)?,
    })
}

pub fn insert_grant(conn: &Db, g: &Grant) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO oauth_grant ({GRANT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            g.id,
            g.client_id,
            g.client_name,
            g.scope,
            g.dpop_jkt,
            g.client_key,
            g.created_at,
            g.last_used_at,
            g.expires_at,
            g.refresh_hash,
            g.refresh_expires_at
        ],
    )?;
    Ok(())
}

pub fn get_grant(conn: &Db, id: &str) -> Result<Option<Grant>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {GRANT_COLUMNS} FROM oauth_grant WHERE id = ?1"),
            [id],
            grant_row,
        )
        .optional()?)
}

pub fn get_grant_by_refresh(conn: &Db, refresh_hash: &str) -> Result<Option<Grant>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {GRANT_COLUMNS} FROM oauth_grant WHERE refresh_hash = ?1"),
            [refresh_hash],
            grant_row,
        )
        .optional()?)
}

/// Every grant, newest first.
pub fn list_grants(conn: &Db) -> Result<Vec<Grant>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grant ORDER BY created_at DESC, id"
    ))?;
    let rows = st.query_map([], grant_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Swaps the refresh token of a grant, if `old_hash` is still its current one (a
/// compare-and-set, so two refreshes racing with one token cannot both win).
pub fn rotate_refresh(
    conn: &Db,
    id: &str,
    old_hash: &str,
    new_hash: &str,
    refresh_expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE oauth_grant SET refresh_hash = ?3, refresh_expires_at = ?4, last_used_at = ?5
         WHERE id = ?1 AND refresh_hash = ?2",
        params![id, old_hash, new_hash, refresh_expires_at, now],
    )? == 1)
}

pub fn delete_grant(conn: &Db, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM oauth_grant WHERE id = ?1", [id])? == 1)
}

/// Ends every grant and every signed-in browser (a password change). Returns the grants
/// ended.
pub fn delete_all_grants(conn: &Db) -> Result<usize, StoreError> {
    let n = conn.execute("DELETE FROM oauth_grant", [])?;
    conn.execute("DELETE FROM oauth_device", [])?;
    Ok(n)
}

pub fn delete_expired_grants(conn: &Db, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM oauth_grant WHERE expires_at < ?1 OR refresh_expires_at < ?1",
        [now],
    )?)
}

/// Records a value of `kind` that must not be accepted again before `expires_at`: false if
/// it was already there (a replay).
pub fn use_once(
    conn: &Db,
    kind: &str,
    value: &str,
    grant_id: Option<&str>,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM oauth_used WHERE kind = ?1 AND value = ?2 AND expires_at < ?3",
        params![kind, value, now],
    )?;
    Ok(conn.execute(
        "INSERT INTO oauth_used (kind, value, grant_id, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, value) DO NOTHING",
        params![kind, value, grant_id, expires_at],
    )? == 1)
}

/// The grant a used value belonged to, if it is remembered.
pub fn used_by(conn: &Db, kind: &str, value: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT grant_id FROM oauth_used WHERE kind = ?1 AND value = ?2",
            params![kind, value],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

pub fn delete_expired_used(conn: &Db, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM oauth_used WHERE expires_at < ?1", [now])?)
}

/// The scope sets the owner has approved for a client (each a space-separated string).
pub fn consents(conn: &Db, client_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT scope FROM oauth_consent WHERE client_id = ?1 LIMIT 32")?;
    let rows = st.query_map([client_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn remember_consent(
    conn: &Db,
    client_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO oauth_consent (client_id, scope, granted_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (client_id, scope) DO UPDATE SET granted_at = ?3",
        params![client_id, scope, now],
    )?;
    Ok(())
}

pub fn forget_consents(conn: &Db, client_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM oauth_consent WHERE client_id = ?1",
        [client_id],
    )?;
    Ok(())
}

pub fn insert_device(
    conn: &Db,
    id_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute("DELETE FROM oauth_device WHERE expires_at < ?1", [now])?;
    conn.execute(
        "INSERT INTO oauth_device (id_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
        params![id_hash, now, expires_at],
    )?;
    Ok(())
}

/// Whether a browser's sign-in is live.
pub fn device_live(conn: &Db, id_hash: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM oauth_device WHERE id_hash = ?1 AND expires_at >= ?2",
            params![id_hash, now],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn delete_device(conn: &Db, id_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM oauth_device WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}
