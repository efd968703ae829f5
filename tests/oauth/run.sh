#!/usr/bin/env bash
# OAuth end to end: a local did:plc directory (tests/client/plc-server.mjs), perch with a
# did:plc account, then
#   official.test.mjs      @atproto/oauth-client-node + headless Chromium (puppeteer-core,
#                          Debian's chromium) through the sign-in and consent pages;
#   protocol.test.mjs      the negative cases, a hand-made client bending one thing at a time;
#   confidential.test.mjs  a private_key_jwt client whose metadata the test serves on loopback;
#   sets.test.mjs          include: permission sets, published by the account itself and
#                          found through a DNS server on loopback (dns-server.mjs);
#   owner.test.mjs         the owner's page (/account) in headless Chromium: sign-in, the
#                          federation panel over two relay stand-ins (relay-stand-in.mjs),
#                          app passwords made and revoked, the form and cookie rules;
#   setup.test.mjs         the SD image's setup page (perch welcome) in headless Chromium:
#                          the code off the "card", first boot, the hand-over to perch serve
#                          on the same address, the progress page until the box is live.
# A second perch without PERCH_ALLOW_LOOPBACK (the production guard on) takes the
# private-address client_id case. Screenshots of the pages land in target/oauth-screenshots.
#
# Needs Node 22 (scripts/bench/install.sh brings it), npm, and chromium.
# Environment: PERCH_BIN (default: cargo build), CHROMIUM (default /usr/bin/chromium),
# PERCH_OAUTH_TESTS (test files, default all).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
HANDLE=alice.test
READY_TIMEOUT=30

log() { printf '[oauth-suite] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || die "chromium is required ($CHROMIUM; apt-get install chromium)"
NODE22=$(bash "$ROOT/scripts/bench/install.sh") || die "could not install Node 22"
"$NODE22" -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' ||
  die "Node 22+ is required (have $("$NODE22" --version))"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/perch-oauth.XXXXXX")"
PIDS=()
cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" 2>/dev/null; done
  if ((status != 0)); then
    log "failed (exit $status); server logs follow"
    for f in "$WORK"/*.log; do
      [[ -f $f ]] || continue
      printf '\n===== %s (last 200 lines) =====\n' "$(basename "$f")" >&2
      tail -n 200 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "npm ci (tests/oauth, tests/client for the PLC directory)"
npm ci --prefix "$HERE" --no-audit --no-fund --loglevel=error
[[ -d $ROOT/tests/client/node_modules ]] ||
  npm ci --prefix "$ROOT/tests/client" --no-audit --no-fund --loglevel=error

if [[ -z ${PERCH_BIN:-} ]]; then
  cargo build --locked --bin perch
  PERCH_BIN="$ROOT/target/debug/perch"
fi

harness() { node "$ROOT/tests/client/harness.mjs" "$@"; }
start_bg() {
  local logfile=$1
  shift
  "$@" >"$logfile" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
wait_ready() {
  local pid=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT))
  until harness probe "$url"; do
    kill -0 "$pid" 2>/dev/null || die "a server exited before it was ready ($url)"
    ((SECONDS < deadline)) || die "$url not ready after ${READY_TIMEOUT}s"
    sleep 0.2
  done
}

# A DNS server for the `_lexicon` TXT records of permission sets (filled below).
echo '{}' >"$WORK/dns.json"
start_bg "$WORK/dns.log" node "$HERE/dns-server.mjs" --records "$WORK/dns.json" --port-file "$WORK/dns.port"
until [[ -s $WORK/dns.port ]]; do sleep 0.1; done
DNS="127.0.0.1:$(cat "$WORK/dns.port")"

# Two relays for the owner's page: one that stopped following, one that keeps up.
port=$(harness free-port)
URL="http://localhost:$port"
for mode in idle follow; do
  start_bg "$WORK/relay-$mode.log" node "$HERE/relay-stand-in.mjs" --mode "$mode" --perch "$URL" \
    --port-file "$WORK/relay-$mode.port"
  until [[ -s $WORK/relay-$mode.port ]]; do sleep 0.1; done
done
RELAY_IDLE="http://127.0.0.1:$(cat "$WORK/relay-idle.port")"
RELAY_FOLLOW="http://127.0.0.1:$(cat "$WORK/relay-follow.port")"

# The PLC directory.
start_bg "$WORK/plc.log" node "$ROOT/tests/client/plc-server.mjs" --port 0 --port-file "$WORK/plc.port"
until [[ -s $WORK/plc.port ]]; do sleep 0.1; done
PLC_URL="http://localhost:$(cat "$WORK/plc.port")"
wait_ready "$LAST_PID" "$PLC_URL/_health"

# perch with a did:plc account.
DATA="$WORK/data"
PASSWORD="oauth-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ENVS=(PERCH_ALLOW_LOOPBACK=1 NO_COLOR=1 RUST_BACKTRACE=1 PERCH_PLC_URL="$PLC_URL")
env "${ENVS[@]}" "$PERCH_BIN" account create --dev --data-dir "$DATA" --listen "127.0.0.1:$port" \
  --handle "$HANDLE" --password "$PASSWORD" >"$WORK/account-create.log" 2>&1 ||
  die "perch account create failed: $(cat "$WORK/account-create.log")"
DID=$(grep -oE 'did:plc:[a-z2-7]{24}' "$WORK/account-create.log" | head -n 1)
[[ -n $DID ]] || die "no DID in the account create output"
# The account publishes the test's permission sets (NSIDs under test.alice.*).
printf '{"_lexicon.alice.test": ["did=%s"]}\n' "$DID" >"$WORK/dns.json"
start_bg "$WORK/perch.log" env "${ENVS[@]}" PERCH_DNS_RESOLVER="$DNS" \
  PERCH_RELAYS="$RELAY_IDLE,$RELAY_FOLLOW" PERCH_RELAY_CHECK_SECS=2 "$PERCH_BIN" serve --dev \
  --data-dir "$DATA" --listen "127.0.0.1:$port"
wait_ready "$LAST_PID" "$URL/xrpc/_health"

# A second perch with the outbound guard on (no PERCH_ALLOW_LOOPBACK).
gport=$(harness free-port)
start_bg "$WORK/perch-guarded.log" env NO_COLOR=1 PERCH_PLC_URL="$PLC_URL" "$PERCH_BIN" serve \
  --dev --data-dir "$WORK/data-guarded" --listen "127.0.0.1:$gport"
wait_ready "$LAST_PID" "http://localhost:$gport/xrpc/_health"

log "perch at $URL ($DID), guarded perch at http://localhost:$gport"
mkdir -p "$ROOT/target/oauth-screenshots"
cd "$HERE"
env PERCH_URL="$URL" PERCH_HANDLE="$HANDLE" PERCH_PASSWORD="$PASSWORD" PERCH_DID="$DID" \
  PLC_URL="$PLC_URL" PERCH_BIN="$PERCH_BIN" PERCH_DATA_DIR="$DATA" \
  PERCH_GUARDED_URL="http://localhost:$gport" CHROMIUM="$CHROMIUM" \
  RELAY_IDLE="$RELAY_IDLE" RELAY_FOLLOW="$RELAY_FOLLOW" \
  PERCH_SCREENSHOTS="$ROOT/target/oauth-screenshots" \
  "$NODE22" --test --test-concurrency=1 --test-timeout=120000 \
  ${PERCH_OAUTH_TESTS:-*.test.mjs}
log "oauth suite passed; screenshots in target/oauth-screenshots"
