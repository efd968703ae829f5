#!/usr/bin/env bash
# Boots the SD-card image under QEMU and checks it the way an owner would use it.
#
#   scripts/test-image.sh IMAGE(.img or .img.xz)
#
# 0. The card as flashed (the untouched template): the LAN setup page on port 80, and
#    /xrpc/_health 503. The disk is made 1 GiB bigger first, like a larger card.
#    Set up from the browser: without the setup code nothing changes; with the code read
#    off the boot partition, the form's settings are applied and the box ends healthy, with
#    a login, SSH with the form's key, and no password left on the card.
# 1. On a fresh copy of the card, a perch.toml (hostname, password, SSH key, plain HTTP for the test) is put onto the
#    image's FAT partition with mtools.
# 2. First boot under qemu-system-aarch64 -M virt (the image's own kernel and initrd, the
#    image as a virtio disk, user networking with ports forwarded on loopback): the
#    config is applied, the root partition grown, perch.service active, /xrpc/_health and
#    a login with the configured password answer. Prints boot-to-healthy seconds.
# 3. Power cut: a burst of createRecord calls, QEMU killed mid-burst, boot again: every
#    acknowledged record must still be there with the same CID.
# Environment: TEST_IMAGE_KEEP=1 keeps the work dir; QEMU_SMP (default 2), QEMU_MEM (1024).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[test-image] $*" >&2; }
fail() { echo "[test-image] FAIL: $*" >&2; [[ -n ${console:-} && -e $console ]] && tail -40 "$console" >&2; exit 1; }

src=${1:?usage: scripts/test-image.sh IMAGE}
for pair in qemu-system-aarch64:qemu-system-arm mcopy:mtools sfdisk:fdisk curl:curl \
            jq:jq ssh-keygen:openssh-client ssh:openssh-client xz:xz-utils; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*:}" >/dev/null
  fi
done

