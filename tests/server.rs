//! The real server, in process, on 127.0.0.1 with a real SQLite file:
//! hostile and malformed requests get the right XRPC error, never a panic
//! or a half-written repo, and leave the repo's head where it was.

use std::sync::Arc;
use std::time::Duration;

use perch::account::{self, DidMethod};
use perch::app::App;
use perch::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    addr: std::net::SocketAddr,
    did: String,
    token: String,
}

async fn start() -> Server {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::dev(dir.path());
    config.listen = addr;
    config.blob_limit = 64 * 1024;
    tweak(&mut config);
    let app = App::open(config).await.unwrap();
    let acct = account::create(&app, "alice.test", "correct horse", None, DidMethod::Web)
        .await
        .unwrap();
    let limiter = perch::http::ConnLimiter::new(
        app.config.max_connections as usize,
        app.config.max_connections_per_ip as usize,
    );
    tokio::spawn(perch::http::serve(
        Arc::clone(&app),
        listener,
        perch::http::Role::Plain,
        limiter,
        std::future::pending(),
    ));
    let mut s = Server {
        _dir: dir,
        app: Arc::clone(&app),
        addr,
        did: acct.did,
        token: String::new(),
    };
    let (status, body) = s
        .call(
            "POST",
            "com.atproto.server.createSession",
            &[("content-type", "application/json")],
            json!({"identifier": "alice.test", "password": "correct horse"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.token = body["accessJwt"].as_str().unwrap().to_owned();
    s
}

/// One HTTP/1.1 request on a fresh connection; returns status and JSON body.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = body
        .find('{')
        .and_then(|i| body.rfind('}').map(|j| &body[i..=j]))
        .unwrap_or("null");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

impl Server {
    async fn call(
        &self,
        method: &str,
        nsid: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut req = format!(
            "{method} /xrpc/{nsid} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        raw(self.addr, &bytes).await
    }

    /// The DID, escaped for a query string (did:web DIDs contain `%`).
    fn q_did(&self) -> String {
        self.did.replace('%', "%25")
    }

    async fn write(&self, nsid: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        self.call(
            "POST",
            nsid,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            body,
        )
        .await
    }

    async fn head(&self) -> Value {
        let (s, b) = self
            .call(
                "GET",
                &format!("com.atproto.sync.getLatestCommit?did={}", self.q_did()),
                &[],
                b"",
            )
            .await;
        assert_eq!(s, 200);
        b
    }
}

fn assert_xrpc_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn hostile_requests_get_clean_errors_and_change_nothing() {
    let s = start().await;
    let before = s.head().await;
    let post = |text: &str| {
        json!({"repo": s.did, "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-01-01T00:00:00Z"}})
    };

    let (st, b) = s.write("com.atproto.repo.createRecord", b"{not json").await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.createRecord",
            &[
                ("content-type", "text/plain"),
                ("authorization", &format!("Bearer {}", s.token)),
            ],
            post("x").to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    // Floats are not in the data model.
    let mut rec = post("x");
    rec["record"]["n"] = json!(1.5);
    let (st, b) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    // Deep nesting.
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let body = format!(
        r#"{{"repo":"{}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","x":{deep}}}}}"#,
        s.did
    );
    let (st, b) = s
        .write("com.atproto.repo.createRecord", body.as_bytes())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    // Bad rkey, bad NSID, $type mismatch.
    let mut rec = post("x");
    rec["rkey"] = json!("../etc");
    let (st, b) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let mut rec = post("x");
    rec["collection"] = json!("not an nsid");
    let (st, b) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let mut rec = post("x");
    rec["collection"] = json!("app.bsky.feed.like");
    let (st, b) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    // Another DID's repo.
    let mut rec = post("x");
    rec["repo"] = json!("did:plc:zzzzzzzzzzzzzzzzzzzzzzzz");
    let (st, b) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_xrpc_error(st, &b, 403, "Forbidden");

    // Oversized body, refused from its Content-Length.
    let huge = format!(
        "POST /xrpc/com.atproto.repo.createRecord HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nauthorization: Bearer {}\r\ncontent-length: 50000000\r\n\r\n{{",
        s.token
    );
    let (st, b) = raw(s.addr, huge.as_bytes()).await;
    assert_xrpc_error(st, &b, 413, "PayloadTooLarge");

    // Oversized chunked body, refused while reading.
    let mut chunked = format!(
        "POST /xrpc/com.atproto.repo.createRecord HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\n\r\n",
        s.token
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 100_000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (st, b) = raw(s.addr, &chunked).await;
    assert_xrpc_error(st, &b, 413, "PayloadTooLarge");

    // Blob over the configured limit.
    let auth = format!("Bearer {}", s.token);
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("content-type", "image/png"), ("authorization", &auth)],
            &vec![7u8; 64 * 1024 + 1],
        )
        .await;
    assert_xrpc_error(st, &b, 413, "PayloadTooLarge");

    // No auth, garbage auth, wrong method, unknown method, bad params.
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.createRecord",
            &[("content-type", "application/json")],
            post("x").to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.createRecord",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer nope"),
            ],
            post("x").to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidToken");
    let (st, b) = s
        .call("GET", "com.atproto.repo.createRecord", &[], b"")
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let (st, b) = s.call("GET", "com.example.nothing", &[], b"").await;
    assert_xrpc_error(st, &b, 501, "MethodNotImplemented");
    let (st, b) = s
        .call(
            "GET",
            &format!(
                "com.atproto.repo.listRecords?repo={}&collection=app.bsky.feed.post&limit=9999",
                s.q_did()
            ),
            &[],
            b"",
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let (st, b) = s
        .call(
            "GET",
            &format!(
                "com.atproto.repo.listRecords?repo={}&collection=app.bsky.feed.post&cursor=%2F%2F",
                s.q_did()
            ),
            &[],
            b"",
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let (st, b) = s
        .call(
            "GET",
            &format!(
                "com.atproto.repo.getRecord?repo={}&collection=app.bsky.feed.post&rkey=nope",
                s.q_did()
            ),
            &[],
            b"",
        )
        .await;
    assert_xrpc_error(st, &b, 400, "RecordNotFound");
    let (st, b) = s
        .call("GET", "com.atproto.repo.getRecord?repo=x", &[], b"")
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    assert_eq!(
        s.head().await,
        before,
        "a failed request moved the repo head"
    );

    // And a good write still works afterwards.
    let (st, b) = s
        .write(
            "com.atproto.repo.createRecord",
            post("hello").to_string().as_bytes(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_ne!(s.head().await, before);
}

#[tokio::test]
async fn upload_blob_accepts_the_accounts_own_service_token() {
    let s = start().await;
    let auth = format!("Bearer {}", s.token);
    let aud = "did:web:localhost";
    let mint = |lxm: &str| format!("com.atproto.server.getServiceAuth?aud={aud}&lxm={lxm}");
    let (st, b) = s
        .call(
            "GET",
            &mint("com.atproto.repo.uploadBlob"),
            &[("authorization", &auth)],
            b"",
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let service = format!("Bearer {}", b["token"].as_str().unwrap());
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("authorization", &service), ("content-type", "video/mp4")],
            b"not really a video",
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["blob"]["mimeType"], "video/mp4");
    // The same kind of token for another method is refused here...
    let (_, b) = s
        .call(
            "GET",
            &mint("com.atproto.repo.createRecord"),
            &[("authorization", &auth)],
            b"",
        )
        .await;
    let wrong = format!("Bearer {}", b["token"].as_str().unwrap());
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("authorization", &wrong), ("content-type", "video/mp4")],
            b"x",
        )
        .await;
    assert_xrpc_error(st, &b, 401, "BadJwtLexiconMethod");
    // ...and a service token is never a session elsewhere.
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.createRecord",
            &[
                ("authorization", &service),
                ("content-type", "application/json"),
            ],
            b"{}",
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidToken");
}

#[tokio::test]
async fn a_never_ending_chunked_body_gets_413_and_a_closed_connection() {
    let s = start().await;
    let c = TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    let head = format!(
        "POST /xrpc/com.atproto.repo.uploadBlob HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\n\r\n",
        s.token
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    // Keep sending until the server stops listening (keep-alive was not refused up front).
    let writer = tokio::spawn(async move {
        let chunk = [
            format!("{:x}\r\n", 8192).into_bytes(),
            vec![0u8; 8192],
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut sent = 0usize;
        while wr.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
            if sent > 64 * 1024 * 1024 {
                break;
            }
        }
        sent
    });
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .ok();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    let sent = writer.await.unwrap();
    assert!(sent < 64 * 1024 * 1024, "the server read on after refusing");
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let s = start_with(|c| c.max_connections_per_ip = 8).await;
    // 127.0.0.1 holds its whole share with idle connections...
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // ...and its next one is closed at once without an answer...
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // ...while another address is still served.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut c = other.connect(s.addr).await.unwrap();
    c.write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    drop(idle);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let s = start().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Never finish the headers: the server must hang up (header timeout).
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection still open after 30 s of silence");
}

#[tokio::test]
async fn a_socket_that_never_sends_a_byte_is_closed() {
    let s = start().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    // Before any byte hyper cannot tell HTTP/1 from HTTP/2, and its header timeout has not
    // started: the server's own first-request deadline must still hang up.
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "silent connection still open after 30 s");
    assert!(buf.is_empty());
}

#[tokio::test]
async fn silent_sockets_make_way_for_a_new_client_when_every_slot_is_taken() {
    let s = start_with(|c| c.max_connections = 8).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every slot is held by a socket that sent nothing; a client from another address
    // is still answered at once, and the oldest silent socket is the one closed.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut c = other.connect(s.addr).await.unwrap();
    c.write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .expect("an answer while silent sockets fill the server")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    let mut first = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent[0].read_to_end(&mut first))
        .await
        .expect("the oldest silent socket is closed")
        .unwrap();
    // A connection that has sent a request keeps its slot: with 8 busy keep-alive
    // connections a newcomer is turned away rather than pushing one out.
    drop(silent);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        busy.push(c);
    }
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut c = other.connect(s.addr).await.unwrap();
    let _ = c
        .write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
}

