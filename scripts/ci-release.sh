#!/usr/bin/env bash
# Release-engineering checks, run by .ci/run after the tests (as root, on
# Debian 12). Installs what it needs, then:
#
#  1. static release builds for arm64 and amd64 (scripts/build-release.sh);
#  2. the arm64 binary under qemu-user: --version, then `serve --dev` on a
#     loopback port answering /xrpc/_health and a record write and read;
#  3. the arm64 and amd64 .debs (scripts/build-deb.sh) and lintian;
#  4. the unit: systemd-analyze verify and the exposure gate (<= 1.5);
#  5. the amd64 .deb installed on a booted systemd (scripts/install-test.sh).
#
# armhf is not built here (its std comes from a nightly build-std, minutes
# more); run scripts/build-release.sh before a release for all targets.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
ARM64=aarch64-unknown-linux-musl
AMD64=x86_64-unknown-linux-musl
# Exposure x10, as systemd-analyze counts it.
EXPOSURE_LIMIT=15

step_start=$SECONDS
step() {
  printf '[ci-release] %s (previous step: %d s)\n' "$*" $((SECONDS - step_start)) >&2
  step_start=$SECONDS
}
fail() {
  printf '[ci-release] FAILED: %s\n' "$*" >&2
  exit 1
}

# --- tools ----------------------------------------------------------------------
step "tools"
missing=()
for pkg in qemu-user-static binfmt-support systemd-container lintian file curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in cargo-zigbuild cargo-deb; do
  command -v "$tool" >/dev/null 2>&1 || cargo install --locked "$tool"
done
rustup target add "$ARM64" "$AMD64" >/dev/null 2>&1 || true

# --- 1. builds --------------------------------------------------------------------
step "release builds: $ARM64 $AMD64"
scripts/build-release.sh "$ARM64" "$AMD64"

# --- 2. arm64 under qemu-user -----------------------------------------------------
step "arm64 binary under qemu-user"
bin="$TARGET_DIR/$ARM64/release/perch"
version=$(qemu-aarch64-static "$bin" --version)
[[ $version == "perch "* ]] || fail "--version printed: $version"

work=$(mktemp -d)
server=
cleanup() {
  if [[ -n $server ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
qemu-aarch64-static "$bin" serve --dev --data-dir "$work/data" --listen "127.0.0.1:$port" \
  >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  curl -fsS --max-time 2 "$base/xrpc/_health" >"$work/health" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || fail "serve --dev exited: $(cat "$work/serve.log")"
  sleep 0.1
done
grep -q '"version"' "$work/health" || fail "no /xrpc/_health answer: $(cat "$work/serve.log")"

# The dev account's password is printed once, on the first start.
password=$(sed -n 's/^dev account: .* password: //p' "$work/serve.log")
[[ -n $password ]] || fail "no dev account password in: $(cat "$work/serve.log")"
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
post() { # post NSID JSON [TOKEN]
  local auth=()
  [[ -z ${3:-} ]] || auth=(-H "Authorization: Bearer $3")
  curl -fsS --max-time 30 -H 'Content-Type: application/json' "${auth[@]}" -d "$2" "$base/xrpc/$1"
}
session=$(post com.atproto.server.createSession \
  "{\"identifier\": \"alice.test\", \"password\": \"$password\"}") || fail "createSession"
token=$(json accessJwt <<<"$session")
did=$(json did <<<"$session")
text="written under qemu-user at $(date -u +%FT%TZ)"
created=$(post com.atproto.repo.createRecord "{\"repo\": \"$did\", \
  \"collection\": \"app.bsky.feed.post\", \"record\": {\"\$type\": \"app.bsky.feed.post\", \
  \"text\": \"$text\", \"createdAt\": \"$(date -u +%FT%T.000Z)\"}}" "$token") || fail "createRecord"
uri=$(json uri <<<"$created")
rkey=${uri##*/}
# The dev DID is did:web:localhost%3A<port>: its '%' must be escaped in a query.
record=$(curl -fsS --max-time 30 \
  "$base/xrpc/com.atproto.repo.getRecord?repo=${did//%/%25}&collection=app.bsky.feed.post&rkey=$rkey") ||
  fail "getRecord"
[[ $(python3 -c 'import json, sys; print(json.load(sys.stdin)["value"]["text"])' <<<"$record") == "$text" ]] ||
  fail "read back: $record"
echo "[ci-release] arm64 under qemu: $version; wrote and read $uri" >&2
cleanup
server=
trap - EXIT

# --- 3. .debs, lintian -----------------------------------------------------------------
step ".debs and lintian"
scripts/build-deb.sh "$ARM64" "$AMD64"
for deb in "$TARGET_DIR"/debian/perch_*_{arm64,amd64}.deb; do
  out=$(lintian --fail-on error,warning --tag-display-limit 0 "$deb" 2>&1) || fail "lintian $deb: $out"
  # Infos only (the root warning is about running lintian itself).
  grep -v 'root privileges' <<<"$out" >&2 || true
  printf '[ci-release] %s: %d bytes, lintian clean\n' "$(basename "$deb")" "$(stat -c %s "$deb")" >&2
done

# --- 4. the unit ----------------------------------------------------------------------
step "systemd unit"
unit_dir=$(mktemp -d)
# verify wants ExecStart to exist: use the binary just built.
sed "s#^ExecStart=/usr/bin/perch#ExecStart=$(realpath "$TARGET_DIR/$AMD64/release/perch")#" \
  systemd/perch.service >"$unit_dir/perch.service"
systemd-analyze verify --man=no "$unit_dir/perch.service" || fail "systemd-analyze verify"
rm -rf "$unit_dir"
systemd-analyze security --offline=true --threshold="$EXPOSURE_LIMIT" --no-pager \
  systemd/perch.service >"$TARGET_DIR/perch-security.txt" ||
  fail "exposure above $EXPOSURE_LIMIT/10: $(tail -n 1 "$TARGET_DIR/perch-security.txt")"
echo "[ci-release] $(tail -n 1 "$TARGET_DIR/perch-security.txt")" >&2

# --- 5. install on a booted systemd -----------------------------------------------------
step "install test (systemd-nspawn)"
scripts/install-test.sh "$(ls "$TARGET_DIR"/debian/perch_*_amd64.deb)"

step "done"
