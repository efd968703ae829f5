//! Backups, restores and exports with the real binary against a real data
//! dir: a backup taken by a separate `perch backup` process while the
//! server keeps writing holds every write acknowledged before it started;
//! a restore checks every file, verifies the repo and keeps the firehose
//! seq from going backwards; an export is a tar any `tar` lists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perch::repo::car::CarLimits;
use perch::repo::export::{load_repo_car, write_repo_car};
use perch::store::SqlBlocks;
use serde_json::{Value, json};

use crate::support::Client;
use crate::support::in_process::{Boot, InProcess, PASSWORD};
use crate::support::process::{Launch, perch, text};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The real server in this process over `data`, signed in.
async fn start(data: &Path) -> InProcess {
    let boot = Boot {
        data: Some(data),
        account: Some(perch::account::DidMethod::Web),
    };
    InProcess::boot(boot, |_| {}).await
}

/// A JSON procedure that must succeed; its answer.
async fn post(c: &Client, nsid: &str, body: Value) -> Value {
    let (status, v) = c.post(nsid, &body).await;
    assert_eq!(status, 200, "{nsid}: {v}");
    v
}

/// Upload `bytes`; returns the blob object for a record.
async fn upload(c: &Client, bytes: &[u8]) -> Value {
    let (status, v) = c
        .post_raw("com.atproto.repo.uploadBlob", "image/png", bytes.to_vec())
        .await;
    assert_eq!(status, 200, "{v}");
    v["blob"].clone()
}

/// Create a post (with an image when `blob` is given); returns its rkey and
/// CID.
async fn create_post(c: &Client, text: &str, blob: Option<&Value>) -> (String, String) {
    let mut record = json!({
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2025-01-01T00:00:00.000Z",
    });
    if let Some(b) = blob {
        record["embed"] = json!({
            "$type": "app.bsky.embed.images",
            "images": [{"alt": "", "image": b}],
        });
    }
    let v = post(
        c,
        "com.atproto.repo.createRecord",
        json!({"repo": c.did, "collection": "app.bsky.feed.post", "record": record}),
    )
    .await;
    let uri = v["uri"].as_str().unwrap();
    (
        uri.rsplit('/').next().unwrap().to_owned(),
        v["cid"].as_str().unwrap().to_owned(),
    )
}

async fn delete_post(c: &Client, rkey: &str) {
    post(
        c,
        "com.atproto.repo.deleteRecord",
        json!({"repo": c.did, "collection": "app.bsky.feed.post", "rkey": rkey}),
    )
    .await;
}

