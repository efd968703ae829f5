#!/usr/bin/env bash
# End-to-end client suite: starts a local did:plc directory (@did-plc/server,
# in memory) and perch, then drives perch with the official @atproto/api
# client (tests/client/*.test.mjs, node:test).
#
# Two accounts are exercised, each on its own perch instance and data dir:
#   plc  alice.test as did:plc, registered at the local directory by
#        `perch account create`, then `perch serve`;
#   web  alice.test as did:web (`perch account create --did-method web`, or,
#        if that is refused, the account `perch serve` makes on an empty data
#        dir, whose password is read from its log).
#
# Environment (all optional):
#   PERCH_BIN             perch binary; unset: `cargo build` and target/debug/perch
#   PERCH_CLIENT_MODES    which accounts to test, default "plc web"
#   PERCH_BLOB_LIMIT      blob size limit given to perch and the tests (1 MiB)
#   PERCH_CLIENT_TIMEOUT  seconds to wait for each server to be ready (30)
#   PERCH_CLIENT_PLC_URL  use this PLC directory instead of starting one
#   PERCH_CLIENT_SKIP_NPM_CI=1  do not run `npm ci` first
#   PERCH_CLIENT_TESTS    test files to run (default: every *.test.mjs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT" # a relative PERCH_BIN is relative to the repo root

HANDLE=alice.test
MODES=${PERCH_CLIENT_MODES:-plc web}
BLOB_LIMIT=${PERCH_BLOB_LIMIT:-1048576}
READY_TIMEOUT=${PERCH_CLIENT_TIMEOUT:-30}

log() { printf '[client-suite] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- tools -----------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node is required (Node.js 20.11+)"
command -v npm >/dev/null 2>&1 || die "npm is required"
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number)
  process.exit(maj > 20 || (maj === 20 && min >= 11) ? 0 : 1)
' || die "Node.js 20.11+ is required (have $(node --version))"

