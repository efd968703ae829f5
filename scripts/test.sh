#!/usr/bin/env bash
# The whole test suite:
#  1. `cargo test`: unit, property and integration tests, the official
#     interop vectors (from $ATPROTO_INTEROP_DIR, default ../shared/interop)
#     and the cross-check against the official @atproto/repo;
#  2. tests/client/run.sh: the official @atproto/api client against a
#     running perch, with a local PLC directory.
# Needs Rust and Node.js 20+ with npm.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
cargo test --locked "$@"
cargo build --locked
PERCH_BIN="$PWD/target/debug/perch" bash tests/client/run.sh
