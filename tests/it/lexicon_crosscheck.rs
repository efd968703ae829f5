//! Cross-check with the official implementation: perch's Lexicon validator and
//! `@atproto/lexicon` (run by `tests/node/lexicon-check.mjs`) decide on the same corpus of
//! records, and must agree on every one, accept or reject. The corpus: records generated
//! from every vendored record schema, each mutated a few ways (a value replaced by a
//! boolean or a string, a key removed), hand-written cases from the review, and strings
//! around the grapheme limits built from clusters that segment differently (combining
//! marks, ZWJ emoji, flags, Hangul jamo). The one allowed difference is named below.

use std::path::Path;
use std::process::Command;

use crate::support::rng::Rng;
use perch::cbor;
use perch::lexicon::{Catalog, Mode};
use serde_json::{Value, json};

const NOW: &str = "2026-12-03T12:00:00.000Z";

/// Every position inside `v` that a mutation may touch: object keys (not `$type`) and
/// array indices; `$link` / `$bytes` objects are leaves.
fn positions(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) if !m.contains_key("$link") && !m.contains_key("$bytes") => {
            for (k, x) in m {
                if k == "$type" {
                    continue;
                }
                path.push(json!(k));
                out.push(path.clone());
                positions(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(json!(i));
                out.push(path.clone());
                positions(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

fn remove(v: &mut Value, path: &[Value]) {
    let (last, parent) = path.split_last().unwrap();
    match (at(v, parent), last) {
        (Value::Object(m), Value::String(k)) => {
            m.remove(k);
        }
        (Value::Array(a), Value::Number(i)) => {
            a.remove(i.as_u64().unwrap() as usize);
        }
        _ => unreachable!(),
    }
}

fn corpus(cat: &Catalog) -> Vec<(String, String, Value)> {
    let mut out = vec![];
    let mut rng = Rng(0x5eed_1e71_c0de);
    for collection in cat.record_types() {
        for seed in 1..=30u64 {
            let (rkey, record) = cat.sample(collection, seed * 7919).unwrap();
            let mut json = cbor::to_json(&record);
            json["$type"] = json!(collection);
            out.push((collection.to_owned(), rkey.clone(), json.clone()));
            let mut all = vec![];
            positions(&json, &mut vec![], &mut all);
            if all.is_empty() {
                continue;
            }
            for mutation in 0..3 {
                let path = &all[rng.below(all.len() as u64) as usize];
                let mut m = json.clone();
                match mutation {
                    0 => *at(&mut m, path) = json!(true),
                    1 => *at(&mut m, path) = json!("nope"),
                    _ => remove(&mut m, path),
                }
                out.push((collection.to_owned(), rkey.clone(), m));
            }
        }
    }
    // The review's cases, and neighbours.
    let post = |text: Value| json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": NOW});
    for record in [
        post(json!(42)),
        post(json!("fine")),
        json!({"$type": "app.bsky.feed.post", "createdAt": NOW}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "yesterday"}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-12-03T12:00:00Z"}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-12-03 12:00:00Z"}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-12-03T12:00:00+01:00"}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": NOW, "langs": ["en", "x-klingon", "zh-Hant-TW"]}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": NOW, "langs": ["english"]}),
    ] {
        out.push(("app.bsky.feed.post".into(), "3jzfcijpj2z2a".into(), record));
    }
    for (collection, record) in [
        (
            "app.bsky.feed.like",
            json!({"$type": "app.bsky.feed.like", "subject": "nope", "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.follow",
            json!({"$type": "app.bsky.graph.follow", "subject": "did:plc:x", "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.follow",
            json!({"$type": "app.bsky.graph.follow", "subject": "alice.test", "createdAt": NOW}),
        ),
    ] {
        out.push((collection.into(), "3jzfcijpj2z2a".into(), record));
    }
    // Around 300 graphemes / 3000 bytes, with clusters of every kind.
    let clusters = [
        "a",
        "é",
        "e\u{301}",
        "e\u{301}\u{302}",
        "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
        "\u{1F1E9}\u{1F1EA}",
        "\u{1F44D}\u{1F3FD}",
        "\u{1100}\u{1161}\u{11A8}",
        "\r\n",
        "\u{0915}\u{094D}\u{0937}",
        "\u{2764}\u{FE0F}",
    ];
    for c in clusters {
        for n in [299usize, 300, 301] {
            out.push((
                "app.bsky.feed.post".into(),
                "3jzfcijpj2z2a".into(),
                post(json!(c.repeat(n))),
            ));
        }
    }
    out
}

#[test]
fn agrees_with_the_official_validator_on_every_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir.join("node_modules/@atproto/lexicon").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/node/node_modules missing: run `npm ci --prefix tests/node`"
        );
        eprintln!("skipped: run `npm ci --prefix tests/node` to enable the Lexicon cross-check");
        return;
    }
    let cat = Catalog::embedded();
    let corpus = corpus(cat);
    let file = tempfile::NamedTempFile::new().unwrap();
    let input: Vec<Value> = corpus
        .iter()
        .map(|(c, _, r)| json!({"collection": c, "record": r}))
        .collect();
    std::fs::write(file.path(), serde_json::to_vec(&input).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(dir.join("lexicon-check.mjs"))
        .arg(file.path())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons"))
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "lexicon-check.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), corpus.len());
    let mut disagree = vec![];
    let (mut accepted, mut refused, mut blob_only) = (0, 0, 0);
    for ((collection, rkey, record), official) in corpus.iter().zip(&theirs) {
        // perch refuses some malformed data already when reading the JSON (a blob whose
        // size is not a number): that is a refusal of the write too.
        let ours = match cbor::record_from_json(record) {
            Ok(value) => cat
                .check_record(collection, rkey, &value, Mode::Require)
                .map(|c| c.status)
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("JSON: {e}")),
        };
        let official_ok = official["ok"] == true;
        if ours.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
        // One known difference: `@atproto/lexicon` checks only that a blob is a blob ref,
        // while the reference PDS (through its newer `@atproto/lex` schemas) and perch also
        // hold the blob to the field's `accept` and `maxSize`.
        let blob_constraint = ours.as_ref().is_err_and(|m| {
            m.contains(" mimeType must be one of ") || m.contains(" is too large: ")
        });
        if blob_constraint && official_ok {
            blob_only += 1;
        } else if ours.is_ok() != official_ok {
            disagree.push(format!(
                "{collection} {record}\n  perch: {:?}\n  @atproto/lexicon: {}",
                ours, official["message"]
            ));
        }
    }
    eprintln!(
        "{} records: {accepted} accepted and {refused} refused by perch; {blob_only} refused \
         only by perch for a blob's type or size",
        corpus.len()
    );
    assert!(
        accepted > 500 && refused > 500,
        "a corpus with both outcomes"
    );
    assert!(
        disagree.is_empty(),
        "{} of {} decisions differ:\n{}",
        disagree.len(),
        corpus.len(),
        disagree.join("\n")
    );
}
