//! kill -9 during writes (reliability plan item 1): the real binary takes
//! concurrent createRecord / putRecord / deleteRecord / uploadBlob traffic,
//! is SIGKILLed at a random moment, and restarts on the same data directory.
//! After every kill: `integrity_check` is ok and no firehose event is lost,
//! changed or reused; after every restart: the repo verifies (signature, MST,
//! every record present), it holds exactly the acknowledged writes (plus, at
//! most, the one write per client that was in flight at the kill), and every
//! acknowledged blob comes back byte for byte.
//!
//! `cargo test --test crash` runs a few rounds; `PERCH_CRASH_ROUNDS=100` is the
//! long mode (`scripts/reliability.sh`). `PERCH_CRASH_SEED` replays a run.

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const RECORDS: &str = "com.example.crash.note";
const BLOB_RECORDS: &str = "com.example.crash.attachment";
const WORKERS: usize = 6;

type Http = Client<HttpConnector, Full<Bytes>>;

struct Perch {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Perch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `perch serve --dev` on a fresh port; its stdout (logs and the dev password
/// line) goes to `log`, which is polled for the listening address.
fn start(data: &Path, log: &Path) -> Perch {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perch"));
    cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("PERCH_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd.spawn().expect("spawn perch");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.split("listening on http://").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
        {
            return Perch { child, addr };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("perch exited with {status} before listening:\n{text}");
        }
        assert!(Instant::now() < deadline, "perch did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn request(
    http: &Http,
    addr: std::net::SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/xrpc/{path_and_query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let fut = async {
        let resp = http.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
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

struct Session {
    http: Http,
    addr: std::net::SocketAddr,
    did: String,
    auth: String,
}

impl Session {
    fn q_did(&self) -> String {
        self.did.replace('%', "%25")
    }

    async fn post(&self, nsid: &str, body: &Value) -> Result<(u16, Value), String> {
        let (s, b) = request(
            &self.http,
            self.addr,
            "POST",
            nsid,
            &[
                ("content-type", "application/json"),
                ("authorization", &self.auth),
            ],
            body.to_string().into_bytes(),
        )
        .await?;
        Ok((s, json_of(&b)))
    }

    async fn get(&self, path_and_query: &str) -> (u16, Bytes) {
        request(&self.http, self.addr, "GET", path_and_query, &[], vec![])
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"))
    }
}

async fn login(http: &Http, addr: std::net::SocketAddr, password: &str) -> Session {
    let (s, b) = request(
        http,
        addr,
        "POST",
        "com.atproto.server.createSession",
        &[("content-type", "application/json")],
        json!({"identifier": "alice.test", "password": password})
            .to_string()
            .into_bytes(),
    )
    .await
    .expect("createSession");
    let b = json_of(&b);
    assert_eq!(s, 200, "{b}");
    Session {
        http: http.clone(),
        addr,
        did: b["did"].as_str().unwrap().to_owned(),
        auth: format!("Bearer {}", b["accessJwt"].as_str().unwrap()),
    }
}

/// One client: writes until the server goes away. Every 200 is recorded in
/// the model before the next request; the request in flight at the kill is
/// recorded as ambiguous.
async fn client(s: Arc<Session>, model: Arc<Mutex<Model>>, mut rng: Rng, prefix: String) {
    let mut live: Vec<String> = vec![];
    for n in 0u64.. {
        let choice = rng.below(100);
        let text = format!("{prefix} {n} {}", rng.next());
        let created = "2026-01-01T00:00:00Z";
        if choice < 15 {
            // uploadBlob, then a record that references it.
            let len = 1 + rng.below(16 * 1024) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let r = request(
                &s.http,
                s.addr,
                "POST",
                "com.atproto.repo.uploadBlob",
                &[
                    ("content-type", "application/octet-stream"),
                    ("authorization", &s.auth),
                ],
                data.clone(),
            )
            .await;
            let body = match r {
                Ok((200, body)) => body,
                Ok((status, b)) => panic!("uploadBlob answered {status}: {b:?}"),
                Err(_) => return,
            };
            let blob = json_of(&body)["blob"].clone();
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
            let b = match s.post("com.atproto.repo.createRecord", &body).await {
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
        let r = s.post(nsid, &body).await;
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

/// All records of one collection via listRecords (the index).
async fn list_records(s: &Session, collection: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (st, b) = s
            .get(&format!(
                "com.atproto.repo.listRecords?repo={}&collection={collection}&limit=100{cursor}",
                s.q_did()
            ))
            .await;
        assert_eq!(st, 200);
        let b = json_of(&b);
        let recs = b["records"].as_array().unwrap();
        for r in recs {
            out.insert(
                r["uri"].as_str().unwrap().to_owned(),
                r["cid"].as_str().unwrap().to_owned(),
            );
        }
        match b["cursor"].as_str() {
            Some(c) if !recs.is_empty() => cursor = format!("&cursor={c}"),
            _ => return out,
        }
    }
}

/// After a restart: the repo verifies and holds exactly what the model says.
/// Returns the number of acknowledged writes found missing or changed.
async fn check_online(s: &Session, data: &Path, model: &mut Model, rng: &mut Rng) -> u64 {
    // getRepo, verified end to end under the account's signing key.
    let (st, car) = s
        .get(&format!("com.atproto.sync.getRepo?did={}", s.q_did()))
        .await;
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
    let mut listed = list_records(s, RECORDS).await;
    listed.extend(list_records(s, BLOB_RECORDS).await);
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
        let (st, b) = s
            .get(&format!(
                "com.atproto.repo.getRecord?repo={}&collection={coll}&rkey={rkey}",
                s.q_did()
            ))
            .await;
        assert_eq!(st, 200, "{uri}");
        assert_eq!(json_of(&b)["cid"].as_str(), Some(cid.as_str()), "{uri}");
    }

    // Acknowledged blobs, byte for byte.
    for (cid, data) in &model.blobs {
        let (st, b) = s
            .get(&format!(
                "com.atproto.sync.getBlob?did={}&cid={cid}",
                s.q_did()
            ))
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
    let conn = rusqlite::Connection::open(db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "integrity_check");
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

/// A live subscriber from `cursor`: records every seq received and counts
/// frames whose seq does not increase.
async fn subscribe(addr: std::net::SocketAddr, cursor: i64, events: Arc<Mutex<(Vec<i64>, u64)>>) {
    let url = format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor={cursor}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let headers: Vec<Vec<u8>> = ["#commit", "#identity", "#account", "#sync"]
        .iter()
        .map(|t| {
            let mut m = BTreeMap::new();
            m.insert("op".into(), perch::cbor::Ipld::Integer(1));
            m.insert("t".into(), perch::cbor::Ipld::String((*t).into()));
            perch::cbor::encode(&perch::cbor::Ipld::Map(m))
        })
        .collect();
    let mut last = cursor;
    while let Some(Ok(msg)) = ws.next().await {
        let frame = msg.into_data();
        let Some(body) = headers
            .iter()
            .find_map(|h| frame.strip_prefix(h.as_slice()))
        else {
            continue;
        };
        let Some(seq) = perch::cbor::decode(body)
            .ok()
            .and_then(|b| b.get("seq").and_then(|s| s.as_integer()))
        else {
            continue;
        };
        let mut e = events.lock().unwrap();
        if seq <= last {
            eprintln!("SEQ: subscriber got {seq} after {last}");
            e.1 += 1;
        }
        last = seq;
        e.0.push(seq);
    }
}

fn rounds() -> usize {
    std::env::var("PERCH_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_acknowledged() {
    let seed = std::env::var("PERCH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng) | 1);
    eprintln!("crash test seed {seed} (PERCH_CRASH_SEED replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let db = data.join("perch.sqlite");
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

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
            let text = std::fs::read_to_string(&log).unwrap();
            password = text
                .lines()
                .find_map(|l| l.strip_prefix("dev account: "))
                .and_then(|l| l.rsplit("password: ").next())
                .expect("dev password line")
                .trim()
                .to_owned();
        }
        let s = Arc::new(login(&http, perch.addr, &password).await);
        if round > 0 {
            lost += check_online(&s, &data, &mut model, &mut rng).await;
        }

        let firehose = Arc::new(Mutex::new((Vec::new(), 0u64)));
        let cursor = events.seen.keys().next_back().copied();
        let sub = tokio::spawn(subscribe(
            perch.addr,
            cursor.unwrap_or(0),
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
        perch.child.kill().unwrap(); // SIGKILL
        perch.child.wait().unwrap();
        for c in clients {
            c.await.expect("client task");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), sub).await;
        model = Arc::try_unwrap(shared)
            .ok()
            .expect("clients done")
            .into_inner()
            .unwrap();
        let (sent, disorder) = std::mem::take(&mut *firehose.lock().unwrap());
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
    let s = login(&http, perch.addr, &password).await;
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
