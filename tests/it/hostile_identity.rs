//! Handles, DIDs and PLC operations (reliability plan items 14 and 15).
//!
//! - Handle inputs to a real `perch serve --dev`: a trailing dot, non-ASCII,
//!   over-long names and disallowed TLDs are refused with `InvalidHandle`;
//!   upper case is folded; punycode labels are ordinary labels.
//! - Handle resolution against a DNS server and a did:web host on loopback:
//!   two TXT records naming different DIDs fail (no guessing), a DID
//!   document that does not claim the handle fails (both directions are
//!   checked), and a did:web document whose `id` is another DID is refused.
//! - PLC: every signature perch makes is low-S, and an operation that drops
//!   this server's rotation key is never submitted (a recording PLC
//!   directory on loopback shows what reached it).

use std::sync::{Arc, Mutex};

use perch::account::DidMethod;
use perch::crypto::{KeyType, Keypair};
use perch::identity::plc::{self, Operation, SignedOp};
use perch::identity::resolve::{self, ResolveError};
use perch::net::Net;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::in_process::{Boot, InProcess};
use crate::support::stand_in::{Dns, did_web_server};
use crate::support::{Perch, assert_xrpc_error};

// ---------------------------------------------------------------------------
// Handle syntax over HTTP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_inputs_are_checked_and_normalized() {
    let p = Perch::start().await;
    let digest = p.db_digest();
    let long = format!("{}.test", "a".repeat(250));
    let long_label = format!("{}.test", "a".repeat(64));
    for (handle, says) in [
        ("alice2.test.", "empty label"),
        ("bücher.test", "ASCII"),
        (long.as_str(), "longer than 253"),
        (long_label.as_str(), "longer than 63"),
        ("alice2.local", "TLD is not allowed"),
        ("alice2..test", "empty label"),
        ("-alice.test", "hyphen"),
        ("alice2", "two labels"),
        ("127.0.0.1", "digit"),
    ] {
        let (st, b) = p
            .post(
                "com.atproto.identity.updateHandle",
                &json!({"handle": handle}),
            )
            .await;
        assert_xrpc_error(st, &b, 400, "InvalidHandle");
        assert!(
            b["message"].as_str().unwrap().contains(says),
            "{handle}: {b}"
        );
        assert!(p.alive().await);
    }
    assert_eq!(p.db_digest(), digest, "a refused handle changed something");
    for (handle, says) in [("alice2.test.", ""), ("bücher.test", "")] {
        let (st, b) = p
            .get(&format!(
                "com.atproto.identity.resolveHandle?handle={}",
                enc(handle)
            ))
            .await;
        assert_xrpc_error(st, &b, 400, "InvalidRequest");
        assert!(b["message"].as_str().unwrap().contains(says));
    }

    // Upper case is the same handle, stored and announced in lower case.
    let (st, b) = p
        .post(
            "com.atproto.identity.updateHandle",
            &json!({"handle": "ALICE2.Test"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (_, d) = p
        .get(&format!("com.atproto.repo.describeRepo?repo={}", p.q_did()))
        .await;
    assert_eq!(d["handle"], "alice2.test");
    let (st, r) = p
        .get("com.atproto.identity.resolveHandle?handle=Alice2.TEST")
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["did"], p.did);
    // An A-label (punycode) is an ordinary ASCII label.
    let (st, b) = p
        .post(
            "com.atproto.identity.updateHandle",
            &json!({"handle": "xn--bcher-kva.test"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (_, d) = p
        .get(&format!("com.atproto.repo.describeRepo?repo={}", p.q_did()))
        .await;
    assert_eq!(d["handle"], "xn--bcher-kva.test");
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Resolution against DNS and did:web servers on loopback.

fn doc_for(id: &str, aliases: &[&str]) -> Value {
    json!({
        "id": id,
        "alsoKnownAs": aliases,
        "verificationMethod": [],
        "service": [],
    })
}

#[tokio::test]
async fn handle_resolution_is_checked_both_ways_and_never_guesses() {
    let table = Dns::default();
    let dns = table.start().await;
    let doc = Arc::new(Mutex::new(Value::Null));
    let port = did_web_server(Arc::clone(&doc)).await;
    let did = format!("did:web:localhost%3A{port}");
    let other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    let net = Net::new(true);
    let txt = |name: &str, records: &[&str]| table.set(&format!("_atproto.{name}"), records);
    let set_doc = |v: Value| *doc.lock().unwrap() = v;
    let resolve = |h: String| {
        let net = net.clone();
        async move { resolve::handle_to_did_via(&net, "", Some(dns), &h).await }
    };

    // Both directions agree.
    txt("alice.perch.test", &[&format!("did={did}")]);
    set_doc(doc_for(&did, &["at://alice.perch.test"]));
    assert_eq!(resolve("alice.perch.test".into()).await.unwrap(), did);
    // The same handle in upper case, and claimed in upper case.
    set_doc(doc_for(&did, &["at://Alice.Perch.Test"]));
    assert_eq!(resolve("ALICE.perch.TEST".into()).await.unwrap(), did);
    // Handles that are not handles are refused before any lookup.
    let long = format!("{}.perch.test", "a".repeat(250));
    for bad in ["alice.perch.test.", "bücher.perch.test", long.as_str(), ""] {
        let e = resolve(bad.into()).await.unwrap_err();
        assert!(matches!(e, ResolveError::BadHandle(_)), "{bad:?}: {e}");
    }
    // Punycode: an ordinary label, resolved like any other.
    txt("xn--bcher-kva.perch.test", &[&format!("did={did}")]);
    set_doc(doc_for(&did, &["at://xn--bcher-kva.perch.test"]));
    assert_eq!(
        resolve("xn--bcher-kva.perch.test".into()).await.unwrap(),
        did
    );

    // Two TXT records naming different DIDs: fail rather than pick one,
    // even though the document would confirm the first.
    txt(
        "two.perch.test",
        &[&format!("did={did}"), &format!("did={other}")],
    );
    set_doc(doc_for(&did, &["at://two.perch.test"]));
    let e = resolve("two.perch.test".into()).await.unwrap_err();
    assert!(e.to_string().contains("conflicting"), "{e}");
    // The same DID twice is one answer.
    txt(
        "twice.perch.test",
        &[&format!("did={did}"), &format!("did= {did}")],
    );
    set_doc(doc_for(&did, &["at://twice.perch.test"]));
    assert_eq!(resolve("twice.perch.test".into()).await.unwrap(), did);
    // A TXT value that is not a DID.
    txt("junk.perch.test", &["did=not a did"]);
    assert!(resolve("junk.perch.test".into()).await.is_err());

    // The document must claim the handle, as its first at:// alias.
    txt("bob.perch.test", &[&format!("did={did}")]);
    set_doc(doc_for(&did, &["at://someone.else.test"]));
    assert!(matches!(
        resolve("bob.perch.test".into()).await,
        Err(ResolveError::NotFound(_))
    ));
    set_doc(doc_for(&did, &[]));
    assert!(resolve("bob.perch.test".into()).await.is_err());
    set_doc(doc_for(
        &did,
        &["at://someone.else.test", "at://bob.perch.test"],
    ));
    assert!(resolve("bob.perch.test".into()).await.is_err());
    set_doc(doc_for(&did, &["at://bob.perch.test."]));
    assert!(resolve("bob.perch.test".into()).await.is_err());

    // A did:web document that names another DID is not this DID's document.
    set_doc(doc_for(
        "did:web:evil.example.com",
        &["at://bob.perch.test"],
    ));
    assert!(matches!(
        resolve::did_document(&net, "", &did).await,
        Err(ResolveError::BadDocument(_))
    ));
    assert!(resolve("bob.perch.test".into()).await.is_err());
    set_doc(json!({"alsoKnownAs": ["at://bob.perch.test"]}));
    assert!(matches!(
        resolve::did_document(&net, "", &did).await,
        Err(ResolveError::BadDocument(_))
    ));
    set_doc(doc_for(&did, &["at://bob.perch.test"]));
    assert_eq!(resolve("bob.perch.test".into()).await.unwrap(), did);
}

// ---------------------------------------------------------------------------
// PLC operations.

/// `s` of a 64-byte `r‖s` signature is at most half the curve order.
fn is_low_s(kt: KeyType, sig: &[u8]) -> bool {
    const K256_HALF: [u8; 32] = [
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b,
        0x20, 0xa0,
    ];
    const P256_HALF: [u8; 32] = [
        0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31,
        0x92, 0xa8,
    ];
    let half = match kt {
        KeyType::K256 => K256_HALF,
        KeyType::P256 => P256_HALF,
    };
    sig.len() == 64 && sig[32..] <= half[..]
}

fn sig_bytes(op: &SignedOp) -> Vec<u8> {
    plc::decode_sig(op.sig()).unwrap()
}

#[test]
fn every_plc_signature_perch_makes_is_low_s() {
    // Half of all raw ECDSA signatures are high-S; 1,000 per curve would
    // show a missing normalisation with certainty.
    let signing = Keypair::generate(KeyType::K256, &mut rand_core::OsRng).did_key();
    for kt in [KeyType::K256, KeyType::P256] {
        let key = Keypair::generate(kt, &mut rand_core::OsRng);
        for i in 0..1000 {
            let op = Operation::genesis(
                vec![key.did_key()],
                &signing,
                &format!("user{i}.example.com"),
                "https://pds.example.com",
            )
            .unwrap();
            let signed = plc::sign(op, &key);
            assert!(is_low_s(kt, &sig_bytes(&signed)), "{kt:?} op {i}");
            assert_eq!(plc::verify_sig(&signed, &[key.did_key()]), Ok(0));
        }
    }
}

/// A PLC directory on loopback that keeps what it is sent (it is the
/// witness here, so it checks nothing itself).
#[derive(Default)]
struct Directory {
    ops: Mutex<Vec<(String, Value)>>,
}

impl Directory {
    fn last(&self, did: &str) -> Option<Value> {
        self.ops
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(d, _)| d == did)
            .map(|x| x.1.clone())
    }
    fn count(&self) -> usize {
        self.ops.lock().unwrap().len()
    }
}

async fn plc_directory(dir: Arc<Directory>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let dir = Arc::clone(&dir);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, body) = loop {
                    let n = c.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < i + 4 + len {
                            let n = c.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[i + 4..i + 4 + len].to_vec());
                    }
                };
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                let (status, out) = match (method, parts.as_slice()) {
                    ("POST", [did]) => {
                        let op: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        dir.ops.lock().unwrap().push((did.to_string(), op));
                        (200, "{}".to_string())
                    }
                    ("GET", [did, "log", "last"]) => match dir.last(did) {
                        Some(op) => (200, op.to_string()),
                        None => (404, "{}".into()),
                    },
                    ("GET", [did, "data"]) => match dir.last(did) {
                        Some(op) => (
                            200,
                            json!({
                                "did": did,
                                "rotationKeys": op["rotationKeys"],
                                "verificationMethods": op["verificationMethods"],
                                "alsoKnownAs": op["alsoKnownAs"],
                                "services": op["services"],
                            })
                            .to_string(),
                        ),
                        None => (404, "{}".into()),
                    },
                    _ => (404, "{}".into()),
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
                    out.len()
                );
                let _ = c.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plc_operations_are_low_s_and_keep_our_rotation_key() {
    let directory = Arc::new(Directory::default());
    let plc_url = plc_directory(Arc::clone(&directory)).await;
    let s = InProcess::boot(
        Boot {
            data: None,
            account: Some(DidMethod::Plc),
        },
        |c| {
            c.plc_url = plc_url;
            c.allow_loopback = true;
        },
    )
    .await;
    let (app, did) = (&s.app, s.did.clone());
    let rotation = perch::keys::KeyDir::open(&app.config.data_dir)
        .unwrap()
        .keypair(perch::keys::ROTATION_KEY)
        .unwrap()
        .unwrap();
    let ours = rotation.did_key();
    let genesis = SignedOp::from_json(&directory.last(&did).unwrap()).unwrap();
    assert!(is_low_s(KeyType::K256, &sig_bytes(&genesis)));
    assert_eq!(
        plc::verify_sig(&genesis, std::slice::from_ref(&ours)),
        Ok(0)
    );

    // signPlcOperation, many times: every signature low-S and ours.
    let mut signed_ops = Vec::new();
    for i in 0..40 {
        let code = app.accounts().new_plc_code().await.unwrap();
        let (st, b) = s
            .post(
                "com.atproto.identity.signPlcOperation",
                &json!({"token": code, "alsoKnownAs": [format!("at://alice{i}.test")]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let op = SignedOp::from_json(&b["operation"]).unwrap();
        assert!(is_low_s(KeyType::K256, &sig_bytes(&op)), "op {i}");
        assert_eq!(plc::verify_sig(&op, std::slice::from_ref(&ours)), Ok(0));
        signed_ops.push(b["operation"].clone());
    }

    // An op that drops our rotation key is never submitted.
    let stranger = Keypair::generate(KeyType::K256, &mut rand_core::OsRng);
    let code = app.accounts().new_plc_code().await.unwrap();
    let (st, b) = s
        .post(
            "com.atproto.identity.signPlcOperation",
            &json!({"token": code, "rotationKeys": [stranger.did_key()]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let before = directory.count();
    let (st, b) = s
        .post(
            "com.atproto.identity.submitPlcOperation",
            &json!({"operation": b["operation"]}),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    assert!(
        b["message"].as_str().unwrap().contains("rotation key"),
        "{b}"
    );
    // Nor one that was never ours to begin with, signed elsewhere.
    let mut foreign = signed_ops[0].clone();
    foreign["rotationKeys"] = json!([stranger.did_key()]);
    let (st, b) = s
        .post(
            "com.atproto.identity.submitPlcOperation",
            &json!({"operation": foreign}),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(
        directory.count(),
        before,
        "a refused op reached the directory"
    );

    // A handle change is an op perch signs and submits itself: it keeps our
    // rotation key, verifies under it, and is low-S.
    let (st, b) = s
        .post(
            "com.atproto.identity.updateHandle",
            &json!({"handle": "bob.test"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let sent = directory.last(&did).unwrap();
    let op = SignedOp::from_json(&sent).unwrap();
    assert!(is_low_s(KeyType::K256, &sig_bytes(&op)));
    assert_eq!(plc::verify_sig(&op, std::slice::from_ref(&ours)), Ok(0));
    assert!(
        sent["rotationKeys"]
            .as_array()
            .unwrap()
            .contains(&json!(ours)),
        "{sent}"
    );
    assert_eq!(sent["alsoKnownAs"][0], "at://bob.test");
    assert_eq!(sent["prev"], json!(genesis.cid_string()));
}
