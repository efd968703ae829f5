//! The real server, in process, on 127.0.0.1 with a real SQLite file:
//! hostile and malformed requests get the right XRPC error, never a panic
//! or a half-written repo, and leave the repo's head where it was.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{connect_from, raw, raw_get, request_bytes};
use crate::support::in_process::{Boot, InProcess};
use crate::support::{Client, assert_xrpc_error};

/// Another client than 127.0.0.1, to the per-address limits.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The server with a did:web account, signed in, and a 64 KiB blob limit.
async fn start() -> InProcess {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut perch::config::Config)) -> InProcess {
    InProcess::start_with(|c| {
        c.blob_limit = 64 * 1024;
        tweak(c);
    })
    .await
}

/// One request that must be refused, written as bytes (several are nothing a
/// well-behaved client would send), and the XRPC error it must get.
struct Refused {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn refused(what: &'static str, request: Vec<u8>, status: u16, error: &'static str) -> Refused {
    Refused {
        what,
        request,
        status,
        error,
    }
}

/// Every malformed, unauthorised or oversized request `s` must refuse.
fn hostile_requests(s: &Client) -> Vec<Refused> {
    let auth = s.bearer();
    let json_auth = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let post = |text: &str| {
        json!({"repo": s.did, "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-01-01T00:00:00Z"}})
    };
    let changed = |change: &dyn Fn(&mut Value)| {
        let mut rec = post("x");
        change(&mut rec);
        rec.to_string().into_bytes()
    };
    let create = |headers: &[(&str, &str)], body: &[u8]| {
        request_bytes("POST", "/xrpc/com.atproto.repo.createRecord", headers, body)
    };
    let get = |path: String| request_bytes("GET", &format!("/xrpc/{path}"), &[], b"");
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep = format!(
        r#"{{"repo":"{}","collection":"app.bsky.feed.post","record":{{"$type":"app.bsky.feed.post","x":{deep}}}}}"#,
        s.did
    );
    let huge = format!(
        "POST /xrpc/com.atproto.repo.createRecord HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nauthorization: {auth}\r\ncontent-length: 50000000\r\n\r\n{{"
    );
    let mut chunked = format!(
        "POST /xrpc/com.atproto.repo.createRecord HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 100_000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let q_did = s.q_did();
    let list = |q: &str| {
        get(format!(
            "com.atproto.repo.listRecords?repo={q_did}&collection=app.bsky.feed.post&{q}"
        ))
    };
    let (bad, forbidden, too_large) = (400, 403, 413);
    vec![
        refused(
            "not JSON",
            create(&json_auth, b"{not json"),
            bad,
            "InvalidRequest",
        ),
        refused(
            "not declared JSON",
            create(
                &[("content-type", "text/plain"), ("authorization", &auth)],
                post("x").to_string().as_bytes(),
            ),
            bad,
            "InvalidRequest",
        ),
        // Floats are not in the data model.
        refused(
            "a float",
            create(&json_auth, &changed(&|r| r["record"]["n"] = json!(1.5))),
            bad,
            "InvalidRequest",
        ),
        refused(
            "deep nesting",
            create(&json_auth, deep.as_bytes()),
            bad,
            "InvalidRequest",
        ),
        refused(
            "a bad rkey",
            create(&json_auth, &changed(&|r| r["rkey"] = json!("../etc"))),
            bad,
            "InvalidRequest",
        ),
        refused(
            "a bad NSID",
            create(
                &json_auth,
                &changed(&|r| r["collection"] = json!("not an nsid")),
            ),
            bad,
            "InvalidRequest",
        ),
        refused(
            "a $type that is not the collection",
            create(
                &json_auth,
                &changed(&|r| r["collection"] = json!("app.bsky.feed.like")),
            ),
            bad,
            "InvalidRequest",
        ),
        refused(
            "another DID's repo",
            create(
                &json_auth,
                &changed(&|r| r["repo"] = json!("did:plc:zzzzzzzzzzzzzzzzzzzzzzzz")),
            ),
            forbidden,
            "Forbidden",
        ),
        refused(
            "a Content-Length too large",
            huge.into_bytes(),
            too_large,
            "PayloadTooLarge",
        ),
        refused(
            "a chunked body too large",
            chunked,
            too_large,
            "PayloadTooLarge",
        ),
        refused(
            "a blob over the configured limit",
            request_bytes(
                "POST",
                "/xrpc/com.atproto.repo.uploadBlob",
                &[("content-type", "image/png"), ("authorization", &auth)],
                &vec![7u8; 64 * 1024 + 1],
            ),
            too_large,
            "PayloadTooLarge",
        ),
        refused(
            "no auth",
            create(
                &[("content-type", "application/json")],
                post("x").to_string().as_bytes(),
            ),
            401,
            "AuthenticationRequired",
        ),
        refused(
            "garbage auth",
            create(
                &[
                    ("content-type", "application/json"),
                    ("authorization", "Bearer nope"),
                ],
                post("x").to_string().as_bytes(),
            ),
            bad,
            "InvalidToken",
        ),
        refused(
            "a procedure by GET",
            get("com.atproto.repo.createRecord".into()),
            bad,
            "InvalidRequest",
        ),
        refused(
            "an unknown method",
            get("com.example.nothing".into()),
            501,
            "MethodNotImplemented",
        ),
        refused(
            "a limit out of range",
            list("limit=9999"),
            bad,
            "InvalidRequest",
        ),
        refused(
            "a cursor that is no rkey",
            list("cursor=%2F%2F"),
            bad,
            "InvalidRequest",
        ),
        refused(
            "a record that is not there",
            get(format!(
                "com.atproto.repo.getRecord?repo={q_did}&collection=app.bsky.feed.post&rkey=nope"
            )),
            bad,
            "RecordNotFound",
        ),
        refused(
            "missing params",
            get("com.atproto.repo.getRecord?repo=x".into()),
            bad,
            "InvalidRequest",
        ),
    ]
}

#[tokio::test]
async fn hostile_requests_get_clean_errors_and_change_nothing() {
    let s = start().await;
    let before = s.head().await;
    for case in hostile_requests(&s) {
        let (st, b) = raw(s.addr, &case.request).await;
        assert_eq!(
            (st, b["error"].as_str()),
            (case.status, Some(case.error)),
            "{}: {b}",
            case.what
        );
        assert!(b["message"].is_string(), "{}: {b}", case.what);
    }
    assert_eq!(
        s.head().await,
        before,
        "a failed request moved the repo head"
    );

    // And a good write still works afterwards.
    let post = json!({"repo": s.did, "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "hello", "createdAt": "2026-01-01T00:00:00Z"}});
    let (st, b) = s.post("com.atproto.repo.createRecord", &post).await;
    assert_eq!(st, 200, "{b}");
    assert_ne!(s.head().await, before);
}

#[tokio::test]
async fn upload_blob_accepts_the_accounts_own_service_token() {
    let s = start().await;
    let auth = s.bearer();
    let aud = "did:web:localhost";
    let mint = |lxm: &str| format!("com.atproto.server.getServiceAuth?aud={aud}&lxm={lxm}");
    let (st, b) = s
        .call(
            "GET",
            &mint("com.atproto.repo.uploadBlob"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let service = format!("Bearer {}", b["token"].as_str().unwrap());
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("authorization", &service), ("content-type", "video/mp4")],
            b"not really a video".to_vec(),
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
            Vec::new(),
        )
        .await;
    let wrong = format!("Bearer {}", b["token"].as_str().unwrap());
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("authorization", &wrong), ("content-type", "video/mp4")],
            b"x".to_vec(),
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
            b"{}".to_vec(),
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
    let mut c = connect_from(OTHER, s.addr).await.unwrap();
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
    let mut c = connect_from(OTHER, s.addr).await.unwrap();
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
    // A connection with a request open keeps its slot: with 8 connections each in the
    // middle of sending a body, a newcomer is turned away rather than pushing one out.
    drop(silent);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST /xrpc/com.atproto.server.createAccount HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = connect_from(OTHER, s.addr).await.unwrap();
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
    let (st, b) = raw_get(s.addr, "/xrpc/_health").await;
    assert_eq!(st, 200);
    assert!(b["version"].is_string());
    let (st, _) = raw_get(s.addr, "/readyz").await;
    assert_eq!(st, 200);
    let (st, b) = raw_get(s.addr, "/.well-known/did.json").await;
    assert_eq!(st, 200);
    assert_eq!(b["id"], s.did);
    assert_eq!(
        b["service"][0]["serviceEndpoint"],
        format!("http://localhost:{}", s.addr.port())
    );
}

mod firehose {
    use super::*;
    use crate::support::firehose::{self, Ws, kind as t, split_frame};
    use futures_util::StreamExt;
    use perch::cbor::Ipld;
    use tokio_tungstenite::tungstenite::Message;

    async fn connect(s: &Client, cursor: Option<i64>) -> Ws {
        firehose::connect(s.addr, cursor).await
    }

    /// Next frame as (header, body).
    async fn frame(ws: &mut Ws) -> (Ipld, Ipld) {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        let Message::Binary(bytes) = msg else {
            panic!("not binary: {msg:?}")
        };
        split_frame(&bytes).expect("frame is header + body")
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
        let (st, out) = s.post("com.atproto.repo.createRecord", &rec).await;
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
                "record": {"$type": "app.bsky.feed.post", "text": format!("{i}"), "padding": "x".repeat(2000), "createdAt": "2026-01-01T00:00:00Z"}});
            let (st, b) = s.post("com.atproto.repo.createRecord", &rec).await;
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
    async fn drain(s: &Client, cursor: i64) -> Vec<(i64, Vec<u8>)> {
        let mut ws = connect(s, Some(cursor)).await;
        let mut out = Vec::new();
        while let Ok(Some(Ok(Message::Binary(b)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        {
            let (_, body) = split_frame(&b).expect("frame is header + body");
            let seq = body.get("seq").and_then(Ipld::as_integer).unwrap();
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
            s.post("com.atproto.repo.createRecord", &rec).await;
        }
        let before = drain(&s, 0).await;
        assert_eq!(before.len(), 8);
        // "Restart": a second server over the same data directory.
        let restarted = InProcess::serve(s.app.config.clone()).await;
        let s2 = s.at(restarted.addr);
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
        let (st, _) = s2.post("com.atproto.repo.createRecord", &rec).await;
        assert_eq!(st, 200);
        let latest = drain(&s2, before.last().unwrap().0).await;
        assert_eq!(latest.len(), 1);
        assert!(latest[0].0 > before.last().unwrap().0);
    }

    #[tokio::test]
    async fn readyz_counts_subscribers() {
        let s = start().await;
        let count = || async {
            let (_, b) = raw_get(s.addr, "/readyz").await;
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
    async fn subscribers_have_their_own_address_cap() {
        let s = start_with(|c| {
            c.max_connections_per_ip = 4;
            c.max_subscribers_per_ip = 4;
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut ws = connect(&s, Some(0)).await;
            frame(&mut ws).await;
            held.push(ws);
        }
        // The upgraded sockets hold no connection slot: the same address is still served.
        let (st, _) = raw_get(s.addr, "/xrpc/_health").await;
        assert_eq!(st, 200);
        // A fifth subscriber from the address takes the place of its oldest, which is closed.
        let mut fifth = connect(&s, Some(0)).await;
        frame(&mut fifth).await;
        let oldest = &mut held[0];
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match oldest.next().await {
                    None | Some(Err(_)) => return None,
                    Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .expect("the oldest subscriber of a full address is closed");
        assert_eq!(end, Some(1013), "closed with Try Again Later");
        assert_eq!(s.app.subscriber_slots.count(), 4);
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
        let (st, b) = raw_get(s.addr, "/xrpc/com.atproto.sync.subscribeRepos").await;
        assert_eq!(st, 426, "{b}");
        let (st, _) = raw_get(s.addr, "/xrpc/com.atproto.sync.subscribeRepos?cursor=-4").await;
        assert_eq!(st, 400);
    }
}

mod sync_reads {
    use super::*;
    use perch::repo::car::{CarLimits, CarReader};
    use perch::repo::export::load_repo_car;

    /// An unauthenticated GET: status and body bytes.
    async fn get_bytes(s: &Client, path: &str) -> (u16, Vec<u8>) {
        let (st, body) = s.fetch("GET", path, &[], Vec::new()).await;
        (st, body.to_vec())
    }

    #[tokio::test]
    async fn get_repo_record_and_blocks() {
        let s = start().await;
        let mut rkeys = Vec::new();
        for i in 0..30 {
            let rec = json!({"repo": s.did, "collection": "com.example.perch.note", "rkey": format!("r{i:03}"),
                "record": {"$type": "com.example.perch.note", "text": format!("post {i}"), "createdAt": "2026-01-01T00:00:00Z"}});
            let (st, b) = s.post("com.atproto.repo.createRecord", &rec).await;
            assert_eq!(st, 200, "{b}");
            rkeys.push((format!("r{i:03}"), b["cid"].as_str().unwrap().to_owned()));
        }
        let head = s.head().await;
        let did = s.q_did();

        let (st, car) = get_bytes(&s, &format!("/xrpc/com.atproto.sync.getRepo?did={did}")).await;
        assert_eq!(st, 200);
        let repo = load_repo_car(car.as_slice(), CarLimits::default(), None).unwrap();
        assert_eq!(repo.record_count, 30);
        assert_eq!(repo.commit_cid.to_string(), head["cid"].as_str().unwrap());

        // Proof of one record: commit, the MST path, the record.
        let (st, car) = get_bytes(
            &s,
            &format!(
                "/xrpc/com.atproto.sync.getRecord?did={did}&collection=com.example.perch.note&rkey=r007"
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
            .get(&mem, b"com.example.perch.note/r007")
            .unwrap()
            .unwrap();
        assert_eq!(got.to_string(), rkeys[7].1);
        assert!(mem.contains(&got));

        let (st, car) = get_bytes(
            &s,
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
            &s,
            &format!("/xrpc/com.atproto.sync.getBlocks?did={did}&cids=bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpq"),
        )
        .await;
        assert_eq!(st, 400);

        // The deprecated getHead agrees with getLatestCommit.
        let (st, b) = raw_get(s.addr, &format!("/xrpc/com.atproto.sync.getHead?did={did}")).await;
        assert_eq!(st, 200);
        assert_eq!(b["root"], head["cid"]);

        // since: only blocks written after that rev.
        let since = head["rev"].as_str().unwrap().to_owned();
        let rec = json!({"repo": s.did, "collection": "com.example.perch.note",
            "record": {"$type": "com.example.perch.note", "text": "later", "createdAt": "2026-01-01T00:00:00Z"}});
        s.post("com.atproto.repo.createRecord", &rec).await;
        let (st, car) = get_bytes(
            &s,
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
        let auth = s.bearer();
        let (st, b) = s
            .call(
                "GET",
                "app.bsky.feed.getTimeline?limit=5",
                &[("authorization", &auth)],
                Vec::new(),
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
        let (_, doc) = raw_get(s.addr, "/.well-known/did.json").await;
        let key = PublicKey::from_multikey(
            doc["verificationMethod"][0]["publicKeyMultibase"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        jwt.verify_es(&key).unwrap();

        // Without a session nothing is forwarded.
        let (st, b) = s
            .call("GET", "app.bsky.feed.getTimeline", &[], Vec::new())
            .await;
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
                b"{}".to_vec(),
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
        let auth = s.bearer();
        let (st, b) = s
            .call(
                "GET",
                "app.bsky.feed.getTimeline",
                &[("authorization", &auth)],
                Vec::new(),
            )
            .await;
        assert_xrpc_error(st, &b, 502, "UpstreamFailure");
        assert!(seen.try_recv().is_err());
    }

    #[tokio::test]
    async fn proxy_targets_resolving_to_private_addresses_are_refused() {
        let (upstream, mut seen) = fake_appview().await;
        let s = start().await;
        let auth = s.bearer();
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
                    Vec::new(),
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
}

/// A createAccount that must be refused: why, on which server, its headers
/// and body, and the status and error it gets.
type CreateAccount<'a> = (
    &'a str,
    &'a Client,
    &'a [(&'a str, &'a str)],
    &'a Value,
    u16,
    &'a str,
);

async fn refuse((what, c, headers, body, status, error): CreateAccount<'_>) {
    let body = body.to_string().into_bytes();
    let (st, b) = c
        .call("POST", "com.atproto.server.createAccount", headers, body)
        .await;
    assert_eq!(
        (st, b["error"].as_str()),
        (status, Some(error)),
        "{what}: {b}"
    );
    assert!(b["message"].is_string(), "{what}: {b}");
}

#[tokio::test]
async fn moving_in_needs_an_invite_and_a_valid_service_token() {
    let s = start().await;
    // An empty box: no account yet.
    let empty = InProcess::boot(
        Boot {
            data: None,
            account: None,
        },
        |_| {},
    )
    .await;
    let json = [("content-type", "application/json")];
    let forged = [
        ("content-type", "application/json"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NksifQ.eyJpc3MiOiJkaWQ6cGxjOmFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eCJ9.AAAA",
        ),
    ];
    let body = json!({
        "did": "did:plc:abcdefghijklmnopqrstuvwx",
        "handle": "bob.test",
        "password": "pw",
    });
    let no_did = json!({"handle": "bob.test", "password": "pw"});
    let refused: [CreateAccount; 3] = [
        (
            "one account per server",
            &s,
            &json,
            &body,
            400,
            "InvalidRequest",
        ),
        (
            "without a DID this is not a migration",
            &s,
            &json,
            &no_did,
            400,
            "InvalidRequest",
        ),
        (
            "an empty box without an invite",
            &empty,
            &json,
            &body,
            400,
            "InvalidInviteCode",
        ),
    ];
    for case in refused {
        refuse(case).await;
    }
    let code = empty
        .app
        .accounts()
        .new_code(perch::account::Purpose::Invite)
        .await
        .unwrap();
    let mut with_code = body.clone();
    with_code["inviteCode"] = json!(code);
    let refused: [CreateAccount; 2] = [
        (
            "an invite but no token from the old server",
            &empty,
            &json,
            &with_code,
            401,
            "AuthenticationRequired",
        ),
        (
            "an invite and a forged token",
            &empty,
            &forged,
            &with_code,
            401,
            "BadJwtAudience",
        ),
    ];
    for case in refused {
        refuse(case).await;
    }
    assert!(
        empty.app.account().await.unwrap().is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn delete_account_needs_password_and_code_then_removes_everything() {
    let s = start().await;
    let rec = json!({"repo": s.did, "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "to be deleted", "createdAt": "2026-01-01T00:00:00Z"}});
    let (st, _) = s.post("com.atproto.repo.createRecord", &rec).await;
    assert_eq!(st, 200);
    let auth = s.bearer();
    let (st, _) = s
        .call(
            "POST",
            "com.atproto.server.requestAccountDelete",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
    let code = s
        .app
        .accounts()
        .new_code(perch::account::Purpose::DeleteAccount)
        .await
        .unwrap();
    let json = [("content-type", "application/json")];
    let req = |password: &str, token: &str| {
        json!({"did": s.did, "password": password, "token": token}).to_string()
    };
    for (password, token, status, error) in [
        ("wrong", code.as_str(), 401, "AuthenticationRequired"),
        ("correct horse", "AAAAA-BBBBB", 400, "InvalidToken"),
    ] {
        let (st, b) = s
            .call(
                "POST",
                "com.atproto.server.deleteAccount",
                &json,
                req(password, token).into_bytes(),
            )
            .await;
        assert_xrpc_error(st, &b, status, error);
    }
    let (st, _) = s
        .call(
            "POST",
            "com.atproto.server.deleteAccount",
            &json,
            req("correct horse", &code).into_bytes(),
        )
        .await;
    assert_eq!(st, 200);
    assert!(s.app.account().await.unwrap().is_none());
    let (st, b) = s
        .call(
            "GET",
            &format!("com.atproto.sync.getRepoStatus?did={}", s.q_did()),
            &[],
            Vec::new(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "RepoNotFound");
    // The last firehose event says the account is gone.
    let count: i64 = s
        .app
        .store
        .read(perch::store::repo::block_count)
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
