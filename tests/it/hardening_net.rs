//! Issue 14, the outbound and proxy items, against a real `perch serve --dev`
//! with loopback stand-ins for the services it talks to
//! (`PERCH_ALLOW_LOOPBACK`):
//!
//! - 12: a `/xrpc/` path that is not an NSID is a 400 `InvalidRequest` and
//!   never reaches the AppView (a recording fake AppView is the witness);
//!   a good method still goes, with the NSID as `lxm`.
//! - 14: `uploadBlob` stores the type the bytes show (a PNG sent as
//!   `application/octet-stream` or `*/*` is `image/png`, and `getBlob`
//!   serves it so), one type per blob.
//! - 16: `resolveHandle` resolves other people's handles through a DNS server
//!   on loopback (`PERCH_DNS_RESOLVER`) and a did:web document, checked both
//!   ways and cached (the DNS server counts the questions).
//! - 17: `repo.getRecord` for a repo not hosted here goes to the AppView,
//!   unsigned; the local repo is answered locally.
//! - 18: `registerPush`/`unregisterPush` go to the push service named by
//!   `serviceDid` (its DID document's `#bsky_notif`), with a service-auth
//!   token for `aud` = that DID and `lxm` = the method.
//!
//! Item 11 (did:web over plain http only for the exact host `localhost`)
//! is covered by unit tests in `src/identity/resolve.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use perch::crypto::PublicKey;
use perch::crypto::jwt::Jwt;
use serde_json::{Value, json};

use crate::support::client::{raw, raw_bytes, raw_get, response_parts};
use crate::support::stand_in::Dns;
use crate::support::{Perch, assert_xrpc_error, db};

const APPVIEW_DID: &str = "did:web:appview.test";

// ---------------------------------------------------------------------------
// Stand-ins.

/// One request a fake service received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Seen {
    /// The service-auth token it carried, decoded.
    fn jwt(&self) -> Jwt {
        let auth = self
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no authorization on {}", self.uri));
        Jwt::decode(auth.strip_prefix("Bearer ").unwrap()).unwrap()
    }
}

/// An HTTP service on loopback that records every request and answers from
/// a table by path (`200 {"from":"fake"}` otherwise).
#[derive(Clone)]
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    answers: Arc<Mutex<HashMap<String, (u16, Value)>>>,
}

impl Fake {
    async fn start() -> Fake {
        let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            addr: v4.local_addr().unwrap(),
            seen: Arc::default(),
            answers: Arc::default(),
        };
        // `localhost` may resolve to ::1 first.
        let mut listeners = vec![v4];
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", fake.addr.port())).await {
            listeners.push(v6);
        }
        for listener in listeners {
            fake.serve(listener);
        }
        fake
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let f = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let f = f.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let path = parts.uri.path().to_owned();
                            f.seen.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body: body.unwrap_or_default(),
                            });
                            let (status, out) = f
                                .answers
                                .lock()
                                .unwrap()
                                .get(&path)
                                .cloned()
                                .unwrap_or((200, json!({"from": "fake"})));
                            let mut r =
                                hyper::Response::new(Full::new(Bytes::from(out.to_string())));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The did:web this service's `/.well-known/did.json` would be for.
    fn did(&self) -> String {
        format!("did:web:localhost%3A{}", self.addr.port())
    }

    fn answer(&self, path: &str, status: u16, body: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests other than for the DID document.
    fn calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri != "/.well-known/did.json")
            .collect()
    }
}

/// perch with the fake AppView and (optionally) the fake DNS server.
async fn perch(appview: &Fake, dns: Option<SocketAddr>) -> Perch {
    let url = appview.url();
    let dns = dns.map(|d| d.to_string());
    let mut env = vec![
        ("PERCH_ALLOW_LOOPBACK", "1"),
        ("PERCH_APPVIEW_URL", url.as_str()),
        ("PERCH_APPVIEW_DID", APPVIEW_DID),
    ];
    if let Some(d) = &dns {
        env.push(("PERCH_DNS_RESOLVER", d.as_str()));
    }
    Perch::start_with(&env).await
}

