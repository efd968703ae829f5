//! A real `perch serve --dev` process on a temporary data directory, and the
//! small HTTP client the hostile-input tests drive it with: hyper for
//! ordinary calls, raw TCP for requests no well-behaved client would send.
//! Include with `#[path = "common/live.rs"] mod live;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Perch {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub did: String,
    pub handle: String,
    pub password: String,
    /// An access token for the dev account.
    pub token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Drop for Perch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Perch {
    /// `perch serve --dev` with the development account, signed in.
    pub async fn start() -> Perch {
        Self::start_with(&[]).await
    }

    /// As `start`, with extra environment (inherited `PERCH_*` is dropped so
    /// the developer's shell cannot change what is tested).
    pub async fn start_with(env: &[(&str, &str)]) -> Perch {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("perch.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_perch"));
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("PERCH_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn perch");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, did, handle, password) = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(found) = parse_startup(&text) {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("perch exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "perch did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut p = Perch {
            child,
            dir,
            addr,
            did,
            handle,
            password,
            token: String::new(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        p.login().await;
        p
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("perch.sqlite")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("perch.log")).unwrap_or_default()
    }

    pub async fn login(&mut self) {
        let (st, b) = self
            .call(
                "POST",
                "com.atproto.server.createSession",
                &[("content-type", "application/json")],
                json!({"identifier": self.handle, "password": self.password})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        self.token = b["accessJwt"].as_str().unwrap().to_owned();
    }

    /// The DID, escaped for a query string (did:web DIDs contain `%`).
    pub fn q_did(&self) -> String {
        self.did.replace('%', "%25")
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// One request to `/xrpc/<path_and_query>`: status and raw body.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        self.fetch(method, &format!("/xrpc/{path_and_query}"), headers, body)
            .await
    }

    /// One request to any path on the server.
    pub async fn fetch(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let fut = async {
            let resp = self.http.request(req).await.expect("a response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        };
        tokio::time::timeout(Duration::from_secs(120), fut)
            .await
            .unwrap_or_else(|_| panic!("{method} {path_and_query} timed out"))
    }

    /// As `request`, with the body read as JSON (`Null` if it is not).
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (st, b) = self.request(method, path_and_query, headers, body).await;
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// An authenticated JSON procedure.
    pub async fn post(&self, nsid: &str, body: &Value) -> (u16, Value) {
        self.post_raw(nsid, "application/json", body.to_string().into_bytes())
            .await
    }

    /// An authenticated procedure with any body.
    pub async fn post_raw(&self, nsid: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let auth = self.bearer();
        self.call(
            "POST",
            nsid,
            &[("content-type", content_type), ("authorization", &auth)],
            body,
        )
        .await
    }

    /// An authenticated query.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let auth = self.bearer();
        self.call(
            "GET",
            path_and_query,
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
    }

    /// The server still answers (no panic took it down).
    pub async fn alive(&self) -> bool {
        let (st, _) = self.request("GET", "_health", &[], Vec::new()).await;
        st == 200
    }

    /// The repo's current head as getLatestCommit reports it.
    pub async fn head(&self) -> Value {
        let (st, b) = self
            .get(&format!(
                "com.atproto.sync.getLatestCommit?did={}",
                self.q_did()
            ))
            .await;
        assert_eq!(st, 200, "{b}");
        b
    }

    /// The whole repo as a CAR (getRepo).
    pub async fn get_repo(&self) -> Bytes {
        let auth = self.bearer();
        let (st, car) = self
            .request(
                "GET",
                &format!("com.atproto.sync.getRepo?did={}", self.q_did()),
                &[("authorization", &auth)],
                Vec::new(),
            )
            .await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&car));
        car
    }

    /// A post record in `collection` (keyed by `rkey`, or a fresh TID).
    pub async fn create(&self, collection: &str, rkey: Option<&str>, record: Value) -> Value {
        let mut body = json!({"repo": self.did, "collection": collection, "record": record});
        if let Some(r) = rkey {
            body["rkey"] = json!(r);
        }
        let (st, b) = self.post("com.atproto.repo.createRecord", &body).await;
        assert_eq!(st, 200, "{b}");
        b
    }

    /// A digest of every table that holds repository or account state, read
    /// through a read-only connection while the server runs: equal digests
    /// mean nothing was written. Session tables are left out (logins write).
    pub fn db_digest(&self) -> String {
        db_digest(&self.db_path())
    }
}

/// The listening address and the dev account line from the server's output.
fn parse_startup(text: &str) -> Option<(SocketAddr, String, String, String)> {
    let addr = text
        .lines()
        .find_map(|l| l.split("listening on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())?;
    let line = text.lines().find_map(|l| l.strip_prefix("dev account: "))?;
    // "handle H did D password: P"
    let words: Vec<&str> = line.split_whitespace().collect();
    let (handle, did, password) = match words.as_slice() {
        ["handle", h, "did", d, "password:", p] => (*h, *d, *p),
        _ => return None,
    };
    Some((addr, did.into(), handle.into(), password.into()))
}

/// An HTTP server for `/.well-known/did.json` on IPv4 and IPv6 loopback,
/// serving whatever document is set; returns its port.
pub async fn did_web_server(doc: Arc<Mutex<Value>>) -> u16 {
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = v4.local_addr().unwrap().port();
    let mut listeners = vec![v4];
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        listeners.push(v6);
    }
    for l in listeners {
        let doc = Arc::clone(&doc);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let doc = doc.lock().unwrap().to_string();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..got]);
                    let resp = if head.starts_with("GET /.well-known/did.json ") {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                            doc.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .into()
                    };
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
    }
    port
}

/// See `Perch::db_digest`.
pub fn db_digest(path: &Path) -> String {
    use rusqlite::{Connection, OpenFlags, types::ValueRef};
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
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

/// One HTTP/1.1 request written as given, on a fresh connection; the status
/// and the JSON body of the first response (`Null` when there is none).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), c.read_to_end(&mut buf))
        .await
        .expect("the server ends the connection in time")
        .unwrap();
    first_response(&buf)
}

/// Status and JSON body of the first HTTP/1.1 response in `buf`.
pub fn first_response(buf: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked bodies put a size line first; the JSON object starts at '{'.
    let json = body
        .find('{')
        .and_then(|i| {
            serde_json::Deserializer::from_str(&body[i..])
                .into_iter::<Value>()
                .next()
        })
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    (status, json)
}

/// An XRPC error with exactly this status and `error` name, and a message.
pub fn assert_xrpc_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(body["message"].is_string(), "{body}");
}
