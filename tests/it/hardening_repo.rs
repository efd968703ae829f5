//! Issue 14, items 7, 15 and 19 (the Rust side; item 20's end-to-end move with the official
//! client is tests/migrate/client-flow.mjs), each against a running `perch serve --dev`:
//!
//! - a deactivated (or taken-down) account's repo is not public, to its owner neither, and
//!   takes no writes, while `uploadBlob` keeps working for a move in (item 7);
//! - `checkAccountStatus` names every field its lexicon requires at every step of a move in:
//!   created, imported, activated (item 15);
//! - `listBlobs?since=` lists only the blobs of records written after that rev (19a);
//! - a `putRecord` of the record already there commits nothing (19b);
//! - this server's own did:web is answered from local state, never fetched (19c): these
//!   servers have no `PERCH_ALLOW_LOOPBACK` and their dev DID names port 0, so any fetch fails;
//! - a deleted account leaves only its deletion to replay from the firehose (19d).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use perch::cbor::{self, Ipld};
use perch::crypto::{KeyType, Keypair};
use perch::repo::MemoryBlocks;
use perch::repo::commit::Commit;
use perch::repo::mst::Mst;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::firehose::{self, split_frame};
use crate::support::process::{Launch, Process, perch_cmd};
use crate::support::stand_in::did_web_server;
use crate::support::{Client, Perch, assert_xrpc_error, db};

const POST: &str = "app.bsky.feed.post";

fn post(text: &str) -> Value {
    json!({"$type": POST, "text": text, "createdAt": "2026-01-01T00:00:00.000Z"})
}

fn post_with_image(text: &str, blob: &Value) -> Value {
    let mut p = post(text);
    p["embed"] = json!({"$type": "app.bsky.embed.images",
                        "images": [{"alt": "", "image": blob["blob"]}]});
    p
}

