//! kill -9 during writes (reliability plan item 1): the real binary takes
//! concurrent createRecord / putRecord / deleteRecord / uploadBlob traffic,
//! is SIGKILLed at a random moment, and restarts on the same data directory.
//! After every kill: `integrity_check` is ok and no firehose event is lost,
//! changed or reused; after every restart: the repo verifies (signature, MST,
//! every record present), it holds exactly the acknowledged writes (plus, at
//! most, the one write per client that was in flight at the kill), and every
//! acknowledged blob comes back byte for byte.
//!
//! `cargo test --test it crash::` runs a few rounds; `PERCH_CRASH_ROUNDS=100` is the
//! long mode (`scripts/reliability.sh`). `PERCH_CRASH_SEED` replays a run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::client::json_of;
use crate::support::firehose::{self, Received};
use crate::support::process::{Launch, Process};
use crate::support::rng::Rng;
use crate::support::serial;
use crate::support::{Client, db};

const RECORDS: &str = "com.example.crash.note";
const BLOB_RECORDS: &str = "com.example.crash.attachment";
const WORKERS: usize = 6;

/// `perch serve --dev` on a fresh port; its output (logs and the dev
/// password line) goes to `log`.
fn start(data: &Path, log: &Path) -> Process {
    Launch::default().log(log).start(data)
}

/// What the server must hold: the last acknowledged state of every record and
/// every blob whose referencing record was acknowledged.
#[derive(Default)]
struct Model {
    /// at-uri → CID (`None`: deleted).
    records: BTreeMap<String, Option<String>>,
    /// The one unacknowledged write per client at the kill: at-uri → the
    /// state it would leave. Either outcome is correct.
    in_flight: HashMap<String, Option<String>>,
    /// blob CID → content.
    blobs: BTreeMap<String, Vec<u8>>,
    acked: u64,
}

/// A GET of `/xrpc/<path_and_query>` the server must answer.
async fn get(s: &Client, path_and_query: &str) -> (u16, bytes::Bytes) {
    s.request("GET", path_and_query, &[], Vec::new()).await
}

/// One client: writes until the server goes away. Every 200 is recorded in
/// the model before the next request; the request in flight at the kill is
/// recorded as ambiguous.
async fn client(s: Arc<Client>, model: Arc<Mutex<Model>>, mut rng: Rng, prefix: String) {
    let mut live: Vec<String> = vec![];
    for n in 0u64.. {
        let choice = rng.below(100);
        let text = format!("{prefix} {n} {}", rng.next());
        let created = "2026-01-01T00:00:00Z";
        if choice < 15 {
            // uploadBlob, then a record that references it.
            let len = 1 + rng.below(16 * 1024) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let r = s.try_upload_blob(data.clone()).await;
            let body = match r {
                Ok((200, body)) => body,
                Ok((status, b)) => panic!("uploadBlob answered {status}: {b}"),
                Err(_) => return,
            };
            let blob = body["blob"].clone();
            let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
            let rkey = format!("{prefix}-b{n}");
            let uri = format!("at://{}/{BLOB_RECORDS}/{rkey}", s.did);
            let body = json!({"repo": s.did, "collection": BLOB_RECORDS, "rkey": rkey,
                "record": {"$type": BLOB_RECORDS, "file": blob, "createdAt": created}});
            model
                .lock()
                .unwrap()
                .in_flight
                .insert(uri.clone(), Some(String::new()));
            let b = match s.try_post("com.atproto.repo.createRecord", &body).await {
                Ok((200, b)) => b,
                Ok((status, b)) => panic!("createRecord answered {status}: {b}"),
                Err(_) => return,
            };
            let mut m = model.lock().unwrap();
            m.in_flight.remove(&uri);
            m.records
                .insert(uri, Some(b["cid"].as_str().unwrap().to_owned()));
            m.blobs.insert(cid, data);
            m.acked += 2;
            continue;
        }
        let (nsid, uri, body) = if choice < 60 || live.is_empty() {
            let rkey = format!("{prefix}-{n}");
            let uri = format!("at://{}/{RECORDS}/{rkey}", s.did);
            live.push(uri.clone());
            let body = json!({"repo": s.did, "collection": RECORDS, "rkey": rkey,
                "record": {"$type": RECORDS, "text": text, "createdAt": created}});
            ("com.atproto.repo.createRecord", uri, body)
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let uri = live[i].clone();
            let rkey = uri.rsplit('/').next().unwrap().to_owned();
            if choice < 85 {
                let body = json!({"repo": s.did, "collection": RECORDS, "rkey": rkey,
                    "record": {"$type": RECORDS, "text": text, "createdAt": created}});
                ("com.atproto.repo.putRecord", uri, body)
            } else {
                live.swap_remove(i);
                let body = json!({"repo": s.did, "collection": RECORDS, "rkey": rkey});
                ("com.atproto.repo.deleteRecord", uri, body)
            }
        };
        // The state an unacknowledged write may leave: for a put, an unknown
        // new CID; marked with an empty string and matched loosely.
        let pending = (nsid != "com.atproto.repo.deleteRecord").then(String::new);
        model.lock().unwrap().in_flight.insert(uri.clone(), pending);
        let r = s.try_post(nsid, &body).await;
        let Ok((200, b)) = r else {
            if let Ok((status, b)) = r {
                panic!("{nsid} answered {status}: {b}");
            }
            return;
        };
        let mut m = model.lock().unwrap();
        m.in_flight.remove(&uri);
        let state = b["cid"].as_str().map(str::to_owned);
        m.records.insert(uri, state);
        m.acked += 1;
    }
}

