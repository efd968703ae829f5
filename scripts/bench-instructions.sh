#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind in a running
# `perch serve --dev`. Steadier than the wall-clock figures of scripts/bench.sh
# on a shared machine, but not exact: every thread is counted, so SQLite
# checkpoints and timers that fall into a window or not move a run by a few
# percent; compare means of several runs, and use the per-function counts
# (BENCH_KEEP) to find what changed. SHA-256 runs in software under valgrind,
# so hashing weighs more here than on hardware with SHA extensions.
#
#   scripts/bench-instructions.sh [PERCH_BIN] [N]
#
# N (default 300) createRecords to warm up, then N counted createRecords and
# N counted listRecords (limit 50), all sequential over one connection.
# Prints one JSON line; BENCH_KEEP=DIR (existing) keeps the callgrind files for
# callgrind_annotate. Needs valgrind and Node.js (Debian's; installed if
# missing), and a release binary built with symbols for annotation, e.g.
# CARGO_PROFILE_RELEASE_STRIP=none cargo build --release.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/perch}
N=${2:-300}
CLIENT=(node "$ROOT/scripts/bench/client.mjs")
log() { printf '[bench-instructions] %s\n' "$*" >&2; }
for pair in valgrind:valgrind callgrind_control:valgrind node:nodejs; do
  command -v "${pair%%:*}" >/dev/null || {
    log "installing ${pair#*:}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*:}" >/dev/null
  }
done
[[ -x $BIN ]] || { log "no perch binary at $BIN (cargo build --release)"; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
port=$("${CLIENT[@]}" free-port)
url="http://127.0.0.1:$port"
password="bench-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" account create --dev --did-method web --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --handle alice.test --password "$password" >"$work/account.log" 2>&1
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$BIN" serve --dev --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
pid=$!
"${CLIENT[@]}" wait-health "$url" 300 >/dev/null
session=$("${CLIENT[@]}" session "$url" alice.test "$password")
field() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$1" "$2"; }
did=$(field "$session" did)
token=$(field "$session" accessJwt)

# count PHASE: the instructions of the work between a zeroing and a dump
counted() {
  local phase=$1
  shift
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$@" >"$work/$phase.json"
  callgrind_control -d "$phase" "$pid" >/dev/null 2>&1
  local f
  f=$(ls -t "$work"/cg.out.* | head -1)
  [[ $(field "$(cat "$work/$phase.json")" ok) == "$N" ]] || { log "$phase: not every request succeeded"; exit 1; }
  sed -n 's/^totals: //p' "$f"
  [[ -z ${BENCH_KEEP:-} ]] || cp "$f" "$BENCH_KEEP/callgrind-$phase.out"
}
log "warming up: $N createRecords"
"${CLIENT[@]}" writes "$url" "$did" "$token" "$N" >/dev/null
log "counting: $N createRecords, $N listRecords"
create=$(counted create "${CLIENT[@]}" writes "$url" "$did" "$token" "$N")
list=$(counted list "${CLIENT[@]}" lists "$url" "$did" "$N")
printf '{"binary":"%s","n":%s,"create_instructions":%s,"list_instructions":%s}\n' \
  "$BIN" "$N" $((create / N)) $((list / N))
