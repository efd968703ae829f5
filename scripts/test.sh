#!/usr/bin/env bash
# The whole test suite:
#  1. `cargo test`: unit, property and integration tests, the official
#     interop vectors (from $ATPROTO_INTEROP_DIR, default ../shared/interop)
#     and the cross-check against the official @atproto/repo;
#  2. tests/client/run.sh: the official @atproto/api client against a
#     running perch, with a local PLC directory;
#  3. tests/migrate/run.sh: `perch migrate in` from the reference PDS
#     (@atproto/pds, installed by scripts/bench/install.sh) with a kill and
#     resume, `perch migrate out`, and a move in driven step by step by the
#     official client (tests/client/migrate-flow.mjs), each checked with it;
#  4. tests/oauth/run.sh: OAuth with the official @atproto/oauth-client-node
#     through the sign-in and consent pages in headless Chromium, and the
#     protocol's negative cases (screenshots in target/oauth-screenshots);
#  5. tests/frontdoor/run.sh: slowloris / slow body / slow read with
#     slowhttptest, and a testssl review of the HTTPS listener;
#  6. the benchmarks (benches/) in their quick mode on the test build, only to see
#     that they still run (figures come from `cargo bench` and scripts/bench.sh).
# Needs Rust and Node.js 20+ with npm (Node 22 and the reference PDS come from
# scripts/bench/install.sh), Debian's chromium for the OAuth pages; the ACME tests need Debian's pebble and
# the front-door checks slowhttptest, testssl.sh, curl, jq (skipped with a
# notice when absent, except under CI).
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
cargo test --locked "$@"
BENCH_QUICK=1 BENCH_N=2000 cargo test --locked --benches -q >/dev/null
cargo build --locked
PERCH_BIN="$PWD/target/debug/perch" bash tests/client/run.sh
PERCH_BIN="$PWD/target/debug/perch" bash tests/migrate/run.sh
PERCH_BIN="$PWD/target/debug/perch" bash tests/oauth/run.sh
PERCH_BIN="$PWD/target/debug/perch" bash tests/frontdoor/run.sh
