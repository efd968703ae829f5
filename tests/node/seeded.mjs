// Deterministic record generator shared by the Node cross-check scripts.
//
// Its Rust twin is tests/it/support/seeded.rs; the two MUST stay in lock-step
// (same PRNG, same keys, same records), otherwise the repository comparison
// in the Rust tests is meaningless. Specification:
//
//   PRNG: splitmix64 over u64, wrapping arithmetic:
//     state += 0x9E3779B97F4A7C15
//     z = state
//     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//     z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//     return z ^ (z >> 31)
//   For i in 0..n:
//     r          = next()
//     collection = COLLECTIONS[r % 3]
//     micros     = 1700000000000000 + i * 1000003
//     tid        = (micros << 10) | (i % 1024)
//     rkey       = tid as 13 base32-sortable chars ("234567abcdefghijklmnopqrstuvwxyz"),
//                  5 bits per char starting from the most significant end of a 65-bit field
//     record     = { "$type": collection,
//                    "createdAt": ISO-8601 (UTC, millisecond precision, "Z") of floor(micros / 1000) ms,
//                    "note": "r=" + r as 16 lowercase hex digits,
//                    "seq": i }
//     MST key    = collection + "/" + rkey
//
// Record properties are listed in sorted order so that JSON.stringify here and
// serde_json on the Rust side print identical text (DAG-CBOR sorts keys anyway).

import { pathToFileURL } from 'node:url';

const MASK64 = (1n << 64n) - 1n;

export const COLLECTIONS = [
  'app.bsky.feed.post',
  'app.bsky.feed.like',
  'app.bsky.graph.follow',
];

const S32 = '234567abcdefghijklmnopqrstuvwxyz';

/** splitmix64 generator; returns a function yielding successive u64 values as BigInt. */
export function splitmix64(seed) {
  let state = BigInt.asUintN(64, BigInt(seed));
  return function next() {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  };
}

/** 64-bit TID integer (BigInt) -> 13-char atproto TID string. */
export function tidString(tid) {
  let out = '';
  for (let i = 0; i < 13; i++) {
    const shift = BigInt(60 - 5 * i);
    out += S32[Number((tid >> shift) & 31n)];
  }
  return out;
}

/**
 * Returns an array of { collection, rkey, key, record } for `n` records.
 * `seed` may be a number or a BigInt (taken modulo 2^64).
 */
export function seededRecords(seed, n) {
  const next = splitmix64(seed);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const r = next();
    const collection = COLLECTIONS[Number(r % 3n)];
    const micros = 1700000000000000n + BigInt(i) * 1000003n;
    const tid = (micros << 10n) | BigInt(i % 1024);
    const rkey = tidString(tid);
    const record = {
      $type: collection,
      createdAt: new Date(Number(micros / 1000n)).toISOString(),
      note: 'r=' + r.toString(16).padStart(16, '0'),
      seq: i,
    };
    out[i] = { collection, rkey, key: `${collection}/${rkey}`, record };
  }
  return out;
}

// `node seeded.mjs <seed> <n>` prints one JSON line per record:
// {"collection":…,"rkey":…,"record":{…}}
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seed = BigInt(process.argv[2] ?? '42');
  const n = Number(process.argv[3] ?? '20');
  for (const { collection, rkey, record } of seededRecords(seed, n)) {
    process.stdout.write(JSON.stringify({ collection, rkey, record }) + '\n');
  }
}
