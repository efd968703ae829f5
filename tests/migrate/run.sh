#!/usr/bin/env bash
# Moving an account into perch from the reference PDS and out again to a second one, end to
# end, with perch killed once in the middle:
#   a local did:plc directory (@did-plc/server) and the reference PDS (@atproto/pds) on
#   loopback; an account there with 500 posts, 20 blobs and preferences; then
#   `perch migrate in` against a running perch: perch is SIGKILLed right after the repo
#   import, the command fails, perch restarts and the same command continues; it stops once
#   to ask for the emailed PLC code (read from the reference PDS's database, as there is no
#   mail server) and finishes with it. The official client then checks every record and blob,
#   the preferences, the repo signature and the DID document. Then `perch migrate out` moves
#   it to a second reference PDS, checked the same way.
# Then a second account on the reference PDS moves into a fresh perch the way the atproto
# account-migration guide does it with the official client (tests/client/migrate-flow.mjs:
# getServiceAuth, createAccount with an invite from `perch account invite`, checkAccountStatus,
# getRepo/importRepo, listMissingBlobs/uploadBlob, preferences, the PLC operation signed by the
# old PDS and submitted here, activateAccount, deactivateAccount), checked the same way.
# Needs node 20+ and npm. PERCH_BIN = the perch binary (default target/debug/perch).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PERCH_BIN=${PERCH_BIN:-$ROOT/target/debug/perch}
CLIENT="$ROOT/tests/client"
RECORDS=${MIGRATE_RECORDS:-500}
BLOBS=${MIGRATE_BLOBS:-20}
log() { printf '[migrate] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

NODE22=$(bash "$ROOT/scripts/bench/install.sh")
[[ -d $CLIENT/node_modules ]] || npm ci --prefix "$CLIENT" --no-audit --no-fund --loglevel=error

WORK=$(mktemp -d "${TMPDIR:-/tmp}/perch-migrate.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if ((status != 0)); then
    for f in "$WORK"/*.log; do printf '\n===== %s =====\n' "$(basename "$f")" >&2; tail -n 60 "$f" >&2; done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

free_port() { node "$CLIENT/harness.mjs" free-port; }
wait_url() {
  for _ in $(seq 300); do node "$CLIENT/harness.mjs" probe "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "$1 did not come up"
}

node "$CLIENT/plc-server.mjs" --port 0 --port-file "$WORK/plc.port" >"$WORK/plc.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $WORK/plc.port ]] && break; sleep 0.1; done
PLC="http://localhost:$(cat "$WORK/plc.port")"
wait_url "$PLC/_health"

start_ref() { # start_ref NAME: a reference PDS with its data in $WORK/NAME; prints its URL
  local port
  port=$(free_port)
  mkdir -p "$WORK/$1"
  (cd "$ROOT/scripts/bench" && REF_PDS_APPVIEW_DID=did:web:appview.invalid exec "$NODE22" ref-pds.mjs \
    --data-dir "$WORK/$1" --port "$port" --plc-url "$PLC") >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_url "http://localhost:$port/xrpc/_health"
  echo "http://localhost:$port"
}
REF=$(start_ref ref)

PASSWORD="migrate-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
started=$SECONDS
DID=$(cd "$CLIENT" && node migrate-seed.mjs "$REF" alice.test "$PASSWORD" "$RECORDS" "$BLOBS" "$WORK/seed.json")
log "seeded $DID on the reference PDS: $RECORDS posts, $BLOBS blobs ($((SECONDS - started)) s)"

PERCH_PORT=$(free_port)
PERCH="http://localhost:$PERCH_PORT"
export PERCH_PLC_URL="$PLC" PERCH_ALLOW_LOOPBACK=1 PERCH_BLOB_LIMIT=5MiB NO_COLOR=1
FLAGS=(--dev --data-dir "$WORK/perch" --listen "127.0.0.1:$PERCH_PORT")
start_perch() {
  "$PERCH_BIN" serve "${FLAGS[@]}" >>"$WORK/perch.log" 2>&1 &
  PERCH_PID=$!
  PIDS+=($PERCH_PID)
  wait_url "$PERCH/xrpc/_health"
}
start_perch

migrate() { # migrate LOGNAME [ARGS…]: runs perch migrate in; returns its status
  local name=$1 status=0 t
  shift
  t=$(date +%s.%N)
  "$PERCH_BIN" migrate in "${FLAGS[@]}" --from "$DID" --password "$PASSWORD" "$@" >"$WORK/$name.log" 2>&1 || status=$?
  log "$name took $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s (exit $status)"
  return $status
}

# Run 1, with perch killed as soon as the repository is imported.
t0=$SECONDS
migrate run1 &
MIG=$!
for _ in $(seq 600); do grep -q "imported repo of" "$WORK/perch.log" && break; sleep 0.05; done
grep -q "imported repo of" "$WORK/perch.log" || die "the import never happened"
kill -KILL "$PERCH_PID"
if wait "$MIG"; then die "run 1 succeeded although perch was killed"; fi
grep -q "done:" "$WORK/run1.log" && die "run 1 claims success"
log "run 1 failed as it should after perch was killed: $(tail -n 2 "$WORK/run1.log" | head -n 1)"

# Run 2 on a restarted perch: continues, and stops to ask for the emailed code.
start_perch
if migrate run2; then die "run 2 finished without the PLC code"; fi
grep -q "already created here" "$WORK/run2.log" || die "run 2 did not continue the earlier run"
grep -q "run the same command again" "$WORK/run2.log" || die "run 2 did not ask for the code: $(cat "$WORK/run2.log")"
TOKEN=$(cd "$ROOT/scripts/bench" && "$NODE22" email-token.mjs "$WORK/ref" "$DID" plc_operation)

# Run 3 with the code: finishes.
migrate run3 --plc-token "$TOKEN" || die "run 3 failed: $(cat "$WORK/run3.log")"
grep "done:" "$WORK/run3.log" >&2
log "migration finished; $((SECONDS - t0)) s over three runs (including the kill and restart)"

(cd "$CLIENT" && node migrate-verify.mjs "$PERCH" "$PASSWORD" "$WORK/seed.json" "$PLC") >&2
# The old account is deactivated: its repo is no longer served publicly.
code=$(curl -s -o /dev/null -w '%{http_code}' "$REF/xrpc/com.atproto.sync.getLatestCommit?did=$DID" || true)
[[ $code == 400 ]] || die "the reference PDS still serves the repo (HTTP $code)"
log "migration in: all checks passed"

# Out again, to a second reference PDS.
REF2=$(start_ref ref2)
t0=$(date +%s.%N)
"$PERCH_BIN" migrate out "${FLAGS[@]}" --to "$REF2" --password "$PASSWORD" >"$WORK/out.log" 2>&1 ||
  die "perch migrate out failed: $(cat "$WORK/out.log")"
grep "done:" "$WORK/out.log" >&2
log "migration out finished in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
(cd "$CLIENT" && node migrate-verify.mjs "$REF2" "$PASSWORD" "$WORK/seed.json" "$PLC" --post-first) >&2
code=$(curl -s -o /dev/null -w '%{http_code}' "$PERCH/xrpc/com.atproto.sync.getLatestCommit?did=$DID" || true)
[[ $code == 400 ]] || die "perch still serves the repo after moving out (HTTP $code)"
log "migration out: all checks passed"

# Moving in with the official client, step by step, into a fresh perch.
FLOW_DID=$(cd "$CLIENT" && node migrate-seed.mjs "$REF" bob.test "$PASSWORD" \
  "${MIGRATE_FLOW_RECORDS:-60}" "${MIGRATE_FLOW_BLOBS:-6}" "$WORK/seed-flow.json")
PERCH2_PORT=$(free_port)
PERCH2="http://localhost:$PERCH2_PORT"
FLAGS2=(--dev --data-dir "$WORK/perch2" --listen "127.0.0.1:$PERCH2_PORT")
"$PERCH_BIN" serve "${FLAGS2[@]}" >>"$WORK/perch2.log" 2>&1 &
PIDS+=($!)
wait_url "$PERCH2/xrpc/_health"
INVITE=$("$PERCH_BIN" account invite "${FLAGS2[@]}" 2>>"$WORK/perch2.log")
t0=$(date +%s.%N)
(cd "$CLIENT" && node migrate-flow.mjs "$REF" "$PERCH2" bob.test "$PASSWORD" "$INVITE" \
  "$WORK/seed-flow.json" -- "$NODE22" "$ROOT/scripts/bench/email-token.mjs" "$WORK/ref" "{did}" \
  plc_operation) >"$WORK/flow.log" 2>&1 || die "the client-driven move failed: $(tail -n 20 "$WORK/flow.log")"
log "client-driven move of $FLOW_DID took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
(cd "$CLIENT" && node migrate-verify.mjs "$PERCH2" "$PASSWORD" "$WORK/seed-flow.json" "$PLC" --post-first) >&2
code=$(curl -s -o /dev/null -w '%{http_code}' "$REF/xrpc/com.atproto.sync.getLatestCommit?did=$FLOW_DID" || true)
[[ $code == 400 ]] || die "the reference PDS still serves $FLOW_DID (HTTP $code)"
log "client-driven migration in: all checks passed"
