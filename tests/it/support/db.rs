//! perch's SQLite file as the tests look into it, beside a running server.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use sha2::{Digest, Sha256};

/// A read-only connection: the server keeps running and nothing is written.
pub fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// `PRAGMA integrity_check` of the database at `path`.
pub fn integrity_ok(path: &Path) -> bool {
    let Ok(conn) = Connection::open(path) else {
        return false;
    };
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .is_ok_and(|s| s == "ok")
}

/// A digest of every table that holds repository or account state, read
/// through a read-only connection: equal digests mean nothing was written.
/// Session tables are left out (logins write).
pub fn digest(path: &Path) -> String {
    let conn = read_only(path);
    let mut h = Sha256::new();
    for table in [
        "account",
        "repo_root",
        "block",
        "record",
        "blob",
        "record_blob",
        "event",
        "preference",
    ] {
        let mut st = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = st.column_count();
        let mut rows: Vec<Vec<u8>> = st
            .query_map([], |r| {
                let mut row = Vec::new();
                for i in 0..n {
                    let cell: Vec<u8> = match r.get_ref(i)? {
                        ValueRef::Null => b"N".to_vec(),
                        ValueRef::Integer(x) => format!("I{x}").into_bytes(),
                        ValueRef::Real(x) => format!("R{x}").into_bytes(),
                        ValueRef::Text(t) => [b"T".as_slice(), t].concat(),
                        ValueRef::Blob(b) => [b"B".as_slice(), b].concat(),
                    };
                    row.extend_from_slice(&(cell.len() as u64).to_be_bytes());
                    row.extend_from_slice(&cell);
                }
                Ok(row)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        h.update(table.as_bytes());
        h.update((rows.len() as u64).to_be_bytes());
        for r in rows {
            h.update(&r);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