/// After a restart: the repo verifies and holds exactly what the model says.
/// Returns the number of acknowledged writes found missing or changed.
async fn check_online(s: &Client, data: &Path, model: &mut Model, rng: &mut Rng) -> u64 {
    // getRepo, verified end to end under the account's signing key.
    let (st, car) = get(s, &format!("com.atproto.sync.getRepo?did={}", s.q_did())).await;
    assert_eq!(st, 200);
    let key = perch::keys::KeyDir::open(data)
        .unwrap()
        .keypair(perch::keys::REPO_KEY)
        .unwrap()
        .unwrap()
        .public_key();
    let repo = perch::repo::export::load_repo_car(
        &car[..],
        perch::repo::car::CarLimits::default(),
        Some(&key),
    )
    .expect("the repo verifies");
    assert_eq!(repo.commit.did, s.did);
    let entries = perch::repo::mst::Mst::load(repo.commit.data)
        .entries(&repo.blocks)
        .unwrap();
    let in_repo: BTreeMap<String, String> = entries
        .into_iter()
        .map(|(k, c)| {
            let k = String::from_utf8(k).unwrap();
            (format!("at://{}/{k}", s.did), c.to_string())
        })
        .collect();

    // The index agrees with the MST.
    let mut listed = s.list_records(RECORDS).await;
    listed.extend(s.list_records(BLOB_RECORDS).await);
    assert_eq!(listed, in_repo, "listRecords disagrees with the MST");

    let mut lost = 0;
    let uris: HashSet<String> = model
        .records
        .keys()
        .chain(model.in_flight.keys())
        .chain(in_repo.keys())
        .cloned()
        .collect();
    for uri in uris {
        let have = in_repo.get(&uri).cloned();
        let want = model.records.get(&uri).cloned().flatten();
        let ok = have == want
            || match model.in_flight.get(&uri) {
                Some(None) => have.is_none(),
                Some(Some(_)) => have.is_some(),
                None => false,
            };
        if !ok {
            eprintln!("LOST: {uri}: acknowledged {want:?}, found {have:?}");
            lost += 1;
        }
        model.records.insert(uri, have);
    }
    model.in_flight.clear();

    // getRecord on a sample, through the HTTP read path.
    let live: Vec<(&String, &String)> = model
        .records
        .iter()
        .filter_map(|(u, c)| c.as_ref().map(|c| (u, c)))
        .collect();
    for _ in 0..live.len().min(10) {
        let (uri, cid) = live[rng.below(live.len() as u64) as usize];
        let mut parts = uri.rsplitn(3, '/');
        let (rkey, coll) = (parts.next().unwrap(), parts.next().unwrap());
        let (st, b) = get(
            s,
            &format!(
                "com.atproto.repo.getRecord?repo={}&collection={coll}&rkey={rkey}",
                s.q_did()
            ),
        )
        .await;
        assert_eq!(st, 200, "{uri}");
        assert_eq!(json_of(&b)["cid"].as_str(), Some(cid.as_str()), "{uri}");
    }

    // Acknowledged blobs, byte for byte.
    for (cid, data) in &model.blobs {
        let (st, b) = get(
            s,
            &format!("com.atproto.sync.getBlob?did={}&cid={cid}", s.q_did()),
        )
        .await;
        if st != 200 || b[..] != data[..] {
            eprintln!("LOST: blob {cid}: status {st}, {} bytes", b.len());
            lost += 1;
        }
    }
    lost
}

/// What the firehose has said so far, to check across kills.
#[derive(Default)]
struct Events {
    /// seq → hash of the stored event body.
    seen: BTreeMap<i64, u64>,
    /// Every seq a live subscriber received in the last round.
    sent: Vec<i64>,
}

