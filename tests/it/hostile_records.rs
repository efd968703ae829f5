//! Hostile JSON records (reliability plan item 10) against a real
//! `perch serve --dev`: nesting past every limit, a record one byte over
//! 1 MiB, `$type` confusion, `$link` / `$bytes` / blob objects of the wrong
//! shape, and bodies whose Content-Length lies in either direction. Each
//! gets its exact status and XRPC error, the server keeps answering, and the
//! repository does not move. The limits are checked from the other side
//! too: a record of exactly 1 MiB and one nested as deep as allowed are
//! written and read back.
//!
//! One `json case=… status=… ms=…` line per case; time is not asserted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Perch;
use crate::support::client::{first_response, raw};

/// A collection with no Lexicon here: these tests are about the generic limits every record
/// meets, not about a schema (tests/client/validation.test.mjs covers those).
const POST: &str = "com.example.perch.note";
/// Containers inside containers a record may have.
const MAX_DEPTH: usize = perch::cbor::MAX_DEPTH;
/// The largest body of createRecord, putRecord and applyWrites (as at the reference PDS).
const MAX_WRITE_BODY: usize = 1_000_000;

fn create(p: &Perch, record: Value) -> Value {
    json!({"repo": p.did, "collection": POST, "record": record})
}

fn post(extra: &[(&str, Value)]) -> Value {
    let mut r = json!({"$type": POST, "text": "x", "createdAt": "2026-01-01T00:00:00Z"});
    for (k, v) in extra {
        r[*k] = v.clone();
    }
    r
}

