//! Startup on a damaged database (reliability plan item 8): `perch serve`
//! refuses with a message that says the database is damaged and points at the
//! backup, exits non-zero and never panics — for a damaged header, a truncated
//! file, garbage pages, a WAL from another database and an emptied file.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::perch_cmd;

fn perch_serve(data: &Path) -> Output {
    let out = data.with_extension("out");
    let err = data.with_extension("err");
    let mut child = perch_cmd()
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // Stop a perch that serves (a failure for a damaged file, the expected
    // outcome for the healthy control) as soon as it says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let serving = std::fs::read_to_string(&out).is_ok_and(|t| t.contains("listening on"));
        if serving || Instant::now() > deadline {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// A data directory with an account and some records, shut down cleanly and
/// checkpointed so the whole database is in the main file.
fn healthy(dir: &Path, name: &str) -> std::path::PathBuf {
    let data = dir.join(name);
    let o = perch_cmd()
        .args([
            "account",
            "create",
            "--handle",
            "alice.test",
            "--did-method",
            "web",
        ])
        .args(["--password", "correct horse battery", "--dev", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conn = rusqlite::Connection::open(data.join("perch.sqlite")).unwrap();
    // Enough rows that the file spans many pages.
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO block (cid, rev, data) SELECT randomblob(36), 'r', randomblob(200) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    data
}

/// One way to hurt the database file at the given path.
type Damage = dyn Fn(&Path);

fn assert_refused(what: &str, o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    assert!(
        !out.contains("listening on"),
        "{what}: served a damaged database:\n{out}{err}"
    );
    assert_eq!(o.status.code(), Some(1), "{what}:\n{out}{err}");
    assert!(err.contains("damaged"), "{what}: unclear message:\n{err}");
    assert!(
        err.contains("backup"),
        "{what}: no pointer to restore:\n{err}"
    );
    eprintln!("{what}: {}", err.trim());
}

#[test]
fn serve_refuses_damaged_databases_clearly() {
    let dir = tempfile::tempdir().unwrap();

    // Control: the healthy copy serves (and is stopped by the deadline).
    let data = healthy(dir.path(), "ok");
    let o = perch_serve(&data);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("listening on"),
        "healthy database did not start: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let damage: [(&str, &Damage); 6] = [
        ("damaged header", &|db| {
            let mut b = std::fs::read(db).unwrap();
            b[..16].copy_from_slice(b"not sqlite here!");
            std::fs::write(db, b).unwrap();
        }),
        ("truncated file", &|db| {
            let len = std::fs::metadata(db).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(db)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("garbage pages", &|db| {
            let mut b = std::fs::read(db).unwrap();
            let mut x: u32 = 0x9e37_79b9;
            for byte in &mut b[8192..8192 + 4 * 4096] {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            std::fs::write(db, b).unwrap();
        }),
        ("WAL from another database", &|db| {
            let other = db.with_file_name("other.sqlite");
            let c = rusqlite::Connection::open(&other).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(50000));",
            )
            .unwrap();
            let wal = std::fs::read(other.with_extension("sqlite-wal")).unwrap();
            drop(c);
            std::fs::write(db.with_extension("sqlite-wal"), wal).unwrap();
        }),
        ("emptied file", &|db| {
            std::fs::write(db, b"").unwrap();
        }),
        ("another program's database, no keys", &|db| {
            std::fs::remove_dir_all(db.with_file_name("keys")).unwrap();
            std::fs::remove_file(db).unwrap();
            rusqlite::Connection::open(db)
                .unwrap()
                .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
        }),
    ];
    for (i, (what, hurt)) in damage.iter().enumerate() {
        let data = healthy(dir.path(), &format!("d{i}"));
        hurt(&data.join("perch.sqlite"));
        assert_refused(what, &perch_serve(&data));
    }
}

/// Random byte flips anywhere in the file (plan item 8): perch either refuses
/// clearly or serves (a flip can land in unused space), and never panics.
/// `PERCH_CORRUPT_ROUNDS` sets the count (the long mode uses 200).
#[test]
fn random_byte_flips_never_panic() {
    let rounds: u64 = std::env::var("PERCH_CORRUPT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let base = healthy(dir.path(), "base");
    let db = std::fs::read(base.join("perch.sqlite")).unwrap();
    let mut x: u64 = rounds.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let (mut refused, mut served) = (0, 0);
    for round in 0..rounds {
        let data = dir.path().join(format!("f{round}"));
        std::fs::create_dir_all(data.join("keys")).unwrap();
        for f in std::fs::read_dir(base.join("keys")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), data.join("keys").join(f.file_name())).unwrap();
        }
        let mut bytes = db.clone();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % bytes.len() as u64) as usize;
            bytes[i] ^= 1 << (x >> 60 & 7);
        }
        std::fs::write(data.join("perch.sqlite"), bytes).unwrap();
        let o = perch_serve(&data);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "round {round}: panicked:\n{err}");
        if String::from_utf8_lossy(&o.stdout).contains("listening on") {
            served += 1;
        } else {
            assert_refused(&format!("flip round {round}"), &o);
            refused += 1;
        }
    }
    println!("corrupt: flip_rounds={rounds} refused={refused} served={served} panics=0");
}