/// Bytes that differ per `i` (so every blob is a new CID).
fn blob_bytes(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One acknowledged write, in acknowledgement order.
#[derive(Clone, Debug)]
enum Acked {
    /// A post that is never deleted, maybe with a blob.
    Kept {
        rkey: String,
        cid: String,
        blob: Option<String>,
    },
    /// A post (with a blob) that is deleted again right away: its blob file
    /// goes away while the backup runs.
    Deleted { rkey: String },
}

/// Concurrent write loops in the backup test.
const WRITERS: usize = 3;

/// Writes until `stop`: mostly plain posts, every 4th with a new image,
/// every 5th a post with an image that is deleted at once. `id` keeps the
/// blobs of concurrent loops apart.
async fn write_loop(
    id: usize,
    server: Arc<InProcess>,
    log: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<Mutex<bool>>,
) {
    let mut n = 0usize;
    while !*stop.lock().unwrap() {
        n += 1;
        let i = n * WRITERS + id;
        if n.is_multiple_of(5) {
            let b = upload(&server, &blob_bytes(i, 2000 + i)).await;
            let (rkey, _) = create_post(&server, &format!("gone {i}"), Some(&b)).await;
            delete_post(&server, &rkey).await;
            log.lock().unwrap().push(Acked::Deleted { rkey });
        } else if n.is_multiple_of(4) {
            let b = upload(&server, &blob_bytes(i, 3000 + i)).await;
            let cid = b["ref"]["$link"].as_str().unwrap().to_owned();
            let (rkey, rcid) = create_post(&server, &format!("pic {i}"), Some(&b)).await;
            log.lock().unwrap().push(Acked::Kept {
                rkey,
                cid: rcid,
                blob: Some(cid),
            });
        } else {
            let (rkey, cid) = create_post(&server, &format!("post {i}"), None).await;
            log.lock().unwrap().push(Acked::Kept {
                rkey,
                cid,
                blob: None,
            });
        }
    }
}

/// A temporary directory on another filesystem than the default temp dir
/// (tmpfs at /dev/shm) if the machine has one.
fn other_filesystem() -> tempfile::TempDir {
    use std::os::unix::fs::MetadataExt;
    let tmp = std::env::temp_dir();
    let shm = Path::new("/dev/shm");
    match (std::fs::metadata(&tmp), std::fs::metadata(shm)) {
        (Ok(a), Ok(b)) if a.dev() != b.dev() => {
            tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
        }
        _ => tempfile::tempdir().unwrap(),
    }
}

/// The one backup directory under `root`.
fn only_backup(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// The N in "perch seq bump --to N" in `out`.
fn suggested_bump(out: &str) -> i64 {
    let at = out.find("perch seq bump --to ").expect("bump instructions") + 20;
    out[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_writing_then_restore_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Another filesystem when there is one (as a USB disk would be), so
    // blobs are copied, not hard-linked.
    let other = other_filesystem();
    let backups = other.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let fresh = dir.path().join("fresh");
    let server = Arc::new(start(&data).await);

    // Some history first, then writes that keep going through the backup.
    for i in 0..20 {
        create_post(&server, &format!("before {i}"), None).await;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let halt = Arc::new(Mutex::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            tokio::spawn(write_loop(
                id,
                Arc::clone(&server),
                Arc::clone(&log),
                Arc::clone(&halt),
            ))
        })
        .collect();
    // Until every kind of write (plain, with an image, deleted) has been acknowledged at
    // least once: on a loaded machine a fixed pause may see only plain posts.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = log.lock().unwrap();
        let pics = log
            .iter()
            .any(|a| matches!(a, Acked::Kept { blob: Some(_), .. }));
        let gone = log.iter().any(|a| matches!(a, Acked::Deleted { .. }));
        if (pics && gone && log.len() >= 5) || std::time::Instant::now() > deadline {
            break;
        }
    }

    // Everything in the log now was acknowledged before the backup started.
    let cutoff = log.lock().unwrap().len();
    let args = ["backup", s(&backups), "--dev", "--data-dir", s(&data)].map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        perch(&a)
    })
    .await
    .unwrap();
    let ended = log.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    *halt.lock().unwrap() = true;
    for w in writers {
        w.await.unwrap();
    }
    assert!(out.status.success(), "{}", text(&out));
    // The loops never pause, so writes were running from before the
    // backup started until after it ended.
    assert!(cutoff >= 5, "only {cutoff} writes before the backup");
    assert!(
        log.lock().unwrap().len() > ended,
        "no writes after the backup"
    );
    eprintln!(
        "{cutoff} writes acknowledged before the backup, {} while it ran",
        ended - cutoff
    );
    let acked: Vec<Acked> = log.lock().unwrap()[..cutoff].to_vec();
    let backup = only_backup(&backups);

    // Restore into a fresh directory.
    let out = perch(&["restore", s(&backup), "--dev", "--data-dir", s(&fresh)]);
    assert!(out.status.success(), "{}", text(&out));
    let restore_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let next = suggested_bump(&restore_out);

    // The restored database: intact, the repo verifies, every acknowledged
    // write is there with its CID, every blob file matches its CID.
    {
        let conn = rusqlite::Connection::open(fresh.join("perch.sqlite")).unwrap();
        let db = perch::store::snapshot::open_read_only(&fresh.join("perch.sqlite")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let root = perch::store::repo::get_root(&db).unwrap().unwrap();
        let car = write_repo_car(&SqlBlocks(&db), &root.commit_cid, Vec::new()).unwrap();
        let key = perch::keys::KeyDir::open(&fresh)
            .unwrap()
            .keypair(perch::keys::REPO_KEY)
            .unwrap()
            .unwrap();
        assert_eq!(
            key.did_key(),
            server.app.repo_key.did_key(),
            "same repo key"
        );
        let loaded = load_repo_car(
            car.as_slice(),
            CarLimits::default(),
            Some(&key.public_key()),
        )
        .expect("the restored repo verifies");
        assert_eq!(loaded.commit_cid, root.commit_cid);
        let count = perch::store::repo::record_count(&db).unwrap();
        assert_eq!(loaded.record_count as i64, count);
        assert!(
            count
                >= 20
                    + acked
                        .iter()
                        .filter(|a| matches!(a, Acked::Kept { .. }))
                        .count() as i64
        );

        let blob_root = fresh.join("blobs");
        let (mut kept, mut blobs, mut deleted) = (0, 0, 0);
        for a in &acked {
            match a {
                Acked::Kept { rkey, cid, blob } => {
                    let got = perch::store::repo::get_record(&db, "app.bsky.feed.post", rkey)
                        .unwrap()
                        .unwrap_or_else(|| panic!("acknowledged record {rkey} is missing"));
                    assert_eq!(&got.to_string(), cid, "record {rkey}");
                    kept += 1;
                    if let Some(b) = blob {
                        let c = perch::blobs::parse_blob_cid(b).unwrap();
                        let bytes = std::fs::read(blob_root.join(perch::blobs::relative_path(&c)))
                            .unwrap_or_else(|e| panic!("blob {b}: {e}"));
                        assert_eq!(perch::cid::for_raw(&bytes), c, "blob {b} bytes");
                        blobs += 1;
                    }
                }
                Acked::Deleted { rkey } => {
                    assert!(
                        perch::store::repo::get_record(&db, "app.bsky.feed.post", rkey)
                            .unwrap()
                            .is_none(),
                        "deleted record {rkey} came back"
                    );
                    deleted += 1;
                }
            }
        }
        assert!(
            kept > 0 && blobs > 0 && deleted > 0,
            "{kept} {blobs} {deleted}"
        );
        // Every blob the restored database lists has its file.
        let mut st = conn.prepare("SELECT cid FROM blob").unwrap();
        let listed: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for b in listed {
            let c = perch::blobs::parse_blob_cid(&b).unwrap();
            assert!(
                blob_root.join(perch::blobs::relative_path(&c)).is_file(),
                "blob {b} listed but not restored"
            );
        }
    }

    // The restored box refuses to serve until the seq has moved on.
    let out = perch(&[
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        s(&fresh),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("perch seq bump --to {next}")),
        "{err}"
    );
    let low = perch(&["seq", "bump", "--to", "2", "--dev", "--data-dir", s(&fresh)]);
    assert_eq!(low.status.code(), Some(1), "{}", text(&low));
    let bump = perch(&[
        "seq",
        "bump",
        "--to",
        &next.to_string(),
        "--dev",
        "--data-dir",
        s(&fresh),
    ]);
    assert!(bump.status.success(), "{}", text(&bump));
    // Above the bump, the restored repo is announced (#identity at N, #sync
    // at N+1), so the head is past the backup's seq and a relay whose cursor
    // is there is not told its cursor is in the future.
    let status = perch(&["status", "--dev", "--data-dir", s(&fresh)]);
    assert!(
        text(&status).contains(&format!("last seq {}", next + 1)),
        "{}",
        text(&status)
    );

    // Now it serves the restored repo, and new events continue at N.
    let mut served = Launch::default().start(&fresh);
    let busy = perch(&[
        "restore",
        s(&backup),
        "--force",
        "--dev",
        "--data-dir",
        s(&fresh),
    ]);
    let mut c = Client::one_shot(served.addr);
    c.sign_in("alice.test", PASSWORD).await;
    let (status, v) = c
        .post(
            "com.atproto.repo.createRecord",
            &json!({"repo": server.did, "collection": "app.bsky.feed.post",
                    "record": {"$type": "app.bsky.feed.post", "text": "after", "createdAt": "2025-01-01T00:00:00.000Z"}}),
        )
        .await;
    served.stop();
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    assert!(text(&busy).contains("stop it first"), "{}", text(&busy));
    assert_eq!(status, 200, "{v}");
    let conn = rusqlite::Connection::open(fresh.join("perch.sqlite")).unwrap();
    let db = perch::store::snapshot::open_read_only(&fresh.join("perch.sqlite")).unwrap();
    assert_eq!(perch::store::repo::last_seq(&db).unwrap(), Some(next + 2));
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM event WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([next], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds, ["identity", "sync", "commit"]);
    drop(server);
}

/// A data dir with an account (made by the binary) and one backup of it.
fn account_and_backup(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    let o = perch(&[
        "account",
        "create",
        "--dev",
        "--data-dir",
        s(&data),
        "--handle",
        "bob.test",
        "--password",
        "pw pw pw pw",
        "--did-method",
        "web",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let backups = root.join("backups");
    std::fs::create_dir(&backups).unwrap();
    let o = perch(&["backup", s(&backups), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    (data, only_backup(&backups))
}

/// `perch backup DIR` refuses a missing DIR, as the schedule does (the empty mount point of
/// an unmounted USB disk would fill the SD card) and creates nothing; a backup on the data's
/// own disk says that it does not survive that disk.
#[test]
fn backup_refuses_a_missing_directory_and_warns_about_the_same_disk() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = account_and_backup(dir.path());
    let missing = dir.path().join("usb").join("perch-backups");
    let o = perch(&["backup", s(&missing), "--dev", "--data-dir", s(&data)]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("does not exist (is the disk mounted?)"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("usb").exists(), "nothing created");

    let o = perch(&[
        "backup",
        s(&dir.path().join("backups")),
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("is on the same disk as the data"),
        "{}",
        text(&o)
    );

    let other = other_filesystem();
    let elsewhere =
        std::fs::metadata(other.path()).unwrap().dev() != std::fs::metadata(&data).unwrap().dev();
    let o = perch(&["backup", s(other.path()), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).contains("is on the same disk as the data"),
        !elsewhere,
        "{}",
        text(&o)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Entries of `dir` other than the lock file.
fn contents(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".serve.lock")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn restore_refuses_damaged_backups_and_seq_going_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backup) = account_and_backup(dir.path());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let backup_seq = manifest["seq"].as_i64().unwrap();
    assert!(backup_seq > 0);

    // One flipped byte anywhere: refused, and the target is left alone.
    for victim in ["perch.sqlite", "keys/repo-signing.k256"] {
        let bad = dir.path().join(format!("bad-{}", victim.replace('/', "-")));
        copy_dir(&backup, &bad);
        let mut bytes = std::fs::read(bad.join(victim)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(bad.join(victim), &bytes).unwrap();
        let target = dir.path().join("target");
        let o = perch(&["restore", s(&bad), "--dev", "--data-dir", s(&target)]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("does not match its checksum"),
            "{}",
            text(&o)
        );
        assert!(text(&o).contains(victim), "{}", text(&o));
        assert!(contents(&target).is_empty(), "{:?}", contents(&target));
    }
    // A missing file, and a manifest that points outside the data dir.
    let bad = dir.path().join("bad-missing");
    copy_dir(&backup, &bad);
    std::fs::remove_file(bad.join("keys/session-secret")).unwrap();
    let o = perch(&[
        "restore",
        s(&bad),
        "--dev",
        "--data-dir",
        s(&dir.path().join("t2")),
    ]);
    assert!(
        text(&o).contains("missing keys/session-secret"),
        "{}",
        text(&o)
    );
    let mut m = manifest.clone();
    m["files"][0]["path"] = json!("../../etc/evil");
    std::fs::write(bad.join("manifest.json"), m.to_string()).unwrap();
    let o = perch(&[
        "restore",
        s(&bad),
        "--dev",
        "--data-dir",
        s(&dir.path().join("t3")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("not a path a perch backup holds"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("etc").exists());

    // Over the live data dir: not without --force.
    let o = perch(&["restore", s(&backup), "--dev", "--data-dir", s(&data)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not empty"), "{}", text(&o));

    // The data dir has moved on past the backup's seq: restoring would
    // make seq go backwards, even with --force.
    let o = perch(&[
        "seq",
        "bump",
        "--to",
        "500",
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = perch(&[
        "restore",
        s(&backup),
        "--force",
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("has firehose seq 499"), "{}", text(&o));
    assert!(text(&o).contains("go backwards"), "{}", text(&o));
    let o = perch(&[
        "restore",
        s(&backup),
        "--force",
        "--seq-floor",
        "400",
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(contents(&data).contains(&"perch.sqlite".to_owned()));

    // With a floor above it: restored, old contents kept aside, no marker,
    // and the server may start at once.
    let o = perch(&[
        "restore",
        s(&backup),
        "--force",
        "--seq-floor",
        "1000",
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let names = contents(&data);
    assert!(
        names.iter().any(|n| n.starts_with(".replaced-")),
        "{names:?}"
    );
    assert!(
        !names.contains(&"restore-pending.json".to_owned()),
        "{names:?}"
    );
    let conn = rusqlite::Connection::open(data.join("perch.sqlite")).unwrap();
    let db = perch::store::snapshot::open_read_only(&data.join("perch.sqlite")).unwrap();
    // #identity and #sync announce the restored repo from the floor on.
    assert_eq!(perch::store::repo::highest_seq(&db).unwrap(), 1001);
    assert_eq!(
        perch::store::repo::events_after(&db, 999, 10)
            .unwrap()
            .len(),
        2
    );
    drop(conn);
    Launch::default().start(&data).stop();

    // A backup root instead of a backup: told which one to pick.
    let o = perch(&[
        "restore",
        s(backup.parent().unwrap()),
        "--dev",
        "--data-dir",
        s(&dir.path().join("t4")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(s(&backup)), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_archive_lists_with_tar_and_its_car_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;
    let mut blobs = Vec::new();
    for i in 0..12usize {
        let b = if i.is_multiple_of(3) {
            let b = upload(&server, &blob_bytes(i, 5000 + i)).await;
            blobs.push(b["ref"]["$link"].as_str().unwrap().to_owned());
            Some(b)
        } else {
            None
        };
        create_post(&server, &format!("x {i}"), b.as_ref()).await;
    }
    // An upload no record uses is not part of the export.
    upload(&server, b"unreferenced").await;
    let prefs = json!([{"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false}]);
    post(
        &server,
        "app.bsky.actor.putPreferences",
        json!({ "preferences": prefs }),
    )
    .await;

    let file = dir.path().join("out.tar");
    let o = perch(&["export", s(&file), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected = vec![
        "export.json".to_owned(),
        "repo.car".to_owned(),
        "preferences.json".to_owned(),
        "blobs/".to_owned(),
    ];
    let mut sorted = blobs.clone();
    sorted.sort();
    expected.extend(sorted.iter().map(|b| format!("blobs/{b}")));
    assert_eq!(names, expected);

    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    let x = Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    let car = std::fs::read(out.join("repo.car")).unwrap();
    let loaded = load_repo_car(
        car.as_slice(),
        CarLimits::default(),
        Some(&server.app.repo_key.public_key()),
    )
    .expect("the exported CAR verifies");
    assert_eq!(loaded.record_count, 12);
    for b in &blobs {
        let bytes = std::fs::read(out.join("blobs").join(b)).unwrap();
        assert_eq!(perch::cid::for_raw(&bytes).to_string(), *b);
    }
    let p: Value =
        serde_json::from_slice(&std::fs::read(out.join("preferences.json")).unwrap()).unwrap();
    assert_eq!(p["preferences"], prefs);
    let info: Value =
        serde_json::from_slice(&std::fs::read(out.join("export.json")).unwrap()).unwrap();
    assert_eq!(info["did"], json!(server.did));
    assert_eq!(info["records"], json!(12));

    // "-" writes the same archive to stdout.
    let o = perch(&["export", "-", "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    let mut tar = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    tar.stdin.take().unwrap().write_all(&o.stdout).unwrap();
    let listed = tar.wait_with_output().unwrap();
    let names2: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(names2, expected);
}

/// Backup and restore figures for a 10,000-record repo with 50 blobs:
/// `cargo test --test it backup::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by name"]
async fn measure_backup_of_10k_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;
    let started = Instant::now();
    for batch in 0..50 {
        let writes: Vec<Value> = (0..200)
            .map(|i| {
                json!({
                    "$type": "com.atproto.repo.applyWrites#create",
                    "collection": "app.bsky.feed.post",
                    "value": {
                        "$type": "app.bsky.feed.post",
                        "text": format!("post {batch}/{i}: the quick brown fox jumps over the lazy dog"),
                        "createdAt": "2025-01-01T00:00:00.000Z",
                    },
                })
            })
            .collect();
        post(
            &server,
            "com.atproto.repo.applyWrites",
            json!({"repo": server.did, "writes": writes}),
        )
        .await;
    }
    for i in 0..50 {
        let b = upload(&server, &blob_bytes(i, 100 * 1024)).await;
        create_post(&server, &format!("pic {i}"), Some(&b)).await;
    }
    eprintln!(
        "10,050 records and 50 blobs of 100 KiB written in {:?}",
        started.elapsed()
    );
    let db_size = std::fs::metadata(data.join("perch.sqlite")).unwrap().len()
        + std::fs::metadata(data.join("perch.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    eprintln!("live database + WAL: {db_size} bytes");

    let other = other_filesystem();
    for (label, target) in [
        ("same filesystem (blobs hard-linked)", dir.path().join("b1")),
        ("second backup into the same dir", dir.path().join("b1")),
        ("another filesystem (blobs copied)", other.path().join("b2")),
        ("another filesystem, second backup", other.path().join("b2")),
    ] {
        let t = Instant::now();
        std::fs::create_dir_all(&target).unwrap();
        let o = perch(&["backup", s(&target), "--dev", "--data-dir", s(&data)]);
        assert!(o.status.success(), "{}", text(&o));
        eprintln!(
            "{label}: {:?} (whole process)\n{}",
            t.elapsed(),
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let backup = newest(&other.path().join("b2"));
    let t = Instant::now();
    let fresh = dir.path().join("fresh");
    let o = perch(&["restore", s(&backup), "--dev", "--data-dir", s(&fresh)]);
    assert!(o.status.success(), "{}", text(&o));
    eprintln!(
        "restore: {:?}\n{}",
        t.elapsed(),
        String::from_utf8_lossy(&o.stdout)
    );
    let t = Instant::now();
    let file = dir.path().join("e.tar");
    let o = perch(&["export", s(&file), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    eprintln!(
        "export: {:?}\n{}",
        t.elapsed(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn newest(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs.pop().unwrap()
}

/// Backup, restore and export say how far they are: on a terminal a line redrawn in place
/// (checked under a pseudo-terminal from `script`), elsewhere plain lines.
#[tokio::test]
async fn backup_restore_and_export_report_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = start(&data).await;
        for i in 0..3 {
            let blob = upload(&server, &blob_bytes(i, 20_000)).await;
            create_post(&server, &format!("with image {i}"), Some(&blob)).await;
        }
    }
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    // Not a terminal: the line with the work ahead, plainly.
    let o = perch(&["backup", s(&backups), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("backup: 0/3 blobs, 0 B of 58.6 KiB, 0%"),
        "{err}"
    );
    assert!(!err.contains('\r'), "{err}");

    // A terminal: redrawn in place, ending at 3 of 3, then cleared for the summary.
    let tty = dir.path().join("backups-tty");
    std::fs::create_dir(&tty).unwrap();
    let bin = crate::support::process::bin();
    let o = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} backup {} --dev --data-dir {}",
            bin.display(),
            s(&tty),
            s(&data)
        ))
        .arg("/dev/null")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{shown}");
    assert!(
        shown.contains("\rbackup: 3/3 blobs, 58.6 KiB of 58.6 KiB, 100%"),
        "{shown:?}"
    );
    // Drawn in place from the first line to the last, which then stays above the summary.
    assert!(
        shown.contains("\rbackup: 0/3 blobs, 0 B of 58.6 KiB, 0%"),
        "{shown:?}"
    );
    assert!(shown.contains("100%, "), "{shown:?}");
    assert!(shown.contains("\x1b[K\r\nbackup written to"), "{shown:?}");
    assert!(shown.contains("backup written to"), "{shown}");

    let o = perch(&[
        "export",
        s(&dir.path().join("e.tar")),
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("export: 0/3 blobs"),
        "{}",
        text(&o)
    );

    let o = perch(&[
        "restore",
        s(&only_backup(&backups)),
        "--dev",
        "--data-dir",
        s(&dir.path().join("restored")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restore: 0/"),
        "{}",
        text(&o)
    );
}