/// `depth` nested arrays around 1, as JSON text.
fn nested_arrays(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested objects, as JSON text.
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// A createRecord body whose record holds `value` (JSON text) at key `x`;
/// the record object itself is one more level.
fn create_text(p: &Perch, value: &str) -> Vec<u8> {
    format!(
        r#"{{"repo":"{}","collection":"{POST}","record":{{"$type":"{POST}","x":{value}}}}}"#,
        p.did
    )
    .into_bytes()
}

/// A post whose DAG-CBOR encoding is exactly `size` bytes.
/// A record whose createRecord body (`create(p, record)`) is exactly `size` bytes.
fn record_in_body_of(p: &Perch, size: usize) -> Value {
    let body = |n: usize| {
        let r = post(&[("text", json!("a".repeat(n)))]);
        (create(p, r.clone()).to_string().len(), r)
    };
    let mut n = size.saturating_sub(body(0).0);
    loop {
        let (len, r) = body(n);
        match len.cmp(&size) {
            std::cmp::Ordering::Equal => return r,
            std::cmp::Ordering::Greater => n -= 1,
            std::cmp::Ordering::Less => n += 1,
        }
    }
}

struct Case {
    name: String,
    nsid: &'static str,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
    says: &'static str,
}

fn bad(name: &str, nsid: &'static str, body: Vec<u8>, says: &'static str) -> Case {
    Case {
        name: name.into(),
        nsid,
        body,
        status: 400,
        error: "InvalidRequest",
        says,
    }
}

fn cases(p: &Perch) -> Vec<Case> {
    const CR: &str = "com.atproto.repo.createRecord";
    const PUT: &str = "com.atproto.repo.putRecord";
    const AW: &str = "com.atproto.repo.applyWrites";
    let rec = |r: Value| create(p, r).to_string().into_bytes();
    let link = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454";
    let mut v = vec![
        bad(
            "arrays nested 4000 deep",
            CR,
            create_text(p, &nested_arrays(4000)),
            "Invalid JSON body",
        ),
        bad(
            "objects nested 4000 deep",
            CR,
            create_text(p, &nested_objects(4000)),
            "Invalid JSON body",
        ),
        bad(
            "arrays nested one past the limit",
            CR,
            create_text(p, &nested_arrays(MAX_DEPTH)),
            "nesting too deep",
        ),
        Case {
            name: "a createRecord body of 1,000,001 bytes".into(),
            nsid: CR,
            body: rec(record_in_body_of(p, MAX_WRITE_BODY + 1)),
            status: 413,
            error: "PayloadTooLarge",
            says: "",
        },
        bad("$type missing", CR, rec(json!({"text": "x"})), "missing $type"),
        bad("$type a number", CR, rec(json!({"$type": 7})), "$type must be"),
        bad("$type empty", CR, rec(json!({"$type": ""})), "$type must be"),
        bad(
            "$type an object",
            CR,
            rec(json!({"$type": {"$type": POST}})),
            "$type must be",
        ),
        bad(
            "$type of another collection",
            CR,
            rec(json!({"$type": "app.bsky.feed.like"})),
            "Invalid $type",
        ),
        bad(
            "$type null inside the record",
            CR,
            rec(post(&[("embed", json!({"$type": null}))])),
            "$type must be",
        ),
        bad("record is an array", CR, rec(json!([POST])), "must be a JSON object"),
        bad("record is a string", CR, rec(json!(POST)), "must be a JSON object"),
        bad(
            "blob without ref",
            CR,
            rec(post(&[("b", json!({"$type": "blob", "mimeType": "image/png", "size": 1}))])),
            "ref link",
        ),
        bad(
            "blob ref not a link",
            CR,
            rec(post(&[(
                "b",
                json!({"$type": "blob", "ref": link, "mimeType": "image/png", "size": 1}),
            )])),
            "ref link",
        ),
        bad(
            "blob with negative size",
            CR,
            rec(post(&[(
                "b",
                json!({"$type": "blob", "ref": {"$link": link}, "mimeType": "image/png", "size": -1}),
            )])),
            "size",
        ),
        bad(
            "blob with empty mimeType",
            CR,
            rec(post(&[(
                "b",
                json!({"$type": "blob", "ref": {"$link": link}, "mimeType": "", "size": 1}),
            )])),
            "mimeType",
        ),
        bad(
            "blob that was never uploaded",
            CR,
            rec(post(&[(
                "b",
                json!({"$type": "blob", "ref": {"$link": link}, "mimeType": "image/png", "size": 1}),
            )])),
            "Could not find blob",
        ),
        bad(
            "$link a number",
            CR,
            rec(post(&[("l", json!({"$link": 5}))])),
            "$link must be a string",
        ),
        bad(
            "$link null",
            CR,
            rec(post(&[("l", json!({"$link": null}))])),
            "$link must be a string",
        ),
        bad(
            "$link nested in $link",
            CR,
            rec(post(&[("l", json!({"$link": {"$link": link}}))])),
            "$link must be a string",
        ),
        bad(
            "$link not a CID",
            CR,
            rec(post(&[("l", json!({"$link": "not-a-cid"}))])),
            "$link:",
        ),
        bad(
            "$link a CIDv0",
            CR,
            rec(post(&[(
                "l",
                json!({"$link": "QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU"}),
            )])),
            "$link:",
        ),
        bad(
            "$link with another key",
            CR,
            rec(post(&[("l", json!({"$link": link, "x": 1}))])),
            "no other keys",
        ),
        bad(
            "$bytes a number",
            CR,
            rec(post(&[("b", json!({"$bytes": 5}))])),
            "$bytes must be a string",
        ),
        bad(
            "$bytes not base64",
            CR,
            rec(post(&[("b", json!({"$bytes": "!!!!"}))])),
            "not valid base64",
        ),
        bad(
            "$bytes in the URL-safe alphabet",
            CR,
            rec(post(&[("b", json!({"$bytes": "-_-_"}))])),
            "not valid base64",
        ),
        bad(
            "$bytes with another key",
            CR,
            rec(post(&[("b", json!({"$bytes": "aGk", "x": 1}))])),
            "no other keys",
        ),
        bad(
            "a float",
            CR,
            rec(post(&[("n", json!(1.5))])),
            "floats are not allowed",
        ),
        bad(
            "an integer past 2^63",
            CR,
            create_text(p, "18446744073709551615"),
            "integer out of range",
        ),
        bad(
            "putRecord nested one past the limit",
            PUT,
            format!(
                r#"{{"repo":"{}","collection":"{POST}","rkey":"deep","record":{{"$type":"{POST}","x":{}}}}}"#,
                p.did,
                nested_objects(MAX_DEPTH)
            )
            .into_bytes(),
            "nesting too deep",
        ),
    ];
    // applyWrites: one bad write spoils the batch, and nothing of it lands.
    let good = json!({"$type": "com.atproto.repo.applyWrites#create", "collection": POST, "value": post(&[])});
    let writes = |w: Value| {
        json!({"repo": p.did, "writes": [good.clone(), w]})
            .to_string()
            .into_bytes()
    };
    v.push(bad(
        "applyWrites with a $type-confused record",
        AW,
        writes(
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": POST,
                      "value": {"$type": "app.bsky.graph.follow"}}),
        ),
        "Invalid $type",
    ));
    v.push(bad(
        "applyWrites with a write of unknown $type",
        AW,
        writes(json!({"$type": POST, "collection": POST, "value": post(&[])})),
        "unknown write type",
    ));
    v.push(bad(
        "applyWrites with a record nested 4000 deep",
        AW,
        format!(
            r#"{{"repo":"{}","writes":[{{"$type":"com.atproto.repo.applyWrites#create","collection":"{POST}","value":{{"$type":"{POST}","x":{}}}}}]}}"#,
            p.did,
            nested_arrays(4000)
        )
        .into_bytes(),
        "Invalid JSON body",
    ));
    let many: Vec<Value> = (0..201).map(|_| good.clone()).collect();
    v.push(bad(
        "applyWrites with 201 writes",
        AW,
        json!({"repo": p.did, "writes": many})
            .to_string()
            .into_bytes(),
        "Too many writes",
    ));
    v
}

