#!/usr/bin/env bash
# Server benchmark: perch against the reference PDS (@atproto/pds on Node 22),
# same machine, same run, same load generator. Reports figures and ratios; it
# asserts nothing about timings (the exit status only says whether the bench
# itself could run).
#
#   scripts/bench.sh                  perch and the reference
#   scripts/bench.sh --perch-only     perch alone (no npm, no Node 22)
#   scripts/bench.sh --duration 5     seconds per load phase (default 10)
#
# What it measures, for each server, on a fresh data dir holding one account:
#   cold start     exec to the first 200 on /xrpc/_health, polled every 1 ms
#                  (median of 5, each on a fresh copy of the data dir)
#   idle RSS       VmRSS after start and one login, 3 s later
#   createRecord/s wrk, 1 connection (sequential) and 8 connections (writers)
#   getRecord/s    wrk, 8 connections, random rkeys out of 1000 records
#   listRecords/s  wrk, 8 connections, limit=50
#   peak RSS       VmHWM over the load phases (reset after login through
#                  /proc/PID/clear_refs), and over the whole process life
#   fsync/commit   strace -f -c -e trace=fsync,fdatasync over N sequential
#                  createRecords, less a run with the same login and 0 writes
#   getRepo        on a fresh data dir: 10,000 records written through
#                  applyWrites (200 creates per call), then GET
#                  com.atproto.sync.getRepo fully read (median of 3): ms, time
#                  to the first bytes, MB/s
#   uploadBlob     then wrk, 1 connection, 3 s of 1 MiB uploads, each body
#                  different (so none is a duplicate): MiB/s. wrk, not Node:
#                  a Node client spends ~4 ms of its own per 1 MiB request
#   firehose       on the same server afterwards: 1 and then 10 live
#                  subscribeRepos subscribers, 300 sequential createRecords;
#                  latency from sending each createRecord to each subscriber
#                  receiving the #commit frame with that commit CID, p50/p99
#                  over all (write, subscriber) pairs (scripts/bench/
#                  firehose.mjs; needs `ws` and `cborg` from
#                  scripts/bench/node_modules, skipped without them)
# plus the disk's own rate of 4 KiB append + fsync in the same filesystem,
# and, as diagnostics: server CPU time per request in each phase, RSS and
# thread count after each phase, and the data dir's growth per record.
#
# Load generator: wrk (Debian's; installed if missing) with
# scripts/bench/load.lua, which builds the createRecord bodies and auth
# header, picks getRecord rkeys at random, and prints the result as JSON.
# The reference PDS is scripts/bench/ref-pds.mjs against a local did:plc
# directory (scripts/bench/plc.mjs); both run on the node@22 npm package.
#
# Output: a table on stdout, and the same figures as JSON in
# bench-results.json (BENCH_OUT to change it).
#
# Environment (all optional):
#   PERCH_BIN            perch binary (default target/release/perch; built
#                        with `cargo build --release` if missing)
#   BENCH_DURATION       seconds per wrk phase (10)
#   BENCH_FSYNC_WRITES   createRecords in the strace run (200)
#   BENCH_COLD_RUNS      cold starts per server (5)
#   BENCH_RKEYS          records the getRecord phase picks from (1000)
#   BENCH_REPO_RECORDS   records in the getRepo repo (10000)
#   BENCH_FIREHOSE_WRITES  createRecords per firehose phase (300)
#   BENCH_BLOB_SECONDS   seconds of the uploadBlob phase (3)
#   BENCH_BLOB_BYTES     bytes per uploadBlob (1048576)
#   BENCH_OUT            JSON output file (bench-results.json at the repo root)
#   BENCH_TMPDIR         where the data dirs go (/tmp); the fsync figures are
#                        for that filesystem
#   BENCH_KEEP=1         keep the work directory (logs, data dirs)
#
# All traffic goes to 127.0.0.1; every load phase has a fixed duration and
# every server this script starts is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/bench"
cd "$ROOT"

