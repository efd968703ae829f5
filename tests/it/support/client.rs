//! The one HTTP client of the tests: hyper for ordinary calls (as the
//! account perch serves, once signed in), raw TCP for requests no
//! well-behaved client sends, and a chosen loopback source address for the
//! tests that need many clients (Linux routes all of 127/8 to `lo`, so each
//! address is another client to the server's limiters).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

type Hyper = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A client of one perch, and the account it speaks as once signed in.
#[derive(Clone)]
pub struct Client {
    http: Hyper,
    /// One connection per request, closed after it (`connection: close`), as
    /// the in-process servers' connection-cap tests count on; otherwise
    /// connections are kept alive and reused.
    one_shot: bool,
    timeout: Duration,
    pub addr: SocketAddr,
    pub handle: String,
    pub password: String,
    pub did: String,
    /// An access token once signed in.
    pub token: String,
}

impl Client {
    /// Keep-alive connections from 127.0.0.1.
    pub fn new(addr: SocketAddr) -> Client {
        Client::build(addr, None, false)
    }

    /// Keep-alive connections from `from` (any 127/8 address).
    pub fn with_source(addr: SocketAddr, from: IpAddr) -> Client {
        Client::build(addr, Some(from), false)
    }

    /// A fresh connection for every request.
    pub fn one_shot(addr: SocketAddr) -> Client {
        Client::build(addr, None, true)
    }

    fn build(addr: SocketAddr, from: Option<IpAddr>, one_shot: bool) -> Client {
        let mut conn = HttpConnector::new();
        conn.set_local_address(from);
        let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        if one_shot {
            b.pool_max_idle_per_host(0);
        }
        Client {
            http: b.build(conn),
            one_shot,
            timeout: Duration::from_secs(120),
            addr,
            handle: String::new(),
            password: String::new(),
            did: String::new(),
            token: String::new(),
        }
    }

    /// The development account (`alice.test`) signed in on a server that
    /// may be killed at any moment: a request unanswered for a minute counts
    /// as failed.
    pub async fn dev_session(addr: SocketAddr, password: &str) -> Client {
        let mut c = Client::new(addr).timeout(Duration::from_secs(60));
        c.sign_in("alice.test", password).await;
        c
    }

    /// How long a request may take before it counts as failed.
    pub fn timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    /// The same account on another server (a restart on the same data: the
    /// session secret is on disk, so the token still holds).
    pub fn at(&self, addr: SocketAddr) -> Client {
        Client {
            addr,
            ..self.clone()
        }
    }

