//! Protocol-core benchmark (run with `cargo bench --bench core`, or
//! `scripts/bench-core.sh` to compare with `@atproto/repo` in the same run).
//!
//! Measures the same work as `tests/node/bench-repo.mjs`: build an n-record
//! repo from the seeded records (encode + hash each record, insert every key,
//! compute all node blocks and store them), then export it as a CAR by
//! walking the tree from storage. Also DAG-CBOR encode/decode throughput and
//! signatures per second. Prints one JSON object on stdout.
#[path = "../tests/it/support/seeded.rs"]
mod seeded;

use std::hint::black_box;
use std::time::Instant;

use perch::cbor;
use perch::crypto::{KeyType, Keypair};
use perch::repo::MemoryBlocks;
use perch::repo::commit::Commit;
use perch::repo::export::write_repo_car;
use perch::repo::mst::Mst;
use perch::tid::Tid;

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let records: Vec<(String, serde_json::Value)> = seeded::seeded_records(1, n)
        .into_iter()
        .map(|(c, r, v)| (format!("{c}/{r}"), v))
        .collect();

    // MST build, as the Node benchmark times it.
    let t = Instant::now();
    let mut store = MemoryBlocks::new();
    let mut tree = Mst::new();
    for (key, json) in &records {
        let value = cbor::record_from_json(json).expect("seeded record");
        let (cid, bytes) = cbor::encode_with_cid(&value);
        store.insert(cid, bytes);
        tree.insert(&store, key.as_bytes(), cid).expect("insert");
    }
    let nodes = tree.unstored_blocks();
    let node_count = nodes.len();
    store.extend(nodes);
    let root = tree.root_cid();
    let build_s = secs(t);

    // CAR export of the whole repo, walking the tree from storage.
    let key = Keypair::from_secret_bytes(KeyType::K256, &[9u8; 32]).expect("key");
    let commit = Commit::sign(
        "did:plc:benchbenchbenchbenchbenc",
        root,
        Tid::new(1, 0),
        &key,
    );
    let (commit_cid, commit_bytes) = commit.to_block();
    store.insert(commit_cid, commit_bytes);
    let t = Instant::now();
    let car = write_repo_car(&store, &commit_cid, Vec::with_capacity(32 << 20)).expect("export");
    let export_s = secs(t);
    let car_bytes = car.len();
    drop(car);

    // DAG-CBOR throughput over the same records.
    let values: Vec<cbor::Ipld> = records
        .iter()
        .map(|(_, j)| cbor::record_from_json(j).expect("record"))
        .collect();
    let t = Instant::now();
    let encoded: Vec<Vec<u8>> = values.iter().map(cbor::encode).collect();
    let encode_s = secs(t);
    let cbor_bytes: usize = encoded.iter().map(Vec::len).sum();
    let t = Instant::now();
    for e in &encoded {
        black_box(cbor::decode(e).expect("decode"));
    }
    let decode_s = secs(t);

    // Signatures.
    let rounds = 2000;
    let mut sig_stats = Vec::new();
    for kt in [KeyType::K256, KeyType::P256] {
        let k = Keypair::from_secret_bytes(kt, &[5u8; 32]).expect("key");
        let pk = k.public_key();
        let msgs: Vec<Vec<u8>> = (0..rounds).map(|i: u32| i.to_be_bytes().to_vec()).collect();
        let t = Instant::now();
        let sigs: Vec<[u8; 64]> = msgs.iter().map(|m| k.sign(m)).collect();
        let sign_s = secs(t);
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs) {
            pk.verify(m, s).expect("verify");
        }
        let verify_s = secs(t);
        sig_stats.push((
            kt.jwt_alg(),
            f64::from(rounds) / sign_s,
            f64::from(rounds) / verify_s,
        ));
    }

    // Lexicon validation: a typical post (text, a mention, an image, languages), and 200
    // of them as one applyWrites would check them.
    let lex = perch::lexicon::Catalog::embedded();
    let post = cbor::record_from_json(&serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": "Morning walk by the river. @alice.example.com took the photo, thanks! \
                 The herons were back today, three of them on the old pier.",
        "createdAt": "2026-12-03T08:15:00.000Z",
        "langs": ["en"],
        "facets": [{"index": {"byteStart": 27, "byteEnd": 45}, "features": [
            {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz"}]}],
        "embed": {"$type": "app.bsky.embed.images", "images": [{
            "alt": "Three herons on a pier",
            "aspectRatio": {"width": 4032, "height": 3024},
            "image": {"$type": "blob", "mimeType": "image/jpeg", "size": 912345,
                "ref": {"$link": "bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}}}]},
    }))
    .expect("post");
    let mode = perch::lexicon::Mode::Require;
    let rounds = 20_000;
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(lex.check_record("app.bsky.feed.post", "3jzfcijpj2z2a", &post, mode))
            .expect("valid");
    }
    let validate_post_s = secs(t) / f64::from(rounds);
    let t = Instant::now();
    for _ in 0..100 {
        for _ in 0..200 {
            black_box(lex.check_record("app.bsky.feed.post", "3jzfcijpj2z2a", &post, mode))
                .expect("valid");
        }
    }
    let validate_200_s = secs(t) / 100.0;
    let samples: Vec<(&str, String, cbor::Ipld)> = lex
        .record_types()
        .into_iter()
        .flat_map(|c| (1..=50u64).map(move |seed| (c, seed)))
        .map(|(c, seed)| {
            let (rkey, v) = lex.sample(c, seed).expect("sample");
            (c, rkey, v)
        })
        .collect();
    let t = Instant::now();
    for (c, rkey, v) in &samples {
        black_box(lex.check_record(c, rkey, v, mode)).expect("valid sample");
    }
    let validate_sample_s = secs(t) / samples.len() as f64;

    let (bearer_us, dpop_us) = token_checks();

    let mb = |bytes: usize, s: f64| bytes as f64 / 1e6 / s;
    let mut out = serde_json::json!({
        "n": n,
        "root": root.to_string(),
        "mst_nodes": node_count,
        "mst_build_ms": build_s * 1e3,
        "inserts_per_sec": n as f64 / build_s,
        "car_export_ms": export_s * 1e3,
        "car_bytes": car_bytes,
        "car_mb_per_sec": mb(car_bytes, export_s),
        "cbor_encode_mb_per_sec": mb(cbor_bytes, encode_s),
        "cbor_decode_mb_per_sec": mb(cbor_bytes, decode_s),
        "peak_rss_kib": peak_rss_kib(),
        "lexicon_post_us": validate_post_s * 1e6,
        "lexicon_200_posts_ms": validate_200_s * 1e3,
        "lexicon_generated_record_us": validate_sample_s * 1e6,
        "auth_bearer_token_us": bearer_us,
        "auth_dpop_proof_us": dpop_us,
        "auth_dpop_over_bearer": dpop_us / bearer_us,
    });
    for (alg, s, v) in sig_stats {
        out[format!("{alg}_sign_per_sec")] = s.into();
        out[format!("{alg}_verify_per_sec")] = v.into();
    }
    println!("{out}");
}

/// What authenticating one call costs before the database is asked: a password session's
/// HS256 access token, against an OAuth call's DPoP proof (ES256 over P-256, the JWK
/// thumbprint, the token hash and the nonce). Microseconds each.
fn token_checks() -> (f64, f64) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use perch::auth::dpop;
    let rounds = 2000;
    let secret = [7u8; 32];
    let now = 1_800_000_000;
    let token = perch::auth::mint_access(
        &secret,
        "did:plc:abcdefghijklmnopqrstuvwx",
        "did:web:pds.example.com",
        perch::auth::Scope::Access,
        "session",
        now,
    );
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(perch::auth::verify_access(
            &secret,
            &token,
            "did:web:pds.example.com",
            now,
        ))
        .expect("valid token");
    }
    let bearer = secs(t) / f64::from(rounds) * 1e6;

    let key = Keypair::generate(KeyType::P256, &mut rand_core::OsRng);
    let nonces = dpop::Nonces::new([9u8; 32]);
    let url = "https://pds.example.com/xrpc/com.atproto.repo.createRecord";
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "ES256", "jwk": perch::crypto::jwk::jwk_of(&key.public_key())
    });
    let claims = serde_json::json!({
        "jti": "bench", "htm": "POST", "htu": url, "iat": now,
        "nonce": nonces.current(now), "ath": dpop::access_token_hash(&token),
    });
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let proof = format!("{input}.{}", B64.encode(key.sign(input.as_bytes())));
    let t = Instant::now();
    for _ in 0..rounds {
        let p = black_box(dpop::verify_proof(&proof, "POST", url, now)).expect("valid proof");
        assert!(nonces.is_valid(p.nonce.as_deref().unwrap_or(""), now));
        assert_eq!(
            p.ath.as_deref(),
            Some(dpop::access_token_hash(&token).as_str())
        );
    }
    let dpop = secs(t) / f64::from(rounds) * 1e6;
    (bearer, dpop)
}
