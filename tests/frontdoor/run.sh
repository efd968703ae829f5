#!/usr/bin/env bash
# Front-door abuse checks with real tools against a running perch serving HTTPS
# (tls = "files" with a throwaway CA):
#  1. slowloris (slowhttptest -H) and slow bodies (slowhttptest -B) with thousands of
#     connections from 127.0.0.1 while a client on 127.0.0.2 must get /xrpc/_health
#     answered within a second, every time;
#  2. testssl: no finding of severity MEDIUM or worse that is perch's (the throwaway CA's
#     missing trust, OCSP, CRL and CT are not).
# Needs: slowhttptest, testssl (package testssl.sh), openssl, curl, jq. PERCH_BIN = the binary.
# SKIP_SLOW=1 runs only the testssl review (scripts/abuse.sh uses it for the figures table).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PERCH_BIN=${PERCH_BIN:-$here/../../target/debug/perch}
SLOW_SECONDS=${SLOW_SECONDS:-30}
SLOW_CONNECTIONS=${SLOW_CONNECTIONS:-3000}
missing=()
for tool in slowhttptest testssl openssl curl jq python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  # Under CI a missing tool is a failure (.ci/run installs them), elsewhere a skip.
  echo "front door checks need: ${missing[*]} (apt-get install slowhttptest testssl.sh openssl curl jq python3)"
  [[ -z ${CI:-} ]] && { echo "skipping"; exit 0; }
  exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A throwaway CA and a certificate for pds.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=perch frontdoor test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/key.pem" -out "$work/req.csr" -subj "/CN=pds.test" 2>/dev/null
printf 'subjectAltName=DNS:pds.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' > "$work/ext.cnf"
openssl x509 -req -in "$work/req.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 365 -extfile "$work/ext.cnf" -out "$work/leaf.pem" 2>/dev/null
cat "$work/leaf.pem" "$work/ca.pem" > "$work/chain.pem"

port=$(free_port)
cat > "$work/perch.toml" <<TOML
hostname = "pds.test"
data_dir = "$work/data"
tls = "files"
tls_cert = "$work/chain.pem"
tls_key = "$work/key.pem"
listen = "127.0.0.1:$port"
http_listen = ""
plc_url = ""
relays = []
log = "warn"
TOML
"$PERCH_BIN" --config "$work/perch.toml" serve >"$work/perch.log" 2>&1 &
pids+=($!)
url="https://pds.test:$port"
probe() {
  curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 1 \
    --interface 127.0.0.2 --cacert "$work/ca.pem" --resolve "pds.test:$port:127.0.0.1" \
    "$url/xrpc/_health"
}
for _ in $(seq 100); do probe >/dev/null 2>&1 && break; sleep 0.1; done
probe >/dev/null || { cat "$work/perch.log"; echo "perch did not come up"; exit 1; }

# Meanwhile a client on another address must be answered within a second, every time.
under_attack() {
  local name=$1; shift
  slowhttptest "$@" -c "$SLOW_CONNECTIONS" -r 1000 -l "$SLOW_SECONDS" -p 3 \
    -o "$work/slow-$name" -g >"$work/slow-$name.out" 2>&1 &
  local attacker=$!
  pids+=($attacker)
  sleep 3
  local ok=0 bad=0 worst=0
  while kill -0 "$attacker" 2>/dev/null; do
    if line=$(probe 2>&1) && [[ ${line%% *} == 200 ]]; then
      ok=$((ok + 1))
      worst=$(awk -v a="$worst" -v b="${line#* }" 'BEGIN{print (b>a)?b:a}')
    else
      bad=$((bad + 1)); echo "probe failed during $name: $line"
    fi
    sleep 0.5
  done
  local peak
  peak=$(awk -F, 'NR>1 && $4>m {m=$4} END{print m+0}' "$work/slow-$name.csv" 2>/dev/null || echo "?")
  echo "$name: slowhttptest had up to $peak connections open at once; health probes ok=$ok failed=$bad slowest=${worst}s"
  grep -E "Exit status|service available" "$work/slow-$name.out" | tail -2 || true
  if ((bad > 0 || ok < 5)); then
    tail -30 "$work/slow-$name.out"; echo "FAIL: $name starved a legitimate client"; exit 1
  fi
}
# Headers that never end; a JSON body at a few bytes per tick to an endpoint that reads
# bodies without a session; responses read a few bytes at a time.
if [[ ${SKIP_SLOW:-0} != 1 ]]; then
  under_attack slowloris -H -i 5 -x 24 -u "https://127.0.0.1:$port/xrpc/_health"
  under_attack slow-body -B -i 5 -x 24 -s 8192 -f application/json \
    -u "https://127.0.0.1:$port/xrpc/com.atproto.server.createSession"
  under_attack slow-read -X -k 10 -n 2 -w 1 -y 64 -z 8 \
    -u "https://127.0.0.1:$port/xrpc/com.atproto.server.describeServer"
fi

# TLS configuration review.
if [[ ${SKIP_TESTSSL:-0} != 1 ]]; then
  testssl --quiet --color 0 --warnings off --ip 127.0.0.1 --jsonfile "$work/testssl.json" \
    "pds.test:$port" >"$work/testssl.out" 2>&1 || true
  [[ -s $work/testssl.json ]] || { tail -20 "$work/testssl.out"; echo "testssl produced no report"; exit 1; }
  # Not perch's: the throwaway CA is untrusted and has no revocation, CT or CAA setup.
  not_ours='^(cert_chain_of_trust|cert_trust|cert_ocspURL|cert_crlDistributionPoints|cert_revocation|OCSP_stapling|cert_certificateTransparency|DNS_CAArecord|cert_mustStapleExtension|cert_validityPeriod|cert_expirationStatus|engine_problem|scanProblem)'
  findings=$(jq -r --arg re "$not_ours" \
    '.[] | select(.severity=="MEDIUM" or .severity=="HIGH" or .severity=="CRITICAL") | select(.id|test($re)|not) | "\(.severity) \(.id): \(.finding)"' \
    "$work/testssl.json")
  echo "testssl: $(jq length "$work/testssl.json") checks; MEDIUM or worse that are perch's: ${findings:-none}"
  echo "frontdoor: testssl checks=$(jq length "$work/testssl.json") medium_or_worse_ours=$(grep -c . <<<"$findings" || true)" \
    "medium_or_worse_all=$(jq '[.[] | select(.severity=="MEDIUM" or .severity=="HIGH" or .severity=="CRITICAL")] | length' "$work/testssl.json")" \
    "low=$(jq '[.[] | select(.severity=="LOW")] | length' "$work/testssl.json")"
  jq -r '.[] | select(.severity=="MEDIUM" or .severity=="HIGH" or .severity=="CRITICAL") | "  (not ours) \(.severity) \(.id): \(.finding)"' "$work/testssl.json" \
    | grep -E "$(echo "$not_ours" | sed 's/^\^(/ (/; s/)$/):/')" || true
  jq -r '.[] | select(.severity=="LOW") | "  low: \(.id): \(.finding)"' "$work/testssl.json"
  [[ -z $findings ]] || exit 1
fi
echo "front door checks passed"