/// The repo signing key from perch's own DID document.
async fn perch_key(p: &Perch) -> PublicKey {
    let (_, doc) = raw_get(p.addr, "/.well-known/did.json").await;
    PublicKey::from_multikey(
        doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// 12: only an NSID is ever forwarded.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_an_nsid_never_reaches_the_appview() {
    let appview = Fake::start().await;
    let p = perch(&appview, None).await;
    let auth = p.bearer();
    let bad = [
        "/xrpc/app.bsky.x/../../foo",
        "/xrpc/app.bsky.feed.getTimeline/../../../xrpc/com.atproto.server.deleteAccount",
        "/xrpc/app.bsky.x/..%2F..%2Ffoo",
        "/xrpc/app.bsky.x%2F..%2F..%2Ffoo",
        "/xrpc/app.bsky.feed.getTimeline%3Flimit=1",
        "/xrpc/app.bsky.feed.getTimeline%23x",
        "/xrpc/app.bsky..getTimeline",
        "/xrpc/app.bsky.feed.get-Timeline",
        "/xrpc/app.bsky.feed.getTimeline;x=1",
        "/xrpc/app.bsky.feed.getTimeline@evil.example.com",
        "/xrpc/chat.bsky.convo.listConvos/x",
        "/xrpc/app.bsky.feed.getTimeline//",
        "/xrpc/app.bsky.feed.getTimeline/.",
        "/xrpc/./app.bsky.feed.getTimeline",
        "/xrpc/app.bsky",
        "/xrpc/a",
        "/xrpc/",
        "/xrpc//app.bsky.feed.getTimeline",
    ];
    for path in bad {
        for (method, proxy) in [
            ("GET", None),
            ("POST", None),
            ("GET", Some(format!("{APPVIEW_DID}#bsky_appview"))),
        ] {
            let mut req = format!(
                "{method} {path}?limit=1 HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\nconnection: close\r\n"
            );
            if let Some(h) = &proxy {
                req.push_str(&format!("atproto-proxy: {h}\r\n"));
            }
            if method == "POST" {
                req.push_str("content-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
            } else {
                req.push_str("\r\n");
            }
            let (st, b) = raw(p.addr, req.as_bytes()).await;
            assert_xrpc_error(st, &b, 400, "InvalidRequest");
            assert!(
                b["message"].as_str().unwrap().contains("invalid xrpc path"),
                "{method} {path}: {b}"
            );
        }
    }
    assert!(
        appview.seen().is_empty(),
        "a bad path reached the AppView: {:?}",
        appview.seen()
    );
    assert!(p.alive().await);

    // A real method still goes through, one trailing slash allowed (as the
    // reference allows it), with the NSID alone in the URL and the token.
    for path in [
        "app.bsky.feed.getTimeline?limit=2",
        "app.bsky.feed.getTimeline/?limit=2",
    ] {
        let (st, b) = p.get(path).await;
        assert_eq!(st, 200, "{path}: {b}");
        assert_eq!(b["from"], "fake");
    }
    let seen = appview.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.uri, "/xrpc/app.bsky.feed.getTimeline?limit=2");
        let jwt = s.jwt();
        assert_eq!(jwt.claims["lxm"], "app.bsky.feed.getTimeline");
        assert_eq!(jwt.claims["iss"], p.did.as_str());
    }
}