PERCH_ONLY=0
DURATION=${BENCH_DURATION:-10}
FSYNC_WRITES=${BENCH_FSYNC_WRITES:-200}
COLD_RUNS=${BENCH_COLD_RUNS:-5}
NRKEYS=${BENCH_RKEYS:-1000}
REPO_RECORDS=${BENCH_REPO_RECORDS:-10000}
FIREHOSE_WRITES=${BENCH_FIREHOSE_WRITES:-300}
BLOB_SECONDS=${BENCH_BLOB_SECONDS:-3}
BLOB_BYTES=${BENCH_BLOB_BYTES:-1048576}
OUT=${BENCH_OUT:-$ROOT/bench-results.json}
PERCH_BIN=${PERCH_BIN:-$ROOT/target/release/perch}

while (($#)); do
  case $1 in
  --perch-only) PERCH_ONLY=1 ;;
  --duration)
    DURATION=${2:?--duration needs seconds}
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "bench.sh: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
  esac
  shift
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 600 ]] || {
  echo "bench.sh: --duration must be 1..600 seconds" >&2
  exit 2
}
[[ $REPO_RECORDS =~ ^[0-9]+$ && $REPO_RECORDS -ge 1 && $REPO_RECORDS -le 200000 ]] || {
  echo "bench.sh: BENCH_REPO_RECORDS must be 1..200000" >&2
  exit 2
}
[[ $FIREHOSE_WRITES =~ ^[0-9]+$ && $FIREHOSE_WRITES -ge 1 && $FIREHOSE_WRITES -le 10000 ]] || {
  echo "bench.sh: BENCH_FIREHOSE_WRITES must be 1..10000" >&2
  exit 2
}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- tools -------------------------------------------------------------------
APT_UPDATED=0
ensure_apt() { # ensure_apt COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (apt-get)"
  if ((EUID != 0)); then die "$1 is missing and not root to install $2"; fi
  if ! apt-get install -y -qq "$2" >/dev/null 2>&1; then
    if ((APT_UPDATED == 0)); then
      apt-get update -qq >/dev/null 2>&1 || true
      APT_UPDATED=1
    fi
    apt-get install -y -qq "$2" >/dev/null 2>&1 || die "apt-get install $2 failed"
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}
ensure_apt wrk wrk
ensure_apt strace strace
command -v node >/dev/null 2>&1 || die "node (>= 18) is required for the helper scripts"
CLIENT=(node "$HERE/client.mjs")

if [[ ! -x $PERCH_BIN ]]; then
  [[ $PERCH_BIN == "$ROOT/target/release/perch" ]] || die "PERCH_BIN $PERCH_BIN is not executable"
  log "building perch (cargo build --release)"
  cargo build --release --locked --bin perch >&2
fi

# The reference PDS (@atproto/pds on Node 22 from npm): scripts/bench/install.sh.
NODE22="$HERE/node_modules/.bin/node"
ensure_reference_deps() { bash "$HERE/install.sh" >&2 || die "installing the reference PDS failed"; }

# --- work dir, processes, cleanup ---------------------------------------------
WORK="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/perch-bench.XXXXXX")"
RES="$WORK/results"
mkdir -p "$RES"
: >"$RES/metrics.tsv"
PIDS=()

forget_pid() { # forget_pid PID: no longer ours to stop
  local i
  for i in "${!PIDS[@]}"; do
    [[ ${PIDS[$i]} == "$1" ]] && unset "PIDS[$i]"
  done
  PIDS=(${PIDS[@]+"${PIDS[@]}"})
}