# --- workspace and cleanup ---------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/perch-client.XXXXXX")"
PIDS=()
LAST_PID=

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if ((status != 0)); then
    log "failed (exit $status); server logs follow"
    local f
    for f in "$WORK"/*.log; do
      [[ -f $f ]] || continue
      printf '\n===== %s (last 300 lines) =====\n' "$(basename "$f")" >&2
      tail -n 300 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers -----------------------------------------------------------------
harness() { node "$HERE/harness.mjs" "$@"; }

random_secret() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# start_bg NAME LOGFILE CMD... : run CMD in the background, remember its pid
start_bg() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  log "started $name (pid $LAST_PID, log $(basename "$logfile"))"
}

# wait_ready NAME PID URL : poll URL until it answers 200, bounded
wait_ready() {
  local name=$1 pid=$2 url=$3
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    kill -0 "$pid" 2>/dev/null || die "$name exited before it was ready"
    if harness probe "$url"; then
      log "$name is ready at $url"
      return 0
    fi
    ((SECONDS < deadline)) || die "$name not ready at $url after ${READY_TIMEOUT}s"
    sleep 0.2
  done
}

# strip ANSI colour codes (in case the server colours its log)
plain() { sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1"; }

# Environment for every perch command.
PERCH_ENV=(
  PERCH_ALLOW_LOOPBACK=1
  PERCH_BLOB_LIMIT="$BLOB_LIMIT"
  NO_COLOR=1
  RUST_BACKTRACE=1
)

# wait_port_file NAME PID FILE : wait until the helper at PID has written its port to FILE
wait_port_file() {
  local name=$1 pid=$2 file=$3 deadline=$((SECONDS + READY_TIMEOUT))
  until [[ -s $file ]]; do
    kill -0 "$pid" 2>/dev/null || die "$name exited before it was ready"
    ((SECONDS < deadline)) || die "$name did not start in ${READY_TIMEOUT}s"
    sleep 0.1
  done
}

# A mail relay (smtp-sink.mjs): perch mails its codes there, email.test.mjs reads them.
MAIL_DIR="$WORK/mail"
start_smtp_sink() {
  local portfile="$WORK/smtp.port"
  start_bg "smtp sink" "$WORK/smtp.log" \
    node "$HERE/smtp-sink.mjs" --dir "$MAIL_DIR" --port-file "$portfile"
  wait_port_file "smtp sink" "$LAST_PID" "$portfile"
  # The password has a ':' and an '@', percent-encoded as the config wants them.
  PERCH_ENV+=(PERCH_SMTP_URL="smtp://perch:s%3Acret%40x@127.0.0.1:$(cat "$portfile")")
}

PLC_URL=${PERCH_CLIENT_PLC_URL:-}
start_plc() {
  [[ -z $PLC_URL ]] || return 0
  local portfile="$WORK/plc.port"
  start_bg "plc directory" "$WORK/plc.log" \
    node "$HERE/plc-server.mjs" --port 0 --port-file "$portfile"
  local pid=$LAST_PID
  wait_port_file "plc directory" "$pid" "$portfile"
  PLC_URL="http://localhost:$(cat "$portfile")"
  wait_ready "plc directory" "$pid" "$PLC_URL/_health"
}

# run_tests LABEL URL PASSWORD DID [PLC_URL]
FAILED=()
run_tests() {
  local label=$1 url=$2 password=$3 did=$4 plc=${5:-}
  local -a vars=(
    PERCH_URL="$url"
    PERCH_HANDLE="$HANDLE"
    PERCH_PASSWORD="$password"
    PERCH_DID="$did"
    PERCH_BLOB_LIMIT="$BLOB_LIMIT"
    PERCH_BIN="$PERCH_BIN"
    PERCH_DATA_DIR="${DATA_DIR:-}"
    PERCH_MAIL_DIR="$MAIL_DIR"
  )
  [[ -z $plc ]] || vars+=(PLC_URL="$plc")
  log "running the client tests against the $label account ($did at $url)"
  # One file at a time: several files write to the same repository and
  # errors.test.mjs checks that its refused requests leave the repo as it was.
  # shellcheck disable=SC2086 # word splitting of the file list is intended
  if (cd "$HERE" && env -u PLC_URL "${vars[@]}" \
    node --test --test-concurrency=1 --test-timeout=120000 \
    ${PERCH_CLIENT_TESTS:-*.test.mjs}); then
    log "$label: all client tests passed"
  else
    log "$label: client tests FAILED"
    FAILED+=("$label")
  fi
}

# --- the two accounts ----------------------------------------------------------
run_plc() {
  start_plc
  local port url data password did
  port=$(harness free-port)
  url="http://localhost:$port"
  data="$WORK/data-plc"
  password="plc-$(random_secret)"
  log "perch account create: $HANDLE as did:plc at $PLC_URL, endpoint $url"
  env "${PERCH_ENV[@]}" PERCH_PLC_URL="$PLC_URL" \
    "$PERCH_BIN" account create --dev --data-dir "$data" \
    --listen "127.0.0.1:$port" --handle "$HANDLE" --password "$password" \
    >"$WORK/perch-plc-account-create.log" 2>&1 ||
    die "perch account create (did:plc) failed"
  start_bg "perch serve (did:plc)" "$WORK/perch-plc-serve.log" \
    env "${PERCH_ENV[@]}" PERCH_PLC_URL="$PLC_URL" \
    "$PERCH_BIN" serve --dev --data-dir "$data" --listen "127.0.0.1:$port"
  wait_ready "perch (did:plc)" "$LAST_PID" "$url/xrpc/_health"
  did=$(plain "$WORK/perch-plc-account-create.log" | grep -oE 'did:plc:[a-z2-7]{24}' | head -n 1 || true)
  [[ -n $did ]] || did=$(harness whoami "$url" "$HANDLE" "$password") ||
    die "could not learn the account's DID (createSession failed)"
  [[ $did == did:plc:* ]] || die "expected a did:plc account, got $did"
  DATA_DIR=$data run_tests did:plc "$url" "$password" "$did" "$PLC_URL"
}

run_web() {
  local port url data password did logfile
  port=$(harness free-port)
  url="http://localhost:$port"
  data="$WORK/data-web"
  password="web-$(random_secret)"
  logfile="$WORK/perch-web-serve.log"
  log "perch account create: $HANDLE as did:web, endpoint $url"
  if env -u PERCH_PLC_URL "${PERCH_ENV[@]}" \
    "$PERCH_BIN" account create --dev --did-method web --data-dir "$data" \
    --listen "127.0.0.1:$port" --handle "$HANDLE" --password "$password" \
    >"$WORK/perch-web-account-create.log" 2>&1; then
    log "created the did:web account"
  else
    log "account create --did-method web refused; perch serve will create the account"
    password=
    rm -rf "$data"
  fi
  start_bg "perch serve (did:web)" "$logfile" \
    env -u PERCH_PLC_URL "${PERCH_ENV[@]}" \
    "$PERCH_BIN" serve --dev --data-dir "$data" --listen "127.0.0.1:$port"
  local pid=$LAST_PID
  wait_ready "perch (did:web)" "$pid" "$url/xrpc/_health"
  if [[ -z $password ]]; then
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [[ -n $password ]]; do
      password=$(plain "$logfile" | grep -oE 'password[:=] *[^[:space:]]+' | head -n 1 |
        sed -E 's/^password[:=] *//; s/^["'\'']//; s/["'\'',]*$//' || true)
      [[ -n $password ]] && break
      kill -0 "$pid" 2>/dev/null || die "perch (did:web) exited"
      ((SECONDS < deadline)) || die "perch serve printed no 'password: ...' line"
      sleep 0.2
    done
    log "read the generated password from the perch log"
  fi
  did=$(harness whoami "$url" "$HANDLE" "$password") ||
    die "could not log in to perch (did:web)"
  [[ $did == did:web:* ]] || die "expected a did:web account, got $did"
  DATA_DIR=$data run_tests did:web "$url" "$password" "$did"
}

# --- main ----------------------------------------------------------------------
for mode in $MODES; do
  case $mode in
  plc | web) ;;
  *) die "unknown mode '$mode' in PERCH_CLIENT_MODES (use plc and/or web)" ;;
  esac
done

if [[ ${PERCH_CLIENT_SKIP_NPM_CI:-0} != 1 ]]; then
  log "npm ci (tests/client)"
  npm ci --prefix "$HERE" --no-audit --no-fund --loglevel=error
fi

if [[ -z ${PERCH_BIN:-} ]]; then
  log "cargo build (perch)"
  cargo build --locked --bin perch
  PERCH_BIN="$ROOT/target/debug/perch"
fi
[[ -x $PERCH_BIN ]] || die "perch binary not found or not executable: $PERCH_BIN"

start_smtp_sink
for mode in $MODES; do
  "run_$mode"
done

if ((${#FAILED[@]} > 0)); then
  log "client suite FAILED for: ${FAILED[*]}"
  exit 1
fi
log "client suite passed for: $MODES"