// ---------------------------------------------------------------------------
// 14: blob types come from the bytes.

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A valid `w`×1 RGB PNG (zlib stored block), `seed` varying the pixels.
fn png(w: u32, seed: u8) -> Vec<u8> {
    let mut raw_rows = vec![0u8]; // filter: none
    for x in 0..w {
        raw_rows.extend_from_slice(&[seed, x as u8, seed ^ x as u8]);
    }
    let mut z = vec![0x78, 0x01, 0x01];
    let len = raw_rows.len() as u16;
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(&raw_rows);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw_rows {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

async fn upload(p: &Perch, content_type: Option<&str>, body: &[u8]) -> Value {
    let auth = p.bearer();
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &headers,
            body.to_vec(),
        )
        .await;
    assert_eq!(st, 200, "{content_type:?}: {b}");
    b["blob"].clone()
}

fn stored_type(p: &Perch, cid: &str) -> String {
    let conn = db::read_only(&p.db_path());
    conn.query_row("SELECT mime_type FROM blob WHERE cid = ?1", [cid], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_gets_the_type_its_bytes_show() {
    let appview = Fake::start().await;
    let p = perch(&appview, None).await;
    let picture = png(40, 7);

    // What the Python SDK and curl send, nothing at all, and a lie: the
    // bytes are a PNG every time, and the blob has that one type.
    let mut cid = None;
    for ct in [
        Some("application/octet-stream"),
        Some("*/*"),
        None,
        Some("image/jpeg"),
        Some("image/png"),
    ] {
        let blob = upload(&p, ct, &picture).await;
        assert_eq!(blob["mimeType"], "image/png", "declared {ct:?}: {blob}");
        assert_eq!(blob["size"], picture.len());
        let c = blob["ref"]["$link"].as_str().unwrap().to_owned();
        assert_eq!(cid.get_or_insert(c.clone()), &c);
    }
    let cid = cid.unwrap();
    assert_eq!(stored_type(&p, &cid), "image/png");

    // Other common types from their first bytes.
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10];
    jpeg.extend_from_slice(b"JFIF\0 perch jpeg test");
    let mut mp4 = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    mp4.extend_from_slice(b"\0\0\0\x08free perch video test");
    let mut webp = b"RIFF\x24\0\0\0WEBPVP8 ".to_vec();
    webp.extend_from_slice(b"perch webp test");
    for (bytes, want) in [
        (jpeg, "image/jpeg"),
        (mp4, "video/mp4"),
        (webp, "image/webp"),
        (b"%PDF-1.7\nperch pdf test".to_vec(), "application/pdf"),
        (b"GIF89a perch gif test".to_vec(), "image/gif"),
    ] {
        let blob = upload(&p, Some("application/octet-stream"), &bytes).await;
        assert_eq!(blob["mimeType"], want, "{blob}");
    }

    // Bytes that show nothing keep the declared type, and the first one
    // stays: a second upload answers with the type the blob has.
    let text = b"just some words from perch";
    let blob = upload(&p, Some("text/plain; charset=utf-8"), text).await;
    assert_eq!(blob["mimeType"], "text/plain");
    let blob = upload(&p, Some("application/json"), text).await;
    assert_eq!(blob["mimeType"], "text/plain", "one type per blob");
    let text_cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    assert_eq!(stored_type(&p, &text_cid), "text/plain");
    let blob = upload(&p, Some("*/*"), b"other words from perch").await;
    assert_eq!(blob["mimeType"], "application/octet-stream");

    // Once a post uses it, getBlob serves the picture as a picture.
    let image = upload(&p, Some("application/octet-stream"), &picture).await;
    p.create(
        "app.bsky.feed.post",
        None,
        json!({
            "$type": "app.bsky.feed.post",
            "text": "a picture",
            "createdAt": "2026-01-01T00:00:00Z",
            "embed": {
                "$type": "app.bsky.embed.images",
                "images": [{"alt": "", "image": image}],
            },
        }),
    )
    .await;
    let req = format!(
        "GET /xrpc/com.atproto.sync.getBlob?did={}&cid={cid} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        p.q_did()
    );
    let (st, head, body) = response_parts(&raw_bytes(p.addr, req.as_bytes()).await);
    assert_eq!(st, 200, "{head}");
    assert!(head.contains("\r\ncontent-type: image/png"), "{head}");
    assert_eq!(body, picture);
}

// ---------------------------------------------------------------------------
// 16: resolveHandle for anyone's handle.

fn did_doc(did: &str, handle: &str, service: Value) -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [],
        "service": service,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_handle_resolves_other_handles_and_remembers() {
    let appview = Fake::start().await;
    let dns = Dns::default();
    let dns_addr = dns.start().await;
    // Friend: a did:web on loopback whose document claims the handle.
    let friend = Fake::start().await;
    friend.answer(
        "/.well-known/did.json",
        200,
        did_doc(&friend.did(), "friend.example.com", json!([])),
    );
    dns.txt("friend.example.com", &friend.did());
    // A handle whose TXT names the same DID, which does not claim it.
    dns.txt("liar.example.com", &friend.did());
    let p = perch(&appview, Some(dns_addr)).await;
    let p = &p;
    let resolve = |h: &str| {
        let path = format!("com.atproto.identity.resolveHandle?handle={h}");
        async move { p.call("GET", &path, &[], Vec::new()).await }
    };

    // Resolved (case folded), confirmed by the document.
    let (st, b) = resolve("Friend.Example.COM").await;
    assert_eq!(st, 200, "{b}\n{}", p.log());
    assert_eq!(b["did"], friend.did());
    assert_eq!(dns.asked("friend.example.com"), 1);
    let doc_fetches = friend.seen().len();
    assert!(doc_fetches >= 1);
    // Asked again: from the cache, nobody is asked.
    for _ in 0..5 {
        let (st, b) = resolve("friend.example.com").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["did"], friend.did());
    }
    assert_eq!(dns.asked("friend.example.com"), 1, "not cached");
    assert_eq!(friend.seen().len(), doc_fetches);

    // Not confirmed by the document: unresolved, as the reference words it.
    let (st, b) = resolve("liar.example.com").await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert_eq!(b["message"], "Unable to resolve handle");

    // No record anywhere: unresolved, and remembered a while (a TXT record
    // appearing now is not seen until the short negative entry expires).
    let (st, b) = resolve("later.example.com").await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert_eq!(dns.asked("later.example.com"), 1);
    dns.txt("later.example.com", &friend.did());
    let (st, b) = resolve("later.example.com").await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert_eq!(
        dns.asked("later.example.com"),
        1,
        "negative answer not cached"
    );

    // This server's own names and names that never resolve publicly are
    // answered without a lookup; bad syntax is refused first.
    let (st, b) = resolve("someone-else.test").await;
    assert_xrpc_error(st, &b, 400, "HandleNotFound");
    let (st, b) = resolve("printer.local").await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    for bad in ["not_a_handle", "friend.example.com.", "-x.example.com", "x"] {
        let (st, b) = resolve(bad).await;
        assert_xrpc_error(st, &b, 400, "InvalidRequest");
        assert_ne!(b["message"], "Unable to resolve handle", "{bad}");
    }
    let (st, b) = p
        .call("GET", "com.atproto.identity.resolveHandle", &[], Vec::new())
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let asked: usize = dns.asked.lock().unwrap().values().sum();
    assert_eq!(asked, 3, "{:?}", dns.asked.lock().unwrap());

    // The account's own handle still answers locally.
    let (st, b) = resolve(&p.handle).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["did"], p.did);
    assert!(appview.seen().is_empty());
}