/// After a kill, with perch dead: the file passes `integrity_check`, every
/// event seen before is still there unchanged, and new events come after the
/// old ones. Returns the number of seq regressions found.
fn check_offline(db: &Path, events: &mut Events) -> u64 {
    assert!(db::integrity_ok(db), "integrity_check");
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT seq, body FROM event ORDER BY seq")
        .unwrap();
    let rows: Vec<(i64, Vec<u8>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut regressions = 0;
    let prev_max = events.seen.keys().next_back().copied().unwrap_or(0);
    let now: BTreeMap<i64, u64> = rows
        .iter()
        .map(|(seq, body)| {
            let mut h = DefaultHasher::new();
            body.hash(&mut h);
            (*seq, h.finish())
        })
        .collect();
    for (seq, h) in &events.seen {
        if now.get(seq) != Some(h) {
            eprintln!("SEQ: event {seq} vanished or changed");
            regressions += 1;
        }
    }
    // An event sent to a subscriber must have been durable before it went out.
    for seq in events.sent.drain(..) {
        if !now.contains_key(&seq) {
            eprintln!("SEQ: a subscriber got seq {seq}, which the database does not hold");
            regressions += 1;
        }
    }
    for seq in now.keys().filter(|s| !events.seen.contains_key(s)) {
        if *seq <= prev_max {
            eprintln!("SEQ: new event {seq} is not after the old maximum {prev_max}");
            regressions += 1;
        }
    }
    events.seen = now;
    regressions
}

/// The seqs a live subscriber from `cursor` received, and how many of them
/// did not increase.
fn in_order(cursor: i64, got: &[Received]) -> (Vec<i64>, u64) {
    let (mut last, mut disorder) = (cursor, 0);
    for e in got {
        if e.seq <= last {
            eprintln!("SEQ: subscriber got {} after {last}", e.seq);
            disorder += 1;
        }
        last = e.seq;
    }
    (got.iter().map(|e| e.seq).collect(), disorder)
}

fn rounds() -> usize {
    std::env::var("PERCH_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let _turn = serial::one_at_a_time().await;
    let seed = std::env::var("PERCH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng) | 1);
    eprintln!("crash test seed {seed} (PERCH_CRASH_SEED replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let db = data.join("perch.sqlite");

    let mut model = Model::default();
    let mut events = Events::default();
    let mut password = String::new();
    let (mut lost, mut regressions, mut integrity_ok, mut received) = (0u64, 0u64, 0usize, 0usize);
    let n_rounds = rounds();
    let started = Instant::now();
    for round in 0..n_rounds {
        let log = dir.path().join(format!("serve-{round}.log"));
        let mut perch = start(&data, &log);
        if round == 0 {
            password = perch.dev_account().expect("dev password line").password;
        }
        let s = Arc::new(Client::dev_session(perch.addr, &password).await);
        if round > 0 {
            lost += check_online(&s, &data, &mut model, &mut rng).await;
        }

        let firehose: Arc<Mutex<Vec<Received>>> = Arc::default();
        let cursor = events.seen.keys().next_back().copied().unwrap_or(0);
        let sub = tokio::spawn(firehose::subscribe(
            perch.addr,
            Some(cursor),
            Arc::clone(&firehose),
        ));
        let shared = Arc::new(Mutex::new(std::mem::take(&mut model)));
        let clients: Vec<_> = (0..WORKERS)
            .map(|w| {
                tokio::spawn(client(
                    Arc::clone(&s),
                    Arc::clone(&shared),
                    Rng(rng.next() | 1),
                    format!("r{round}w{w}"),
                ))
            })
            .collect();
        // Kill somewhere between the first writes and a couple of seconds in.
        let at = Duration::from_millis(100 + rng.below(1900));
        tokio::time::sleep(at).await;
        perch.kill();
        for c in clients {
            c.await.expect("client task");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), sub).await;
        model = Arc::try_unwrap(shared)
            .ok()
            .expect("clients done")
            .into_inner()
            .unwrap();
        let (sent, disorder) = in_order(cursor, &firehose.lock().unwrap());
        received += sent.len();
        events.sent = sent;
        regressions += disorder;
        regressions += check_offline(&db, &mut events);
        integrity_ok += 1;
        drop(perch);
        eprintln!(
            "round {round}: killed after {at:?}; {} acknowledged so far, {lost} lost",
            model.acked
        );
    }

    // One last restart to check the writes of the final round.
    let perch = start(&data, &dir.path().join("serve-final.log"));
    let s = Client::dev_session(perch.addr, &password).await;
    lost += check_online(&s, &data, &mut model, &mut rng).await;
    drop(perch);
    regressions += check_offline(&db, &mut events);

    let live = model.records.values().filter(|c| c.is_some()).count();
    println!(
        "crash: rounds={n_rounds} acked_writes={} lost={lost} integrity_ok={integrity_ok}/{n_rounds} \
         seq_regressions={regressions} events={} live_events_received={received} records={live} blobs={} seconds={}",
        model.acked,
        events.seen.len(),
        model.blobs.len(),
        started.elapsed().as_secs()
    );
    assert!(
        model.acked > 0,
        "no write was acknowledged: the test proved nothing"
    );
    assert_eq!(lost, 0, "acknowledged writes lost (seed {seed})");
    assert_eq!(regressions, 0, "firehose seq regressions (seed {seed})");
}
