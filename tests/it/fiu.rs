//! I/O faults (reliability plan items 4–6): the glibc debug build of perch
//! runs under libfiu's `fiu-run -x`, and `fiu/nth.c` (an LD_PRELOAD helper
//! built here with `cc`) fails the Nth call, N = 1…30, of one group of
//! libfiu's POSIX points during one createRecord or one uploadBlob:
//! fsync/fdatasync, write/pwrite/ftruncate on files, open, rename/unlink.
//!
//! After every injected fault: no panic, the process alive, `integrity_check`
//! ok, no blob row without its file, and the reply either a 200 whose data
//! then survives every restart, or a clean 5xx `{"error","message"}`. The
//! next write either succeeds or gets 503 `StorageUnhealthy`; in that state
//! reads still work, `/readyz` says so (503, `storage.healthy: false`) and so
//! does the systemd status line, until a restart clears it.
//!
//! Skipped (loudly) when `fiu-run` or `cc` is missing; under CI that is a
//! failure (`.ci/run` installs fiu-utils and libfiu-dev).

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::client::json_of;
use crate::support::process::{Launch, Process};
use crate::support::serial;
use crate::support::{Client, db};

const NOTES: &str = "com.example.fiu.note";
const MAX_N: u64 = 30;
const GROUPS: [&str; 4] = ["sync", "write", "open", "rename/unlink"];

fn missing_tools() -> Option<String> {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
    };
    if !Path::new("/usr/bin/fiu-run").exists() && !runs("fiu-run", "-h") {
        return Some("fiu-run is not installed (apt-get install fiu-utils libfiu-dev)".into());
    }
    if !Path::new("/usr/include/fiu-control.h").exists() {
        return Some("libfiu-dev is not installed (apt-get install libfiu-dev)".into());
    }
    if !runs("cc", "--version") {
        return Some("no C compiler (cc)".into());
    }
    None
}

/// Build the Nth-call helper next to the test's files.
fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fiu/nth.c");
    let out = dir.join("nth.so");
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .args(["-lfiu", "-ldl", "-lpthread"])
        .output()
        .expect("run cc");
    assert!(
        o.status.success(),
        "building {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The shared control block of `nth.c`.
struct Control(std::fs::File, u64);

impl Control {
    fn new(path: &Path) -> Control {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        f.set_len(4096).unwrap();
        Control(f, 0)
    }

    fn write(&self, words: [u64; 5]) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.0.write_all_at(&bytes, 0).unwrap();
    }

    /// Fail the `n`th call of `group` from now on.
    fn arm(&mut self, group: usize, n: u64) {
        self.1 += 1;
        self.write([self.1, group as u64, n, 0, 0]);
    }

    /// Stop, and return (calls counted, failures injected).
    fn disarm(&self) -> (u64, u64) {
        let mut buf = [0u8; 40];
        self.0.read_exact_at(&mut buf, 0).unwrap();
        let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        let counts = (word(3), word(4));
        self.write([0; 5]);
        counts
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    CreateRecord,
    UploadBlob,
}

#[derive(Default)]
struct Acked {
    records: BTreeMap<String, String>,
    blobs: BTreeMap<String, Vec<u8>>,
}

#[derive(Default, Debug)]
struct Figures {
    points: u64,
    ok_200: u64,
    errors_5xx: u64,
    bad_replies: u64,
    lost_after_200: u64,
    panics: u64,
    integrity_ok: u64,
    dangling_blobs: u64,
    unhealthy: u64,
    recovered: u64,
    restarts: u64,
    /// Writes answered 5xx that were there after the restart (allowed: a
    /// 5xx says nothing about the outcome).
    failed_then_present: u64,
}

struct Harness {
    data: PathBuf,
    launch: Launch,
    perch: Process,
    session: Client,
    notify: UnixDatagram,
}

impl Harness {
    fn restart(&mut self) {
        self.perch.kill();
        self.perch = self.launch.start(&self.data);
        self.session = self.session.at(self.perch.addr);
    }

    fn panicked(&self) -> bool {
        self.perch.output().contains("panicked at")
    }

    /// STATUS lines perch sent since the last call.
    fn status_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            out.extend(
                m.lines()
                    .filter_map(|l| l.strip_prefix("STATUS="))
                    .map(str::to_owned),
            );
        }
        out
    }
}