work=$(mktemp -d)
qemu_pid=
cleanup() {
  [[ -n $qemu_pid ]] && kill -9 "$qemu_pid" 2>/dev/null || true
  if [[ ${TEST_IMAGE_KEEP:-} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
img=$work/disk.img
if [[ $src == *.xz ]]; then xz -dc "$src" >"$img"; else cp --sparse=always "$src" "$img"; fi
orig_bytes=$(stat -c %s "$img")
truncate -s +1G "$img"

# The FAT partition's byte offset, for mtools' IMAGE@@OFFSET.
boot_off=$(($(sfdisk -J "$img" | jq '.partitiontable.partitions[0].start') * 512))
fat="$img@@$boot_off"
kernel=$(mdir -b -i "$fat" ::/ | sed -n 's|^::/\(vmlinuz-.*\)|\1|p' | sort -V | tail -1)
initrd=$(mdir -b -i "$fat" ::/ | sed -n 's|^::/\(initrd.img-.*\)|\1|p' | sort -V | tail -1)
[[ -n $kernel && -n $initrd ]] || fail "no kernel/initrd on the boot partition"
mcopy -n -i "$fat" "::/$kernel" "$work/vmlinuz"
mcopy -n -i "$fat" "::/$initrd" "$work/initrd"
say "kernel $kernel, initrd $initrd"

port_http=$((20000 + RANDOM % 20000))
port_ssh=$((port_http + 1))
console=$work/console.log
boot() { # starts QEMU on the disk; sets qemu_pid
  : >"$console"
  qemu-system-aarch64 -M virt -cpu cortex-a72 -smp "${QEMU_SMP:-2}" -m "${QEMU_MEM:-1024}" \
    -kernel "$work/vmlinuz" -initrd "$work/initrd" \
    -append "root=LABEL=PERCHROOT rw rootwait console=ttyAMA0 net.ifnames=0" \
    -drive "file=$img,format=raw,if=virtio" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port_http-:80,hostfwd=tcp:127.0.0.1:$port_ssh-:22" \
    -device virtio-net-pci,netdev=n0 \
    -display none -monitor none -serial "file:$console" &
  qemu_pid=$!
}
url=http://127.0.0.1:$port_http
wait_healthy() { # seconds limit; prints seconds taken
  local t0=$SECONDS
  while ((SECONDS - t0 < $1)); do
    kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited"
    if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/xrpc/_health") == 200 ]]; then
      echo $((SECONDS - t0)); return 0
    fi
    sleep 1
  done
  fail "perch not healthy after $1 s"
}
vm() { ssh -q -i "$work/key" -p "$port_ssh" -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 root@127.0.0.1 "$@"; }

# --- a card nobody has set up yet: set up from a browser -------------------------------
cp --sparse=always "$img" "$work/fresh.img"
password="flash and go $RANDOM$RANDOM"
ssh-keygen -q -t ed25519 -N '' -C perch-image-test -f "$work/key"
# No DNS, no certificate and no PLC directory inside the test: plain HTTP and did:web.
test_settings='tls = "off"
listen = "0.0.0.0:80"
plc_url = ""
relays = []'
say "boot with the untouched perch.toml: the setup page"
boot
t0=$SECONDS
until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/") == 200 ]]; do
  ((SECONDS - t0 < 600)) || fail "no setup page after 600 s"
  kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited"
  sleep 1
done
welcome_s=$((SECONDS - t0))
page=$(curl -s --max-time 10 "$url/")
grep -q "Set up your Personal Data Server" <<<"$page" || fail "setup page: $page"
grep -q 'name="code"' <<<"$page" || fail "setup page has no code field: $page"
grep -q "sets nothing yet" <<<"$page" || fail "setup page lacks the first-boot report: $page"
[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/xrpc/_health") == 503 ]] ||
  fail "_health should be 503 before setup"
say "setup page after $welcome_s s"

submit() { # code; prints the HTTP status
  curl -s -o "$work/reply.html" -D "$work/reply.headers" -w '%{http_code}' --max-time 30 \
    --data-urlencode "code=$1" --data-urlencode "hostname=pds.example.com" \
    --data-urlencode "password=$password" --data-urlencode "password_again=$password" \
    --data-urlencode "email=owner@example.com" --data-urlencode "ssh_key=$(cat "$work/key.pub")" \
    --data-urlencode "more=$test_settings" "$url/setup"
}
# Without the code, or with a wrong one: refused, and nothing changes.
[[ $(submit "") == 403 ]] || fail "setup without a code was not refused"
[[ $(submit "AAAA-BBBB-CCCC") == 403 ]] || fail "setup with a wrong code was not refused"
grep -q "not the setup code" "$work/reply.html" || fail "the refusal does not say why"
sleep 5
mtype -i "$fat" ::/perch.toml | tr -d '\r' | cmp -s - image/boot/perch.toml ||
  fail "perch.toml on the card changed without the setup code"
[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/xrpc/_health") == 503 ]] ||
  fail "_health changed without the setup code"
# The code, as the owner reads it off the card (and the screen).
setup_txt=$(mtype -i "$fat" ::/perch-setup.txt | tr -d '\r')
code=$(sed -n 's/^ *\([2-9A-HJ-NP-Z]\{4\}-[2-9A-HJ-NP-Z]\{4\}-[2-9A-HJ-NP-Z]\{4\}\) *$/\1/p' <<<"$setup_txt" | tail -1)
[[ -n $code ]] || fail "no setup code in perch-setup.txt: $setup_txt"
grep -qF "setup code: $code" "$console" || fail "the setup code is not on the console"
grep -qF "$code" "$work/reply.html" && fail "a refusal page shows the setup code"
status=$(submit "$(tr 'A-Z' 'a-z' <<<"$code")")
[[ $status == 303 ]] || fail "setup with the code: HTTP $status: $(cat "$work/reply.html")"
grep -qi '^location: /progress' "$work/reply.headers" || fail "setup did not lead to /progress"
curl -s --max-time 10 "$url/progress" | grep -q "Setting up pds.example.com" ||
  fail "no progress page"
web=$(wait_healthy 600)
say "set up from the browser: healthy $web s after the form was sent"
session=$(curl -sf --max-time 30 -H 'content-type: application/json' \
  -d "{\"identifier\":\"pds.example.com\",\"password\":\"$password\"}" \
  "$url/xrpc/com.atproto.server.createSession") || fail "login with the password from the form"
[[ $(jq -r .did <<<"$session") == did:web:pds.example.com ]] || fail "unexpected DID after web setup"
for _ in $(seq 40); do vm true && break; sleep 3; done
vm true || fail "ssh with the key from the setup form"
[[ $(vm systemctl is-active perch.service) == active ]] || fail "perch.service not active after web setup"
[[ $(vm systemctl is-active perch-welcome.service || true) != active ]] || fail "setup page still up"
vm test ! -e /boot/firmware/perch.toml || fail "perch.toml from the form still on the card"
! vm "grep -rqF '$password' /boot/firmware" || fail "the password from the form is still on the card"
vm "grep -qF 'created on this box' /boot/firmware/perch-setup.txt" || fail "perch-setup.txt after web setup"
vm "grep -qF '$code' /boot/firmware/perch-setup.txt" && fail "the used setup code is still on the card"
kill -9 "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
say "web setup OK; now the same card fresh, set up by editing perch.toml"
cp --sparse=always "$work/fresh.img" "$img"
rm -f "$work/fresh.img"

cat >"$work/perch.toml" <<TOML
hostname = "pds.example.com"
password = "$password"
email = "owner@example.com"
ssh_key = "$(cat "$work/key.pub")"

# No DNS, no certificate and no PLC directory inside the test: plain HTTP and did:web.
[perch]
$test_settings
TOML
mcopy -o -i "$fat" "$work/perch.toml" ::/perch.toml

# --- first boot ----------------------------------------------------------------------
say "first boot (QEMU TCG, ${QEMU_SMP:-2} CPUs)"
boot
first=$(wait_healthy 600)
say "boot to healthy: $first s (perch.toml applied, account created)"

session=$(curl -sf --max-time 30 -H 'content-type: application/json' \
  -d "{\"identifier\":\"pds.example.com\",\"password\":\"$password\"}" \
  "$url/xrpc/com.atproto.server.createSession") || fail "login with the configured password"
jwt=$(jq -r .accessJwt <<<"$session")
did=$(jq -r .did <<<"$session")
[[ $did == did:web:pds.example.com ]] || fail "unexpected DID $did"
say "logged in as $did"

# What first boot did, seen from inside.
# sshd starts after its host keys are made (ssh-keygen -A, slow under emulation).
for _ in $(seq 40); do vm true && break; sleep 3; done
vm true || fail "ssh with the key from perch.toml"
[[ $(vm systemctl is-active perch.service) == active ]] || fail "perch.service not active"
[[ $(vm systemctl is-active perch-welcome.service || true) != active ]] || fail "setup page still up"
vm test ! -e /boot/firmware/perch.toml || fail "perch.toml still on the boot partition"
# (quoted whole: ssh joins its arguments, and the remote shell would split the pattern)
vm "grep -qF 'hostname = \"pds.example.com\"' /boot/firmware/perch-applied.toml" ||
  fail "no perch-applied.toml"
! vm "grep -rqF '$password' /boot/firmware" || fail "the password is still on the boot partition"
vm "grep -qF 'created on this box' /boot/firmware/perch-setup.txt" || fail "perch-setup.txt"
root_bytes=$(vm lsblk -bno SIZE /dev/vda2)
((root_bytes > orig_bytes - 260 * 1024 * 1024 + 900 * 1024 * 1024)) || fail "root partition not grown ($root_bytes)"
fs_bytes=$(vm df -B1 --output=size / | tail -1)
((fs_bytes > root_bytes * 9 / 10)) || fail "root filesystem not grown ($fs_bytes of $root_bytes)"
[[ $(vm hostname) == perch ]] || fail "hostname"
vm "resolvectl mdns" | grep -q yes || fail "mDNS (perch.local) not on"
[[ $(vm findmnt -no OPTIONS /) == *noatime* ]] || fail "root not noatime"
! vm swapon --show --noheadings | grep -q . || fail "swap is on"
say "first boot applied: root grown to $((fs_bytes / 1024 / 1024)) MiB, ssh on, secrets scrubbed"

# --- power cut during writes ---------------------------------------------------------
acked=$work/acked.txt
: >"$acked"
writer() {
  local i=0
  while :; do
    i=$((i + 1))
    r=$(curl -s --max-time 20 -H "authorization: Bearer $jwt" -H 'content-type: application/json' \
      -d "{\"repo\":\"$did\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"\$type\":\"app.bsky.feed.post\",\"text\":\"power cut test $i\",\"createdAt\":\"2026-11-27T00:00:00.000Z\"}}" \
      "$url/xrpc/com.atproto.repo.createRecord") || continue
    # Only a 200 with a URI and CID counts as acknowledged.
    jq -er '"\(.uri) \(.cid)"' <<<"$r" >>"$acked" 2>/dev/null || true
  done
}
writer &
writer_pid=$!
cut_after=$((4 + RANDOM % 6))
sleep "$cut_after"
kill -9 "$qemu_pid"
wait "$qemu_pid" 2>/dev/null || true
kill "$writer_pid" 2>/dev/null; wait "$writer_pid" 2>/dev/null || true
n_acked=$(wc -l <"$acked")
# What first boot left on the FAT partition must be on the disk, not in a page cache.
mtype -i "$fat" ::/perch-applied.toml | grep -q 'hostname = "pds.example.com"' ||
  fail "perch-applied.toml is not on the disk"
mtype -i "$fat" ::/perch-setup.txt | grep -q "created on this box" || fail "perch-setup.txt is not on the disk"
! mdir -b -i "$fat" ::/ | grep -qx '::/perch.toml' || fail "perch.toml is still on the disk"
((n_acked > 0)) || fail "no write was acknowledged before the cut"
say "pulled the plug after $cut_after s with $n_acked acknowledged writes"

say "second boot"
boot
second=$(wait_healthy 600)
say "boot to healthy after the power cut: $second s"
lost=0
while read -r uri cid; do
  rkey=${uri##*/}
  got=$(curl -s --max-time 20 "$url/xrpc/com.atproto.repo.getRecord?repo=$did&collection=app.bsky.feed.post&rkey=$rkey" | jq -r .cid)
  if [[ $got != "$cid" ]]; then
    lost=$((lost + 1)); say "LOST $uri (want $cid, got $got)"
  fi
done <"$acked"
vm "journalctl -b -u perch --no-pager" >"$work/perch.log" || true
grep -qi panick "$work/perch.log" && fail "perch panicked after the power cut"
echo "image: setup_page_s=$welcome_s web_setup_to_healthy_s=$web boot_to_healthy_s=$first second_boot_s=$second powercut_acked=$n_acked powercut_lost=$lost"
((lost == 0)) || fail "$lost acknowledged writes lost in the power cut"
say "OK"
