#!/usr/bin/env bash
# .deb packages from the static binaries of scripts/build-release.sh.
#
#   scripts/build-deb.sh [TARGET...]
#
# Default: aarch64-unknown-linux-musl (arm64), armv7-unknown-linux-musleabihf
# (armhf) and x86_64-unknown-linux-musl (amd64), each of which must have been
# built first. cargo-deb takes the package layout from [package.metadata.deb]
# in Cargo.toml and the files under packaging/ and systemd/; it is installed
# when missing. Packages land in $CARGO_TARGET_DIR/debian/ (target/debian/).
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl)
TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "[build-deb] installing cargo-deb" >&2
  cargo install --locked cargo-deb
fi

targets=("$@")
((${#targets[@]})) || targets=("${DEFAULT_TARGETS[@]}")
for target in "${targets[@]}"; do
  if [[ ! -x $TARGET_DIR/$target/release/perch ]]; then
    echo "[build-deb] no binary for $target: run scripts/build-release.sh $target first" >&2
    exit 1
  fi
  # The binary is already stripped and static; cargo-deb must not rebuild it
  # with its own (non-zig) toolchain.
  cargo deb --locked --no-build --no-strip --target "$target" >/dev/null
done
ls -l "$TARGET_DIR"/debian/*.deb