#[tokio::test]
async fn health_and_well_known() {
    let s = start().await;
    let (st, b) = raw(
        s.addr,
        b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200);
    assert!(b["version"].is_string());
    let (st, _) = raw(
        s.addr,
        b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200);
    let (st, b) = raw(
        s.addr,
        b"GET /.well-known/did.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(b["id"], s.did);
    assert_eq!(
        b["service"][0]["serviceEndpoint"],
        format!("http://localhost:{}", s.addr.port())
    );
}

mod firehose {
    use super::*;
    use futures_util::StreamExt;
    use perch::cbor::{self, Ipld};
    use tokio_tungstenite::tungstenite::Message;

    type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

    async fn connect(s: &Server, cursor: Option<i64>) -> Client {
        let q = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
        let url = format!("ws://{}/xrpc/com.atproto.sync.subscribeRepos{q}", s.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Next frame as (header, body).
    async fn frame(ws: &mut Client) -> (Ipld, Ipld) {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        let Message::Binary(bytes) = msg else {
            panic!("not binary: {msg:?}")
        };
        // Two DAG-CBOR items back to back: find the split by re-encoding
        // the decoded header.
        for split in 1..bytes.len() {
            if let (Ok(h), Ok(b)) = (cbor::decode(&bytes[..split]), cbor::decode(&bytes[split..])) {
                return (h, b);
            }
        }
        panic!("frame is not header + body");
    }

    fn t(h: &Ipld) -> &str {
        h.get("t").and_then(Ipld::as_str).unwrap_or("")
    }

    #[tokio::test]
    async fn replay_then_live_in_seq_order() {
        let s = start().await;
        let mut ws = connect(&s, Some(0)).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (h, b) = frame(&mut ws).await;
            assert_eq!(h.get("op"), Some(&Ipld::Integer(1)));
            seen.push((
                t(&h).to_owned(),
                b.get("seq").and_then(Ipld::as_integer).unwrap(),
            ));
        }
        let kinds: Vec<_> = seen.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(kinds, ["#identity", "#account", "#commit"]);
        // Live: a write shows up as the next #commit, with a higher seq.
        let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
            "record": {"$type": "app.bsky.feed.post", "text": "live", "createdAt": "2026-01-01T00:00:00Z"}});
        let (st, out) = s
            .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
            .await;
        assert_eq!(st, 200);
        let (h, b) = frame(&mut ws).await;
        assert_eq!(t(&h), "#commit");
        let seq = b.get("seq").and_then(Ipld::as_integer).unwrap();
        assert!(seq > seen[2].1);
        assert_eq!(
            b.get("commit"),
            Some(&Ipld::Link(
                perch::cid::parse(out["commit"]["cid"].as_str().unwrap()).unwrap()
            ))
        );
        assert_eq!(b.get("repo").and_then(Ipld::as_str), Some(s.did.as_str()));
        assert!(b.get("prevData").is_some());
        // A cursor replays strictly after it.
        let mut ws2 = connect(&s, Some(seq - 1)).await;
        let (_, b2) = frame(&mut ws2).await;
        assert_eq!(b2.get("seq").and_then(Ipld::as_integer), Some(seq));
    }

    #[tokio::test]
    async fn a_stalled_subscriber_slows_nobody() {
        let s = start().await;
        // Never read from this one.
        let _stalled = connect(&s, Some(0)).await;
        let mut live = connect(&s, None).await;
        let n = 150;
        for i in 0..n {
            let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
                "record": {"$type": "app.bsky.feed.post", "text": format!("{i} {}", "x".repeat(2000)), "createdAt": "2026-01-01T00:00:00Z"}});
            let (st, b) = s
                .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
                .await;
            assert_eq!(st, 200, "{b}");
        }
        let mut last = 0;
        for _ in 0..n {
            let (h, b) = frame(&mut live).await;
            assert_eq!(t(&h), "#commit");
            let seq = b.get("seq").and_then(Ipld::as_integer).unwrap();
            assert!(seq > last, "seq went backwards");
            last = seq;
        }
    }

    /// All frames available from `cursor` on, until a quiet moment.
    async fn drain(s: &Server, cursor: i64) -> Vec<(i64, Vec<u8>)> {
        let mut ws = connect(s, Some(cursor)).await;
        let mut out = Vec::new();
        while let Ok(Some(Ok(Message::Binary(b)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        {
            let mut seq = 0;
            for split in 1..b.len() {
                if let (Ok(_), Ok(body)) = (cbor::decode(&b[..split]), cbor::decode(&b[split..])) {
                    seq = body.get("seq").and_then(Ipld::as_integer).unwrap();
                    break;
                }
            }
            out.push((seq, b.to_vec()));
        }
        out
    }

    #[tokio::test]
    async fn replay_is_identical_after_a_restart_and_seq_keeps_rising() {
        let s = start().await;
        for i in 0..5 {
            let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
                "record": {"$type": "app.bsky.feed.post", "text": format!("{i}"), "createdAt": "2026-01-01T00:00:00Z"}});
            s.write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
                .await;
        }
        let before = drain(&s, 0).await;
        assert_eq!(before.len(), 8);
        // "Restart": a second server process over the same data directory.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = s.app.config.clone();
        config.listen = listener.local_addr().unwrap();
        let app2 = App::open(config).await.unwrap();
        tokio::spawn(perch::http::serve(
            Arc::clone(&app2),
            listener,
            perch::http::Role::Plain,
            perch::http::ConnLimiter::new(1024, 256),
            std::future::pending(),
        ));
        let s2 = Server {
            addr: app2.config.listen,
            app: app2,
            did: s.did.clone(),
            token: s.token.clone(),
            _dir: tempfile::tempdir().unwrap(),
        };
        let after = drain(&s2, 0).await;
        assert_eq!(after, before, "replay after restart differs");
        let from_middle = drain(&s2, before[3].0).await;
        assert_eq!(
            from_middle,
            before[4..].to_vec(),
            "replay must start strictly after the cursor"
        );
        let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
            "record": {"$type": "app.bsky.feed.post", "text": "after", "createdAt": "2026-01-01T00:00:00Z"}});
        let (st, _) = s2
            .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
            .await;
        assert_eq!(st, 200);
        let latest = drain(&s2, before.last().unwrap().0).await;
        assert_eq!(latest.len(), 1);
        assert!(latest[0].0 > before.last().unwrap().0);
    }

    #[tokio::test]
    async fn readyz_counts_subscribers() {
        let s = start().await;
        let count = || async {
            let (_, b) = raw(
                s.addr,
                b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            b["firehoseSubscribers"].as_u64().unwrap()
        };
        assert_eq!(count().await, 0);
        let mut ws = connect(&s, Some(0)).await;
        frame(&mut ws).await;
        assert_eq!(count().await, 1);
        drop(ws);
        for _ in 0..100 {
            if count().await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("a closed subscriber is still counted");
    }

    #[tokio::test]
    async fn subscribers_count_against_the_address_cap() {
        let s = start_with(|c| c.max_connections_per_ip = 4).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut ws = connect(&s, Some(0)).await;
            frame(&mut ws).await;
            held.push(ws);
        }
        // The upgraded sockets still hold their slots: a fifth from the same address is
        // refused, and one from another address gets in.
        let url = format!("ws://{}/xrpc/com.atproto.sync.subscribeRepos", s.addr);
        assert!(tokio_tungstenite::connect_async(url.clone()).await.is_err());
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = sock.connect(s.addr).await.unwrap();
        assert!(
            tokio_tungstenite::client_async(url.clone(), stream)
                .await
                .is_ok()
        );
        // Closing one frees its slot.
        drop(held.pop());
        for _ in 0..100 {
            if tokio_tungstenite::connect_async(url.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("a closed subscriber's slot was not freed");
    }

    #[tokio::test]
    async fn future_cursor_is_an_error_frame() {
        let s = start().await;
        let mut ws = connect(&s, Some(1_000_000)).await;
        let (h, b) = frame(&mut ws).await;
        assert_eq!(h.get("op"), Some(&Ipld::Integer(-1)));
        assert_eq!(b.get("error").and_then(Ipld::as_str), Some("FutureCursor"));
    }

    #[tokio::test]
    async fn not_a_websocket_request() {
        let s = start().await;
        let (st, b) = raw(s.addr, b"GET /xrpc/com.atproto.sync.subscribeRepos HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert_eq!(st, 426, "{b}");
        let (st, _) = raw(s.addr, b"GET /xrpc/com.atproto.sync.subscribeRepos?cursor=-4 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert_eq!(st, 400);
    }
}

mod sync_reads {
    use super::*;
    use perch::repo::car::{CarLimits, CarReader};
    use perch::repo::export::load_repo_car;

    /// GET returning (status, body bytes), de-chunking if needed.
    async fn get_bytes(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await.unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
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
        (status, body)
    }

    #[tokio::test]
    async fn get_repo_record_and_blocks() {
        let s = start().await;
        let mut rkeys = Vec::new();
        for i in 0..30 {
            let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post", "rkey": format!("r{i:03}"),
                "record": {"$type": "app.bsky.feed.post", "text": format!("post {i}"), "createdAt": "2026-01-01T00:00:00Z"}});
            let (st, b) = s
                .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
                .await;
            assert_eq!(st, 200, "{b}");
            rkeys.push((format!("r{i:03}"), b["cid"].as_str().unwrap().to_owned()));
        }
        let head = s.head().await;
        let did = s.q_did();

        let (st, car) =
            get_bytes(s.addr, &format!("/xrpc/com.atproto.sync.getRepo?did={did}")).await;
        assert_eq!(st, 200);
        let repo = load_repo_car(car.as_slice(), CarLimits::default(), None).unwrap();
        assert_eq!(repo.record_count, 30);
        assert_eq!(repo.commit_cid.to_string(), head["cid"].as_str().unwrap());

        // Proof of one record: commit, the MST path, the record.
        let (st, car) = get_bytes(
            s.addr,
            &format!(
                "/xrpc/com.atproto.sync.getRecord?did={did}&collection=app.bsky.feed.post&rkey=r007"
            ),
        )
        .await;
        assert_eq!(st, 200);
        let mut mem = perch::repo::MemoryBlocks::new();
        let r = CarReader::new(car.as_slice(), CarLimits::default()).unwrap();
        for b in r {
            let (c, d) = b.unwrap();
            mem.insert(c, d);
        }
        let commit =
            perch::repo::commit::Commit::decode(mem.get(&repo.commit_cid).unwrap()).unwrap();
        let got = perch::repo::mst::Mst::load(commit.data)
            .get(&mem, b"app.bsky.feed.post/r007")
            .unwrap()
            .unwrap();
        assert_eq!(got.to_string(), rkeys[7].1);
        assert!(mem.contains(&got));

        let (st, car) = get_bytes(
            s.addr,
            &format!(
                "/xrpc/com.atproto.sync.getBlocks?did={did}&cids={}&cids={}",
                rkeys[1].1, rkeys[2].1
            ),
        )
        .await;
        assert_eq!(st, 200);
        let n = CarReader::new(car.as_slice(), CarLimits::default())
            .unwrap()
            .count();
        assert_eq!(n, 2);
        let (st, _) = get_bytes(
            s.addr,
            &format!("/xrpc/com.atproto.sync.getBlocks?did={did}&cids=bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpq"),
        )
        .await;
        assert_eq!(st, 400);

        // The deprecated getHead agrees with getLatestCommit.
        let (st, b) = raw(
            s.addr,
            format!("GET /xrpc/com.atproto.sync.getHead?did={did} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(b["root"], head["cid"]);

        // since: only blocks written after that rev.
        let since = head["rev"].as_str().unwrap().to_owned();
        let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
            "record": {"$type": "app.bsky.feed.post", "text": "later", "createdAt": "2026-01-01T00:00:00Z"}});
        s.write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
            .await;
        let (st, car) = get_bytes(
            s.addr,
            &format!("/xrpc/com.atproto.sync.getRepo?did={did}&since={since}"),
        )
        .await;
        assert_eq!(st, 200);
        let n = CarReader::new(car.as_slice(), CarLimits::default())
            .unwrap()
            .count();
        assert!((2..20).contains(&n), "diff CAR has {n} blocks");
    }
}

mod proxy {
    use super::*;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use perch::crypto::PublicKey;
    use perch::crypto::jwt::Jwt;

    /// A stand-in AppView on loopback that reports what it received.
    async fn fake_appview() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let _ = tx.send((req.uri().to_string(), auth));
                            let mut r = hyper::Response::new(Full::new(bytes::Bytes::from_static(
                                br#"{"feed":[],"from":"appview"}"#,
                            )));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            r.headers_mut()
                                .insert("atproto-repo-rev", "3kabc".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn appview_calls_are_forwarded_with_service_auth() {
        let (upstream, mut seen) = fake_appview().await;
        let s = start_with(|c| {
            c.appview_url = format!("http://{upstream}");
            c.appview_did = "did:web:appview.test".into();
            c.allow_loopback = true;
        })
        .await;
        let auth = format!("Bearer {}", s.token);
        let (st, b) = s
            .call(
                "GET",
                "app.bsky.feed.getTimeline?limit=5",
                &[("authorization", &auth)],
                b"",
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["from"], "appview");
        let (uri, upstream_auth) = seen.recv().await.unwrap();
        assert_eq!(uri, "/xrpc/app.bsky.feed.getTimeline?limit=5");
        let token = upstream_auth.strip_prefix("Bearer ").unwrap();
        let jwt = Jwt::decode(token).unwrap();
        assert_eq!(jwt.claims["iss"], s.did.as_str());
        assert_eq!(jwt.claims["aud"], "did:web:appview.test#bsky_appview");
        assert_eq!(jwt.claims["lxm"], "app.bsky.feed.getTimeline");
        let ttl = jwt.claims["exp"].as_i64().unwrap() - jwt.claims["iat"].as_i64().unwrap();
        assert!(ttl > 0 && ttl <= 60);
        // The signature checks out with the key in our DID document.
        let (_, doc) = raw(
            s.addr,
            b"GET /.well-known/did.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        let key = PublicKey::from_multikey(
            doc["verificationMethod"][0]["publicKeyMultibase"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        jwt.verify_es(&key).unwrap();

        // Without a session nothing is forwarded.
        let (st, b) = s.call("GET", "app.bsky.feed.getTimeline", &[], b"").await;
        assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
        assert!(seen.try_recv().is_err());
        // Protected methods are never proxied, whatever the header says.
        let (st, _) = s
            .call(
                "POST",
                "com.atproto.server.updateEmail",
                &[
                    ("authorization", &auth),
                    ("atproto-proxy", "did:web:appview.test#bsky_appview"),
                    ("content-type", "application/json"),
                ],
                b"{}",
            )
            .await;
        assert_eq!(st, 400);
        assert!(seen.try_recv().is_err());
    }

    #[tokio::test]
    async fn private_upstreams_are_refused_by_default() {
        let (upstream, mut seen) = fake_appview().await;
        let s = start_with(|c| {
            c.appview_url = format!("http://{upstream}");
            c.allow_loopback = false;
        })
        .await;
        let auth = format!("Bearer {}", s.token);
        let (st, b) = s
            .call(
                "GET",
                "app.bsky.feed.getTimeline",
                &[("authorization", &auth)],
                b"",
            )
            .await;
        assert_xrpc_error(st, &b, 502, "UpstreamFailure");
        assert!(seen.try_recv().is_err());
    }

    #[tokio::test]
    async fn relays_are_asked_to_crawl_and_it_shows_in_readyz() {
        let (relay, mut seen) = fake_appview().await;
        let s = start_with(|c| {
            c.relays = vec![format!("http://{relay}")];
            c.allow_loopback = true;
        })
        .await;
        let app_for_crawl = s.app.clone();
        tokio::spawn(perch::crawl::run(app_for_crawl));
        let (uri, _) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(uri, "/xrpc/com.atproto.sync.requestCrawl");
        // The answer is recorded for the status page.
        for _ in 0..50 {
            let (_, b) = raw(
                s.addr,
                b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            if b["relays"][0]["result"] == "ok" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("readyz never showed the relay's answer");
    }

    #[tokio::test]
    async fn proxy_targets_resolving_to_private_addresses_are_refused() {
        let (upstream, mut seen) = fake_appview().await;
        let s = start().await;
        let auth = format!("Bearer {}", s.token);
        for target in [
            format!("did:web:localhost%3A{}#bsky_appview", upstream.port()),
            "did:web:127.0.0.1#bsky_appview".to_string(),
            "did:web:169.254.169.254#bsky_appview".to_string(),
        ] {
            let (st, b) = s
                .call(
                    "GET",
                    "app.bsky.feed.getTimeline",
                    &[("authorization", &auth), ("atproto-proxy", &target)],
                    b"",
                )
                .await;
            assert!(st == 502 || st == 400, "{target}: {st} {b}");
            assert!(b["error"].is_string(), "{b}");
        }
        assert!(
            seen.try_recv().is_err(),
            "a request reached the private upstream"
        );
    }

    #[tokio::test]
    async fn a_relay_without_our_head_counts_as_lagging() {
        // The stand-in answers every call without a `rev`, like a relay
        // that never saw this repo.
        let (relay, mut seen) = fake_appview().await;
        let s = start_with(|c| {
            c.relays = vec![format!("http://{relay}")];
            c.allow_loopback = true;
        })
        .await;
        assert!(perch::crawl::relays_lag(&s.app).await);
        let (uri, _) = seen.recv().await.unwrap();
        assert!(
            uri.starts_with("/xrpc/com.atproto.sync.getLatestCommit?did="),
            "{uri}"
        );
        // No relays, no lag.
        let quiet = start().await;
        assert!(!perch::crawl::relays_lag(&quiet.app).await);
    }
}

#[tokio::test]
async fn moving_in_needs_an_invite_and_a_valid_service_token() {
    let s = start().await;
    let json = [("content-type", "application/json")];
    let body = json!({
        "did": "did:plc:abcdefghijklmnopqrstuvwx",
        "handle": "bob.test",
        "password": "pw",
    });
    // One account per server: refused while one exists.
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &json,
            body.to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    // Without a DID this is not a migration: refused.
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &json,
            json!({"handle": "bob.test", "password": "pw"})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");

    // An empty box: no invite, no account; an invite but a forged token, no account.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::dev(dir.path());
    config.listen = listener.local_addr().unwrap();
    let app = App::open(config).await.unwrap();
    tokio::spawn(perch::http::serve(
        Arc::clone(&app),
        listener,
        perch::http::Role::Plain,
        perch::http::ConnLimiter::new(64, 64),
        std::future::pending(),
    ));
    let empty = Server {
        addr: app.config.listen,
        app: Arc::clone(&app),
        did: String::new(),
        token: String::new(),
        _dir: dir,
    };
    let (st, b) = empty
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &json,
            body.to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidInviteCode");
    let code = perch::api::migrate::new_action_token(&app, "invite", 3600)
        .await
        .unwrap();
    let mut with_code = body.clone();
    with_code["inviteCode"] = json!(code);
    let (st, b) = empty
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &json,
            with_code.to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "AuthMissing");
    let forged = [
        ("content-type", "application/json"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NksifQ.eyJpc3MiOiJkaWQ6cGxjOmFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eCJ9.AAAA",
        ),
    ];
    let (st, b) = empty
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &forged,
            with_code.to_string().as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "BadJwtAudience");
    assert!(
        app.account().await.unwrap().is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn delete_account_needs_password_and_code_then_removes_everything() {
    let s = start().await;
    let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "to be deleted", "createdAt": "2026-01-01T00:00:00Z"}});
    let (st, _) = s
        .write("com.atproto.repo.createRecord", rec.to_string().as_bytes())
        .await;
    assert_eq!(st, 200);
    let auth = format!("Bearer {}", s.token);
    let (st, _) = s
        .call(
            "POST",
            "com.atproto.server.requestAccountDelete",
            &[("authorization", &auth)],
            b"",
        )
        .await;
    assert_eq!(st, 200);
    let code = perch::api::migrate::new_action_token(&s.app, "delete_account", 900)
        .await
        .unwrap();
    let json = [("content-type", "application/json")];
    let req = |password: &str, token: &str| {
        json!({"did": s.did, "password": password, "token": token}).to_string()
    };
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.deleteAccount",
            &json,
            req("wrong", &code).as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.deleteAccount",
            &json,
            req("correct horse", "AAAAA-BBBBB").as_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidToken");
    let (st, _) = s
        .call(
            "POST",
            "com.atproto.server.deleteAccount",
            &json,
            req("correct horse", &code).as_bytes(),
        )
        .await;
    assert_eq!(st, 200);
    assert!(s.app.account().await.unwrap().is_none());
    let (st, b) = s
        .call(
            "GET",
            &format!("com.atproto.sync.getRepoStatus?did={}", s.q_did()),
            &[],
            b"",
        )
        .await;
    assert_xrpc_error(st, &b, 400, "RepoNotFound");
    // The last firehose event says the account is gone.
    let count: i64 = s
        .app
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM block", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(count, 0, "no repo blocks left");
    let events = s
        .app
        .store
        .read(|c| perch::store::repo::events_after(c, 0, 1000))
        .await
        .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "account");
}
