//! A real `perch serve --dev` for the durability tests (power cut, I/O
//! faults, restore): started under an optional wrapper command (`fiu-run`),
//! its output captured through a pipe, and a small XRPC client.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Perch {
    pub child: Child,
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

/// How to start perch: a wrapper in front of the binary and extra
/// environment.
#[derive(Default, Clone)]
pub struct Launch {
    pub wrapper: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
}

impl Perch {
    /// `perch serve --dev` on `data`, on a free loopback port; returns
    /// once it listens.
    pub fn start(data: &Path, launch: &Launch) -> Perch {
        let bin = env!("CARGO_BIN_EXE_perch");
        let mut cmd = match launch.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("PERCH_") || name == "RUST_LOG" || name == "NOTIFY_SOCKET" {
                cmd.env_remove(name);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn perch");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = output.lock().unwrap().clone();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("listening on http://").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
            {
                return Perch {
                    child,
                    addr,
                    output,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let text = output.lock().unwrap().clone();
                panic!("perch exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "perch did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything perch printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The development password, printed on the first start.
    pub fn dev_password(&self) -> String {
        self.output()
            .lines()
            .find_map(|l| l.strip_prefix("dev account: "))
            .and_then(|l| l.rsplit("password: ").next())
            .expect("dev password line")
            .trim()
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for perch")
    }
}

impl Drop for Perch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request; `Err` when the connection failed or timed out.
pub async fn request(
    http: &Http,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
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

pub fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// A signed-in client of the development account.
#[derive(Clone)]
pub struct Session {
    pub http: Http,
    pub addr: SocketAddr,
    pub did: String,
    pub auth: String,
}

impl Session {
    pub async fn login(http: &Http, addr: SocketAddr, password: &str) -> Session {
        let (s, b) = request(
            http,
            addr,
            "POST",
            "/xrpc/com.atproto.server.createSession",
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

    /// The same account on a restarted server (the session secret is on
    /// disk, so the token still holds).
    pub fn at(&self, addr: SocketAddr) -> Session {
        Session {
            addr,
            ..self.clone()
        }
    }

    pub fn q_did(&self) -> String {
        self.did.replace('%', "%25")
    }

    pub async fn post(&self, nsid: &str, body: &Value) -> Result<(u16, Value), String> {
        let (s, b) = request(
            &self.http,
            self.addr,
            "POST",
            &format!("/xrpc/{nsid}"),
            &[
                ("content-type", "application/json"),
                ("authorization", &self.auth),
            ],
            body.to_string().into_bytes(),
        )
        .await?;
        Ok((s, json_of(&b)))
    }

    pub async fn create_record(
        &self,
        collection: &str,
        rkey: &str,
        record: Value,
    ) -> Result<(u16, Value), String> {
        let body = json!({"repo": self.did, "collection": collection, "rkey": rkey,
            "record": record});
        self.post("com.atproto.repo.createRecord", &body).await
    }

    pub async fn upload_blob(&self, data: Vec<u8>) -> Result<(u16, Value), String> {
        let (s, b) = request(
            &self.http,
            self.addr,
            "POST",
            "/xrpc/com.atproto.repo.uploadBlob",
            &[
                ("content-type", "application/octet-stream"),
                ("authorization", &self.auth),
            ],
            data,
        )
        .await?;
        Ok((s, json_of(&b)))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        request(&self.http, self.addr, "GET", path, &[], vec![]).await
    }

    /// Every record of `collection` (uri → cid), through listRecords.
    pub async fn list_records(
        &self,
        collection: &str,
    ) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut cursor = String::new();
        loop {
            let (st, b) = self
                .get(&format!(
                    "/xrpc/com.atproto.repo.listRecords?repo={}&collection={collection}&limit=100{cursor}",
                    self.q_did()
                ))
                .await
                .expect("listRecords");
            assert_eq!(st, 200, "listRecords: {}", String::from_utf8_lossy(&b));
            let b = json_of(&b);
            let recs = b["records"].as_array().cloned().unwrap_or_default();
            for r in &recs {
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

    pub async fn get_blob(&self, cid: &str) -> Result<(u16, Bytes), String> {
        self.get(&format!(
            "/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}",
            self.q_did()
        ))
        .await
    }
}

/// The firehose frames' headers perch sends, by event type.
fn frame_headers() -> Vec<(&'static str, Vec<u8>)> {
    ["#commit", "#identity", "#account", "#sync"]
        .iter()
        .map(|t| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("op".into(), perch::cbor::Ipld::Integer(1));
            m.insert("t".into(), perch::cbor::Ipld::String((*t).into()));
            (*t, perch::cbor::encode(&perch::cbor::Ipld::Map(m)))
        })
        .collect()
}

/// One firehose event as received: type, seq and the decoded body.
#[derive(Clone, Debug)]
pub struct Received {
    pub kind: &'static str,
    pub seq: i64,
    pub body: perch::cbor::Ipld,
}

/// Subscribe from `cursor` and push every event into `into` until the
/// connection ends.
pub async fn subscribe(addr: SocketAddr, cursor: Option<i64>, into: Arc<Mutex<Vec<Received>>>) {
    let q = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    let url = format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos{q}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let headers = frame_headers();
    use futures_util::StreamExt;
    while let Some(Ok(msg)) = ws.next().await {
        let frame = msg.into_data();
        let Some((kind, body)) = headers
            .iter()
            .find_map(|(k, h)| frame.strip_prefix(h.as_slice()).map(|b| (*k, b)))
        else {
            continue;
        };
        let Ok(body) = perch::cbor::decode(body) else {
            continue;
        };
        let Some(seq) = body.get("seq").and_then(|s| s.as_integer()) else {
            continue;
        };
        into.lock().unwrap().push(Received { kind, seq, body });
    }
}

/// `PRAGMA integrity_check` of the database at `db`.
pub fn integrity_ok(db: &Path) -> bool {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return false;
    };
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .is_ok_and(|s| s == "ok")
}
