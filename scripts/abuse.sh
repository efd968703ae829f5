#!/usr/bin/env bash
# Abuse and load figures (reliability plan §4, §6.D items 19-26, figures rows
# 9-13 and 15) against real perch processes on temp data dirs. Prints one
# `abuse: NAME key=value ...` line per figure for scripts/reliability.sh;
# asserts nothing about timings (the exit status says whether a phase could
# run, and whether perch stayed up).
#
#   slowloris   slowhttptest -H with ABUSE_SLOW_CONNECTIONS sockets for
#               ABUSE_SLOW_SECONDS against HTTPS (tls = "files"), while curl
#               on 127.0.0.2 asks /xrpc/_health every 0.25 s (row 9)
#   idle        ABUSE_IDLE_SOCKETS sockets that never send a byte, from one
#               source address and then spread over ABUSE_IDLE_SOURCES
#               addresses (scripts/abuse/idle.py; row 10)
#   fanout      tests/it/firehose_fanout.rs with ABUSE_FANOUT_EVENTS events, 50
#               subscribers of which 5 never read (row 11)
#   reads       wrk getRecord (ABUSE_READ_CONNECTIONS connections for
#               ABUSE_READ_SECONDS) and h2load getBlob of a 1 MB blob over h2c
#               (ABUSE_H2_REQUESTS, -c100 -m10), each with a createRecord every
#               0.5 s beside it (row 12)
#   h2          HTTP/2 abuse: 1000 streams per connection asked (streams above
#               the server's cap are refused), a 65,000-byte header (item 25)
#   fsync       strace -c of fsync/fdatasync/sync_file_range and
#               /proc/PID/io over ABUSE_FSYNC_WRITES createRecords (row 13)
#   testssl     tests/frontdoor/run.sh with its slow phases off (row 15)
#   stall       a ~20 MB repo; ABUSE_STALL_CLIENTS getRepo readers from as many
#               addresses read 1 KB and stop, while describeRepo and
#               getLatestCommit are asked every 0.25 s (scripts/abuse/dos.py;
#               issue 14 item 3, row 16)
#   h2bodies    32 h2c connections x 64 streams from 4 addresses, each body one
#               byte short of 150 KB: peak RSS, and a login beside it (item 4,
#               row 17)
#   subflood    ABUSE_SUBSCRIBERS idle firehose subscribers from 16 addresses,
#               then a new request and a new subscriber (item 5, row 18)
#   h2idle      ABUSE_H2_IDLE HTTP/2 connections from 16 addresses, idle after
#               one request, then a new client (item 5, row 19)
#   passwords   wrong-password guesses from 32 addresses, 4 at once each, for
#               ABUSE_GUESS_SECONDS, by createSession and by deleteAccount, with
#               describeRepo probes beside them: peak RSS and probe latency; then
#               deleteAccount as an oracle (scripts/abuse/passwords.py; items 1,
#               2, rows 20-21)
#
# ABUSE_PHASES picks phases (default: all, in the order above). PERCH_BIN is
# the binary (default: the release build in $CARGO_TARGET_DIR or target/,
# built if missing). ABUSE_KEEP=1 keeps the work directory.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PERCH_BIN=${PERCH_BIN:-$TARGET/release/perch}
PHASES=${ABUSE_PHASES:-slowloris idle fanout reads h2 fsync testssl stall h2bodies subflood h2idle passwords}
SLOW_CONNECTIONS=${ABUSE_SLOW_CONNECTIONS:-4000}
SLOW_SECONDS=${ABUSE_SLOW_SECONDS:-120}
IDLE_SOCKETS=${ABUSE_IDLE_SOCKETS:-10000}
IDLE_SOURCES=${ABUSE_IDLE_SOURCES:-200}
FANOUT_EVENTS=${ABUSE_FANOUT_EVENTS:-10000}
READ_SECONDS=${ABUSE_READ_SECONDS:-30}
READ_CONNECTIONS=${ABUSE_READ_CONNECTIONS:-200}
H2_REQUESTS=${ABUSE_H2_REQUESTS:-100000}
FSYNC_WRITES=${ABUSE_FSYNC_WRITES:-100}
STALL_CLIENTS=${ABUSE_STALL_CLIENTS:-16}
SUBSCRIBERS=${ABUSE_SUBSCRIBERS:-1024}
H2_IDLE=${ABUSE_H2_IDLE:-1024}
GUESS_SECONDS=${ABUSE_GUESS_SECONDS:-20}

