#!/usr/bin/env bash
# The test suite: everything `cargo test` runs, including the interop
# vectors (from $ATPROTO_INTEROP_DIR, default ../shared/interop) and the
# cross-check against the official @atproto/repo (needs Node.js + npm).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
fi
cargo test --locked "$@"
