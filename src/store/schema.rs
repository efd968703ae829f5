//! Schema and migrations, versioned by SQLite's `user_version`. Each entry
//! of `MIGRATIONS` moves the schema one version forward inside one
//! transaction; a database newer than this binary is refused.

use rusqlite::Connection;

use super::StoreError;

/// One step forward: SQL, or code for what SQL cannot express.
enum Step {
    Sql(&'static str),
    Code(fn(&Connection) -> Result<(), StoreError>),
}

const MIGRATIONS: &[Step] = &[
    // 1: the initial schema.
    Step::Sql(
        r#"
    -- The one account this server hosts (id is always 1).
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        did TEXT NOT NULL UNIQUE,
        handle TEXT NOT NULL,
        email TEXT,
        email_confirmed_at TEXT,
        password_hash TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        created_at TEXT NOT NULL
    );
    CREATE TABLE app_password (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        privileged INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    -- Issued refresh tokens (by jti) so they can be rotated and revoked.
    CREATE TABLE refresh_token (
        jti TEXT PRIMARY KEY,
        app_password_name TEXT,
        expires_at INTEGER NOT NULL,
        next_jti TEXT,
        rotated_at INTEGER
    );
    CREATE TABLE repo_root (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        commit_cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        data_cid TEXT NOT NULL
    );
    -- Every repo block (commits, MST nodes, records), with the rev that
    -- first wrote it (for getRepo?since=).
    CREATE TABLE block (
        cid BLOB PRIMARY KEY,
        rev TEXT NOT NULL,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX block_rev ON block (rev);
    CREATE TABLE record (
        collection TEXT NOT NULL,
        rkey TEXT NOT NULL,
        cid TEXT NOT NULL,
        rev TEXT NOT NULL,
        PRIMARY KEY (collection, rkey)
    ) WITHOUT ROWID;
    -- Blob metadata; the bytes are files under blobs/. A blob with no
    -- record_blob row is unreferenced (a fresh upload) and is collected
    -- after a grace period.
    CREATE TABLE blob (
        cid TEXT PRIMARY KEY,
        mime_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE record_blob (
        blob_cid TEXT NOT NULL,
        record_path TEXT NOT NULL,
        PRIMARY KEY (blob_cid, record_path)
    ) WITHOUT ROWID;
    CREATE INDEX record_blob_path ON record_blob (record_path);
    -- The firehose log: DAG-CBOR event bodies in seq order.
    CREATE TABLE event (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        time TEXT NOT NULL,
        body BLOB NOT NULL
    );
    -- app.bsky preferences: the JSON array, stored opaquely.
    CREATE TABLE preference (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value TEXT NOT NULL
    );
    "#,
    ),
    // 2: one-time tokens for signing PLC operations (what the reference
    // emails; perch prints them: `perch account plc-token`).
    Step::Sql(
        r#"
    CREATE TABLE plc_token (
        token TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );
    "#,
    ),
    // 3: other one-time codes, by purpose: `invite` (lets a migration tool create the
    // account here, `perch account invite`) and `delete_account`.
    Step::Sql(
        r#"
    CREATE TABLE action_token (
        purpose TEXT NOT NULL,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (purpose, token)
    );
    "#,
    ),
    // 4: event bodies carry their own `seq`, so a frame is the stored bytes behind a fixed
    // header (no decode and re-encode per subscriber).
    Step::Code(seq_into_event_bodies),
    // 5: the records written after a rev (read-after-write patches proxied reads with them).
    Step::Sql("CREATE INDEX record_rev ON record (rev);"),
    // 6: OAuth (`crate::oauth`): pushed requests through sign-in and consent to the code
    // exchange, the grants apps hold, values that must never come back, remembered consent,
    // and browsers signed in to the sign-in page.
    Step::Sql(
        r#"
    CREATE TABLE oauth_request (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        params TEXT NOT NULL,
        dpop_jkt TEXT NOT NULL,
        client_key TEXT,
        expires_at INTEGER NOT NULL,
        code_hash TEXT UNIQUE,
        grant_id TEXT
    );
    CREATE TABLE oauth_grant (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        client_name TEXT,
        scope TEXT NOT NULL,
        dpop_jkt TEXT NOT NULL,
        client_key TEXT,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        refresh_hash TEXT NOT NULL UNIQUE,
        refresh_expires_at INTEGER NOT NULL
    );
    CREATE TABLE oauth_used (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        grant_id TEXT,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID;
    CREATE TABLE oauth_consent (
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, scope)
    ) WITHOUT ROWID;
    CREATE TABLE oauth_device (
        id_hash TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
    // 7: the owner's page: passkeys (WebAuthn ES256 credentials: id base64url, SEC1 public
    // key), and the daily rollups its plots draw (records created by kind; storage), kept
    // 90 days.
    Step::Sql(
        r#"
    CREATE TABLE stat_writes (
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (day, kind)
    ) WITHOUT ROWID;
    CREATE TABLE stat_storage (
        day TEXT PRIMARY KEY,
        database_bytes INTEGER NOT NULL,
        blob_bytes INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE passkey (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        public_key BLOB NOT NULL,
        sign_count INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    "#,
    ),
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current = version(conn)?;
    if current > VERSION {
        return Err(StoreError::TooNew(current, VERSION));
    }
    // Version 0 with tables is some other database (or a foreign WAL laid
    // over ours); migrating would write perch's schema into it.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if current == 0 && tables > 0 {
        return Err(StoreError::Damaged(
            conn.path().unwrap_or_default().into(),
            "it has tables but no perch schema version: not a perch database".into(),
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Adds `seq` to every stored event body that lacks it.
fn seq_into_event_bodies(conn: &Connection) -> Result<(), StoreError> {
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut st = conn.prepare("SELECT seq, body FROM event ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (seq, body) in rows {
        let Ok(crate::cbor::Ipld::Map(mut map)) = crate::cbor::decode(&body) else {
            return Err(StoreError::Corrupt(format!(
                "event {seq} is not a DAG-CBOR map"
            )));
        };
        if map.contains_key("seq") {
            continue;
        }
        map.insert("seq".into(), crate::cbor::Ipld::Integer(seq));
        let body = crate::cbor::encode(&crate::cbor::Ipld::Map(map));
        conn.execute(
            "UPDATE event SET body = ?1 WHERE seq = ?2",
            rusqlite::params![body, seq],
        )?;
    }
    Ok(())
}