log() { printf '[abuse] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ensure_apt() { # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  ((EUID == 0)) || die "$1 is missing (apt-get install $2)"
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1
  } || die "apt-get install $2 failed"
}
# Only what the chosen phases use (every phase starts perch with curl, jq and python3).
tools=(curl:curl jq:jq python3:python3)
for phase in $PHASES; do
  case $phase in
    slowloris) tools+=(slowhttptest:slowhttptest openssl:openssl) ;;
    reads) tools+=(wrk:wrk h2load:nghttp2-client) ;;
    h2) tools+=(h2load:nghttp2-client nghttp:nghttp2-client) ;;
    fsync) tools+=(strace:strace) ;;
    testssl) tools+=(testssl:testssl.sh openssl:openssl) ;;
  esac
done
for pair in "${tools[@]}"; do
  ensure_apt "${pair%%:*}" "${pair#*:}"
done
if [[ $PERCH_BIN == "$TARGET/release/perch" ]]; then
  # Always: cargo is quick when nothing changed, and a stale binary measures old code.
  log "building perch (cargo build --release)"
  cargo build --release --locked --bin perch >&2
fi
[[ -x $PERCH_BIN ]] || die "PERCH_BIN $PERCH_BIN is not executable"
# slowhttptest and the idle sockets need far more descriptors than the default.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/perch-abuse.XXXXXX")
PIDS=()
cleanup() {
  local status=$? p
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ ${ABUSE_KEEP:-0} == 1 || $status != 0 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# percentiles of a file of numbers (one a line): "p50 p99 max count"
pct() { sort -g "$1" | awk '{v[NR]=$1} END {if (!NR) {print "0 0 0 0"; exit}
  i50=int(NR*0.5+0.999); i99=int(NR*0.99+0.999); printf "%.1f %.1f %.1f %d\n", v[i50], v[i99], v[NR], NR}'; }
metric() { # URL NAME: a value from /metrics (loopback)
  curl -sS --max-time 5 "$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n {print $2}'
}

# start_dev NAME [VAR=VALUE...]: `perch serve --dev` on a fresh data dir;
# sets PID, URL, PASSWORD
start_dev() {
  local name=$1 port
  shift
  port=$(free_port)
  env "$@" PERCH_METRICS=true "$PERCH_BIN" serve --dev --data-dir "$WORK/$name" \
    --listen "127.0.0.1:$port" >"$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  URL="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$URL/xrpc/_health" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || die "perch ($name) exited: $(tail -5 "$WORK/$name.log")"
    sleep 0.1
  done
  PASSWORD=$(sed -n 's/^dev account: .*password: //p' "$WORK/$name.log" | head -1)
  [[ -n $PASSWORD ]] || die "no dev password in $WORK/$name.log"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
up() { curl -fsS -o /dev/null --max-time 5 --interface 127.0.0.2 "$URL/xrpc/_health" 2>/dev/null && echo yes || echo no; }

login() { # sets DID, QDID (query-escaped), AUTH
  local s
  s=$(curl -fsS "$URL/xrpc/com.atproto.server.createSession" -H 'content-type: application/json' \
    -d "$(jq -nc --arg p "$PASSWORD" '{identifier: "alice.test", password: $p}')")
  DID=$(jq -r .did <<<"$s")
  QDID=${DID//%/%25}
  AUTH="authorization: Bearer $(jq -r .accessJwt <<<"$s")"
}
create_record() { # TEXT [CURL ARGS...]: prints "status seconds"
  local text=$1
  shift
  curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 30 "$@" \
    "$URL/xrpc/com.atproto.repo.createRecord" -H 'content-type: application/json' -H "$AUTH" \
    -d "{\"repo\":\"$DID\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"\$type\":\"app.bsky.feed.post\",\"text\":\"$text\",\"createdAt\":\"2026-01-01T00:00:00.000Z\"}}" ||
    echo "000 0"
}
# writer_beside PID OUT: a createRecord every 0.5 s from 127.0.0.2 while PID runs
writer_beside() {
  local n=0
  while kill -0 "$1" 2>/dev/null; do
    create_record "beside $n" --interface 127.0.0.2 >>"$2"
    n=$((n + 1))
    sleep 0.5
  done
}
writer_summary() { # OUT: "ok/total p50 p99 max" in ms
  awk '$1 == 200 {print $2 * 1000}' "$1" >"$1.ms"
  local total ok
  total=$(wc -l <"$1")
  ok=$(awk '$1 == 200' "$1" | wc -l)
  read -r p50 p99 max _ < <(pct "$1.ms")
  echo "writes_ok=$ok/$total write_p50_ms=$p50 write_p99_ms=$p99 write_max_ms=$max"
}

# --- row 9: slowloris over HTTPS ---------------------------------------------
phase_slowloris() {
  local d=$WORK/slowloris port url
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$d/key.pem" -out "$d/cert.pem" -subj "/CN=pds.test" \
    -addext "subjectAltName=DNS:pds.test" 2>/dev/null
  port=$(free_port)
  cat >"$d/perch.toml" <<TOML
hostname = "pds.test"
data_dir = "$d/data"
tls = "files"
tls_cert = "$d/cert.pem"
tls_key = "$d/key.pem"
listen = "127.0.0.1:$port"
http_listen = ""
plc_url = ""
relays = []
metrics = true
log = "warn"
TOML
  "$PERCH_BIN" --config "$d/perch.toml" serve >"$d/perch.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  url="https://pds.test:$port"
  probe() {
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 --interface 127.0.0.2 \
      --cacert "$d/cert.pem" --resolve "pds.test:$port:127.0.0.1" "$url/xrpc/_health" 2>/dev/null ||
      echo "000 5"
  }
  for _ in $(seq 100); do [[ $(probe) == 200* ]] && break; sleep 0.1; done
  [[ $(probe) == 200* ]] || die "perch (TLS) did not come up: $(tail -5 "$d/perch.log")"
  local rss0
  rss0=$(kib "$pid" VmRSS)
  log "slowloris: $SLOW_CONNECTIONS sockets for ${SLOW_SECONDS}s"
  # slowhttptest stops once the server has closed every socket it opened (the
  # per-address cap refuses most at once, the header timeout ends the rest), so
  # it is started again until the time is up: the attack lasts the whole time.
  (
    end=$((SECONDS + SLOW_SECONDS)) round=0 child=
    trap 'kill $child 2>/dev/null; exit 143' TERM
    while ((SECONDS < end)); do
      round=$((round + 1))
      slowhttptest -c "$SLOW_CONNECTIONS" -H -i 10 -r 200 -l $((end - SECONDS)) -p 3 -g \
        -o "$d/slow-$round" -u "https://127.0.0.1:$port/xrpc/_health" >"$d/slow-$round.out" 2>&1 &
      child=$!
      wait "$child" || true
    done
  ) &
  local attacker=$!
  PIDS+=("$attacker")
  sleep 2
  : >"$d/probes"
  local t0=$SECONDS
  while kill -0 "$attacker" 2>/dev/null; do
    probe >>"$d/probes"
    sleep 0.25
  done
  wait "$attacker" 2>/dev/null || true
  local ran=$((SECONDS - t0 + 2)) rounds
  rounds=$(find "$d" -name 'slow-*.out' | wc -l)
  awk '$1 == 200 {print $2 * 1000}' "$d/probes" >"$d/ms"
  local total ok peak rejected p50 p99 max
  total=$(wc -l <"$d/probes")
  ok=$(wc -l <"$d/ms")
  read -r p50 p99 max _ < <(pct "$d/ms")
  peak=$(cat "$d"/slow-*.csv 2>/dev/null | awk -F, '$4 ~ /^[0-9]+$/ && $4 > m {m = $4} END {print m + 0}')
  rejected=$(curl -sS --max-time 5 --cacert "$d/cert.pem" --resolve "pds.test:$port:127.0.0.1" \
    "$url/metrics" | awk '$1 == "perch_connections_rejected_total" {print $2}')
  echo "abuse: slowloris connections=$SLOW_CONNECTIONS seconds=$SLOW_SECONDS ran_s=$ran slowhttptest_runs=$rounds slowhttptest_peak_connected=$peak" \
    "probes_answered=$ok/$total health_p50_ms=$p50 health_p99_ms=$p99 health_max_ms=$max" \
    "rejected_by_caps=${rejected:-?} rss_before_kib=$rss0 rss_after_kib=$(kib "$pid" VmRSS)" \
    "vmhwm_kib=$(kib "$pid" VmHWM) server_up=$([[ $(probe) == 200* ]] && echo yes || echo no)"
  stop "$pid"
}

# --- row 10: idle sockets ------------------------------------------------------
phase_idle() {
  start_dev idle
  log "idle: $IDLE_SOCKETS sockets from one address"
  python3 scripts/abuse/idle.py "${URL#http://}" "$PID" "$IDLE_SOCKETS" 1 idle_one_source
  log "idle: $IDLE_SOCKETS sockets from $IDLE_SOURCES addresses"
  python3 scripts/abuse/idle.py "${URL#http://}" "$PID" "$IDLE_SOCKETS" "$IDLE_SOURCES" idle_spread
  echo "abuse: idle_after server_up=$(up) rss_kib=$(kib "$PID" VmRSS) vmhwm_kib=$(kib "$PID" VmHWM)"
  stop "$PID"
}

# --- row 11: firehose fan-out --------------------------------------------------
phase_fanout() {
  log "fanout: $FANOUT_EVENTS events, 50 subscribers, 5 stalled"
  PERCH_BIN=$PERCH_BIN PERCH_FANOUT_EVENTS=$FANOUT_EVENTS \
    cargo test --locked --test it firehose_fanout:: -- --nocapture >"$WORK/fanout.out" 2>&1 ||
    log "fanout test failed: $(grep -E 'panicked|assert' "$WORK/fanout.out" | head -3)"
  grep '^abuse: fanout ' "$WORK/fanout.out" || die "fanout printed no figures: $(tail -20 "$WORK/fanout.out")"
}

# --- row 12: read bursts -------------------------------------------------------
phase_reads() {
  # wrk cannot pick source addresses: its 200 connections come from 127.0.0.1.
  start_dev reads PERCH_MAX_CONNECTIONS_PER_IP=1024
  login
  local d=$WORK/reads i
  mkdir -p "$d"
  log "reads: 1000 records and a 1 MB blob"
  : >"$d/rkeys"
  for i in $(seq 5); do
    jq -nc --arg did "$DID" --argjson b "$i" '{repo: $did, writes: [range(200) | {
        "$type": "com.atproto.repo.applyWrites#create", collection: "app.bsky.feed.post",
        value: {"$type": "app.bsky.feed.post", text: "read burst \($b) \(.)", createdAt: "2026-01-01T00:00:00.000Z"}}]}' |
      curl -fsS "$URL/xrpc/com.atproto.repo.applyWrites" -H 'content-type: application/json' -H "$AUTH" -d @- |
      jq -r '.results[].uri | split("/") | last' >>"$d/rkeys"
  done
  head -c 1048576 /dev/urandom >"$d/blob"
  local blob cid
  blob=$(curl -fsS "$URL/xrpc/com.atproto.repo.uploadBlob" -H 'content-type: image/jpeg' -H "$AUTH" \
    --data-binary @"$d/blob" | jq -c .blob)
  cid=$(jq -r '.ref["$link"]' <<<"$blob")
  jq -nc --arg did "$DID" --argjson blob "$blob" '{repo: $did, collection: "app.bsky.feed.post",
      record: {"$type": "app.bsky.feed.post", text: "blob", createdAt: "2026-01-01T00:00:00.000Z",
        embed: {"$type": "app.bsky.embed.images", images: [{alt: "", image: $blob}]}}}' |
    curl -fsS -o /dev/null "$URL/xrpc/com.atproto.repo.createRecord" -H 'content-type: application/json' -H "$AUTH" -d @-
  curl -fsS -o "$d/blob.back" "$URL/xrpc/com.atproto.sync.getBlob?did=$QDID&cid=$cid"
  cmp -s "$d/blob" "$d/blob.back" || die "getBlob returned other bytes"

  local rss0 res
  echo 5 >"/proc/$PID/clear_refs" 2>/dev/null || true
  rss0=$(kib "$PID" VmRSS)
  log "reads: wrk -t2 -c$READ_CONNECTIONS -d${READ_SECONDS}s getRecord"
  BENCH_MODE=get BENCH_DID=$DID BENCH_RKEYS="$d/rkeys" timeout $((READ_SECONDS + 60)) \
    wrk -t2 -c"$READ_CONNECTIONS" -d"${READ_SECONDS}s" --timeout 10s --latency \
    -s scripts/bench/load.lua "$URL" >"$d/wrk.out" 2>&1 &
  local load=$!
  : >"$d/w1"
  writer_beside "$load" "$d/w1"
  wait "$load" || die "wrk failed: $(tail -5 "$d/wrk.out")"
  res=$(sed -n 's/^BENCH_RESULT //p' "$d/wrk.out")
  [[ -n $res ]] || die "wrk printed no result: $(tail -5 "$d/wrk.out")"
  echo "abuse: reads_getrecord connections=$READ_CONNECTIONS seconds=$READ_SECONDS" \
    "$(jq -r '"requests=\(.requests) rps=\(.rps | floor) p50_ms=\(.p50_ms) p99_ms=\(.p99_ms) max_ms=\(.max_ms) non2xx=\(.requests - .ok) socket_errors=\(.errors.connect + .errors.read + .errors.write + .errors.timeout)"' <<<"$res")" \
    "$(writer_summary "$d/w1")" "rss_before_kib=$rss0 rss_after_kib=$(kib "$PID" VmRSS) vmhwm_kib=$(kib "$PID" VmHWM)"

  echo 5 >"/proc/$PID/clear_refs" 2>/dev/null || true
  rss0=$(kib "$PID" VmRSS)
  log "reads: h2load -n$H2_REQUESTS -c100 -m10 getBlob (1 MB, h2c)"
  h2load -n "$H2_REQUESTS" -c 100 -m 10 --log-file="$d/h2.log" \
    "$URL/xrpc/com.atproto.sync.getBlob?did=$QDID&cid=$cid" >"$d/h2.out" 2>&1 &
  load=$!
  : >"$d/w2"
  writer_beside "$load" "$d/w2"
  wait "$load" || die "h2load failed: $(tail -5 "$d/h2.out")"
  # --log-file: start time, status, latency in microseconds
  awk '{print $3 / 1000}' "$d/h2.log" >"$d/h2.ms"
  local p50 p99 max
  read -r p50 p99 max _ < <(pct "$d/h2.ms")
  echo "abuse: reads_getblob requests=$H2_REQUESTS clients=100 streams=10" \
    "$(awk '/^finished in/ {gsub(",", ""); printf "seconds=%s rps=%d throughput=%s ", $3, $4, $6}
        /^requests:/ {printf "succeeded=%s failed=%s errored=%s ", $8, $10, $12}
        /^status codes:/ {gsub(",", ""); printf "non2xx=%d", $5 + $7 + $9}' "$d/h2.out")" \
    "p50_ms=$p50 p99_ms=$p99 max_ms=$max $(writer_summary "$d/w2") threads=$(kib "$PID" Threads)" \
    "rss_before_kib=$rss0 rss_after_kib=$(kib "$PID" VmRSS) vmhwm_kib=$(kib "$PID" VmHWM) server_up=$(up)"
  stop "$PID"
}

