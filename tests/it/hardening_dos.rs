//! Denial of service and address forgery against a real `perch serve --dev`
//! (issue 14, items 3, 4, 5 and 10), with real sockets from several loopback
//! source addresses (Linux routes all of 127/8 to `lo`) and RSS read from
//! `/proc`. Assertions are about behaviour: status codes, a read answered
//! while others stall, a peak RSS bound; timeouts only detect hangs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::client::{connect_from, first_response};
use crate::support::firehose::{self, Ws};
use crate::support::process::status_kib;
use crate::support::{Perch, assert_xrpc_error};

/// Generous: a hang detector, not a speed assertion.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn ip(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, c, d))
}

/// One HTTP/1.1 GET from `from`: the status, or None when the server closed
/// the connection without answering or did not answer in time.
async fn get_from(from: IpAddr, addr: SocketAddr, path: &str, headers: &str) -> Option<u16> {
    let fut = async {
        let mut c = connect_from(from, addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\n");
        c.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(ANSWER_WITHIN, fut)
        .await
        .ok()
        .flatten()
}

// --- item 10: X-Forwarded-For ------------------------------------------------

/// Behind a trusted proxy on loopback, a client cannot reach `/metrics` as
/// loopback by putting `127.0.0.1` left of an entry the proxy wrote in a
/// form the old parser skipped (`ip:port`, `[v6]`, `[v6]:port`, `unknown`).
#[tokio::test]
async fn forwarded_for_entries_that_do_not_parse_cannot_forge_loopback() {
    let p = Perch::start_with(&[
        ("PERCH_TRUSTED_PROXIES", "127.0.0.1"),
        ("PERCH_METRICS", "true"),
    ])
    .await;
    let proxy = ip(0, 1);
    let metrics = |xff: &'static str| {
        let headers = if xff.is_empty() {
            String::new()
        } else {
            format!("x-forwarded-for: {xff}\r\n")
        };
        let addr = p.addr;
        async move { get_from(proxy, addr, "/metrics", &headers).await }
    };
    // The proxy's own loopback clients still see it.
    assert_eq!(metrics("").await, Some(200));
    assert_eq!(metrics("127.0.0.1").await, Some(200));
    for forged in [
        "127.0.0.1, 203.0.113.5:4711",
        "127.0.0.1, [2001:db8::7]:443",
        "127.0.0.1, [2001:db8::7]",
        "127.0.0.1, unknown",
        "127.0.0.1, _hidden",
        "127.0.0.1,203.0.113.5 , 198.51.100.1:80",
        "127.0.0.1, \"[2001:db8::7]:443\"",
    ] {
        assert_eq!(
            metrics(forged).await,
            Some(401),
            "X-Forwarded-For: {forged}"
        );
    }
    assert!(p.alive().await);
}

// --- item 3: stalled getRepo readers -------------------------------------------

/// The first ~1 KB of a response to `request`, sent from `from`; the socket is
/// returned unread beyond that (a stalled reader), with a small receive buffer
/// so the server's side fills up soon.
async fn stall_after_1k(from: IpAddr, addr: SocketAddr, request: &str) -> (Vec<u8>, TcpStream) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = sock.connect(addr).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < 1024 {
        match tokio::time::timeout(ANSWER_WITHIN, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        // A complete short answer (an error) has its whole body by now.
        if got.windows(4).any(|w| w == b"\r\n\r\n") && !got.starts_with(b"HTTP/1.1 200") {
            break;
        }
    }
    (got, c)
}

/// Records totalling ~20 MB (far beyond socket buffers) and a few hundred small
/// ones for a tree several layers deep; returns how many records there are.
async fn fill_repo(p: &Perch) -> usize {
    let big = "x".repeat(500_000);
    for i in 0..40 {
        p.create(
            "com.example.big",
            Some(&format!("big{i:03}")),
            serde_json::json!({"$type": "com.example.big", "n": i, "text": big}),
        )
        .await;
    }
    for batch in 0..2 {
        let writes: Vec<_> = (0..100)
            .map(|i| {
                serde_json::json!({"$type": "com.atproto.repo.applyWrites#create",
                    "collection": "com.example.perch.note", "rkey": format!("p{batch}{i:03}"),
                    "value": {"$type": "com.example.perch.note", "text": format!("post {batch} {i}"),
                        "createdAt": "2026-01-01T00:00:00Z"}})
            })
            .collect();
        let (st, b) = p
            .post(
                "com.atproto.repo.applyWrites",
                &serde_json::json!({"repo": p.did, "writes": writes}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
    }
    240
}

/// Sixteen clients from sixteen addresses ask for a ~20 MB repo, read 1 KB and
/// stop. Reads for everyone else keep being answered (before the fix each
/// stalled export held one of the eight blocking threads and a database
/// connection, and describeRepo hung); beyond the export caps the stallers get
/// a clean 429; once they go, a full export comes back whole and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_get_repo_readers_do_not_freeze_reads() {
    let p = Perch::start().await;
    let records = fill_repo(&p).await;
    let did = p.q_did();
    let get_repo =
        format!("GET /xrpc/com.atproto.sync.getRepo?did={did} HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut stalled = Vec::new();
    let (mut exporting, mut refused) = (0, 0);
    for n in 1..=16 {
        let (head, sock) = stall_after_1k(ip(2, n), p.addr, &get_repo).await;
        assert!(
            !head.is_empty(),
            "getRepo from 127.0.2.{n}: no answer within {ANSWER_WITHIN:?} beside {} stalled readers",
            n - 1
        );
        let (status, body) = first_response(&head);
        match status {
            200 => exporting += 1,
            429 => {
                assert_xrpc_error(status, &body, 429, "RateLimitExceeded");
                refused += 1;
            }
            other => panic!("getRepo from 127.0.2.{n}: {other} {body}"),
        }
        stalled.push(sock);
    }
    assert!(exporting >= 1, "no export started");
    assert!(exporting <= 12, "{exporting} exports at once: not capped");
    assert_eq!(exporting + refused, 16);
    // Meanwhile (the stalled exports are still open), reads are answered.
    for round in 0..3 {
        for path in [
            format!("/xrpc/com.atproto.repo.describeRepo?repo={did}"),
            format!("/xrpc/com.atproto.sync.getLatestCommit?did={did}"),
            format!(
                "/xrpc/com.atproto.sync.getRecord?did={did}&collection=com.example.big&rkey=big001"
            ),
        ] {
            let st = get_from(ip(3, 1), p.addr, &path, "").await;
            assert_eq!(
                st,
                Some(200),
                "round {round}: {path} with 16 stalled readers"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stalled);
    // Their slots come back once the server notices they are gone.
    let car = {
        let mut tries = 0;
        loop {
            let (st, car) = p
                .request(
                    "GET",
                    &format!("com.atproto.sync.getRepo?did={did}"),
                    &[],
                    Vec::new(),
                )
                .await;
            if st == 200 {
                break car;
            }
            assert_eq!(st, 429, "{}", String::from_utf8_lossy(&car));
            tries += 1;
            assert!(tries < 100, "export slots never came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(car.len() > 20_000_000, "{} bytes", car.len());
    let limits = perch::repo::car::CarLimits::default();
    let repo = perch::repo::export::load_repo_car(&car, limits, None).unwrap();
    assert_eq!(repo.record_count, records);
    assert_eq!(
        repo.commit_cid.to_string(),
        p.head().await["cid"].as_str().unwrap()
    );

    // The other exports in batches too: a diff and named blocks bigger than a batch.
    let (st, diff) = p
        .request(
            "GET",
            &format!("com.atproto.sync.getRepo?did={did}&since=2222222222222"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
    let diff: Vec<_> = perch::repo::car::CarReader::new(diff.as_ref(), limits)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Every block is newer than that rev: the diff holds the whole repo (and the
    // blocks of earlier commits).
    let in_diff: std::collections::HashSet<_> = diff.iter().map(|(c, _)| *c).collect();
    assert_eq!(in_diff.len(), diff.len(), "a block given twice");
    for (c, _) in repo.blocks.iter() {
        assert!(in_diff.contains(c), "{c} missing from the diff");
    }
    let bigs: Vec<_> = diff
        .iter()
        .filter(|(_, b)| b.len() > 400_000)
        .map(|(c, _)| c.to_string())
        .collect();
    assert_eq!(bigs.len(), 40);
    let q: String = bigs.iter().map(|c| format!("&cids={c}")).collect();
    let (st, blocks) = p
        .request(
            "GET",
            &format!("com.atproto.sync.getBlocks?did={did}{q}"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
    let got: Vec<String> = perch::repo::car::CarReader::new(blocks.as_ref(), limits)
        .unwrap()
        .map(|b| b.unwrap().0.to_string())
        .collect();
    assert_eq!(got, bigs, "in the order asked");
    assert!(p.alive().await);
}

// --- item 4: unfinished request bodies over HTTP/2 ------------------------------

/// A request body that sends `first` and then never another byte (nor its end).
struct Unfinished(Option<bytes::Bytes>);

impl hyper::body::Body for Unfinished {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// An HTTP/2 (h2c, prior knowledge) connection from `from`.
async fn h2_from<B>(from: IpAddr, addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = connect_from(from, addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// JSON bodies may be 150 KiB.
const JSON_LIMIT: usize = 150 * 1024;

/// Growth of peak RSS over the idle server allowed under the flood below: the
/// body budget (16 MiB in all; these 4 addresses can hold 8 MiB of it), what
/// HTTP/2 flow control lets 32 connections send ahead (128 KiB each, 4 MiB),
/// and the state of the 1024 streams let in (256 per address; about 20 KB each
/// in a debug build: hyper's stream, the request, the handler's future), with
/// room to spare for the allocator.
/// Measured as growth because the idle server is ~38 MiB in a debug build and
/// ~9 MiB in a release one.
const FLOOD_GROWTH_KIB: u64 = 64 * 1024;

/// 32 HTTP/2 connections from 4 addresses, each with 64 streams whose bodies
/// stop one byte short of the JSON limit. Peak RSS grows by less than
/// [`FLOOD_GROWTH_KIB`] (it grew by ~370 MiB before: every stream's 150 KB sat
/// in memory, plus what hyper buffered ahead), streams beyond 256 open per
/// address are refused at once, and a login from another address is answered
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_h2_bodies_stay_within_a_memory_budget() {
    let p = Perch::start().await;
    let pid = p.pid();
    let rss_before = status_kib(pid, "VmRSS");
    let body = bytes::Bytes::from(vec![b' '; JSON_LIMIT - 1]);
    let mut conns = Vec::new();
    let mut streams = Vec::new();
    for a in 1..=4 {
        for _ in 0..8 {
            let mut send = h2_from(ip(4, a), p.addr).await;
            for _ in 0..64 {
                if send.ready().await.is_err() {
                    break;
                }
                // createAccount reads its body before anything else.
                let req = hyper::Request::post(format!(
                    "http://{}/xrpc/com.atproto.server.createAccount",
                    p.addr
                ))
                .header("content-type", "application/json")
                .header("content-length", JSON_LIMIT.to_string())
                .body(Unfinished(Some(body.clone())))
                .unwrap();
                streams.push(tokio::spawn(send.send_request(req)));
            }
            conns.push(send);
        }
    }
    // Let the server take in whatever it will take: until RSS has not grown for 2 s.
    let (mut last, mut still) = (0, 0);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = status_kib(pid, "VmRSS");
        still = if now < last + 1024 { still + 1 } else { 0 };
        if still == 4 {
            break;
        }
        last = last.max(now);
    }
    // A normal request from another address is served meanwhile.
    let login = serde_json::json!({"identifier": p.handle, "password": p.password}).to_string();
    let answered = tokio::time::timeout(
        ANSWER_WITHIN * 3,
        p.call(
            "POST",
            "com.atproto.server.createSession",
            &[("content-type", "application/json")],
            login.into_bytes(),
        ),
    )
    .await;
    let peak = status_kib(pid, "VmHWM");
    eprintln!(
        "abuse: h2_unfinished_bodies connections={} streams={} body_bytes={} rss_before_kib={rss_before} \
         rss_during_kib={} vmhwm_kib={peak}",
        conns.len(),
        streams.len(),
        JSON_LIMIT - 1,
        status_kib(pid, "VmRSS"),
    );
    let (st, b) = answered.expect("a login beside the unfinished bodies was not answered");
    assert_eq!(st, 200, "{b}");
    assert!(
        streams.len() >= 32 * 60,
        "only {} streams opened",
        streams.len()
    );
    assert!(
        peak < rss_before + FLOOD_GROWTH_KIB,
        "peak RSS {peak} KiB (from {rss_before} KiB idle) with {} unfinished bodies",
        streams.len()
    );
    // Beyond 256 requests open from one address, a stream is answered 429 at once
    // (4 addresses x 512 streams: half of them), rather than held.
    let mut refused = 0;
    for s in &mut streams {
        if s.is_finished() {
            let resp = s.await.unwrap().expect("a response");
            assert_eq!(resp.status(), 429);
            refused += 1;
        }
    }
    assert!(
        (1024..=1024 + 64).contains(&refused),
        "{refused} of {} streams refused",
        streams.len()
    );
    drop(conns);
    for s in streams {
        s.abort();
    }
    assert!(p.alive().await);
}

// --- item 5: idle subscribers and idle connections -------------------------------

/// Small caps, so that a few dozen sockets fill them.
const SMALL_CAPS: [(&str, &str); 5] = [
    ("PERCH_MAX_CONNECTIONS", "32"),
    ("PERCH_MAX_CONNECTIONS_PER_IP", "8"),
    ("PERCH_MAX_SUBSCRIBERS", "16"),
    ("PERCH_MAX_SUBSCRIBERS_PER_IP", "4"),
    ("PERCH_METRICS", "true"),
];

/// A firehose subscriber from `from` (None when the server would not take it).
async fn subscribe_from(from: IpAddr, addr: SocketAddr) -> Option<Ws> {
    let fut = firehose::connect_from(from, addr, None, None);
    tokio::time::timeout(ANSWER_WITHIN, fut).await.ok()?.ok()
}

/// A gauge from /metrics (asked from loopback).
async fn metric(p: &Perch, name: &str) -> u64 {
    let (st, body) = p.fetch("GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(st, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// 64 idle firehose subscribers from 8 addresses used to hold 64 connection
/// slots (with 32 in all, the server was full after 32 and locked everyone
/// out). Now subscribers hold no connection slot and have their own caps: a
/// plain request and a new subscriber from another address both get in, and
/// no more than 16 subscribers are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_subscribers_do_not_lock_out_new_clients() {
    let p = Perch::start_with(&SMALL_CAPS).await;
    let mut subs = Vec::new();
    let mut refused = 0;
    for a in 1..=8 {
        for _ in 0..8 {
            match subscribe_from(ip(5, a), p.addr).await {
                Some(ws) => subs.push(ws),
                None => refused += 1,
            }
        }
    }
    let plain = get_from(ip(6, 1), p.addr, "/xrpc/_health", "").await;
    assert_eq!(plain, Some(200), "a new client beside 64 idle subscribers");
    assert_eq!(
        refused, 0,
        "subscribers were turned away instead of making room"
    );
    let mut newcomer = subscribe_from(ip(6, 2), p.addr)
        .await
        .expect("a new subscriber beside 64 idle ones");
    // The newcomer stays: nothing closes it.
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        futures_util::StreamExt::next(&mut newcomer),
    )
    .await;
    assert!(quiet.is_err(), "the newcomer was closed: {quiet:?}");
    let mut held = 0;
    for _ in 0..50 {
        held = metric(&p, "perch_firehose_subscribers").await;
        if held <= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held <= 16, "{held} subscribers kept; the cap is 16");
    drop(subs);
    assert!(p.alive().await);
}

/// One keep-alive GET of `path` from `from`: the status, and the connection kept
/// open (None when the server closed it without an answer).
async fn keep_alive_get(from: IpAddr, addr: SocketAddr, path: &str) -> Option<(u16, TcpStream)> {
    let fut = async {
        let mut c = connect_from(from, addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        c.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.ok()?;
        let status = String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((status, c))
    };
    tokio::time::timeout(ANSWER_WITHIN, fut)
        .await
        .ok()
        .flatten()
}

/// 32 connections (16 HTTP/2, 15 keep-alive HTTP/1.1, and the harness's own
/// login) from 5 addresses, each idle after a request, fill the 32 slots; new
/// clients from another address are still served, each in the slot of the
/// connection idle longest (before, a connection that had ever sent a request
/// kept its slot forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_keep_alive_connections_make_way_for_a_new_client() {
    let p = Perch::start_with(&SMALL_CAPS).await;
    let mut h2 = Vec::new();
    for a in 1..=2 {
        for _ in 0..8 {
            let mut send = h2_from::<http_body_util::Empty<bytes::Bytes>>(ip(7, a), p.addr).await;
            send.ready().await.unwrap();
            let req = hyper::Request::get(format!("http://{}/xrpc/_health", p.addr))
                .body(http_body_util::Empty::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
            h2.push(send);
        }
    }
    let mut h1 = Vec::new();
    for n in 0..15 {
        let (st, c) = keep_alive_get(ip(7, 3 + n / 8), p.addr, "/xrpc/_health")
            .await
            .expect("room for 31 connections beside the login's");
        assert_eq!(st, 200);
        h1.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut newcomers = Vec::new();
    for n in 1..=3 {
        let got = keep_alive_get(ip(7, 9), p.addr, "/xrpc/_health").await;
        let (st, c) = got.unwrap_or_else(|| {
            panic!("new client {n} locked out: every slot is held by an idle connection")
        });
        assert_eq!(st, 200);
        newcomers.push(c);
    }
    // The longest idle went first: the login's, then the first HTTP/2 connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        h2[0].is_closed(),
        "the connection idle longest kept its slot"
    );
    assert!(!h2[15].is_closed());
    drop((h2, h1, newcomers));
    assert!(p.alive().await);
}
