#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 45) each, from the
# seeds of scripts/fuzz-seed.sh plus whatever corpus earlier runs grew.
# Prints one "fuzz: target=… execs=… crashes=…" line per target and fails
# if any target crashes (the input is kept in fuzz/artifacts/<target>/).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
seconds=${FUZZ_SECONDS:-45}
targets=${FUZZ_TARGETS:-"cbor_decode json_record car_read mst jwt xrpc_query"}
tdir=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed" >&2; exit 1; }
scripts/fuzz-seed.sh >/dev/null || exit 1
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$tdir" || exit 1
failed=0
for t in $targets; do
  log=$(mktemp)
  cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$tdir" "$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    failed=1
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -5 >&2
  fi
  echo "fuzz: target=$t seconds=$seconds execs=${execs:-0} crashes=$crashes"
  rm -f "$log"
done
exit $failed