/// Reads the server's database through a read-only connection (the server keeps running).
fn db_read<T>(p: &Perch, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> T {
    let conn = db::read_only(&p.db_path());
    f(&conn).unwrap()
}

fn last_event(p: &Perch) -> (i64, String) {
    db_read(p, |c| {
        c.query_row(
            "SELECT seq, kind FROM event ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    })
}

/// What the owner could do to the database by hand (perch has no takedown command).
fn set_status(p: &Perch, status: &str) {
    let conn = rusqlite::Connection::open(p.db_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute("UPDATE account SET status = ?1", [status])
        .unwrap();
}

async fn upload(p: &Perch, bytes: &[u8]) -> Value {
    let (st, b) = p
        .post_raw("com.atproto.repo.uploadBlob", "image/png", bytes.to_vec())
        .await;
    assert_eq!(st, 200, "{b}");
    b
}

/// Every read of records: anonymous, and as the owner.
async fn reads_all_fail(p: &Perch, status: u16, error: &str) {
    let did = p.q_did();
    for q in [
        format!("com.atproto.repo.getRecord?repo={did}&collection={POST}&rkey=3keptaaaaaaaa"),
        format!("com.atproto.repo.listRecords?repo={did}&collection={POST}"),
        format!("com.atproto.repo.describeRepo?repo={did}"),
        format!("com.atproto.repo.describeRepo?repo={}", p.handle),
    ] {
        let (st, b) = p.call("GET", &q, &[], Vec::new()).await;
        assert_xrpc_error(st, &b, status, error);
        let (st, b) = p.get(&q).await;
        assert_xrpc_error(st, &b, status, error);
    }
}

/// Every kind of record write; each must be refused.
async fn writes_all_fail(p: &Perch, status: u16, error: &str, message: &str) {
    let did = &p.did;
    for (nsid, body) in [
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": POST, "record": post("refused")}),
        ),
        (
            "com.atproto.repo.putRecord",
            json!({"repo": did, "collection": POST, "rkey": "3keptaaaaaaaa", "record": post("changed")}),
        ),
        (
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": POST, "rkey": "3keptaaaaaaaa"}),
        ),
        // Deleting what is not there would change nothing, and is refused all the same.
        (
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": POST, "rkey": "3absentaaaaaa"}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"$type": "com.atproto.repo.applyWrites#create",
                                            "collection": POST, "value": post("refused")}]}),
        ),
    ] {
        let (st, b) = p.post(nsid, &body).await;
        assert_xrpc_error(st, &b, status, error);
        assert_eq!(b["message"], message, "{nsid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_that_is_not_active_is_not_public_and_takes_no_writes() {
    let p = Perch::start().await;
    p.create(POST, Some("3keptaaaaaaaa"), post("before")).await;
    let (st, b) = p
        .post("com.atproto.server.deactivateAccount", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (seq, kind) = last_event(&p);
    assert_eq!(kind, "account");

    reads_all_fail(&p, 400, "RepoDeactivated").await;
    let before = p.db_digest();
    writes_all_fail(&p, 401, "AccountDeactivated", "Account is deactivated").await;
    assert_eq!(
        p.db_digest(),
        before,
        "a refused write changed the database"
    );
    // Nothing follows the deactivation's #account on the firehose.
    assert_eq!(last_event(&p).0, seq);
    // A move in uploads its blobs before activating (as the reference allows).
    upload(&p, b"\x89PNG\r\n\x1a\n uploaded while deactivated").await;

    for (status, read_error) in [
        ("takendown", "RepoTakendown"),
        ("suspended", "RepoSuspended"),
    ] {
        set_status(&p, status);
        reads_all_fail(&p, 400, read_error).await;
        let before = p.db_digest();
        writes_all_fail(&p, 401, "AccountTakedown", "Account has been taken down").await;
        assert_eq!(
            p.db_digest(),
            before,
            "{status}: a refused write changed the database"
        );
    }
    set_status(&p, "deactivated");

    // Activation (this server's own did:web: nothing to fetch) opens it again.
    let (st, b) = p
        .post("com.atproto.server.activateAccount", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = p
        .get(&format!(
            "com.atproto.repo.getRecord?repo={}&collection={POST}&rkey=3keptaaaaaaaa",
            p.q_did()
        ))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["value"]["text"], "before");
    p.create(POST, None, post("after")).await;
    assert_eq!(last_event(&p).1, "commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_did_web_is_answered_from_local_state() {
    let p = Perch::start().await;
    assert!(p.did.starts_with("did:web:localhost"), "{}", p.did);
    let (st, b) = p.get("com.atproto.server.checkAccountStatus").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["validDid"], true, "{b}");
    // Leaving and coming back needs the DID document to name this server: it does.
    let (st, b) = p
        .post("com.atproto.server.deactivateAccount", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = p
        .post("com.atproto.server.activateAccount", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = p.get("com.atproto.server.checkAccountStatus").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (&b["activated"], &b["validDid"]),
        (&json!(true), &json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_blobs_since_a_rev_names_only_blobs_of_later_records() {
    let p = Perch::start().await;
    let start_rev = p.head().await["rev"].as_str().unwrap().to_owned();
    let a = upload(&p, b"\x89PNG\r\n\x1a\n first").await;
    let first = p.create(POST, None, post_with_image("a", &a)).await;
    let rev1 = first["commit"]["rev"].as_str().unwrap().to_owned();
    let b_blob = upload(&p, b"\x89PNG\r\n\x1a\n second").await;
    let second = p.create(POST, None, post_with_image("b", &b_blob)).await;
    let rev2 = second["commit"]["rev"].as_str().unwrap().to_owned();
    let cid = |b: &Value| b["blob"]["ref"]["$link"].as_str().unwrap().to_owned();
    let mut both = vec![cid(&a), cid(&b_blob)];
    both.sort();

    let p = &p;
    let list = |since: Option<&str>| {
        let mut q = format!("com.atproto.sync.listBlobs?did={}", p.q_did());
        if let Some(s) = since {
            q.push_str(&format!("&since={s}"));
        }
        async move { p.call("GET", &q, &[], Vec::new()).await }
    };
    let cids = |(st, b): (u16, Value)| {
        assert_eq!(st, 200, "{b}");
        b["cids"].as_array().unwrap().clone()
    };
    assert_eq!(cids(list(None).await), both);
    assert_eq!(cids(list(Some(&start_rev)).await), both);
    assert_eq!(cids(list(Some(&rev1)).await), [json!(cid(&b_blob))]);
    assert!(cids(list(Some(&rev2)).await).is_empty());
    let (st, b) = list(Some("not-a-rev")).await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_record_of_the_same_record_commits_nothing() {
    let p = &Perch::start().await;
    let put = |record: Value, extra: Value| {
        let mut body =
            json!({"repo": p.did, "collection": POST, "rkey": "3sameaaaaaaaa", "record": record});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        async move { p.post("com.atproto.repo.putRecord", &body).await }
    };
    let (st, first) = put(post("unchanged"), json!({})).await;
    assert_eq!(st, 200, "{first}");
    assert!(first["commit"]["cid"].is_string(), "{first}");
    let head = p.head().await;
    let seq = last_event(p).0;

    // As the reference: the record's URI and CID, no `commit`, no new commit or event, and
    // the swaps are not consulted when there is nothing to do.
    for extra in [
        json!({}),
        json!({"swapRecord": null}),
        json!({"swapCommit": perch::cid::for_cbor(b"\xa0").to_string()}),
    ] {
        let (st, again) = put(post("unchanged"), extra.clone()).await;
        assert_eq!(st, 200, "{extra}: {again}");
        assert_eq!(again["uri"], first["uri"]);
        assert_eq!(again["cid"], first["cid"]);
        assert_eq!(again["validationStatus"], first["validationStatus"]);
        assert!(again.get("commit").is_none(), "{extra}: {again}");
        assert_eq!(p.head().await, head);
        assert_eq!(last_event(p).0, seq);
    }

    // applyWrites' update makes its commit even so (the reference's does too).
    let (st, b) = p
        .post(
            "com.atproto.repo.applyWrites",
            &json!({"repo": p.did, "writes": [{"$type": "com.atproto.repo.applyWrites#update",
                     "collection": POST, "rkey": "3sameaaaaaaaa", "value": post("unchanged")}]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(b["commit"]["cid"].is_string(), "{b}");
    assert_ne!(p.head().await, head);
    // A changed record is a commit.
    let (st, b) = put(post("changed"), json!({})).await;
    assert_eq!(st, 200, "{b}");
    assert!(b["commit"]["cid"].is_string(), "{b}");
}

/// The first frame a subscriber replaying from `cursor=0` gets, skipping `#info`.
async fn first_replayed_frame(addr: SocketAddr) -> (Ipld, Ipld) {
    let mut ws = firehose::connect(addr, Some(0)).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a frame")
            .expect("an open stream")
            .unwrap();
        let Message::Binary(bytes) = m else { continue };
        let (header, body) = split_frame(&bytes).expect("frame is header + body");
        if header.get("t").and_then(Ipld::as_str) != Some("#info") {
            return (header, body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_leaves_only_its_deletion_to_replay() {
    let p = Perch::start().await;
    for i in 0..5 {
        p.create(POST, None, post(&format!("soon gone {i}"))).await;
    }
    let (last_commit, _) = last_event(&p);
    let (st, b) = p
        .post("com.atproto.server.requestAccountDelete", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let code = p
        .code("delete-account")
        .expect("`perch account codes` shows the code");
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.server.deleteAccount",
            &[("content-type", "application/json")],
            json!({"did": p.did, "password": p.password, "token": code})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(st, 200, "{b}");

    let (header, body) = first_replayed_frame(p.addr).await;
    assert_eq!(header.get("t").and_then(Ipld::as_str), Some("#account"));
    assert_eq!(body.get("status").and_then(Ipld::as_str), Some("deleted"));
    assert_eq!(body.get("did").and_then(Ipld::as_str), Some(p.did.as_str()));
    let seq = match body.get("seq") {
        Some(Ipld::Integer(s)) => *s,
        other => panic!("seq: {other:?}"),
    };
    assert!(seq > last_commit, "seq {seq} is not above {last_commit}");
    let kinds: Vec<String> = db_read(&p, |c| {
        let mut st = c.prepare("SELECT kind FROM event")?;
        st.query_map([], |r| r.get(0))?.collect()
    });
    assert_eq!(kinds, ["account"]);
}

// ---- a move in, on a perch without an account -------------------------------------------

/// `perch serve --dev` on an empty data dir that makes no dev account (a PLC URL is set), with
/// loopback allowed so the moving account's did:web document can be served by the test.
struct Empty {
    _process: Process,
    dir: tempfile::TempDir,
    client: Client,
}

/// What makes `serve --dev` leave the box empty: a PLC URL (never used); loopback allowed.
const EMPTY_ENV: [(&str, &str); 2] = [
    ("PERCH_PLC_URL", "http://127.0.0.1:9"),
    ("PERCH_ALLOW_LOOPBACK", "1"),
];

impl Empty {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start() -> Empty {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch::default()
            .envs(&EMPTY_ENV)
            .log(&dir.path().join("perch.log"));
        let data = dir.path().join("data");
        let process = tokio::task::spawn_blocking(move || launch.start(&data))
            .await
            .unwrap();
        Empty {
            client: Client::one_shot(process.addr),
            _process: process,
            dir,
        }
    }

    /// `perch account invite` beside the running server, as its owner would.
    fn invite(&self) -> String {
        let out = perch_command()
            .args(["account", "invite", "--dev", "--data-dir"])
            .arg(self.data())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.client
            .call(method, path_and_query, &headers, body)
            .await
    }
}

/// The perch binary with the environment of `Empty`.
fn perch_command() -> Command {
    let mut cmd = perch_cmd();
    cmd.envs(EMPTY_ENV);
    cmd
}

/// A repo of `n` posts for `did` signed by `key`, the first with an image blob; its CAR and
/// commit CID.
fn repo_car(did: &str, n: usize, blob: &str, key: &Keypair) -> (Vec<u8>, String) {
    let mut blocks = MemoryBlocks::new();
    let mut tree = Mst::new();
    for i in 0..n {
        let mut rec = json!({"$type": POST, "text": format!("moved {i}"),
                             "createdAt": "2026-01-01T00:00:00.000Z"});
        if i == 0 {
            rec["embed"] = json!({"$type": "app.bsky.embed.images", "images": [{"alt": "",
                "image": {"$type": "blob", "ref": {"$link": blob}, "mimeType": "image/png",
                          "size": 20}}]});
        }
        let rec = cbor::record_from_json(&rec).unwrap();
        let (c, b) = cbor::encode_with_cid(&rec);
        blocks.insert(c, b);
        tree.insert(&blocks, format!("{POST}/3moved{i:06}").as_bytes(), c)
            .unwrap();
    }
    blocks.extend(tree.unstored_blocks());
    let rev = perch::tid::Tid::new(1_700_000_000_000_000, 7);
    let (cc, cb) = Commit::sign(did, tree.root_cid(), rev, key).to_block();
    blocks.insert(cc, cb);
    let car = perch::repo::export::write_repo_car(&blocks, &cc, Vec::new()).unwrap();
    (car, cc.to_string())
}

/// checkAccountStatus, which must be complete.
async fn account_status(p: &Empty, auth: &(&str, String)) -> Value {
    let (st, b) = p
        .call(
            "GET",
            "com.atproto.server.checkAccountStatus",
            std::slice::from_ref(auth),
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_complete_status(&b);
    b
}

/// Every field the lexicon requires, each of its type.
fn assert_complete_status(b: &Value) {
    for k in ["activated", "validDid"] {
        assert!(b[k].is_boolean(), "{k}: {b}");
    }
    let commit = b["repoCommit"]
        .as_str()
        .unwrap_or_else(|| panic!("repoCommit: {b}"));
    perch::cid::parse(commit).unwrap_or_else(|e| panic!("repoCommit {commit}: {e}"));
    let rev = b["repoRev"]
        .as_str()
        .unwrap_or_else(|| panic!("repoRev: {b}"));
    perch::syntax::validate_tid(rev).unwrap_or_else(|e| panic!("repoRev {rev}: {e}"));
    for k in [
        "repoBlocks",
        "indexedRecords",
        "privateStateValues",
        "expectedBlobs",
        "importedBlobs",
    ] {
        assert!(b[k].is_i64(), "{k}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_account_status_is_complete_at_every_step_of_a_move_in() {
    let p = Empty::start().await;
    let old_key = Keypair::generate(KeyType::K256, &mut rand_core::OsRng);
    let doc = Arc::new(Mutex::new(Value::Null));
    let port = did_web_server(Arc::clone(&doc)).await;
    let did = format!("did:web:localhost%3A{port}");
    let q_did = did.replace('%', "%25");
    let doc_naming = |key: &str, endpoint: &str| {
        json!({
            "id": did, "alsoKnownAs": ["at://mover.test"],
            "verificationMethod": [{"id": format!("{did}#atproto"), "type": "Multikey",
                                    "controller": did, "publicKeyMultibase": key}],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": endpoint}],
        })
    };
    *doc.lock().unwrap() = doc_naming(
        &old_key.public_key().to_multikey(),
        "https://old.example.com",
    );

    // createAccount with the DID, an invite, and the old server's service token.
    let (st, describe) = p
        .call("GET", "com.atproto.server.describeServer", &[], Vec::new())
        .await;
    assert_eq!(st, 200, "{describe}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": did, "aud": describe["did"], "iat": now, "exp": now + 60,
                        "lxm": "com.atproto.server.createAccount"});
    let service = perch::crypto::jwt::sign_es(&old_key, None, claims.as_object().unwrap());
    let json_ct = ("content-type", "application/json".to_owned());
    let invite = p.invite();
    let body = json!({"did": did, "handle": "mover.test", "password": "correct horse",
                      "inviteCode": invite})
    .to_string()
    .into_bytes();
    // Without the old server's token, or with one speaking for another DID: the reference's
    // answer, and the invite is not used up.
    let mut other = claims.clone();
    other["iss"] = json!("did:web:elsewhere.example.com");
    let other = perch::crypto::jwt::sign_es(&old_key, None, other.as_object().unwrap());
    for auth in [None, Some(format!("Bearer {other}"))] {
        let mut headers = vec![json_ct.clone()];
        headers.extend(auth.map(|a| ("authorization", a)));
        let (st, b) = p
            .call(
                "POST",
                "com.atproto.server.createAccount",
                &headers,
                body.clone(),
            )
            .await;
        assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
        assert_eq!(
            b["message"],
            format!("Missing auth to create account with did: {did}")
        );
    }
    let (st, created) = p
        .call(
            "POST",
            "com.atproto.server.createAccount",
            &[
                json_ct.clone(),
                ("authorization", format!("Bearer {service}")),
            ],
            body,
        )
        .await;
    assert_eq!(st, 200, "{created}");
    let auth = (
        "authorization",
        format!("Bearer {}", created["accessJwt"].as_str().unwrap()),
    );
    let status = || account_status(&p, &auth);

    // Created: deactivated, with the empty repo the reference makes too; not public, and
    // nothing on the firehose yet.
    let fresh = status().await;
    assert_eq!(
        (&fresh["activated"], &fresh["validDid"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(fresh["indexedRecords"], 0);
    let (st, b) = p
        .call(
            "GET",
            &format!("com.atproto.sync.getLatestCommit?did={q_did}"),
            &[],
            Vec::new(),
        )
        .await;
    assert_xrpc_error(st, &b, 400, "RepoDeactivated");
    let events: i64 = db::read_only(&p.data().join("perch.sqlite"))
        .query_row("SELECT count(*) FROM event", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, 0, "a deactivated account announces nothing");

    // Imported: the old repo's commit and rev, one blob expected.
    let blob_bytes = b"\x89PNG\r\n\x1a\n moved blob!".to_vec();
    let blob = perch::cid::for_raw(&blob_bytes).to_string();
    let (car, commit) = repo_car(&did, 12, &blob, &old_key);
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.repo.importRepo",
            &[
                ("content-type", "application/vnd.ipld.car".into()),
                auth.clone(),
            ],
            car,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let imported = status().await;
    assert_eq!(imported["repoCommit"], commit);
    assert_eq!(imported["indexedRecords"], 12);
    assert_eq!(
        (&imported["expectedBlobs"], &imported["importedBlobs"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(imported["activated"], false);

    // The blob arrives while the account is still deactivated; record writes do not.
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.repo.uploadBlob",
            &[("content-type", "image/png".into()), auth.clone()],
            blob_bytes,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["blob"]["ref"]["$link"], blob);
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.repo.createRecord",
            &[json_ct.clone(), auth.clone()],
            json!({"repo": did, "collection": POST, "record": post("too early")})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_xrpc_error(st, &b, 401, "AccountDeactivated");
    assert_eq!(status().await["importedBlobs"], 1);

    // The DID document names this server: activated.
    let (st, creds) = p
        .call(
            "GET",
            "com.atproto.identity.getRecommendedDidCredentials",
            std::slice::from_ref(&auth),
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{creds}");
    let key = creds["verificationMethods"]["atproto"].as_str().unwrap();
    let endpoint = creds["services"]["atproto_pds"]["endpoint"]
        .as_str()
        .unwrap();
    *doc.lock().unwrap() = doc_naming(key.strip_prefix("did:key:").unwrap(), endpoint);
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.server.activateAccount",
            std::slice::from_ref(&auth),
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let active = status().await;
    assert_eq!(
        (&active["activated"], &active["validDid"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(active["indexedRecords"], 12);
    assert_ne!(
        active["repoCommit"], commit,
        "activation signs a fresh commit"
    );
}
