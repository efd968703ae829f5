//! SSRF corpus (reliability plan item 16): hostile targets fed to every
//! outbound path perch has — the client itself (`net`, which the proxy, crawl
//! and migration use), did:web DID documents, HTTPS handle resolution, and
//! the proxy's `atproto-proxy` target — with the guard on (no
//! `PERCH_ALLOW_LOOPBACK`). A loopback listener on the target port records
//! every accepted connection: there must be none, and every fetch must fail
//! as "private address" (refused before connecting), not as a network error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use perch::identity::resolve::{self, ResolveError};
use perch::net::{Net, NetError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::InProcess;

/// A loopback listener (IPv4 and, when available, IPv6 on the same port)
/// that counts accepts.
async fn trap() -> (u16, Arc<AtomicUsize>) {
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = v4.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let mut listeners = vec![v4];
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        listeners.push(v6);
    }
    for l in listeners {
        let hits = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            }
        });
    }
    (port, hits)
}

/// Hosts that reach this machine or its LAN, written every way we know.
fn hostile_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = [
        "127.0.0.1",
        "127.0.0.2",
        "127.1",
        "127.000.000.001",
        "2130706433",
        "017700000001",
        "0x7f000001",
        "0x7f.1",
        "0x7f.0.0.1",
        "0",
        "0.0.0.0",
        "0.1.2.3",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "app.localhost",
        "[::1]",
        "[::]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::c0a8:101]",
        "[2002:7f00:1::]",
        "[2002:c0a8:101::1]",
        "10.0.0.1",
        "10.255.255.254",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "192.0.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:192.168.1.1]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Names that public DNS points at loopback; only when this machine can
    // resolve them (offline sandboxes cannot).
    for name in ["localtest.me", "sub.localtest.me", "127.0.0.1.nip.io"] {
        match std::net::ToSocketAddrs::to_socket_addrs(&(name, 80)) {
            Ok(_) => hosts.push(name.to_string()),
            Err(_) => eprintln!("notice: {name} does not resolve here; skipped"),
        }
    }
    hosts
}

fn is_private_refusal(e: &NetError) -> bool {
    matches!(e, NetError::Private(_))
}

#[tokio::test]
async fn the_client_refuses_every_private_target_before_connecting() {
    let (port, hits) = trap().await;
    let net = Net::new(false);
    let mut refused = 0;
    let mut urls = vec![];
    for host in hostile_hosts() {
        for scheme in ["http", "https"] {
            urls.push(format!("{scheme}://{host}:{port}/xrpc/_health"));
        }
    }
    // Userinfo and odd URL shapes that some parsers read differently.
    urls.push(format!("http://example.com@127.0.0.1:{port}/"));
    urls.push(format!("http://user:pw@localhost:{port}/"));
    for url in &urls {
        for method in [Method::GET, Method::POST] {
            match net.json(method.clone(), url, None).await {
                Ok((status, _)) => panic!("{method} {url}: fetched, status {status}"),
                Err(e) => {
                    assert!(is_private_refusal(&e), "{url}: not refused as private: {e}");
                    refused += 1;
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a private target was connected to"
    );
    println!(
        "ssrf: client urls={} requests={refused} connections=0",
        urls.len()
    );
}

#[tokio::test]
async fn did_web_and_handle_resolution_refuse_private_hosts() {
    let (port, hits) = trap().await;
    let net = Net::new(false);
    let mut n = 0;
    // did:web allows a port only for localhost (development); every other
    // host form goes to :443, where the refusal must still come first.
    let mut dids = vec![format!("did:web:localhost%3A{port}")];
    for host in hostile_hosts() {
        if !host.starts_with('[') {
            dids.push(format!("did:web:{host}"));
        }
    }
    for did in &dids {
        match resolve::did_document(&net, "", did).await {
            Err(ResolveError::Fetch(_, e)) => {
                assert!(is_private_refusal(&e), "{did}: {e}");
            }
            // Host forms the DID syntax check turns away before any fetch.
            Err(ResolveError::Unsupported(_)) => {}
            other => panic!("{did}: {other:?}"),
        }
        n += 1;
    }
    // A did:plc lookup goes to the configured directory; a directory on a
    // private address is refused the same way.
    let e = resolve::did_document(
        &net,
        &format!("http://127.0.0.1:{port}"),
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, ResolveError::Fetch(_, NetError::Private(_))),
        "{e:?}"
    );
    // Handles over HTTPS (/.well-known/atproto-did): no answer, no connection.
    for host in hostile_hosts() {
        if host.starts_with('[') {
            continue;
        }
        assert_eq!(resolve::https_did(&net, &host).await, None, "{host}");
        n += 1;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a private target was connected to"
    );
    println!("ssrf: resolution lookups={n} connections=0");
}

/// The proxy's target comes from the request (`atproto-proxy: <did>#<id>`):
/// a did:web DID on this machine must not be fetched, let alone proxied to.
#[tokio::test]
async fn the_proxy_refuses_a_private_target() {
    let (port, hits) = trap().await;
    let s = InProcess::start_with(|c| c.allow_loopback = false).await;
    let auth = s.bearer();
    let mut n = 0;
    for target in [
        format!("did:web:localhost%3A{port}#bsky_appview"),
        "did:web:127.0.0.1#bsky_appview".to_owned(),
        "did:web:169.254.169.254#bsky_appview".to_owned(),
        "did:web:2130706433#bsky_appview".to_owned(),
    ] {
        let (st, b) = s
            .call(
                "GET",
                "app.bsky.feed.getTimeline",
                &[("authorization", &auth), ("atproto-proxy", &target)],
                Vec::new(),
            )
            .await;
        assert!(matches!(st, 400 | 502), "{target}: {st} {b}");
        assert!(b["error"].is_string(), "{target}: {b}");
        n += 1;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the proxy connected to a private target"
    );
    println!("ssrf: proxy targets={n} connections=0");
}

/// The client never follows redirects, so a public server cannot bounce a
/// fetch onto a private address. (The redirecting server itself is on
/// loopback, so this one client is allowed to reach it.)
#[tokio::test]
async fn redirects_are_not_followed() {
    let (port, hits) = trap().await;
    let bouncer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bounce = bouncer.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = bouncer.accept().await {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = c.write_all(resp.as_bytes()).await;
        }
    });
    let (status, _) = Net::new(true)
        .json(Method::GET, &format!("http://{bounce}/"), None)
        .await
        .unwrap();
    assert_eq!(status, 302);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a redirect was followed");
}