// ---------------------------------------------------------------------------
// 17: getRecord for another repo.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_record_for_another_repo_goes_to_the_appview() {
    let appview = Fake::start().await;
    let other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    appview.answer(
        "/xrpc/com.atproto.repo.getRecord",
        200,
        json!({
            "uri": format!("at://{other}/app.bsky.feed.post/3kaaaaaaaaaaa"),
            "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
            "value": {"$type": "app.bsky.feed.post", "text": "from the appview"},
        }),
    );
    let p = perch(&appview, None).await;
    let q = format!(
        "com.atproto.repo.getRecord?repo={}&collection=app.bsky.feed.post&rkey=3kaaaaaaaaaaa",
        other.replace(':', "%3A")
    );
    // Anonymous, and with the user's session: the same unsigned request,
    // and the user's token never leaves.
    let auth = p.bearer();
    for headers in [vec![], vec![("authorization", auth.as_str())]] {
        let (st, b) = p.call("GET", &q, &headers, Vec::new()).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["value"]["text"], "from the appview");
    }
    let seen = appview.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert_eq!(s.uri, format!("/xrpc/{q}"));
        assert!(s.headers.get("authorization").is_none(), "{s:?}");
    }
    // A handle that is not ours goes too.
    let (st, _) = p
        .call(
            "GET",
            "com.atproto.repo.getRecord?repo=bob.example.com&collection=app.bsky.feed.post&rkey=3kaaaaaaaaaaa",
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(appview.seen().len(), 3);
    // The AppView's own error is the answer.
    appview.answer(
        "/xrpc/com.atproto.repo.getRecord",
        400,
        json!({"error": "RecordNotFound", "message": "Could not locate record"}),
    );
    let (st, b) = p.call("GET", &q, &[], Vec::new()).await;
    assert_xrpc_error(st, &b, 400, "RecordNotFound");
    let forwarded = appview.seen().len();
    assert_eq!(forwarded, 4);

    // The local repo is answered here, found or not, by DID or handle.
    let made = p
        .create(
            "app.bsky.feed.post",
            Some("3jzfcijpj2z2a"),
            json!({"$type": "app.bsky.feed.post", "text": "local", "createdAt": "2026-01-01T00:00:00Z"}),
        )
        .await;
    for repo in [p.q_did(), p.handle.clone()] {
        let (st, b) = p
            .call(
                "GET",
                &format!(
                    "com.atproto.repo.getRecord?repo={repo}&collection=app.bsky.feed.post&rkey=3jzfcijpj2z2a"
                ),
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["cid"], made["cid"]);
        let (st, b) = p
            .call(
                "GET",
                &format!(
                    "com.atproto.repo.getRecord?repo={repo}&collection=app.bsky.feed.post&rkey=nope"
                ),
                &[],
                Vec::new(),
            )
            .await;
        assert_xrpc_error(st, &b, 400, "RecordNotFound");
    }
    // Bad input is refused here, not passed on.
    for bad in [
        "repo=not%20a%20repo&collection=app.bsky.feed.post&rkey=x",
        "repo=did%3Aplc%3Aaaaaaaaaaaaaaaaaaaaaaaaa&collection=nope&rkey=x",
        "repo=did%3Aplc%3Aaaaaaaaaaaaaaaaaaaaaaaaa&collection=app.bsky.feed.post&rkey=a%2Fb",
        "repo=did%3Aplc%3Aaaaaaaaaaaaaaaaaaaaaaaaa&collection=app.bsky.feed.post",
    ] {
        let (st, b) = p
            .call(
                "GET",
                &format!("com.atproto.repo.getRecord?{bad}"),
                &[],
                Vec::new(),
            )
            .await;
        assert_xrpc_error(st, &b, 400, "InvalidRequest");
    }
    assert_eq!(appview.seen().len(), forwarded);
}

