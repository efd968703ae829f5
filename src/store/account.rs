//! The account, app passwords, refresh tokens and preferences.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub email: Option<String>,
    pub email_confirmed_at: Option<String>,
    pub password_hash: String,
    /// `active`, `deactivated`, `takendown` or `deleted`.
    pub status: String,
    pub created_at: String,
}

impl Account {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

pub fn get_account(conn: &Connection) -> Result<Option<Account>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT did, handle, email, email_confirmed_at, password_hash, status, created_at
             FROM account WHERE id = 1",
        )?
        .query_row([], |r| {
            Ok(Account {
                did: r.get(0)?,
                handle: r.get(1)?,
                email: r.get(2)?,
                email_confirmed_at: r.get(3)?,
                password_hash: r.get(4)?,
                status: r.get(5)?,
                created_at: r.get(6)?,
            })
        })
        .optional()?)
}

pub fn create_account(conn: &Connection, a: &Account) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO account (id, did, handle, email, email_confirmed_at, password_hash, status, created_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.did,
            a.handle,
            a.email,
            a.email_confirmed_at,
            a.password_hash,
            a.status,
            a.created_at
        ],
    )?;
    Ok(())
}

pub fn set_password_hash(conn: &Connection, hash: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE account SET password_hash = ?1 WHERE id = 1", [hash])?;
    Ok(())
}

pub fn set_handle(conn: &Connection, handle: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE account SET handle = ?1 WHERE id = 1", [handle])?;
    Ok(())
}

pub fn set_status(conn: &Connection, status: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE account SET status = ?1 WHERE id = 1", [status])?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPassword {
    pub name: String,
    pub password_hash: String,
    pub privileged: bool,
    pub created_at: String,
}

/// Insert; false if the name is taken.
pub fn insert_app_password(conn: &Connection, p: &AppPassword) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO app_password (name, password_hash, privileged, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![p.name, p.password_hash, p.privileged, p.created_at],
    )?;
    Ok(n == 1)
}

pub fn list_app_passwords(conn: &Connection) -> Result<Vec<AppPassword>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT name, password_hash, privileged, created_at FROM app_password ORDER BY created_at",
    )?;
    let rows = st.query_map([], |r| {
        Ok(AppPassword {
            name: r.get(0)?,
            password_hash: r.get(1)?,
            privileged: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Delete an app password and every refresh token issued for it.
pub fn delete_app_password(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM refresh_token WHERE app_password_name = ?1",
        [name],
    )?;
    Ok(conn.execute("DELETE FROM app_password WHERE name = ?1", [name])? == 1)
}

pub fn app_password_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM app_password WHERE name = ?1", [name], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub jti: String,
    pub app_password_name: Option<String>,
    pub expires_at: i64,
    pub next_jti: Option<String>,
    pub rotated_at: Option<i64>,
}

pub fn insert_refresh_token(conn: &Connection, t: &RefreshToken) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO refresh_token (jti, app_password_name, expires_at, next_jti, rotated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            t.jti,
            t.app_password_name,
            t.expires_at,
            t.next_jti,
            t.rotated_at
        ],
    )?;
    Ok(())
}

pub fn get_refresh_token(conn: &Connection, jti: &str) -> Result<Option<RefreshToken>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT jti, app_password_name, expires_at, next_jti, rotated_at
             FROM refresh_token WHERE jti = ?1",
        )?
        .query_row([jti], |r| {
            Ok(RefreshToken {
                jti: r.get(0)?,
                app_password_name: r.get(1)?,
                expires_at: r.get(2)?,
                next_jti: r.get(3)?,
                rotated_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Mark `jti` as rotated into `next` (it stays valid for a short grace).
pub fn rotate_refresh_token(
    conn: &Connection,
    jti: &str,
    next: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_token SET next_jti = ?2, rotated_at = ?3 WHERE jti = ?1",
        params![jti, next, now],
    )?;
    Ok(())
}

pub fn delete_refresh_token(conn: &Connection, jti: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM refresh_token WHERE jti = ?1", [jti])?;
    Ok(())
}

pub fn delete_expired_refresh_tokens(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM refresh_token WHERE expires_at < ?1", [now])?)
}

pub fn delete_all_refresh_tokens(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("DELETE FROM refresh_token", [])?;
    Ok(())
}

pub fn get_preferences(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM preference WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn put_preferences(conn: &Connection, json: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO preference (id, value) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET value = ?1",
        [json],
    )?;
    Ok(())
}

pub fn insert_plc_token(conn: &Connection, token: &str, expires_at: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM plc_token WHERE expires_at < ?1",
        [expires_at - 24 * 3600],
    )?;
    conn.execute(
        "INSERT INTO plc_token (token, expires_at) VALUES (?1, ?2)",
        params![token, expires_at],
    )?;
    Ok(())
}

/// Use up a token: Some(expired?) if it existed, None if unknown.
pub fn take_plc_token(
    conn: &Connection,
    token: &str,
    now: i64,
) -> Result<Option<bool>, StoreError> {
    let exp: Option<i64> = conn
        .query_row(
            "SELECT expires_at FROM plc_token WHERE token = ?1",
            [token],
            |r| r.get(0),
        )
        .optional()?;
    conn.execute("DELETE FROM plc_token WHERE token = ?1", [token])?;
    Ok(exp.map(|e| e < now))
}

/// Stores a one-time code for `purpose` (expired codes of any purpose are dropped).
pub fn insert_action_token(
    conn: &Connection,
    purpose: &str,
    token: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute("DELETE FROM action_token WHERE expires_at < ?1", [now])?;
    conn.execute(
        "INSERT INTO action_token (purpose, token, expires_at) VALUES (?1, ?2, ?3)",
        params![purpose, token, expires_at],
    )?;
    Ok(())
}

/// Uses up a code: true if it existed for `purpose` and had not expired.
pub fn take_action_token(
    conn: &Connection,
    purpose: &str,
    token: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let exp: Option<i64> = conn
        .query_row(
            "SELECT expires_at FROM action_token WHERE purpose = ?1 AND token = ?2",
            [purpose, token],
            |r| r.get(0),
        )
        .optional()?;
    conn.execute(
        "DELETE FROM action_token WHERE purpose = ?1 AND token = ?2",
        [purpose, token],
    )?;
    Ok(exp.is_some_and(|e| e >= now))
}

/// Removes the account and everything it owns (repo, records, blob rows, sessions, app
/// passwords, preferences, codes). Firehose events stay: relays must still see the
/// `#account` deletion. Returns the blob CIDs whose files the caller deletes afterwards.
pub fn delete_everything(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let cids: Vec<String> = {
        let mut st = conn.prepare("SELECT cid FROM blob")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    conn.execute_batch(
        "DELETE FROM record_blob; DELETE FROM blob; DELETE FROM record; DELETE FROM block;
         DELETE FROM repo_root; DELETE FROM refresh_token; DELETE FROM app_password;
         DELETE FROM preference; DELETE FROM plc_token; DELETE FROM action_token;
         DELETE FROM account;",
    )?;
    Ok(cids)
}
