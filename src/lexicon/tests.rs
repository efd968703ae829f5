use proptest::prelude::*;
use serde_json::{Value, json};

use super::schema::Def;
use super::*;
use crate::cbor::{Ipld, record_from_json};

fn cat() -> &'static Catalog {
    Catalog::embedded()
}

fn rec(v: Value) -> Ipld {
    record_from_json(&v).expect("a data-model record")
}

const TID: &str = "3jzfcijpj2z2a";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const NOW: &str = "2026-12-03T12:00:00.000Z";
const POST_URI: &str = "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3jzfcijpj2z2a";
const POST_CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

fn blob(mime: &str, size: u64) -> Value {
    json!({"$type": "blob", "ref": {"$link": crate::cid::for_raw(b"png").to_string()},
           "mimeType": mime, "size": size})
}

fn check(collection: &str, rkey: &str, v: Value) -> Result<Checked, InvalidRecord> {
    cat().check_record(collection, rkey, &rec(v), Mode::Default)
}

fn refused(collection: &str, rkey: &str, v: Value) -> String {
    match check(collection, rkey, v) {
        Ok(c) => panic!("{collection} accepted: {c:?}"),
        Err(InvalidRecord(m)) => m,
    }
}

#[test]
fn the_vendored_schemas_load_with_every_record_type() {
    let types = cat().record_types();
    assert_eq!(types.len(), 20, "{types:?}");
    for t in [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.graph.follow",
        "app.bsky.actor.profile",
        "app.bsky.feed.threadgate",
        "com.atproto.lexicon.schema",
    ] {
        assert!(types.contains(&t), "{t}");
    }
}

