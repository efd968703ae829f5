#!/usr/bin/env bash
# The Raspberry Pi SD-card image: Debian (trixie) arm64 with perch preinstalled.
#
#   sudo scripts/build-image.sh [PERCH_ARM64_DEB]
#
# Writes $CARGO_TARGET_DIR/image/perch-<version>-rpi-arm64.img.xz (and the .img).
# Without a .deb argument it builds the arm64 one (build-release.sh + build-deb.sh).
#
# Stage 1 (image/bootstrap.sh, ~10-20 min: maintainer scripts run under qemu-user) is
# cached as a tarball in $PERCH_IMAGE_CACHE (default ~/.cache/perch-image), keyed by
# image/bootstrap.sh and image/packages.txt, so later builds only install the fresh .deb,
# add image/rootfs/ and assemble the partitions (about a minute).
#
# Environment: PERCH_MIRROR / PERCH_SECURITY_MIRROR (default: the build host's apt
# sources), PERCH_SUITE (default trixie), PERCH_IMAGE_CACHE, PERCH_IMAGE_NO_XZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
say() { echo "[build-image] $*" >&2; }

[[ $(id -u) == 0 ]] || { say "needs root (mmdebstrap --mode=root, chroot)"; exit 1; }

# --- host tools --------------------------------------------------------------------
need=()
for pair in mmdebstrap:mmdebstrap genimage:genimage mcopy:mtools mkfs.vfat:dosfstools \
            mke2fs:e2fsprogs sfdisk:fdisk xz:xz-utils arch-test:arch-test \
            qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Foreign-arch maintainer scripts run through binfmt_misc + qemu-user.
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64
arch-test arm64 >/dev/null || { say "arm64 binaries do not run here (binfmt)"; exit 1; }

# --- the package -------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-target}
deb=${1:-}
if [[ -z $deb ]]; then
  scripts/build-release.sh aarch64-unknown-linux-musl >&2
  scripts/build-deb.sh aarch64-unknown-linux-musl >&2
  deb=$(ls -t "$target_dir"/debian/perch_*_arm64.deb | head -1)
fi
deb=$(realpath "$deb")
version=$(dpkg-deb -f "$deb" Version)
version=${version%-*}
say "perch $version from $deb"

# --- stage 1: the Debian root filesystem (cached) ----------------------------------
suite=${PERCH_SUITE:-trixie}
sources=/etc/apt/sources.list.d/debian.sources
host_uri() { # the first URIs line of the host's deb822 sources matching $1
  [[ -r $sources ]] && awk -v want="$1" '/^URIs:/ && $2 ~ want {print $2; exit}' "$sources"
}
mirror=${PERCH_MIRROR:-$(host_uri '/debian/?$' || true)}
security=${PERCH_SECURITY_MIRROR:-$(host_uri 'debian-security' || true)}
[[ -n $mirror ]] || { say "no Debian mirror in $sources: set PERCH_MIRROR"; exit 1; }
security=${security:-${mirror%/debian}/debian-security}
cache=${PERCH_IMAGE_CACHE:-$HOME/.cache/perch-image}
key=$(cat image/bootstrap.sh image/packages.txt | sha256sum | cut -c1-16)
rootfs_tar=$cache/rootfs-$suite-arm64-$key.tar
mkdir -p "$cache"
if [[ ! -s $rootfs_tar ]]; then
  say "bootstrapping $suite arm64 from $mirror (slow: runs under qemu-user)"
  start=$SECONDS
  rm -f "$rootfs_tar.partial.tar"
  image/bootstrap.sh "$rootfs_tar.partial.tar" "$suite" \
    "deb $mirror $suite main non-free-firmware" \
    "deb $mirror $suite-updates main non-free-firmware" \
    "deb $security $suite-security main non-free-firmware" >&2
  mv "$rootfs_tar.partial.tar" "$rootfs_tar"
  say "bootstrap took $((SECONDS - start)) s"
else
  say "cached root filesystem $rootfs_tar"
fi

# --- stage 2: perch and the image's settings ---------------------------------------
out=$(realpath -m "$target_dir/image")
mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
cleanup() {
  mountpoint -q "$work/rootfs/proc" && umount "$work/rootfs/proc"
  rm -rf "$work"
}
trap cleanup EXIT
start=$SECONDS
R=$work/rootfs
mkdir -p "$R"
tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs_tar" -C "$R"
cp -a image/rootfs/. "$R/"
mount -t proc proc "$R/proc"
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
cp "$deb" "$R/tmp/perch.deb"
in_root dpkg -i /tmp/perch.deb >&2
rm "$R/tmp/perch.deb"
in_root systemctl enable systemd-networkd.service systemd-resolved.service \
  systemd-timesyncd.service perch-growroot.service perch-firstboot.service \
  perch-welcome.service perch-setup.path perch.service >&2
# SSH stays off until perch.toml brings a key; no image-wide host keys.
in_root systemctl disable ssh.service >&2
in_root sh -c 'systemctl disable ssh.socket 2>/dev/null || true'
rm -f "$R"/etc/ssh/ssh_host_*
# DNS through resolved (also answers perch.local).
ln -sf ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"
# Each card gets its own machine id on first boot.
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
# The file the owner edits, on the FAT partition.
install -m 0644 image/boot/perch.toml "$R/boot/firmware/perch.toml"
umount "$R/proc"
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/tmp/* "$R"/var/log/*.log
find "$R/var/log" -type f -name '*.journal' -delete

# --- assemble: MBR, FAT32 boot (firmware, kernel, initrd, config) and ext4 root -----
# The root partition is the files plus room for a first boot; it grows to fill the
# card on first boot (perch-growroot).
used=$(du -sm --exclude=./boot/firmware "$R" | cut -f1)
root_mb=$(((used * 115 / 100 + 256 + 63) / 64 * 64))
cat >"$work/genimage.cfg" <<CFG
image boot.vfat {
  vfat { label = "PERCHBOOT" extraargs = "-F 32" }
  mountpoint = "/boot/firmware"
  size = 256M
}
image root.ext4 {
  ext4 { label = "PERCHROOT" use-mke2fs = true }
  size = ${root_mb}M
}
image perch.img {
  hdimage { partition-table-type = "mbr" }
  partition boot { partition-type = 0xC bootable = "true" image = "boot.vfat" offset = 4M }
  partition root { partition-type = 0x83 image = "root.ext4" }
}
CFG
mkdir -p "$work/out"
genimage --rootpath "$R" --tmppath "$work/tmp" --inputpath "$work/out" \
  --outputpath "$work/out" --config "$work/genimage.cfg" >&2
img=$out/perch-$version-rpi-arm64.img
mv "$work/out/perch.img" "$img"
say "image $img ($(du -h --apparent-size "$img" | cut -f1), root ${root_mb} MiB) in $((SECONDS - start)) s"
if [[ ${PERCH_IMAGE_NO_XZ:-} != 1 ]]; then
  start=$SECONDS
  xz -T2 -6 -k -f "$img"
  say "$img.xz: $(stat -c %s "$img.xz") bytes in $((SECONDS - start)) s"
fi
echo "$img"