    /// Signs in as `identifier`/`password`; keeps the DID and access token.
    pub async fn sign_in(&mut self, identifier: &str, password: &str) {
        let (st, b) = self
            .call(
                "POST",
                "com.atproto.server.createSession",
                &[("content-type", "application/json")],
                json!({"identifier": identifier, "password": password})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(st, 200, "createSession: {b}");
        self.handle = b["handle"].as_str().unwrap_or(identifier).to_owned();
        self.password = password.to_owned();
        self.did = b["did"].as_str().unwrap().to_owned();
        self.token = b["accessJwt"].as_str().unwrap().to_owned();
    }

    /// The DID, escaped for a query string (did:web DIDs contain `%`).
    pub fn q_did(&self) -> String {
        self.did.replace('%', "%25")
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// One request to any path; `Err` when the connection failed or timed out.
    pub async fn try_fetch(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.addr));
        if self.one_shot {
            req = req.header("connection", "close");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let fut = async {
            let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// As `try_fetch`, panicking when there is no answer.
    pub async fn fetch(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        self.try_fetch(method, path_and_query, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"))
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

    /// As `request`, with the body read as JSON (`Null` if it is not).
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (st, b) = self.request(method, path_and_query, headers, body).await;
        (st, json_of(&b))
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

    /// A record in `collection` (keyed by `rkey`, or a fresh TID); the reply.
    pub async fn create(&self, collection: &str, rkey: Option<&str>, record: Value) -> Value {
        let mut body = json!({"repo": self.did, "collection": collection, "record": record});
        if let Some(r) = rkey {
            body["rkey"] = json!(r);
        }
        let (st, b) = self.post("com.atproto.repo.createRecord", &body).await;
        assert_eq!(st, 200, "{b}");
        b
    }

    // The calls of the crash, power-cut and fault-injection tests, where the
    // server may die at any moment: `Err` is an answer, not a failure.

    /// An authenticated JSON procedure.
    pub async fn try_post(&self, nsid: &str, body: &Value) -> Result<(u16, Value), String> {
        self.try_post_raw(nsid, "application/json", body.to_string().into_bytes())
            .await
    }

    pub async fn try_post_raw(
        &self,
        nsid: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        let auth = self.bearer();
        let (st, b) = self
            .try_fetch(
                "POST",
                &format!("/xrpc/{nsid}"),
                &[("content-type", content_type), ("authorization", &auth)],
                body,
            )
            .await?;
        Ok((st, json_of(&b)))
    }

    pub async fn try_create_record(
        &self,
        collection: &str,
        rkey: &str,
        record: Value,
    ) -> Result<(u16, Value), String> {
        let body = json!({"repo": self.did, "collection": collection, "rkey": rkey,
            "record": record});
        self.try_post("com.atproto.repo.createRecord", &body).await
    }

    pub async fn try_upload_blob(&self, data: Vec<u8>) -> Result<(u16, Value), String> {
        self.try_post_raw(
            "com.atproto.repo.uploadBlob",
            "application/octet-stream",
            data,
        )
        .await
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
                .request(
                    "GET",
                    &format!(
                        "com.atproto.repo.listRecords?repo={}&collection={collection}&limit=100{cursor}",
                        self.q_did()
                    ),
                    &[],
                    Vec::new(),
                )
                .await;
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

    /// A blob's bytes through getBlob.
    pub async fn try_get_blob(&self, cid: &str) -> Result<(u16, Bytes), String> {
        let path = format!(
            "/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}",
            self.q_did()
        );
        self.try_fetch("GET", &path, &[], Vec::new()).await
    }
}

/// A body as JSON, `Null` when it is not.
pub fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// An XRPC error with exactly this status and `error` name, and a message.
pub fn assert_xrpc_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// A TCP connection to `addr` from the loopback address `from`.
pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(addr).await
}

/// An HTTP/1.1 request as a well-behaved client writes it, on its own
/// connection (`connection: close`), for `raw` and `raw_from`.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The bytes written as given, on a fresh connection; everything read back
/// until the server closes it.
pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let c = TcpStream::connect(addr).await.unwrap();
    exchange(c, request, &format!("{addr}")).await
}

/// As `raw_bytes`, from the loopback address `from`.
pub async fn raw_bytes_from(from: IpAddr, addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let c = connect_from(from, addr).await.unwrap();
    exchange(c, request, &format!("{addr} from {from}")).await
}

async fn exchange(mut c: TcpStream, request: &[u8], to: &str) -> Vec<u8> {
    c.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), c.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer from {to} within 120 s"))
        .unwrap();
    buf
}

/// One HTTP/1.1 request written as given, on a fresh connection; the status
/// and the JSON body of the first response (`Null` when there is none).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    first_response(&raw_bytes(addr, request).await)
}

/// `GET path` on a fresh connection: the status and JSON body.
pub async fn raw_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    raw(addr, &request_bytes("GET", path, &[], b"")).await
}

/// As `raw`, from the loopback address `from`.
pub async fn raw_from(from: IpAddr, addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    first_response(&raw_bytes_from(from, addr, request).await)
}

/// Status, lower-cased header block and body bytes (de-chunked) of the one
/// HTTP/1.1 response in `buf`.
pub fn response_parts(buf: &[u8]) -> (u16, String, Vec<u8>) {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    (status, head, body)
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
