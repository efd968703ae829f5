#!/usr/bin/env bash
# Stage 1 of the SD-card image: a Debian arm64 root filesystem with the kernel,
# the Raspberry Pi firmware and the packages of image/packages.txt, written as
# a tarball. Slow (maintainer scripts and mkinitramfs run under qemu-user), so
# scripts/build-image.sh caches its output keyed by this file and the list.
#
#   image/bootstrap.sh OUT.tar SUITE MIRROR_LINE...
set -euo pipefail
out=$1 suite=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
include=$(grep -v '^#' "$here/packages.txt" | grep . | paste -sd, -)

# mkinitramfs under emulation takes ~8 min and would run twice (kernel postinst,
# then the initramfs-tools trigger). update_initramfs=no only blocks the second
# (`update-initramfs -u`); the kernel's own `-c` still builds one initrd. The
# file is a conffile, hence force-confold, and put back afterwards.
# raspi-firmware's hooks write /boot/firmware (it must exist) including
# cmdline.txt, whose root= must name the partition by label, not by SD device.
mmdebstrap --mode=root --architectures=arm64 --variant=apt \
  --dpkgopt=force-confold \
  --components=main,non-free-firmware \
  --include="$include" \
  --setup-hook='mkdir -p "$1/boot/firmware"' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools" && echo update_initramfs=no > "$1/etc/initramfs-tools/update-initramfs.conf"' \
  --customize-hook='if [ -e "$1/etc/initramfs-tools/update-initramfs.conf.dpkg-dist" ]; then mv "$1/etc/initramfs-tools/update-initramfs.conf.dpkg-dist" "$1/etc/initramfs-tools/update-initramfs.conf"; else sed -i "s/^update_initramfs=.*/update_initramfs=yes/" "$1/etc/initramfs-tools/update-initramfs.conf"; fi' \
  --customize-hook='sed -i -e "s/^#\?ROOTPART=.*/ROOTPART=\"LABEL=PERCHROOT\"/" -e "s/^#\?CONSOLES=.*/CONSOLES=\"tty0 ttyS1,115200\"/" "$1/etc/default/raspi-firmware"' \
  --customize-hook='chroot "$1" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware' \
  "$suite" "$out" "$@"