# --- item 25: HTTP/2 abuse -----------------------------------------------------
phase_h2() {
  start_dev h2
  local d=$WORK/h2 rss0 streams hdr big
  mkdir -p "$d"
  # The server's SETTINGS frame (nghttp prints its own first).
  nghttp -nv "$URL/xrpc/_health" 2>&1 | awk '/recv SETTINGS/ {r = 1; next} /^\[/ {r = 0} r' >"$d/settings" || true
  streams=$(grep -o 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):[0-9]*' "$d/settings" | head -1 | cut -d: -f2)
  hdr=$(grep -o 'SETTINGS_MAX_HEADER_LIST_SIZE(0x06):[0-9]*' "$d/settings" | head -1 | cut -d: -f2)
  rss0=$(kib "$PID" VmRSS)
  h2load -n 20000 -c 4 -m 1000 "$URL/xrpc/_health" >"$d/many.out" 2>&1 || true
  echo "abuse: h2_streams asked=1000 server_max_concurrent_streams=${streams:-?}" \
    "$(awk '/^requests:/ {printf "requests=%s succeeded=%s failed=%s errored=%s", $2, $8, $10, $12}' "$d/many.out")" \
    "$(awk '/^finished in/ {gsub(",", ""); printf "rps=%d", $4}' "$d/many.out")" \
    "rss_before_kib=$rss0 rss_after_kib=$(kib "$PID" VmRSS) server_up=$(up)"
  # nghttp2 will not send a single header field of 64 KiB or more itself.
  big=$(head -c 65000 /dev/zero | tr '\0' a)
  rss0=$(kib "$PID" VmRSS)
  h2load -n 1000 -c 10 -m 10 -H "x-big: $big" "$URL/xrpc/_health" >"$d/big.out" 2>&1 || true
  echo "abuse: h2_big_header header_bytes=65000 server_max_header_list=${hdr:-?}" \
    "$(awk '/^requests:/ {printf "requests=%s succeeded=%s failed=%s errored=%s ", $2, $8, $10, $12}
        /^status codes:/ {gsub(",", ""); printf "status_2xx=%s status_4xx=%s", $3, $7}' "$d/big.out")" \
    "rss_before_kib=$rss0 rss_after_kib=$(kib "$PID" VmRSS) vmhwm_kib=$(kib "$PID" VmHWM) server_up=$(up)"
  stop "$PID"
}

