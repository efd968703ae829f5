#!/usr/bin/env bash
# Refresh lexicons/ from a release of the official client: scripts/lexicons/refresh.sh [VERSION]
# (default: the latest @atproto/api). See lexicons/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:-latest}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  printf '{"name":"lexicon-refresh","private":true,"type":"module"}\n' >package.json
  npm install --no-audit --no-fund --loglevel=error "@atproto/api@$version" >/dev/null
  node --input-type=module -e '
    import { schemas } from "@atproto/api";
    import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
    mkdirSync("schemas");
    for (const doc of schemas) {
      writeFileSync(`schemas/${doc.id}.json`, JSON.stringify(doc, null, 2) + "\n");
    }
    const v = JSON.parse(readFileSync("node_modules/@atproto/api/package.json")).version;
    writeFileSync("version", v);
  '
)
python3 scripts/lexicons/vendor.py "$tmp/schemas"
got=$(cat "$tmp/version")
sed -i -E "s/@atproto\/api\` [0-9][0-9.]*/@atproto\/api\` $got/" lexicons/README.md
echo "lexicons/ now from @atproto/api $got"