// ---------------------------------------------------------------------------
// 18: push registration goes to the named push service.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_registration_goes_to_the_service_named_in_the_body() {
    let appview = Fake::start().await;
    let push = Fake::start().await;
    push.answer(
        "/.well-known/did.json",
        200,
        did_doc(
            &push.did(),
            "push.example.com",
            json!([{
                "id": "#bsky_notif",
                "type": "BskyNotificationService",
                "serviceEndpoint": push.url(),
            }]),
        ),
    );
    // A service whose document names no push endpoint of the right type.
    let wrong = Fake::start().await;
    wrong.answer(
        "/.well-known/did.json",
        200,
        did_doc(
            &wrong.did(),
            "wrong.example.com",
            json!([{
                "id": "#bsky_notif",
                "type": "BskyAppView",
                "serviceEndpoint": wrong.url(),
            }]),
        ),
    );
    let p = perch(&appview, None).await;
    let key = perch_key(&p).await;
    let body = |service: &str| {
        json!({
            "serviceDid": service,
            "token": "device-token-123",
            "platform": "ios",
            "appId": "xyz.blueskyweb.app",
            "ageRestricted": false,
        })
    };

    for method in [
        "app.bsky.notification.registerPush",
        "app.bsky.notification.unregisterPush",
    ] {
        let sent = body(&push.did());
        let (st, b) = p.post(method, &sent).await;
        assert_eq!(st, 200, "{method}: {b}\n{}", p.log());
        let call = push.calls().pop().expect("the push service was called");
        assert_eq!(call.method, "POST");
        assert_eq!(call.uri, format!("/xrpc/{method}"));
        assert_eq!(
            serde_json::from_slice::<Value>(&call.body).unwrap(),
            sent,
            "the body goes as sent"
        );
        let jwt = call.jwt();
        assert_eq!(jwt.claims["iss"], p.did.as_str());
        assert_eq!(jwt.claims["aud"], push.did().as_str());
        assert_eq!(jwt.claims["lxm"], method);
        let ttl = jwt.claims["exp"].as_i64().unwrap() - jwt.claims["iat"].as_i64().unwrap();
        assert!(ttl > 0 && ttl <= 60, "{ttl}");
        jwt.verify_es(&key).unwrap();
    }
    assert_eq!(push.calls().len(), 2);
    assert!(appview.seen().is_empty(), "{:?}", appview.seen());

    // The AppView's own DID goes to the configured AppView.
    let (st, b) = p
        .post("app.bsky.notification.registerPush", &body(APPVIEW_DID))
        .await;
    assert_eq!(st, 200, "{b}");
    let call = appview.seen().pop().unwrap();
    assert_eq!(call.uri, "/xrpc/app.bsky.notification.registerPush");
    assert_eq!(call.jwt().claims["aud"], APPVIEW_DID);

    // The push service's refusal is the answer.
    push.answer(
        "/xrpc/app.bsky.notification.registerPush",
        400,
        json!({"error": "InvalidRequest", "message": "unknown appId"}),
    );
    let (st, b) = p
        .post("app.bsky.notification.registerPush", &body(&push.did()))
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert_eq!(b["message"], "unknown appId");
    let calls = push.calls().len();

    // No push endpoint of the right type, bad input, no session: refused
    // here, nothing sent.
    let (st, b) = p
        .post("app.bsky.notification.registerPush", &body(&wrong.did()))
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("invalid notification service"),
        "{b}"
    );
    assert!(wrong.calls().is_empty());
    for bad in [
        json!({"token": "t", "platform": "ios", "appId": "a"}),
        json!({"serviceDid": "not a did", "token": "t", "platform": "ios", "appId": "a"}),
        json!({"serviceDid": push.did(), "platform": "ios", "appId": "a"}),
        json!({"serviceDid": push.did(), "token": 5, "platform": "ios", "appId": "a"}),
        json!({"serviceDid": push.did(), "token": "t", "platform": "ios", "appId": "a", "ageRestricted": "no"}),
    ] {
        let (st, b) = p.post("app.bsky.notification.registerPush", &bad).await;
        assert_xrpc_error(st, &b, 400, "InvalidRequest");
    }
    let (st, b) = p
        .call(
            "POST",
            "app.bsky.notification.registerPush",
            &[("content-type", "application/json")],
            body(&push.did()).to_string().into_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
    assert_eq!(push.calls().len(), calls);
}
