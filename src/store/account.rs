//! The account, app passwords, refresh tokens and preferences.

use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};

/// Where the account stands. A deleted account has no row at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// Moving in (until `activateAccount`) or moved away.
    Deactivated,
    Takendown,
    Suspended,
}

impl AccountStatus {
    /// The word stored, and the one the protocol uses (`#account` events, getRepoStatus).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Deactivated => "deactivated",
            AccountStatus::Takendown => "takendown",
            AccountStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<AccountStatus> {
        [
            AccountStatus::Active,
            AccountStatus::Deactivated,
            AccountStatus::Takendown,
            AccountStatus::Suspended,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub email: Option<String>,
    pub email_confirmed_at: Option<String>,
    pub password_hash: String,
    pub status: AccountStatus,
    pub created_at: String,
}

impl Account {
    pub fn is_active(&self) -> bool {
        self.status == AccountStatus::Active
    }
}

fn status_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<AccountStatus> {
    let s: String = r.get(i)?;
    AccountStatus::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown account status {s:?}").into(),
        )
    })
}

pub fn get_account(conn: &Db) -> Result<Option<Account>, StoreError> {
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
                status: status_column(r, 5)?,
                created_at: r.get(6)?,
            })
        })
        .optional()?)
}

/// The account's status alone, for checks on every write.
pub fn status(conn: &Db) -> Result<Option<AccountStatus>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT status FROM account WHERE id = 1")?
        .query_row([], |r| status_column(r, 0))
        .optional()?)
}

pub fn create_account(conn: &Db, a: &Account) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO account (id, did, handle, email, email_confirmed_at, password_hash, status, created_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.did,
            a.handle,
            a.email,
            a.email_confirmed_at,
            a.password_hash,
            a.status.as_str(),
            a.created_at
        ],
    )?;
    Ok(())
}

pub fn set_password_hash(conn: &Db, hash: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE account SET password_hash = ?1 WHERE id = 1", [hash])?;
    Ok(())
}

pub fn set_handle(conn: &Db, handle: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE account SET handle = ?1 WHERE id = 1", [handle])?;
    Ok(())
}

pub fn set_status(conn: &Db, status: AccountStatus) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE account SET status = ?1 WHERE id = 1",
        [status.as_str()],
    )?;
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
pub fn insert_app_password(conn: &Db, p: &AppPassword) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO app_password (name, password_hash, privileged, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![p.name, p.password_hash, p.privileged, p.created_at],
    )?;
    Ok(n == 1)
}

pub fn list_app_passwords(conn: &Db) -> Result<Vec<AppPassword>, StoreError> {
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
pub fn delete_app_password(conn: &Db, name: &str) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM refresh_token WHERE app_password_name = ?1",
        [name],
    )?;
    Ok(conn.execute("DELETE FROM app_password WHERE name = ?1", [name])? == 1)
}

pub fn app_password_exists(conn: &Db, name: &str) -> Result<bool, StoreError> {
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

pub fn insert_refresh_token(conn: &Db, t: &RefreshToken) -> Result<(), StoreError> {
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

pub fn get_refresh_token(conn: &Db, jti: &str) -> Result<Option<RefreshToken>, StoreError> {
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
pub fn rotate_refresh_token(conn: &Db, jti: &str, next: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_token SET next_jti = ?2, rotated_at = ?3 WHERE jti = ?1",
        params![jti, next, now],
    )?;
    Ok(())
}

pub fn delete_refresh_token(conn: &Db, jti: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM refresh_token WHERE jti = ?1", [jti])?;
    Ok(())
}

/// Ends a session: `jti` and every token rotated into it or out of it, so no access token
/// of that login (each names one of them) stays usable.
pub fn delete_session(conn: &Db, jti: &str) -> Result<(), StoreError> {
    conn.execute(
        "WITH RECURSIVE chain(j) AS (
             SELECT ?1
             UNION SELECT r.next_jti FROM refresh_token r JOIN chain ON r.jti = chain.j
                   WHERE r.next_jti IS NOT NULL
             UNION SELECT r.jti FROM refresh_token r JOIN chain ON r.next_jti = chain.j
         )
         DELETE FROM refresh_token WHERE jti IN (SELECT j FROM chain)",
        [jti],
    )?;
    Ok(())
}

pub fn delete_expired_refresh_tokens(conn: &Db, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM refresh_token WHERE expires_at < ?1", [now])?)
}

/// Live sessions (refresh tokens not yet rotated away, not expired): made with the account
/// password, and with app passwords.
pub fn count_sessions(conn: &Db, now: i64) -> Result<(u64, u64), StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FILTER (WHERE app_password_name IS NULL),
                count(*) FILTER (WHERE app_password_name IS NOT NULL)
         FROM refresh_token WHERE next_jti IS NULL AND expires_at >= ?1",
        [now],
        |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        },
    )?)
}