# --- row 13: fsyncs and bytes per createRecord ---------------------------------
phase_fsync() {
  start_dev fsync
  login
  local d=$WORK/fsync i
  mkdir -p "$d"
  for i in $(seq 20); do create_record "warm $i" >/dev/null; done
  strace -f -c -e trace=fsync,fdatasync,sync_file_range,syncfs,sync -p "$PID" -o "$d/strace" 2>"$d/strace.err" &
  local tracer=$!
  sleep 1
  local w0 c0 w1 c1 ok=0
  w0=$(awk '$1 == "write_bytes:" {print $2}' "/proc/$PID/io")
  c0=$(awk '$1 == "wchar:" {print $2}' "/proc/$PID/io")
  for i in $(seq "$FSYNC_WRITES"); do
    [[ $(create_record "fsync $i") == 200* ]] && ok=$((ok + 1))
  done
  w1=$(awk '$1 == "write_bytes:" {print $2}' "/proc/$PID/io")
  c1=$(awk '$1 == "wchar:" {print $2}' "/proc/$PID/io")
  kill -INT "$tracer"
  wait "$tracer" 2>/dev/null || true
  local calls
  calls=$(awk '$NF ~ /^(fsync|fdatasync|sync_file_range|syncfs|sync)$/ {n += $4; printf "%s=%s ", $NF, $4} END {printf "total=%d", n}' "$d/strace")
  local total=${calls##*total=}
  echo "abuse: fsync writes=$ok/$FSYNC_WRITES $calls" \
    "fsyncs_per_write=$(awk -v a="$total" -v n="$ok" 'BEGIN {printf "%.2f", n ? a / n : 0}')" \
    "disk_bytes_per_write=$(((w1 - w0) / (ok ? ok : 1))) written_bytes_per_write=$(((c1 - c0) / (ok ? ok : 1)))" \
    "fs=$(stat -f -c %T "$WORK")"
  stop "$PID"
}

# --- row 15: testssl (the front-door script's scan) -----------------------------
phase_testssl() {
  local status=0
  SKIP_SLOW=1 PERCH_BIN=$PERCH_BIN bash tests/frontdoor/run.sh >"$WORK/testssl.out" 2>&1 || status=$?
  local line
  line=$(sed -n 's/^frontdoor: testssl /abuse: testssl /p' "$WORK/testssl.out")
  [[ -n $line ]] || die "no testssl figures: $(tail -20 "$WORK/testssl.out")"
  echo "$line exit=$status"
  grep -E '^ +(low:|\(not ours\))' "$WORK/testssl.out" >&2 || true
}

# --- row 16: stalled getRepo readers (issue 14 item 3) -----------------------------
phase_stall() {
  start_dev stall
  login
  local d=$WORK/stall i
  mkdir -p "$d"
  log "stall: a ~20 MB repo (40 records of 500 KB)"
  for i in $(seq 40); do
    python3 -c 'import json, sys; print(json.dumps({"repo": sys.argv[1], "collection": "com.example.big",
      "record": {"$type": "com.example.big", "n": int(sys.argv[2]), "text": "x" * 500000}}))' "$DID" "$i" >"$d/big.json"
    curl -fsS -o /dev/null "$URL/xrpc/com.atproto.repo.createRecord" -H 'content-type: application/json' \
      -H "$AUTH" --data-binary @"$d/big.json" || die "could not write big record $i"
  done
  log "stall: $STALL_CLIENTS getRepo readers that read 1 KB and stop"
  python3 scripts/abuse/dos.py stall "${URL#http://}" "$PID" "$DID" "$STALL_CLIENTS"
  echo "abuse: stall_after server_up=$(up)"
  stop "$PID"
}

