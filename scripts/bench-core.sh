#!/usr/bin/env bash
# Protocol-core benchmark: perch against the official @atproto/repo, same
# machine, same run, same seeded records. Prints both JSON results and the
# ratios (how many times faster perch is).
#   scripts/bench-core.sh [N]        (default N = 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}

if [ ! -d tests/node/node_modules/@atproto/repo ]; then
  npm ci --prefix tests/node --no-audit --no-fund >&2
fi

perch=$(BENCH_N=$n cargo bench --quiet --bench core 2>/dev/null | tail -n 1)
node=$(node tests/node/bench-repo.mjs "$n" 2>/dev/null | tail -n 1)

echo "perch:          $perch"
echo "@atproto/repo:  $node"
PERCH="$perch" NODE="$node" python3 - <<'PY'
import json, os
p, n = json.loads(os.environ["PERCH"]), json.loads(os.environ["NODE"])
print(f"MST build ({p['n']} records): perch {p['mst_build_ms']:.0f} ms, "
      f"node {n['mst_build_ms']:.0f} ms -> {n['mst_build_ms'] / p['mst_build_ms']:.1f}x")
print(f"CAR export: perch {p['car_export_ms']:.0f} ms ({p['car_mb_per_sec']:.1f} MB/s), "
      f"node {n['car_export_ms']:.0f} ms ({n['car_mb_per_sec']:.1f} MB/s) -> "
      f"{n['car_export_ms'] / p['car_export_ms']:.1f}x")
print(f"DAG-CBOR: encode {p['cbor_encode_mb_per_sec']:.0f} MB/s, decode {p['cbor_decode_mb_per_sec']:.0f} MB/s")
print(f"Lexicon validation: {p['lexicon_post_us']:.2f} us per post, "
      f"{p['lexicon_200_posts_ms']:.2f} ms per 200-post applyWrites, "
      f"{p['lexicon_generated_record_us']:.2f} us per generated record of any type")
for alg in ("ES256K", "ES256"):
    print(f"{alg}: sign {p[alg + '_sign_per_sec']:.0f}/s, verify {p[alg + '_verify_per_sec']:.0f}/s")
PY
