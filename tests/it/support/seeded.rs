//! Deterministic record generator, the Rust twin of `tests/node/seeded.mjs`.
//!
//! Both sides must produce exactly the same records so that perch's
//! repository can be compared block for block with the one built by the
//! official `@atproto/repo` (see `tests/node/build-repo.mjs`). This file uses
//! only `std` and `serde_json` on purpose: it must not depend on perch's own
//! TID or date code, since that is part of what is being checked.
//!
//! Specification (keep in sync with seeded.mjs):
//!
//! * PRNG: splitmix64 over `u64` with wrapping arithmetic.
//! * For `i` in `0..n`:
//!   * `r = next()`
//!   * `collection = ["app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"][r % 3]`
//!   * `micros = 1_700_000_000_000_000 + i * 1_000_003`
//!   * `tid = (micros << 10) | (i % 1024)`, `rkey` = its 13-char base32-sortable string
//!   * `record = {"$type": collection, "createdAt": ISO-8601 of floor(micros / 1000) ms,
//!     "note": "r=" + r as 16 lowercase hex digits, "seq": i}`
//!   * MST key = `collection + "/" + rkey`

#![allow(dead_code)]

use serde_json::{Map, Value};

/// The collections records are spread over, indexed by `r % 3`.
pub const SEEDED_COLLECTIONS: [&str; 3] = [
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "app.bsky.graph.follow",
];

const S32_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// splitmix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A 64-bit TID as its 13-character base32-sortable string: 5 bits per
/// character, most significant first, over a 65-bit field (top bit zero).
pub fn seeded_tid_string(tid: u64) -> String {
    (0..13)
        .map(|i| {
            let shift = 60 - 5 * i;
            S32_ALPHABET[((tid >> shift) & 31) as usize] as char
        })
        .collect()
}

/// Milliseconds since the Unix epoch (non-negative) as
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, like JavaScript's `Date#toISOString`.
pub fn seeded_iso_millis(ms: u64) -> String {
    let millis = ms % 1000;
    let secs = ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (hour, minute, second) = (sod / 3600, (sod % 3600) / 60, sod % 60);

    // Days since 1970-01-01 to proleptic Gregorian civil date (H. Hinnant's
    // civil_from_days, unsigned since the input is never before 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// `n` deterministic records for `seed`, as `(collection, rkey, record JSON)`.
/// The MST key of each is `format!("{collection}/{rkey}")`.
pub fn seeded_records(seed: u64, n: usize) -> Vec<(String, String, Value)> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let r = rng.next_u64();
            let collection = SEEDED_COLLECTIONS[(r % 3) as usize];
            let idx = i as u64;
            let micros = 1_700_000_000_000_000u64 + idx * 1_000_003;
            let tid = (micros << 10) | (idx % 1024);
            let rkey = seeded_tid_string(tid);

            // Inserted in sorted key order so the JSON text is the same whether
            // or not serde_json's `preserve_order` feature is enabled.
            let mut record = Map::new();
            record.insert("$type".to_owned(), Value::from(collection));
            record.insert(
                "createdAt".to_owned(),
                Value::from(seeded_iso_millis(micros / 1000)),
            );
            record.insert("note".to_owned(), Value::from(format!("r={r:016x}")));
            record.insert("seq".to_owned(), Value::from(idx));

            (collection.to_owned(), rkey, Value::Object(record))
        })
        .collect()
}
