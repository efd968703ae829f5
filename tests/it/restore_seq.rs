//! Restoring an older backup (reliability plan item 7): back up a running
//! server, write more (the firehose moves on and a subscriber sees it), stop,
//! restore the older backup, start. A relay's cursor is at the last seq it
//! saw; the restored server must continue above it, announce the restored
//! repo with `#identity` and `#sync`, and sign with a rev above the last
//! one relays saw. Both ways a restore continues the seq: on a new box
//! (`perch restore` into an empty dir, then `perch seq bump`), and over the
//! old data dir (`perch restore --force --seq-floor`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::Client;
use crate::support::firehose::{self, Received};
use crate::support::process::{Launch, perch, text};

const NOTES: &str = "com.example.restore.note";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn write_notes(s: &Client, prefix: &str, n: usize) -> String {
    let mut rev = String::new();
    for i in 0..n {
        let (st, b) = s
            .try_create_record(
                NOTES,
                &format!("{prefix}-{i}"),
                json!({"$type": NOTES, "text": prefix, "createdAt": "2026-01-01T00:00:00Z"}),
            )
            .await
            .expect("createRecord");
        assert_eq!(st, 200, "{b}");
        rev = b["commit"]["rev"].as_str().unwrap().to_owned();
    }
    rev
}

/// Events received so far, waiting until at least `min` arrived.
async fn received(events: &Arc<Mutex<Vec<Received>>>, min: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = events.lock().unwrap().clone();
        if got.len() >= min || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a relay subscribed at `cursor` sees from the restored server, and
/// the rev of a write made there; counts what breaks the rules.
async fn after_restore(data: &Path, session: &Client, cursor: i64, rev_before: &str) -> (i64, u64) {
    let perch = Launch::default().start(data);
    let s = session.at(perch.addr);
    let events: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sub = tokio::spawn(firehose::subscribe(
        perch.addr,
        Some(cursor),
        Arc::clone(&events),
    ));
    let rev_after = write_notes(&s, &format!("after-{cursor}"), 1).await;
    let got = received(&events, 3).await;
    sub.abort();
    drop(perch);

    let mut regressions = 0;
    let first = got.first().map_or(0, |e| e.seq);
    for e in &got {
        if e.seq <= cursor {
            eprintln!(
                "SEQ: event {} {} is not above the relay's cursor {cursor}",
                e.kind, e.seq
            );
            regressions += 1;
        }
    }
    let kinds: Vec<&str> = got.iter().map(|e| e.kind.as_str()).collect();
    if kinds.get(..3) != Some(&["#identity", "#sync", "#commit"][..]) {
        eprintln!("expected #identity, #sync, then the new #commit; got {kinds:?}");
        regressions += 1;
    }
    let sync_rev = got
        .iter()
        .find(|e| e.kind == "#sync")
        .and_then(|e| {
            e.body
                .get("rev")
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    for (what, rev) in [
        ("#sync", sync_rev.as_str()),
        ("new commit", rev_after.as_str()),
    ] {
        if rev <= rev_before {
            eprintln!("REV: {what} rev {rev} is not above {rev_before}");
            regressions += 1;
        }
    }
    (first, regressions)
}

fn the_backup(root: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_backup_continues_seq_and_rev_and_announces_sync() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();

    let mut live = Launch::default().start(&data);
    let password = live.dev_account().expect("the dev account line").password;
    let session = Client::dev_session(live.addr, &password).await;
    let events: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sub = tokio::spawn(firehose::subscribe(live.addr, Some(0), Arc::clone(&events)));
    write_notes(&session, "before-backup", 5).await;
    let o = perch(&["backup", s(&backups), "--dev", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", text(&o));
    let backup = the_backup(&backups);
    let rev_before = write_notes(&session, "after-backup", 10).await;
    let count = events.lock().unwrap().len();
    let seen = received(&events, count.max(15)).await;
    sub.abort();
    let seq_before = seen.iter().map(|e| e.seq).max().unwrap();
    assert!(live.stop().success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["seq"].as_i64().unwrap() < seq_before,
        "the backup must be older than what the subscriber saw"
    );

    // A new box: restore into an empty dir, then move the seq on as told.
    let fresh = dir.path().join("fresh");
    let o = perch(&["restore", s(&backup), "--dev", "--data-dir", s(&fresh)]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let at = out.find("perch seq bump --to ").expect("bump instructions") + 20;
    let next: String = out[at..].chars().take_while(char::is_ascii_digit).collect();
    let o = perch(&[
        "seq",
        "bump",
        "--to",
        &next,
        "--dev",
        "--data-dir",
        s(&fresh),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("#identity and #sync"), "{}", text(&o));
    let (first_new_box, mut regressions) =
        after_restore(&fresh, &session, seq_before, &rev_before).await;

    // Over the old data dir, continuing from a floor.
    let floor = (seq_before + 1000).to_string();
    let o = perch(&[
        "restore",
        s(&backup),
        "--force",
        "--seq-floor",
        &floor,
        "--dev",
        "--data-dir",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (first_in_place, r) = after_restore(&data, &session, seq_before, &rev_before).await;
    regressions += r;

    println!(
        "restore: seq_before={seq_before} first_seq_after={first_in_place} \
         first_seq_after_new_box={first_new_box} regressions={regressions}"
    );
    assert!(first_in_place > seq_before && first_new_box > seq_before);
    assert_eq!(
        regressions, 0,
        "seq, rev or the announcement after a restore"
    );
}