/// The request under test; `Some(key)` identifies what a 200 acknowledged.
async fn request(
    s: &Client,
    kind: Kind,
    tag: &str,
) -> (Result<(u16, Value), String>, Option<(String, Vec<u8>)>) {
    match kind {
        Kind::CreateRecord => {
            let r = s
                .try_create_record(
                    NOTES,
                    tag,
                    json!({"$type": NOTES, "text": tag, "createdAt": "2026-01-01T00:00:00Z"}),
                )
                .await;
            (r, None)
        }
        Kind::UploadBlob => {
            let data: Vec<u8> = tag.bytes().cycle().take(20_000).collect();
            let r = s.try_upload_blob(data.clone()).await;
            (r, Some((tag.to_owned(), data)))
        }
    }
}

fn record_ack(acked: &mut Acked, kind: Kind, body: &Value, blob: Option<(String, Vec<u8>)>) {
    match kind {
        Kind::CreateRecord => {
            acked.records.insert(
                body["uri"].as_str().unwrap_or_default().to_owned(),
                body["cid"].as_str().unwrap_or_default().to_owned(),
            );
        }
        Kind::UploadBlob => {
            let cid = body["blob"]["ref"]["$link"].as_str().unwrap_or_default();
            if let Some((_, data)) = blob {
                acked.blobs.insert(cid.to_owned(), data);
            }
        }
    }
}

/// Acknowledged writes missing from the data dir (records through the
/// server, blob rows and bytes on disk).
async fn lost(h: &Harness, acked: &Acked) -> u64 {
    let have = h.session.list_records(NOTES).await;
    let mut lost = 0;
    for (uri, cid) in &acked.records {
        if have.get(uri) != Some(cid) {
            eprintln!("LOST after 200: {uri}");
            lost += 1;
        }
    }
    let conn = rusqlite::Connection::open(h.data.join("perch.sqlite")).unwrap();
    for (cid, data) in &acked.blobs {
        let row: i64 = conn
            .query_row("SELECT count(*) FROM blob WHERE cid = ?1", [cid], |r| {
                r.get(0)
            })
            .unwrap();
        let c = perch::blobs::parse_blob_cid(cid).unwrap();
        let bytes = std::fs::read(h.data.join("blobs").join(perch::blobs::relative_path(&c)));
        if row != 1 || bytes.ok().as_deref() != Some(&data[..]) {
            eprintln!("LOST after 200: blob {cid}");
            lost += 1;
        }
    }
    lost
}

/// `integrity_check` ok, and the number of blob rows without their file.
fn disk_check(data: &Path) -> (bool, u64) {
    let ok = db::integrity_ok(&data.join("perch.sqlite"));
    let conn = rusqlite::Connection::open(data.join("perch.sqlite")).unwrap();
    let rows: Vec<String> = conn
        .prepare("SELECT cid FROM blob")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let dangling = rows
        .iter()
        .filter(|cid| {
            let c = perch::blobs::parse_blob_cid(cid).unwrap();
            !data
                .join("blobs")
                .join(perch::blobs::relative_path(&c))
                .is_file()
        })
        .count() as u64;
    (ok, dangling)
}