/// Ends every session but the one of `keep` (its rotation chain has only itself: the
/// owner's page never rotates its token).
pub fn delete_sessions_except(conn: &Db, keep: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM refresh_token WHERE jti <> ?1", [keep])?)
}

pub fn delete_all_refresh_tokens(conn: &Db) -> Result<(), StoreError> {
    conn.execute("DELETE FROM refresh_token", [])?;
    Ok(())
}

pub fn get_preferences(conn: &Db) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM preference WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn put_preferences(conn: &Db, json: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO preference (id, value) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET value = ?1",
        [json],
    )?;
    Ok(())
}

pub fn insert_plc_token(conn: &Db, token: &str, expires_at: i64) -> Result<(), StoreError> {
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
pub fn take_plc_token(conn: &Db, token: &str, now: i64) -> Result<Option<bool>, StoreError> {
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

/// Sets the account's email; a new address is not confirmed.
pub fn set_email(conn: &Db, email: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE account SET email = ?1, email_confirmed_at = CASE WHEN email = ?1 \
         THEN email_confirmed_at END WHERE id = 1",
        [email],
    )?;
    Ok(())
}

/// Marks the account's email confirmed (at `at`, an atproto datetime).
pub fn set_email_confirmed(conn: &Db, at: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE account SET email_confirmed_at = ?1 WHERE id = 1",
        [at],
    )?;
    Ok(())
}

/// A pending one-time code, for `perch account codes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCode {
    pub purpose: String,
    pub code: String,
    pub expires_at: i64,
}

/// The live codes of every purpose (PLC codes as `plc_operation`), soonest expiry first.
pub fn pending_codes(conn: &Db, now: i64) -> Result<Vec<PendingCode>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT purpose, token, expires_at FROM action_token WHERE expires_at >= ?1 \
         UNION ALL SELECT 'plc_operation', token, expires_at FROM plc_token \
         WHERE expires_at >= ?1 ORDER BY 3",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(PendingCode {
            purpose: r.get(0)?,
            code: r.get(1)?,
            expires_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops every code for `purpose` (a new one replaces them).
pub fn delete_action_tokens(conn: &Db, purpose: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM action_token WHERE purpose = ?1", [purpose])?;
    Ok(())
}

/// Stores a one-time code for `purpose` (expired codes of any purpose are dropped).
pub fn insert_action_token(
    conn: &Db,
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

/// When the code for `purpose` expires, if there is one.
fn action_token_expiry(conn: &Db, purpose: &str, token: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT expires_at FROM action_token WHERE purpose = ?1 AND token = ?2",
            [purpose, token],
            |r| r.get(0),
        )
        .optional()?)
}

/// Whether a code exists for `purpose` and has not expired (without using it up).
pub fn action_token_valid(
    conn: &Db,
    purpose: &str,
    token: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(action_token_expiry(conn, purpose, token)?.is_some_and(|e| e >= now))
}

/// Uses up a code: true if it existed for `purpose` and had not expired. An expired one
/// is removed too.
pub fn take_action_token(
    conn: &Db,
    purpose: &str,
    token: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(take_action_token_state(conn, purpose, token, now)? == Some(false))
}

/// Uses up a code: Some(expired?) if it existed for `purpose`, None if unknown.
pub fn take_action_token_state(
    conn: &Db,
    purpose: &str,
    token: &str,
    now: i64,
) -> Result<Option<bool>, StoreError> {
    let exp = action_token_expiry(conn, purpose, token)?;
    conn.execute(
        "DELETE FROM action_token WHERE purpose = ?1 AND token = ?2",
        [purpose, token],
    )?;
    Ok(exp.map(|e| e < now))
}

/// Removes the account and everything it owns (repo, records, blob rows, sessions, app
/// passwords, preferences, codes). Firehose events stay: relays must still see the
/// `#account` deletion. Returns the blob CIDs whose files the caller deletes afterwards.
pub fn delete_everything(conn: &Db) -> Result<Vec<String>, StoreError> {
    let cids: Vec<String> = {
        let mut st = conn.prepare("SELECT cid FROM blob")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    conn.execute_batch(
        "DELETE FROM record_blob; DELETE FROM blob; DELETE FROM record; DELETE FROM block;
         DELETE FROM repo_root; DELETE FROM refresh_token; DELETE FROM app_password;
         DELETE FROM preference; DELETE FROM plc_token; DELETE FROM action_token;
         DELETE FROM passkey; DELETE FROM stat_writes; DELETE FROM stat_storage;
         DELETE FROM account;",
    )?;
    Ok(cids)
}
