//! Read-after-write against a stale stand-in AppView on loopback: it answers with what it
//! indexed before the owner's latest writes (and says so in `atproto-repo-rev`); perch's
//! answers must carry the new post, profile and reply, and say how far behind the AppView is.

use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::client::{raw_bytes, request_bytes, response_parts};
use crate::support::in_process::InProcess;

/// What the stale AppView reports: the rev it has read up to, and whether it has ever seen
/// the post a thread is asked for.
#[derive(Default)]
struct Stale {
    rev: String,
    did: String,
}

async fn stale_appview(state: Arc<Mutex<Stale>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let (rev, did) = {
                            let s = state.lock().unwrap();
                            (s.rev.clone(), s.did.clone())
                        };
                        let path = req.uri().path().trim_start_matches("/xrpc/").to_owned();
                        let query = req.uri().query().unwrap_or("").to_owned();
                        let old = format!("at://{did}/app.bsky.feed.post/old");
                        let (status, body) = match path.as_str() {
                            "app.bsky.actor.getProfile" => (
                                200,
                                json!({"did": did, "handle": "alice.test",
                                       "displayName": "Old name", "followersCount": 3}),
                            ),
                            "app.bsky.feed.getAuthorFeed" | "app.bsky.feed.getTimeline" => (
                                200,
                                json!({"feed": [{"post": {"uri": old, "cid": "bafyold",
                                    "author": {"did": did, "handle": "alice.test"},
                                    "record": {"text": "old"}, "indexedAt": "2020-01-01T00:00:00.000Z"}}]}),
                            ),
                            "app.bsky.feed.getPostThread" if query.contains("feed.post/old") => (
                                200,
                                json!({"thread": {"$type": "app.bsky.feed.defs#threadViewPost",
                                    "post": {"uri": old, "cid": "bafyold"}, "replies": []}}),
                            ),
                            "app.bsky.feed.getPostThread" => (
                                400,
                                json!({"error": "NotFound", "message": "Post not found"}),
                            ),
                            _ => (404, json!({"error": "MethodNotImplemented"})),
                        };
                        let mut r =
                            hyper::Response::new(Full::new(bytes::Bytes::from(body.to_string())));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        r.headers_mut()
                            .insert("atproto-repo-rev", rev.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A GET through perch: status, response headers (lower-case text) and JSON body.
async fn get(s: &InProcess, path: &str) -> (u16, String, Value) {
    let auth = s.bearer();
    let req = request_bytes(
        "GET",
        &format!("/xrpc/{path}"),
        &[("authorization", auth.as_str()), ("connection", "close")],
        b"",
    );
    let (st, headers, body) = response_parts(&raw_bytes(s.addr, &req).await);
    (
        st,
        headers.to_ascii_lowercase(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn uris(feed: &Value) -> Vec<String> {
    feed["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["post"]["uri"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn proxied_reads_show_the_owners_newer_records() {
    let state = Arc::new(Mutex::new(Stale::default()));
    let appview = stale_appview(Arc::clone(&state)).await;
    let s = InProcess::start_with(|c| {
        c.appview_url = format!("http://{appview}");
        c.appview_did = "did:web:appview.test".into();
        c.allow_loopback = true;
    })
    .await;
    let did = s.did.clone();
    // The DID as a query parameter (a did:web with a port holds a `%`).
    let q_did = s.q_did();
    let head = s.head().await;
    *state.lock().unwrap() = Stale {
        rev: head["rev"].as_str().unwrap().to_owned(),
        did: did.clone(),
    };

    // Nothing new yet: answers pass through untouched, with no lag header.
    let (st, headers, feed) = get(&s, &format!("app.bsky.feed.getAuthorFeed?actor={q_did}")).await;
    assert_eq!(st, 200, "{feed}");
    assert_eq!(uris(&feed), [format!("at://{did}/app.bsky.feed.post/old")]);
    assert!(!headers.contains("atproto-upstream-lag"), "{headers}");

    // The owner posts, replies to the old post and renames themselves.
    let new = s
        .create(
            "app.bsky.feed.post",
            None,
            json!({"$type": "app.bsky.feed.post", "text": "brand new",
                   "createdAt": "2026-12-04T00:00:00.000Z"}),
        )
        .await;
    let new_uri = new["uri"].as_str().unwrap().to_owned();
    let old_uri = format!("at://{did}/app.bsky.feed.post/old");
    let some_cid = new["cid"].as_str().unwrap();
    s.create(
        "app.bsky.feed.post",
        None,
        json!({"$type": "app.bsky.feed.post", "text": "a reply",
               "createdAt": "2026-12-04T00:00:01.000Z",
               "reply": {"root": {"uri": old_uri, "cid": some_cid},
                         "parent": {"uri": old_uri, "cid": some_cid}}}),
    )
    .await;
    s.create(
        "app.bsky.actor.profile",
        Some("self"),
        json!({"$type": "app.bsky.actor.profile", "displayName": "New name"}),
    )
    .await;

    let (st, headers, feed) = get(&s, &format!("app.bsky.feed.getAuthorFeed?actor={q_did}")).await;
    assert_eq!(st, 200, "{feed}");
    let got = uris(&feed);
    assert_eq!(got.len(), 3, "{feed}");
    assert_eq!(got[1], new_uri, "newest first, above the AppView's");
    assert_eq!(got[2], old_uri);
    assert_eq!(feed["feed"][1]["post"]["author"]["displayName"], "New name");
    assert!(headers.contains("atproto-upstream-lag:"), "{headers}");
    let (_, _, roots) = get(
        &s,
        &format!("app.bsky.feed.getAuthorFeed?actor={q_did}&filter=posts_no_replies"),
    )
    .await;
    assert_eq!(uris(&roots).len(), 2, "no replies: {roots}");
    // A later page is older than anything new.
    let (_, _, page2) = get(
        &s,
        &format!("app.bsky.feed.getAuthorFeed?actor={q_did}&cursor=abc"),
    )
    .await;
    assert_eq!(uris(&page2), std::slice::from_ref(&old_uri));
    // Someone else's feed is theirs.
    let (_, _, other) = get(&s, "app.bsky.feed.getAuthorFeed?actor=did:plc:someoneelse").await;
    assert_eq!(uris(&other).len(), 1);

    let (_, _, timeline) = get(&s, "app.bsky.feed.getTimeline").await;
    assert!(uris(&timeline).contains(&new_uri), "{timeline}");

    let (_, _, profile) = get(&s, &format!("app.bsky.actor.getProfile?actor={q_did}")).await;
    assert_eq!(profile["displayName"], "New name");
    assert_eq!(profile["followersCount"], 3, "the AppView's counts stay");

    // The reply hangs under the old post; the new post, unknown upstream, gets a thread.
    let (st, _, thread) = get(
        &s,
        &format!(
            "app.bsky.feed.getPostThread?uri={}",
            old_uri.replace('%', "%25")
        ),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        thread["thread"]["replies"][0]["post"]["record"]["text"],
        "a reply"
    );
    let (st, _, thread) = get(
        &s,
        &format!(
            "app.bsky.feed.getPostThread?uri={}",
            new_uri.replace('%', "%25")
        ),
    )
    .await;
    assert_eq!(st, 200, "{thread}");
    assert_eq!(thread["thread"]["post"]["uri"], new_uri.as_str());

    // Once the AppView has caught up, its answers stand as they are.
    state.lock().unwrap().rev = s.head().await["rev"].as_str().unwrap().to_owned();
    let (_, headers, feed) = get(&s, &format!("app.bsky.feed.getAuthorFeed?actor={q_did}")).await;
    assert_eq!(uris(&feed), [old_uri]);
    assert!(!headers.contains("atproto-upstream-lag"));
}