fn clean_error(v: &Value) -> bool {
    v["error"].is_string() && v["message"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nth_call_io_faults_never_lose_an_acknowledged_write() {
    let _turn = serial::one_at_a_time().await;
    if let Some(why) = missing_tools() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the fault-injection test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let shim = build_shim(dir.path());
    let ctl_path = dir.path().join("fiu-ctl");
    let mut ctl = Control::new(&ctl_path);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let launch = Launch {
        wrapper: vec![
            "fiu-run".into(),
            "-x".into(),
            "-f".into(),
            "".into(),
            "sh".into(),
            "-c".into(),
            r#"LD_PRELOAD="$PERCH_FIU_SHIM $LD_PRELOAD" exec "$@""#.into(),
            "sh".into(),
        ],
        env: vec![
            ("PERCH_FIU_SHIM".into(), shim.into()),
            ("PERCH_FIU_CTL".into(), ctl_path.clone().into()),
            ("NOTIFY_SOCKET".into(), notify_path.into()),
        ],
        ..Launch::default()
    };
    let data = dir.path().join("data");
    let perch = launch.start(&data);
    let password = perch.dev_account().expect("the dev account line").password;
    let session = Client::dev_session(perch.addr, &password).await;
    let mut h = Harness {
        data,
        launch,
        perch,
        session,
        notify,
    };
    let mut acked = Acked::default();
    let mut f = Figures::default();

    // Warm up: the blob directories and the WAL exist before counting.
    let (r, blob) = request(&h.session, Kind::UploadBlob, "warm-up").await;
    let (st, b) = r.expect("warm-up upload");
    assert_eq!(st, 200, "{b}");
    record_ack(&mut acked, Kind::UploadBlob, &b, blob);
    let (st, b) = h
        .session
        .try_create_record(
            NOTES,
            "warm-up",
            json!({"$type": NOTES, "text": "w", "createdAt": "2026-01-01T00:00:00Z"}),
        )
        .await
        .expect("warm-up record");
    assert_eq!(st, 200, "{b}");
    record_ack(&mut acked, Kind::CreateRecord, &b, None);
    let probe_uri = b["uri"].as_str().unwrap().to_owned();

    let mut probes = 0u64;
    for kind in [Kind::CreateRecord, Kind::UploadBlob] {
        for (group, gname) in GROUPS.iter().enumerate() {
            for n in 1..=MAX_N {
                let tag = format!("{kind:?}-{group}-{n}").to_lowercase();
                ctl.arm(group, n);
                let (reply, blob) = request(&h.session, kind, &tag).await;
                let (calls, fired) = ctl.disarm();
                if fired == 0 {
                    // The request made fewer than n such calls.
                    if let Ok((200, b)) = &reply {
                        record_ack(&mut acked, kind, b, blob);
                    }
                    if calls < n {
                        break;
                    }
                    continue;
                }
                f.points += 1;
                eprintln!(
                    "fault: {kind:?} {gname} call {n} of {calls}: {}",
                    match &reply {
                        Ok((st, b)) => format!("{st} {}", b["error"].as_str().unwrap_or("")),
                        Err(e) => e.clone(),
                    }
                );
                let mut failed_key = None;
                match &reply {
                    Ok((200, b)) => {
                        f.ok_200 += 1;
                        record_ack(&mut acked, kind, b, blob);
                    }
                    Ok((st, b)) if *st >= 500 && clean_error(b) => {
                        f.errors_5xx += 1;
                        failed_key = Some(tag.clone());
                    }
                    other => {
                        eprintln!("BAD REPLY: {kind:?} {gname} N={n}: {other:?}");
                        f.bad_replies += 1;
                    }
                }
                if h.panicked() || h.perch.child.try_wait().ok().flatten().is_some() {
                    eprintln!(
                        "PANIC or exit: {kind:?} {gname} N={n}:\n{}",
                        h.perch.output()
                    );
                    f.panics += 1;
                    h.restart();
                    f.restarts += 1;
                    continue;
                }

                // The next write, with no fault: done, or refused as unhealthy.
                probes += 1;
                let (st, b) = h
                    .session
                    .try_create_record(
                        NOTES,
                        &format!("probe-{probes}"),
                        json!({"$type": NOTES, "text": "probe", "createdAt": "2026-01-01T00:00:00Z"}),
                    )
                    .await
                    .expect("probe write");
                let restart = match st {
                    200 => {
                        f.recovered += 1;
                        record_ack(&mut acked, Kind::CreateRecord, &b, None);
                        false
                    }
                    503 if b["error"] == "StorageUnhealthy" => {
                        f.unhealthy += 1;
                        let (rst, rb) = h
                            .session
                            .try_fetch("GET", "/readyz", &[], Vec::new())
                            .await
                            .expect("readyz");
                        let ready = json_of(&rb);
                        assert_eq!(rst, 503, "{ready}");
                        assert_eq!(ready["storage"]["healthy"], false, "{ready}");
                        let (rkey, coll) = {
                            let mut p = probe_uri.rsplitn(3, '/');
                            (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
                        };
                        let (gst, _) = h
                            .session
                            .try_fetch(
                                "GET",
                                &format!(
                                    "/xrpc/com.atproto.repo.getRecord?repo={}&collection={coll}&rkey={rkey}",
                                    h.session.q_did()
                                ),
                                &[],
                                Vec::new(),
                            )
                            .await
                            .expect("getRecord");
                        assert_eq!(gst, 200, "reads keep working while unhealthy");
                        let (ust, ub) = h
                            .session
                            .try_upload_blob(b"x".to_vec())
                            .await
                            .expect("upload");
                        assert_eq!((ust, ub["error"].as_str()), (503, Some("StorageUnhealthy")));
                        // The status line may take a moment to follow.
                        let deadline = Instant::now() + Duration::from_secs(5);
                        let mut said = false;
                        while !said && Instant::now() < deadline {
                            said = h
                                .status_lines()
                                .iter()
                                .any(|l| l.starts_with("STORAGE FAILED"));
                            if !said {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        assert!(said, "no STORAGE FAILED status line");
                        true
                    }
                    _ => {
                        eprintln!("BAD PROBE after {kind:?} {gname} N={n}: {st} {b}");
                        f.bad_replies += 1;
                        true
                    }
                };
                let (ok, dangling) = disk_check(&h.data);
                f.integrity_ok += u64::from(ok);
                f.dangling_blobs += dangling;
                if restart {
                    h.restart();
                    f.restarts += 1;
                    h.status_lines();
                    f.lost_after_200 += lost(&h, &acked).await;
                    // What a 5xx left is either way right; count what stayed.
                    if let (Some(tag), Kind::CreateRecord) = (&failed_key, kind) {
                        let uri = format!("at://{}/{NOTES}/{tag}", h.session.did);
                        if h.session.list_records(NOTES).await.contains_key(&uri) {
                            f.failed_then_present += 1;
                        }
                    }
                    let (st, b) = h
                        .session
                        .try_create_record(
                            NOTES,
                            &format!("after-restart-{probes}"),
                            json!({"$type": NOTES, "text": "ok", "createdAt": "2026-01-01T00:00:00Z"}),
                        )
                        .await
                        .expect("write after restart");
                    assert_eq!(st, 200, "a restart clears the unhealthy state: {b}");
                    record_ack(&mut acked, Kind::CreateRecord, &b, None);
                }
            }
        }
    }
    h.restart();
    f.lost_after_200 += lost(&h, &acked).await;
    if h.panicked() {
        f.panics += 1;
    }
    println!(
        "fiu: points={} ok_200={} errors_5xx={} lost_after_200={} panics={} integrity_ok={}/{} \
         unhealthy={} recovered={} dangling_blobs={} bad_replies={} failed_then_present={} \
         restarts={} seconds={}",
        f.points,
        f.ok_200,
        f.errors_5xx,
        f.lost_after_200,
        f.panics,
        f.integrity_ok,
        f.points - f.panics,
        f.unhealthy,
        f.recovered,
        f.dangling_blobs,
        f.bad_replies,
        f.failed_then_present,
        f.restarts,
        started.elapsed().as_secs()
    );
    assert!(
        f.points >= 10,
        "few faults fired ({}): is libfiu wrapping perch's calls?",
        f.points
    );
    assert_eq!(f.lost_after_200, 0, "a 200 whose data was then missing");
    assert_eq!(f.panics, 0, "perch panicked or died");
    assert_eq!(
        f.bad_replies, 0,
        "replies that were neither 200 nor a clean 5xx"
    );
    assert_eq!(f.integrity_ok, f.points - f.panics, "integrity_check");
    assert_eq!(f.dangling_blobs, 0, "blob rows without their file");
    assert!(f.unhealthy > 0, "no fault made storage unhealthy");
}
