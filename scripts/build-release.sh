#!/usr/bin/env bash
# Static (musl), stripped release binaries for the boards perch runs on.
#
#   scripts/build-release.sh [TARGET...]
#
# Default targets: aarch64-unknown-linux-musl (arm64: Pi 3/4/5, Zero 2 W),
# armv7-unknown-linux-musleabihf (armhf: Pi 2/3/4 on a 32-bit OS) and
# x86_64-unknown-linux-musl (amd64). arm-unknown-linux-musleabihf (armv6:
# Pi 1, Zero W) also works. Results: $CARGO_TARGET_DIR/release-artifacts/
# perch-<version>-<target> (target/ when CARGO_TARGET_DIR is unset), and a
# size table at the end.
#
# Compiler: cargo-zigbuild with zig from PyPI (`ziglang`): zig is the C
# compiler for the bundled SQLite and ring, and the linker, for every target,
# so no per-target gcc or Docker is needed. Both are installed when missing.
# When rustup cannot download a target's std (armv7/armv6 musl on some
# mirrors), std is built from source with a pinned nightly instead.
#
# Environment: PERCH_NIGHTLY (default below) is the nightly for that fallback;
# PERCH_SIZE_BUDGET_ARM64 (bytes) fails the build above it; LIBSQLITE3_FLAGS
# (default below) is passed to the bundled SQLite's build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The bundled SQLite without the extensions libsqlite3-sys enables and perch never uses
# (full-text search FTS3/FTS5, R-trees, the dbstat table): about 500 KB off each binary
# (x86_64: 10,281,680 -> 9,776,880 bytes). They are feature switches, not OMIT options,
# so the amalgamation is built as SQLite ships it; libsqlite3-sys adds these after its
# own -D flags.
export LIBSQLITE3_FLAGS=${LIBSQLITE3_FLAGS-"-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB"}

DEFAULT_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl)
# The only nightly we depend on; bump deliberately.
NIGHTLY=${PERCH_NIGHTLY:-nightly-2026-05-20}
# The budget catches accidental growth (a dependency dragging in a second TLS or HTTP
# stack), not features: it was 8 MiB until the owner's page (federation healing, /account)
# took the arm64 binary to 8,390,712 bytes, and it is 9 MiB since, on purpose, for the
# page's passkeys, plots and browser setup. An SD card has gigabytes; what a Pi lacks is
# RAM and CPU, which the benches watch.
SIZE_BUDGET_ARM64=${PERCH_SIZE_BUDGET_ARM64:-$((9 * 1024 * 1024))}

TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT="$TARGET_DIR/release-artifacts"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

log() { printf '[build-release] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ensure_zig() {
  if command -v zig >/dev/null 2>&1 || python3 -c 'import ziglang' 2>/dev/null; then
    return
  fi
  log "installing zig (PyPI ziglang)"
  # Debian's own python refuses user pip installs (PEP 668) unless told.
  python3 -m pip install --quiet ziglang 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages ziglang
}

ensure_zigbuild() {
  if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    log "installing cargo-zigbuild"
    cargo install --locked cargo-zigbuild
  fi
}

# The toolchain for the build-std fallback, with rust-src; prints its name.
fallback_toolchain() {
  if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    # A plain `nightly` of the same date is the same compiler.
    local date=${NIGHTLY#nightly-}
    local manifest
    manifest="$(rustup run nightly rustc --print sysroot 2>/dev/null)/lib/rustlib/multirust-channel-manifest.toml"
    if [[ -f $manifest ]] && grep -q "^date = \"$date\"" "$manifest"; then
      NIGHTLY=nightly
    else
      log "installing $NIGHTLY"
      rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src >&2
    fi
  fi
  rustup +"$NIGHTLY" component add rust-src >&2
  echo "$NIGHTLY"
}

build_one() {
  local target=$1
  if rustup target list --installed | grep -qx "$target" ||
    rustup target add "$target" >/dev/null 2>&1; then
    log "$target: cargo zigbuild (stable)"
    cargo zigbuild --locked --release --target "$target"
  else
    local tc
    tc=$(fallback_toolchain)
    log "$target: no downloadable std; building std with $tc"
    # rustc would link its own crt objects from a self-contained dir that
    # build-std does not create; zig brings musl's crt and libc instead.
    RUSTFLAGS="${RUSTFLAGS:-} -C link-self-contained=no" \
      cargo +"$tc" zigbuild --locked --release --target "$target" -Zbuild-std=std,panic_abort
  fi
}

main() {
  local targets=("$@")
  ((${#targets[@]})) || targets=("${DEFAULT_TARGETS[@]}")
  ensure_zig
  ensure_zigbuild
  mkdir -p "$OUT"

  local target bin dest
  for target in "${targets[@]}"; do
    local start=$SECONDS
    build_one "$target"
    bin="$TARGET_DIR/$target/release/perch"
    dest="$OUT/perch-$VERSION-$target"
    cp "$bin" "$dest"
    log "$target: built in $((SECONDS - start)) s"
  done

  printf '\n%-34s %10s %8s  %s\n' target bytes MiB "file(1)"
  local size kind failed=0
  for target in "${targets[@]}"; do
    dest="$OUT/perch-$VERSION-$target"
    size=$(stat -c %s "$dest")
    kind=$(file -b "$dest" | cut -d, -f1-2,4-)
    printf '%-34s %10d %8.2f  %s\n' "$target" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$kind"
    case $(file -b "$dest") in
      *"statically linked"* | *"static-pie linked"*) ;;
      *)
        log "$target: not statically linked"
        failed=1
        ;;
    esac
    if [[ $target == aarch64-* ]] && ((size > SIZE_BUDGET_ARM64)); then
      log "$target: $size bytes is over the budget of $SIZE_BUDGET_ARM64"
      failed=1
    fi
  done
  echo "artifacts in $OUT"
  return "$failed"
}

main "$@"