/// A request line and headers for a createRecord with this Content-Length.
fn head(p: &Perch, content_length: usize, close: bool) -> String {
    format!(
        "POST /xrpc/com.atproto.repo.createRecord HTTP/1.1\r\nhost: localhost\r\n\
         authorization: {}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n{}\r\n",
        p.bearer(),
        if close { "connection: close\r\n" } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_records_get_clean_errors_and_change_nothing() {
    let p = Perch::start().await;
    let before = p.head().await;
    let digest = p.db_digest();

    // A Content-Length promising more than is sent: the body deadline (60 s)
    // must end it. It runs beside the other cases.
    let promise = {
        let mut req = head(&p, 1000, true).into_bytes();
        req.extend_from_slice(br#"{"repo":"#);
        let addr = p.addr;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(&req).await.unwrap();
            let mut buf = Vec::new();
            // Never more than the deadline plus slack: a server that waits
            // forever fails here.
            tokio::time::timeout(Duration::from_secs(90), c.read_to_end(&mut buf))
                .await
                .expect("the server ends a body that never arrives")
                .unwrap();
            (first_response(&buf), started.elapsed())
        })
    };

    let mut failures = Vec::new();
    // A Content-Length over the record limit is refused from the header,
    // before any of the body is read (none is sent).
    let (st, b) = raw(
        p.addr,
        head(&p, 1024 * 1024 + 64 * 1024 + 1, true).as_bytes(),
    )
    .await;
    println!("json case=\"a body over the record limit\" status={st}");
    if st != 413 || b["error"] != "PayloadTooLarge" {
        failures.push(format!("body over the record limit: got {st} {b}"));
    }
    for c in cases(&p) {
        let started = Instant::now();
        let auth = p.bearer();
        let (st, b) = p
            .call(
                "POST",
                c.nsid,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                c.body,
            )
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let message = b["message"].as_str().unwrap_or("");
        println!(
            "json case={:?} status={st} ms={ms:.1} message={message:?}",
            c.name
        );
        if st != c.status || b["error"] != c.error || !message.contains(c.says) {
            failures.push(format!(
                "{}: want {} {} ~{:?}, got {st} {b}",
                c.name, c.status, c.error, c.says
            ));
        }
        assert!(p.alive().await, "{}: the server stopped answering", c.name);
    }

    // A Content-Length shorter than the body: the server reads what was
    // promised (an incomplete JSON text) and refuses it; the rest of the
    // bytes are not a request.
    let body = create(&p, post(&[])).to_string();
    let mut req = head(&p, 20, false).into_bytes();
    req.extend_from_slice(body.as_bytes());
    let (st, b) = raw(p.addr, &req).await;
    println!("json case=\"Content-Length shorter than the body\" status={st}");
    if st != 400 || b["error"] != "InvalidRequest" {
        failures.push(format!("short Content-Length: got {st} {b}"));
    }

    let ((st, b), took) = promise.await.unwrap();
    println!(
        "json case=\"Content-Length longer than the body\" status={st} ms={:.0}",
        took.as_secs_f64() * 1000.0
    );
    if st != 408 || b["error"] != "InvalidRequest" {
        failures.push(format!("long Content-Length: got {st} {b}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(p.alive().await);
    assert_eq!(p.head().await, before, "a refused write moved the repo");
    assert_eq!(
        p.db_digest(),
        digest,
        "a refused write changed the database"
    );
}

/// The limits from below: what is allowed is written and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_at_the_limits_are_written_and_read_back() {
    let p = Perch::start().await;
    // The create helper's body names the rkey too: leave room for it.
    let big = record_in_body_of(&p, MAX_WRITE_BODY - r#","rkey":"big""#.len());
    let out = p.create(POST, Some("big"), big.clone()).await;
    let (st, got) = p
        .get(&format!(
            "com.atproto.repo.getRecord?repo={}&collection={POST}&rkey=big",
            p.q_did()
        ))
        .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["cid"], out["cid"]);
    assert_eq!(got["value"], big);

    // Nested as deep as allowed: the record object plus MAX_DEPTH - 1 arrays.
    let body = create_text(&p, &nested_arrays(MAX_DEPTH - 1));
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["rkey"] = json!("deep");
    let (st, b) = p.post("com.atproto.repo.createRecord", &v).await;
    assert_eq!(st, 200, "{b}");
    for path in [
        format!(
            "com.atproto.repo.getRecord?repo={}&collection={POST}&rkey=deep",
            p.q_did()
        ),
        format!(
            "com.atproto.repo.listRecords?repo={}&collection={POST}",
            p.q_did()
        ),
        format!(
            "com.atproto.sync.getRecord?did={}&collection={POST}&rkey=deep",
            p.q_did()
        ),
    ] {
        let (st, b) = p.get(&path).await;
        assert_eq!(st, 200, "{path}: {b}");
    }
    let (_, got) = p
        .get(&format!(
            "com.atproto.repo.getRecord?repo={}&collection={POST}&rkey=deep",
            p.q_did()
        ))
        .await;
    assert_eq!(got["value"], v["record"]);
}