# --- row 17: unfinished request bodies over HTTP/2 (issue 14 item 4) -----------------
phase_h2bodies() {
  start_dev h2bodies
  log "h2bodies: 32 connections x 64 streams, bodies one byte short of 150 KB"
  python3 scripts/abuse/dos.py h2bodies "${URL#http://}" "$PID" 32 64 4 "$PASSWORD"
  echo "abuse: h2bodies_after server_up=$(up) rss_kib=$(kib "$PID" VmRSS)"
  stop "$PID"
}

# --- row 18: idle firehose subscribers (issue 14 item 5) ----------------------------
phase_subflood() {
  start_dev subflood
  log "subflood: $SUBSCRIBERS idle subscribers from 16 addresses"
  python3 scripts/abuse/dos.py subscribers "${URL#http://}" "$PID" "$SUBSCRIBERS" 16
  stop "$PID"
}

# --- row 19: idle HTTP/2 connections (issue 14 item 5) ------------------------------
phase_h2idle() {
  start_dev h2idle
  log "h2idle: $H2_IDLE HTTP/2 connections from 16 addresses, idle after one request"
  python3 scripts/abuse/dos.py h2idle "${URL#http://}" "$PID" "$H2_IDLE" 16
  stop "$PID"
}

# --- rows 20-21: password guessing (issue 14 items 1, 2) -----------------------------
phase_passwords() {
  local via
  for via in login delete; do
    start_dev "guess-$via"
    login
    log "passwords: guesses by $via from 32 addresses, 4 at once each, for ${GUESS_SECONDS} s"
    python3 scripts/abuse/passwords.py guess "${URL#http://}" "$PID" "$DID" 32 4 "$GUESS_SECONDS" "$via"
    echo "abuse: guess_${via}_after server_up=$(up) rss_kib=$(kib "$PID" VmRSS) hwm_kib=$(kib "$PID" VmHWM)"
    stop "$PID"
  done
  start_dev oracle
  login
  log "passwords: deleteAccount as an oracle, 200 guesses from one address"
  python3 scripts/abuse/passwords.py oracle "${URL#http://}" "$DID" "$PASSWORD" 200
  stop "$PID"
}

for phase in $PHASES; do
  declare -F "phase_$phase" >/dev/null || die "unknown phase $phase"
  "phase_$phase"
done
