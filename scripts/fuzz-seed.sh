#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the interop vectors
# ($ATPROTO_INTEROP_DIR, default ../shared/interop) and from a repo CAR made
# by a real perch (PERCH_BIN, default the debug build). The corpora are
# not committed: the vectors have their own licence and the fuzzer grows them.
set -euo pipefail
cd "$(dirname "$0")/.."
interop=${ATPROTO_INTEROP_DIR:-$(cd .. && pwd)/shared/interop}
corpus=fuzz/corpus
bin=${PERCH_BIN:-${CARGO_TARGET_DIR:-target}/debug/perch}
[ -d "$interop" ] || { echo "interop vectors not found at $interop" >&2; exit 1; }
for t in cbor_decode json_record car_read mst jwt xrpc_query; do mkdir -p "$corpus/$t"; done

python3 - "$interop" "$corpus" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
interop, corpus = sys.argv[1], sys.argv[2]
def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)
dm = os.path.join(interop, "data-model")
for i, fx in enumerate(json.load(open(os.path.join(dm, "data-model-fixtures.json")))):
    b = fx["cbor_base64"]
    put("cbor_decode", f"fixture-{i}", base64.b64decode(b + "=" * (-len(b) % 4)))
    put("json_record", f"fixture-{i}", json.dumps(fx["json"]))
for name in ["data-model-valid.json", "data-model-invalid.json"]:
    for i, fx in enumerate(json.load(open(os.path.join(dm, name)))):
        put("json_record", f"{name}-{i}", json.dumps(fx["json"]))
lex = os.path.join(interop, "lexicon")
for name in ["record-data-valid.json", "record-data-invalid.json"]:
    for i, fx in enumerate(json.load(open(os.path.join(lex, name)))):
        put("json_record", f"{name}-{i}", json.dumps(fx.get("data")))
keys = open(os.path.join(interop, "mst", "example_keys.txt")).read().split("\n")
keys = [k for k in keys if k and not k.startswith("#")]
for i in range(0, min(len(keys), 1000), 50):
    put("mst", f"keys-{i}", "\n".join(keys[i:i + 50]))
for i, fx in enumerate(json.load(open(os.path.join(interop, "firehose", "commit-proof-fixtures.json")))):
    put("mst", f"proof-{i}", "\n".join(fx["keys"] + fx.get("adds", [])))
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
def hs(header, claims, secret=b"k" * 32):
    si = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return si + "." + b64(hmac.new(secret, si.encode(), hashlib.sha256).digest())
claims = {"scope": "com.atproto.access", "sub": "did:web:pds.example", "aud": "did:web:pds.example", "iat": now, "exp": now + 7200}
put("jwt", "access", hs({"typ": "at+jwt", "alg": "HS256"}, claims))
put("jwt", "refresh", hs({"typ": "refresh+jwt", "alg": "HS256"}, dict(claims, scope="com.atproto.refresh", jti="x")))
put("jwt", "es256k", b64(b'{"typ":"JWT","alg":"ES256K"}') + "." + b64(json.dumps({"iss": "did:plc:x", "aud": "did:web:y", "lxm": "com.atproto.repo.uploadBlob", "exp": now}).encode()) + "." + b64(bytes(64)))
put("jwt", "none", b64(b'{"alg":"none"}') + "." + b64(b"{}") + ".")
for i, q in enumerate(["repo=did%3Aweb%3Aalice.test&collection=app.bsky.feed.post&limit=50&reverse=true",
                       "cursor=3k2a&limit=100&cid=bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454",
                       "did=did%3Aplc%3Aabc&did=x&limit=-1&reverse=1", "a=%zz&b=%&c=%e2%82%ac+x"]):
    put("xrpc_query", f"q{i}", q)
PY

# A real repository: perch --dev, a few records, getRepo. Its blocks also
# seed the MST target's hostile-node side.
if [ -x "$bin" ]; then
  tmp=$(mktemp -d)
  "$bin" serve --dev --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 100); do grep -q "listening on" "$tmp/log" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$tmp/log" | head -1)
  pw=$(sed -n 's/^dev account: .*password: //p' "$tmp/log")
  did=$(sed -n 's/^dev account: handle [^ ]* did \([^ ]*\) .*/\1/p' "$tmp/log")
  tok=$(curl -sf "http://$addr/xrpc/com.atproto.server.createSession" -H 'content-type: application/json' \
        -d "{\"identifier\":\"alice.test\",\"password\":\"$pw\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessJwt"])')
  for i in $(seq 40); do
    curl -sf "http://$addr/xrpc/com.atproto.repo.createRecord" -H "authorization: Bearer $tok" \
      -H 'content-type: application/json' \
      -d "{\"repo\":\"$did\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"\$type\":\"app.bsky.feed.post\",\"text\":\"seed $i\",\"createdAt\":\"2026-01-01T00:00:00Z\"}}" >/dev/null
  done
  curl -sf "http://$addr/xrpc/com.atproto.sync.getRepo?did=${did//%/%25}" -o "$corpus/car_read/repo.car"
  python3 - "$corpus/car_read/repo.car" "$corpus" <<'PY'
import sys, os
data, corpus = open(sys.argv[1], "rb").read(), sys.argv[2]
def varint(b, i):
    n = s = 0
    while True:
        c = b[i]; i += 1; n |= (c & 0x7f) << s; s += 7
        if c < 0x80: return n, i
n, i = varint(data, 0); i += n
k = 0
while i < len(data):
    n, i = varint(data, i)
    block = data[i + 36:i + n]; i += n
    if b"\x61e" in block[:4] or b"\x61l" in block[:4]:
        open(os.path.join(corpus, "mst", f"node-{k}"), "wb").write(block); k += 1
    open(os.path.join(corpus, "cbor_decode", f"block-{k}-{i}"), "wb").write(block)
PY
else
  echo "notice: $bin not built; no CAR seed (cargo build first)" >&2
fi
# The malformed repositories and DAG-CBOR bombs of tests/it/hostile_car.rs
# (reliability plan items 9 and 11), written by the test itself.
PERCH_FUZZ_SEEDS="$PWD/$corpus" cargo test --locked --test it hostile_car::malformed_repositories \
  -q >/dev/null 2>&1 || echo "notice: tests/it/hostile_car.rs did not run; no hostile seeds" >&2
for t in "$corpus"/*; do echo "$(basename "$t"): $(find "$t" -type f | wc -l) seeds"; done