/// `embedded.json` is what `scripts/lexicons/vendor.py` derives from `lexicons/`: every
/// vendored document, nothing else, with only string `description`s left out.
#[test]
fn the_embedded_schemas_are_the_vendored_ones() {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, v)| !(k.as_str() == "description" && v.is_string()))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    fn walk(dir: &std::path::Path, out: &mut Vec<Value>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
            }
        }
    }
    let mut vendored = vec![];
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons"),
        &mut vendored,
    );
    vendored.sort_by_key(|d| d["id"].as_str().unwrap().to_owned());
    let vendored: Vec<Value> = vendored.iter().map(strip).collect();
    let embedded: Vec<Value> = serde_json::from_str(EMBEDDED).unwrap();
    assert_eq!(embedded.len(), 35);
    assert_eq!(
        embedded, vendored,
        "run scripts/lexicons/vendor.py (see lexicons/README.md)"
    );
    // The property of app.bsky.feed.generator named `description` is a schema, not prose.
    assert!(EMBEDDED.contains(r#""description":{"type":"string""#));
}

#[test]
fn valid_records_of_the_common_types() {
    let strong = json!({"uri": POST_URI, "cid": POST_CID});
    let cases = [
        (
            "app.bsky.feed.post",
            TID,
            json!({"$type": "app.bsky.feed.post", "text": "hello", "createdAt": NOW}),
        ),
        (
            "app.bsky.feed.post",
            TID,
            json!({"$type": "app.bsky.feed.post", "text": "", "createdAt": NOW,
            "langs": ["en", "de-CH"],
            "reply": {"root": strong, "parent": strong},
            "facets": [{"index": {"byteStart": 0, "byteEnd": 5},
                        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": DID}]}],
            "embed": {"$type": "app.bsky.embed.images", "images": [
                {"image": blob("image/png", 73), "alt": "a dot", "aspectRatio": {"width": 1, "height": 1}}]},
            "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
            "tags": ["rust"]}),
        ),
        (
            "app.bsky.feed.post",
            TID,
            json!({"text": "a link", "createdAt": NOW,
            "embed": {"$type": "app.bsky.embed.external", "external": {
                "uri": "https://example.com", "title": "t", "description": "d"}}}),
        ),
        (
            "app.bsky.feed.post",
            TID,
            json!({"text": "quote", "createdAt": NOW,
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                "record": {"record": strong},
                "media": {"$type": "app.bsky.embed.video", "video": blob("video/mp4", 5_000_000)}}}),
        ),
        (
            "app.bsky.feed.like",
            TID,
            json!({"subject": strong, "createdAt": NOW}),
        ),
        (
            "app.bsky.feed.repost",
            TID,
            json!({"subject": strong, "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.follow",
            TID,
            json!({"subject": DID, "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.block",
            TID,
            json!({"subject": DID, "createdAt": NOW}),
        ),
        (
            "app.bsky.actor.profile",
            "self",
            json!({"displayName": "Alice", "description": "hi",
            "avatar": blob("image/jpeg", 1000), "createdAt": NOW}),
        ),
        ("app.bsky.actor.profile", "self", json!({})),
        (
            "app.bsky.graph.list",
            TID,
            json!({"name": "friends", "purpose": "app.bsky.graph.defs#curatelist",
            "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.listitem",
            TID,
            json!({"subject": DID,
            "list": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.graph.list/3jzfcijpj2z2a",
            "createdAt": NOW}),
        ),
        (
            "app.bsky.feed.threadgate",
            TID,
            json!({"post": POST_URI, "createdAt": NOW,
            "allow": [{"$type": "app.bsky.feed.threadgate#mentionRule"},
                      {"$type": "app.bsky.feed.threadgate#followingRule"}]}),
        ),
        (
            "app.bsky.feed.postgate",
            TID,
            json!({"post": POST_URI, "createdAt": NOW,
            "embeddingRules": [{"$type": "app.bsky.feed.postgate#disableRule"}]}),
        ),
        (
            "app.bsky.feed.generator",
            "my-feed",
            json!({"did": "did:web:feed.example.com",
            "displayName": "Feed", "createdAt": NOW}),
        ),
        (
            "app.bsky.graph.starterpack",
            TID,
            json!({"name": "pack", "createdAt": NOW,
            "list": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.graph.list/3jzfcijpj2z2a"}),
        ),
        (
            "chat.bsky.actor.declaration",
            "self",
            json!({"allowIncoming": "following"}),
        ),
        (
            "com.atproto.lexicon.schema",
            "com.example.thing",
            json!({"lexicon": 1}),
        ),
    ];
    for (collection, rkey, record) in cases {
        let c = check(collection, rkey, record.clone())
            .unwrap_or_else(|e| panic!("{collection} {record}: {e}"));
        assert_eq!(c.status, Status::Valid, "{collection}");
    }
    let with_image = check(
        "app.bsky.actor.profile",
        "self",
        json!({"avatar": blob("image/png", 73), "banner": blob("image/png", 73)}),
    )
    .unwrap();
    assert_eq!(
        with_image.blobs.len(),
        2,
        "blobs are reported for the caller's check"
    );
    assert_eq!(with_image.blobs[0].mime_type, "image/png");
    assert_eq!(with_image.blobs[0].size, 73);
}

#[test]
fn the_reviewed_invalid_records_are_refused_with_a_path() {
    let post = |extra: Value| {
        let mut v = json!({"text": "hi", "createdAt": NOW});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    };
    let cases = [
        (
            post(json!({"text": 42})),
            "Invalid app.bsky.feed.post record: Record/text must be a string",
        ),
        (
            post(json!({"text": null})),
            "Invalid app.bsky.feed.post record: Record must have the property \"text\"",
        ),
        (
            post(json!({"text": "a".repeat(301)})),
            "Record/text must not be longer than 300 graphemes",
        ),
        (
            post(json!({"text": "a".repeat(3001)})),
            "Record/text must not be longer than 3000 characters",
        ),
        (
            post(json!({"createdAt": "yesterday"})),
            "Record/createdAt must be an valid atproto datetime",
        ),
        (
            post(json!({"langs": ["not a language!"]})),
            "Record/langs/0 must be a well-formed BCP 47 language tag",
        ),
        (
            post(
                json!({"embed": {"$type": "app.bsky.embed.images", "images": [
            {"image": blob("video/mp4", 73), "alt": ""}]}}),
            ),
            "Record/embed/images/0/image mimeType must be one of image/*",
        ),
        (
            post(
                json!({"embed": {"$type": "app.bsky.embed.images", "images": [
            {"image": blob("image/png", 2_000_001), "alt": ""}]}}),
            ),
            "Record/embed/images/0/image is too large",
        ),
        (
            post(
                json!({"embed": {"$type": "app.bsky.embed.images", "images": [
            {"image": {"cid": "bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", "mimeType": "image/png"}, "alt": ""}]}}),
            ),
            "Record/embed/images/0/image should be a blob ref",
        ),
        (
            post(json!({"embed": {"images": []}})),
            "Record/embed must be an object which includes the \"$type\" property",
        ),
        (
            post(
                json!({"embed": {"$type": "app.bsky.embed.images", "images": [
            {"image": blob("image/png", 1), "alt": ""}, {"image": blob("image/png", 1), "alt": ""},
            {"image": blob("image/png", 1), "alt": ""}, {"image": blob("image/png", 1), "alt": ""},
            {"image": blob("image/png", 1), "alt": ""}]}}),
            ),
            "Record/embed/images must not have more than 4 elements",
        ),
        (
            post(json!({"reply": {"root": {"uri": POST_URI, "cid": POST_CID}}})),
            "Record/reply must have the property \"parent\"",
        ),
        (
            post(json!({"facets": [{"index": {"byteStart": -1, "byteEnd": 5}, "features": []}]})),
            "Record/facets/0/index/byteStart can not be less than 0",
        ),
    ];
    for (record, want) in cases {
        let got = refused("app.bsky.feed.post", TID, record.clone());
        assert!(
            got.contains(want),
            "{record}\n  got:  {got}\n  want: {want}"
        );
    }
    let like = refused(
        "app.bsky.feed.like",
        TID,
        json!({"subject": "nope", "createdAt": NOW}),
    );
    assert!(like.contains("Record/subject must be an object"), "{like}");
    let like = refused(
        "app.bsky.feed.like",
        TID,
        json!({"subject": {"uri": "nope", "cid": POST_CID}, "createdAt": NOW}),
    );
    assert!(
        like.contains("Record/subject/uri must be a valid at-uri"),
        "{like}"
    );
    let follow = refused(
        "app.bsky.graph.follow",
        TID,
        json!({"subject": "alice", "createdAt": NOW}),
    );
    assert!(
        follow.contains("Record/subject must be a valid did"),
        "{follow}"
    );
    let gate = refused(
        "app.bsky.feed.threadgate",
        TID,
        json!({"post": POST_URI, "createdAt": NOW,
        "allow": [{"$type": "app.bsky.feed.threadgate#listRule", "list": "nope"}]}),
    );
    assert!(
        gate.contains("Record/allow/0/list must be a valid at-uri"),
        "{gate}"
    );
    let list = refused(
        "app.bsky.graph.list",
        TID,
        json!({"name": "", "purpose": "app.bsky.graph.defs#curatelist", "createdAt": NOW}),
    );
    assert!(
        list.contains("Record/name must not be shorter than 1 characters"),
        "{list}"
    );
}

#[test]
fn record_keys_follow_each_type() {
    let profile = refused("app.bsky.actor.profile", "foo", json!({}));
    assert_eq!(
        profile,
        "Invalid record key for app.bsky.actor.profile: must be \"self\", not \"foo\""
    );
    let post = refused(
        "app.bsky.feed.post",
        "hello",
        json!({"text": "", "createdAt": NOW}),
    );
    assert!(
        post.starts_with("Invalid record key for app.bsky.feed.post"),
        "{post}"
    );
    let schema = refused(
        "com.atproto.lexicon.schema",
        "notansid",
        json!({"lexicon": 1}),
    );
    assert!(schema.starts_with("Invalid record key"), "{schema}");
    check(
        "app.bsky.feed.generator",
        "any-key.ok",
        json!({"did": DID, "displayName": "x", "createdAt": NOW}),
    )
    .unwrap();
}

#[test]
fn modes_and_unknown_collections() {
    let r = rec(json!({"anything": [1, 2, 3]}));
    let c = cat();
    assert_eq!(
        c.check_record("com.example.thing", TID, &r, Mode::Default)
            .unwrap()
            .status,
        Status::Unknown
    );
    assert_eq!(
        c.check_record("com.example.thing", TID, &r, Mode::Require)
            .unwrap_err()
            .0,
        "Unknown lexicon type: com.example.thing"
    );
    let bad_post = rec(json!({"text": 42}));
    let skipped = c
        .check_record("app.bsky.feed.post", "not a tid", &bad_post, Mode::Skip)
        .unwrap();
    assert_eq!(skipped.status, Status::Skipped);
    assert_eq!(skipped.status.as_str(), None);
    assert!(
        c.check_record("app.bsky.feed.post", TID, &bad_post, Mode::Require)
            .is_err()
    );
}

#[test]
fn open_unions_admit_types_this_server_does_not_know() {
    let c = check(
        "app.bsky.feed.post",
        TID,
        json!({"text": "x", "createdAt": NOW,
        "embed": {"$type": "com.example.embed", "whatever": true}}),
    );
    assert_eq!(c.unwrap().status, Status::Valid);
    // `#main` spelled out names the same definition.
    check(
        "app.bsky.feed.post",
        TID,
        json!({"text": "x", "createdAt": NOW,
        "embed": {"$type": "app.bsky.embed.external#main", "external": {
            "uri": "https://example.com", "title": "", "description": ""}}}),
    )
    .unwrap();
    let e = refused(
        "app.bsky.feed.post",
        TID,
        json!({"text": "x", "createdAt": NOW,
        "embed": {"$type": "app.bsky.embed.external#main", "external": {}}}),
    );
    assert!(
        e.contains("Record/embed/external must have the property"),
        "{e}"
    );
}

#[test]
fn graphemes_are_extended_clusters_and_lengths_are_utf8_bytes() {
    // 'e' + combining acute: 3 bytes, 2 chars, 1 grapheme.
    let accented = "e\u{301}";
    assert!(
        check(
            "app.bsky.feed.post",
            TID,
            json!({"text": accented.repeat(300), "createdAt": NOW})
        )
        .is_ok()
    );
    let e = refused(
        "app.bsky.feed.post",
        TID,
        json!({"text": accented.repeat(301), "createdAt": NOW}),
    );
    assert!(
        e.ends_with("Record/text must not be longer than 300 graphemes"),
        "{e}"
    );
    // A family emoji is one grapheme of 18 bytes: 167 fit in 3000 bytes, 167 × 18 = 3006 do not.
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    assert_eq!(family.len(), 18);
    assert!(
        check(
            "app.bsky.feed.post",
            TID,
            json!({"text": family.repeat(166), "createdAt": NOW})
        )
        .is_ok()
    );
    let e = refused(
        "app.bsky.feed.post",
        TID,
        json!({"text": family.repeat(167), "createdAt": NOW}),
    );
    assert!(
        e.ends_with("must not be longer than 3000 characters"),
        "{e}"
    );
}

#[test]
fn mime_patterns() {
    let a = |list: &[&str], m: &str| {
        accepts(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>(), m)
    };
    assert!(a(&["image/*"], "image/png"));
    assert!(a(&["image/*"], "IMAGE/PNG"));
    assert!(!a(&["image/*"], "video/mp4"));
    assert!(!a(&["image/*"], "image"));
    assert!(a(&["*/*"], "anything/else"));
    assert!(a(&["video/mp4"], "video/mp4"));
    assert!(!a(&["video/mp4"], "video/mp45"));
    assert!(a(&["text/plain"], "text/plain; charset=utf-8"));
}

#[test]
fn documents_that_do_not_hold_together_are_refused() {
    let doc = |defs: Value| json!({"lexicon": 1, "id": "com.example.x", "defs": defs});
    assert!(
        Catalog::load(&[doc(
            json!({"main": {"type": "ref", "ref": "com.example.missing"}})
        )])
        .is_err()
    );
    assert!(Catalog::load(&[doc(json!({"main": {"type": "string", "format": "color"}}))]).is_err());
    assert!(Catalog::load(&[doc(json!({"main": {"type": "array"}}))]).is_err());
    assert!(Catalog::load(&[json!({"lexicon": 2, "id": "com.example.x", "defs": {}})]).is_err());
    let ok = Catalog::load(&[doc(json!({
        "main": {"type": "record", "key": "literal:only", "record": {"type": "object",
            "required": ["n"], "properties": {"n": {"type": "ref", "ref": "#num"}}}},
        "num": {"type": "integer", "minimum": 1, "maximum": 3},
        "q": {"type": "query"},
        "shut": {"type": "object", "properties": {"u": {"type": "union", "closed": true,
            "refs": ["#num", "com.example.x#q2"]}}},
        "q2": {"type": "object", "properties": {}},
    }))])
    .unwrap();
    let r = |n: i64| {
        ok.check_record(
            "com.example.x",
            "only",
            &rec(json!({"n": n})),
            Mode::Default,
        )
    };
    assert!(r(2).is_ok());
    assert_eq!(
        r(4).unwrap_err().0,
        "Invalid com.example.x record: Record/n can not be greater than 3"
    );
    let mut w = validate::Walk::new(&ok.defs, "Shut");
    let shut = &ok.defs[ok.names["com.example.x#shut"]];
    let other = rec(json!({"u": {"$type": "com.example.other"}}));
    assert_eq!(
        w.value(shut, &other).unwrap_err().to_string(),
        "Shut/u $type must be one of com.example.x#num, com.example.x#q2"
    );
    let known = rec(json!({"u": {"$type": "com.example.x#q2"}}));
    assert!(w.value(shut, &known).is_ok());
}

// ---------------------------------------------------------------------------------------
// Property: records generated from the schemas pass; one mutation fails at its path.

/// Every present value the schema types (path below `Record`, definition), for mutation.
fn typed_positions<'a>(
    cat: &'a Catalog,
    def: &'a Def,
    v: &Ipld,
    path: String,
    out: &mut Vec<(String, &'a Def)>,
) {
    let def = match def {
        Def::Ref(i) => &cat.defs[*i],
        d => d,
    };
    out.push((path.clone(), def));
    match (def, v) {
        (Def::Object(o), Ipld::Map(m)) => {
            for (k, d) in &o.properties {
                if let Some(x) = m.get(k) {
                    typed_positions(cat, d, x, format!("{path}/{k}"), out);
                }
            }
        }
        (Def::Array { items, .. }, Ipld::List(l)) => {
            for (i, x) in l.iter().enumerate() {
                typed_positions(cat, items, x, format!("{path}/{i}"), out);
            }
        }
        (Def::Union(u), Ipld::Map(m)) => {
            let ty = m.get("$type").and_then(Ipld::as_str).unwrap_or("");
            if let Some((_, i)) = u.refs.iter().find(|(n, _)| n == ty)
                && let Def::Object(o) = &cat.defs[*i]
            {
                for (k, d) in &o.properties {
                    if let Some(x) = m.get(k) {
                        typed_positions(cat, d, x, format!("{path}/{k}"), out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn replace(v: &mut Ipld, path: &[&str], with: Ipld) {
    match path.split_first() {
        None => *v = with,
        Some((seg, rest)) => match v {
            Ipld::Map(m) => replace(m.get_mut(*seg).unwrap(), rest, with),
            Ipld::List(l) => replace(&mut l[seg.parse::<usize>().unwrap()], rest, with),
            _ => panic!("no {seg}"),
        },
    }
}

fn wrong_kind(def: &Def) -> Ipld {
    match def {
        Def::Boolean(_) => Ipld::Integer(1),
        _ => Ipld::Bool(true),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn generated_records_pass_and_one_mutation_fails_at_its_path(seed in 1u64.., which in 0usize..20, pick in any::<u64>()) {
        let cat = cat();
        let types = cat.record_types();
        let collection = types[which % types.len()];
        let def = cat.record(collection).unwrap();
        let (rkey, record) = cat.sample(collection, seed).unwrap();
        let ok = cat.check_record(collection, &rkey, &record, Mode::Require);
        prop_assert!(ok.is_ok(), "{collection}: {:?}\n{}", ok, crate::cbor::to_json(&record));

        let root = Def::Object(def.record.clone());
        let mut positions = vec![];
        typed_positions(cat, &root, &record, String::new(), &mut positions);
        positions.retain(|(p, _)| !p.is_empty());
        prop_assume!(!positions.is_empty());
        let (path, target) = &positions[(pick % positions.len() as u64) as usize];
        let mut broken = record.clone();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        replace(&mut broken, &segs, wrong_kind(target));
        let err = cat.check_record(collection, &rkey, &broken, Mode::Require).unwrap_err().0;
        let want = format!("Invalid {collection} record: Record{path} ");
        prop_assert!(err.starts_with(&want), "{err}\n  want prefix: {want}");
    }
}