stop_pid() { # stop_pid PID: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  forget_pid "$pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  if ((status != 0)); then
    log "failed (exit $status); logs are in $WORK"
    local f
    for f in "$WORK"/*.log; do
      [[ -f $f ]] || continue
      printf '\n===== %s (last 40 lines) =====\n' "$(basename "$f")" >&2
      tail -n 40 "$f" >&2
    done
  elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

metric() { # metric SERVER KEY JSON-VALUE
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES/metrics.tsv"
}
jget() { # jget JSON FIELD
  node -e 'const o = JSON.parse(process.argv[1]); const v = o[process.argv[2]]; if (v === undefined) process.exit(1); console.log(v)' "$1" "$2"
}

# Server commands. Ports are fixed per server for the whole run: a did:web
# DID and a PLC document both name the port.
PERCH_PORT=$("${CLIENT[@]}" free-port)
REF_PORT=$("${CLIENT[@]}" free-port)
while [[ $REF_PORT == "$PERCH_PORT" ]]; do REF_PORT=$("${CLIENT[@]}" free-port); done
PASSWORD="bench-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
HANDLE=alice.test
PLC_URL=

server_cmd() { # server_cmd SERVER DATADIR -> sets CMD
  case $1 in
  perch) CMD=("$PERCH_BIN" serve --dev --data-dir "$2" --listen "127.0.0.1:$PERCH_PORT") ;;
  reference) CMD=("$NODE22" "$HERE/ref-pds.mjs" --data-dir "$2" --port "$REF_PORT" --plc-url "$PLC_URL") ;;
  esac
}
server_url() { # server_url SERVER
  case $1 in
  perch) echo "http://127.0.0.1:$PERCH_PORT" ;;
  reference) echo "http://127.0.0.1:$REF_PORT" ;;
  esac
}

# start_server SERVER DATADIR LOG [STRACE_OUT] -> SERVER_PID (the server
# process itself, also under strace)
start_server() {
  local server=$1 data=$2 logfile=$3 trace=${4:-}
  server_cmd "$server" "$data"
  if [[ -n $trace ]]; then
    strace --seccomp-bpf -f -c -e trace=fsync,fdatasync -o "$trace" "${CMD[@]}" >"$logfile" 2>&1 &
    local tracer=$!
    PIDS+=("$tracer")
    # strace forks short-lived probe children of its own before the
    # tracee: wait for the child that runs the server's executable
    local exe child
    exe=$(readlink -f "${CMD[0]}")
    SERVER_PID=
    for _ in $(seq 1000); do
      for child in $(ps -o pid= --ppid "$tracer" 2>/dev/null || true); do
        if [[ $(readlink -f "/proc/$child/exe" 2>/dev/null || true) == "$exe" ]]; then
          SERVER_PID=$child
        fi
      done
      [[ -n $SERVER_PID ]] && break
      kill -0 "$tracer" 2>/dev/null || die "strace exited (see $logfile)"
      sleep 0.01
    done
    [[ -n $SERVER_PID ]] || die "no traced $server process under strace"
    TRACER_PID=$tracer
  else
    "${CMD[@]}" >"$logfile" 2>&1 &
    SERVER_PID=$!
    TRACER_PID=
  fi
  PIDS+=("$SERVER_PID")
  "${CLIENT[@]}" wait-health "$(server_url "$server")" 120 ||
    die "$server did not become healthy (see $logfile)"
}

stop_server() { # stop_server: the last started server (and its tracer)
  stop_pid "$SERVER_PID"
  if [[ -n ${TRACER_PID:-} ]]; then
    for _ in $(seq 100); do
      kill -0 "$TRACER_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$TRACER_PID"
  fi
}

login() { # login SERVER -> DID TOKEN
  local s
  s=$("${CLIENT[@]}" session "$(server_url "$1")" "$HANDLE" "$PASSWORD") || die "$1: login failed"
  DID=$(jget "$s" did)
  TOKEN=$(jget "$s" accessJwt)
}

rss() { # rss SERVER PREFIX: PREFIX_{rss_kib,hwm_kib,threads,cpu_ms}
  local r
  r=$("${CLIENT[@]}" rss "$SERVER_PID")
  metric "$1" "$2_rss_kib" "$(jget "$r" rss_kib)"
  metric "$1" "$2_hwm_kib" "$(jget "$r" hwm_kib)"
  metric "$1" "$2_anon_kib" "$(jget "$r" anon_kib)"
  metric "$1" "$2_threads" "$(jget "$r" threads)"
  metric "$1" "$2_cpu_ms" "$(jget "$r" cpu_ms)"
}

run_wrk() { # run_wrk SERVER PHASE MODE THREADS CONNS [SECONDS]
  local server=$1 phase=$2 mode=$3 threads=$4 conns=$5 secs=${6:-$DURATION}
  local txt="$RES/wrk-$1-$2.txt" line
  log "$server: $phase (wrk -t$threads -c$conns -d${secs}s)"
  rss "$server" "before_$phase"
  BENCH_MODE=$mode BENCH_DID=$DID BENCH_TOKEN=$TOKEN BENCH_RKEYS="$RES/rkeys-$server" \
    BENCH_BLOB_BYTES=$BLOB_BYTES \
    timeout $((secs + 60)) wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s \
    --latency -s "$HERE/load.lua" "$(server_url "$server")" >"$txt" 2>&1 ||
    die "wrk failed for $server $phase: $(tail -n 5 "$txt")"
  line=$(grep '^BENCH_RESULT ' "$txt" | head -n 1 | cut -d' ' -f2-)
  [[ -n $line ]] || die "wrk printed no result for $server $phase: $(tail -n 5 "$txt")"
  metric "$server" "$phase" "$line"
  rss "$server" "after_$phase"
}

# --- the bench for one server --------------------------------------------------
bench_server() { # bench_server SERVER TEMPLATE_DATADIR
  local server=$1 template=$2 url i r ms data
  url=$(server_url "$server")

  # cold start: exec -> first 200 on /xrpc/_health, fresh copy each time
  local starts=()
  for ((i = 1; i <= COLD_RUNS; i++)); do
    data="$WORK/$server-cold-$i"
    cp -a "$template" "$data"
    server_cmd "$server" "$data"
    r=$("${CLIENT[@]}" cold-start "$url" 120 "$WORK/$server-cold.log" -- "${CMD[@]}") ||
      die "$server: cold start $i failed"
    ms=$(jget "$r" ms)
    starts+=("$ms")
    log "$server: cold start $i: ${ms} ms"
    rm -rf "$data"
  done
  metric "$server" cold_start_ms_runs "[$(
    IFS=,
    echo "${starts[*]}"
  )]"

  # load: one server process for everything from idle to peak RSS
  data="$WORK/$server-main"
  cp -a "$template" "$data"
  start_server "$server" "$data" "$WORK/$server-main.log"
  login "$server"
  # Idle means after the login's memory went back: perch's password hasher frees its
  # 19 MiB 0.5 s after the last hash, and mimalloc (the static builds' allocator)
  # returns freed memory to the OS 1 s after that. The login's peak is "peak RSS
  # start + login".
  sleep 3
  rss "$server" idle
  local reset=false
  if echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null; then reset=true; fi
  metric "$server" hwm_reset_after_login "$reset"
  run_wrk "$server" create_seq create 1 1
  run_wrk "$server" create_c8 create 2 8
  log "$server: collecting $NRKEYS rkeys"
  r=$("${CLIENT[@]}" rkeys "$url" "$DID" "$TOKEN" "$NRKEYS" "$RES/rkeys-$server") ||
    die "$server: could not collect rkeys"
  metric "$server" rkeys_created "$(jget "$r" created)"
  run_wrk "$server" get_c8 get 2 8
  run_wrk "$server" list_c8 list 2 8
  rss "$server" load
  metric "$server" data_dir_bytes "$(du -sb "$data" | cut -f1)"
  metric "$server" template_dir_bytes "$(du -sb "$template" | cut -f1)"
  local rec
  rec=$("${CLIENT[@]}" writes "$url" "$DID" "$TOKEN" 1) || true
  metric "$server" alive_after_load "$([[ $rec == *'"ok":1'* ]] && echo true || echo false)"
  stop_server

  # fsyncs per commit under strace: N writes, less a 0-write baseline
  local n calls
  for n in 0 "$FSYNC_WRITES"; do
    data="$WORK/$server-fsync-$n"
    cp -a "$template" "$data"
    log "$server: strace, $n sequential createRecords"
    start_server "$server" "$data" "$WORK/$server-fsync-$n.log" "$RES/strace-$server-$n.txt"
    login "$server"
    r=$("${CLIENT[@]}" writes "$url" "$DID" "$TOKEN" "$n") || die "$server: writes failed"
    metric "$server" "fsync_run_${n}_writes" "$r"
    stop_server
    [[ -s $RES/strace-$server-$n.txt ]] || die "strace wrote no summary for $server"
    calls=$(awk '$NF == "fsync" || $NF == "fdatasync" { printf "\"%s\":%s,", $NF, $4 }' \
      "$RES/strace-$server-$n.txt")
    metric "$server" "fsync_run_${n}_calls" "{${calls%,}}"
    rm -rf "$data"
  done

  # getRepo of a REPO_RECORDS-record repo, then firehose latency on it
  data="$WORK/$server-repo"
  cp -a "$template" "$data"
  start_server "$server" "$data" "$WORK/$server-repo.log"
  login "$server"
  log "$server: writing $REPO_RECORDS records (applyWrites, 200 per call)"
  r=$(timeout 1200 "${CLIENT[@]}" fill "$url" "$DID" "$TOKEN" "$REPO_RECORDS") ||
    die "$server: filling the repo failed"
  metric "$server" repo_fill "$r"
  log "$server: getRepo x3 ($REPO_RECORDS records)"
  r=$(timeout 900 "${CLIENT[@]}" get-repo "$url" "$DID" 3) || die "$server: getRepo failed"
  metric "$server" get_repo "$r"
  metric "$server" repo_dir_bytes "$(du -sb "$data" | cut -f1)"
  metric "$server" upload_blob_bytes "$BLOB_BYTES"
  run_wrk "$server" upload_blob upload 1 1 "$BLOB_SECONDS"
  if ((FIREHOSE_OK)); then
    for n in 1 10; do
      log "$server: firehose, $n subscriber(s), $FIREHOSE_WRITES sequential createRecords"
      rss "$server" "before_firehose_$n"
      r=$(timeout 900 node "$HERE/firehose.mjs" "$url" "$DID" "$TOKEN" "$n" "$FIREHOSE_WRITES") ||
        die "$server: firehose run with $n subscribers failed"
      metric "$server" "firehose_$n" "$r"
      rss "$server" "after_firehose_$n"
    done
  fi
  stop_server
  rm -rf "$data"
}

# --- run ---------------------------------------------------------------------
FIREHOSE_OK=0
firehose_deps() { (cd "$HERE" && node -e 'require.resolve("ws"); import("cborg").then(() => {}, () => process.exit(1))') >/dev/null 2>&1; }
if ((PERCH_ONLY == 0)); then ensure_reference_deps; fi
if firehose_deps; then FIREHOSE_OK=1; else log "no ws/cborg in scripts/bench/node_modules: skipping the firehose phases"; fi
metric machine repo_records "$REPO_RECORDS"
metric machine firehose_writes "$FIREHOSE_WRITES"
log "work dir $WORK; perch $PERCH_BIN; ${DURATION}s per load phase"
metric machine nproc "$(nproc)"
metric machine loadavg_start "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
metric machine kernel "\"$(uname -r)\""
metric machine duration_s "$DURATION"
metric machine fsync_writes "$FSYNC_WRITES"
metric machine cold_runs "$COLD_RUNS"
metric machine perch_bin "\"$PERCH_BIN\""
metric machine perch_version "\"$("$PERCH_BIN" --version 2>/dev/null | head -n 1)\""

log "disk: 4 KiB append + fsync for 3 s in $WORK"
metric machine disk_fsync "$("${CLIENT[@]}" fsync-rate "$WORK" 3)"

# perch: the account is made by the CLI, as a user would
log "perch: account create (did:web) for the template data dir"
"$PERCH_BIN" account create --dev --did-method web --data-dir "$WORK/perch-template" \
  --listen "127.0.0.1:$PERCH_PORT" --handle "$HANDLE" --password "$PASSWORD" \
  >"$WORK/perch-account.log" 2>&1 || die "perch account create failed: $(cat "$WORK/perch-account.log")"
bench_server perch "$WORK/perch-template"

if ((PERCH_ONLY == 0)); then
  metric machine reference_version "\"$(cd "$HERE" && "$NODE22" -p 'require("@atproto/pds/package.json").version') on node $("$NODE22" --version)\""
  # a local did:plc directory for the reference's account
  (cd "$HERE" && exec "$NODE22" plc.mjs --port-file "$WORK/plc.port") >"$WORK/plc.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 300); do
    [[ -s $WORK/plc.port ]] && break
    sleep 0.1
  done
  [[ -s $WORK/plc.port ]] || die "the PLC directory did not start"
  PLC_URL="http://127.0.0.1:$(cat "$WORK/plc.port")"
  log "reference: creating the account on a template data dir"
  start_server reference "$WORK/reference-template" "$WORK/reference-template.log"
  "${CLIENT[@]}" create-account "$(server_url reference)" "$HANDLE" "$PASSWORD" >/dev/null ||
    die "reference: createAccount failed"
  stop_server
  bench_server reference "$WORK/reference-template"
fi

metric machine loadavg_end "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
node "$HERE/report.mjs" "$RES/metrics.tsv" "$OUT"
log "wrote $OUT"
