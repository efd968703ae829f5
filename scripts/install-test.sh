#!/usr/bin/env bash
# Installs a perch .deb on a real systemd, as a user would on a home server,
# and takes it apart again:
#
#   scripts/install-test.sh target/debian/perch_<version>_amd64.deb
#
# The "server" is this machine's own OS booted as a throwaway container
# (systemd-nspawn, Debian's systemd-container; needs root). /etc, /var and /usr
# are overlays on the host's, so dpkg works and every write is gone when the
# container stops; the container has its own network namespace, so perch can
# take port 443 without touching the host's.
#
# Checked: install creates the user and enables the unit; starting before
# `perch init` fails once with a config error instead of restart-looping;
# `perch init --non-interactive`; start reaches READY (Type=notify) with a
# STATUS text; /xrpc/_health answers over HTTPS on port 443; the sandbox
# holds (only CAP_NET_BIND_SERVICE, no_new_privs, seccomp); `systemctl reload`
# serves a new certificate from the same process; the watchdog restarts a
# stopped (SIGSTOP) process; `apt-get purge` leaves no file, user or group
# behind.
set -euo pipefail

deb=$(realpath "${1:?usage: $0 PATH/TO/perch_*.deb}")
[[ $(id -u) == 0 ]] || {
  echo "install-test: needs root (systemd-nspawn)" >&2
  exit 1
}
command -v systemd-nspawn >/dev/null || {
  echo "install-test: needs systemd-nspawn (apt-get install systemd-container)" >&2
  exit 1
}

log() { printf '[install-test] %s\n' "$*" >&2; }
fail() {
  log "FAILED: $*"
  exit 1
}

console=$(mktemp)
nspawn_pid=
cleanup() {
  local status=$?
  set +e
  if ((status != 0)) && [[ -n ${ct:-} ]]; then
    log "journal of perch.service:"
    nsenter -t "$ct" -a journalctl -u perch --no-pager -n 80 >&2
  fi
  if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid"
    for _ in $(seq 100); do
      kill -0 "$nspawn_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  if ((status != 0)); then
    log "container console (last 40 lines):"
    tail -n 40 "$console" >&2
  fi
  rm -f "$console"
  exit "$status"
}
trap cleanup EXIT

# A tmpfs root with overlays: nspawn refuses to boot "/" itself writable.
systemd-nspawn -D / --volatile=yes \
  --overlay=/etc::/etc --overlay=/var::/var --overlay=/usr::/usr \
  --private-network --register=no --keep-unit -M "perch-test-$$" \
  --console=read-only -b systemd.firstboot=off >"$console" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is systemd, a child of nspawn (after a short-lived
# helper child that must not be mistaken for it).
ct=
for _ in $(seq 200); do
  ct=$(ps --ppid "$nspawn_pid" -o pid=,comm= | awk '$2 == "systemd" { print $1; exit }') || true
  [[ -n $ct ]] && break
  sleep 0.1
done
[[ -n $ct ]] || fail "the container did not start"
in_ct() { nsenter -t "$ct" -a "$@"; }
# "offline" until PID 1 has its bus up, then --wait waits for the boot to end.
# "degraded" is fine: some of the host's units make no sense in a container.
state=
for _ in $(seq 600); do
  state=$(in_ct timeout 120 systemctl is-system-running --wait 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 0.2
done
[[ $state == running || $state == degraded ]] || fail "the container did not boot: $state"
log "container booted: $state"

show() { in_ct systemctl show -p "$1" --value perch; }
state_is() { [[ $(show ActiveState) == "$1" ]]; }
restarted() { (($(show NRestarts) >= 1)); }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2
  shift 2
  for _ in $(seq $((limit * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "$what (waited ${limit} s)"
}

# --- install ------------------------------------------------------------------
# Container images (this host's included) may carry Docker's policy-rc.d, which
# forbids maintainer scripts to start or stop services; a real server has none.
in_ct rm -f /usr/sbin/policy-rc.d
in_ct sh -c 'cat > /root/perch.deb' <"$deb"
out=$(in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/perch.deb 2>&1) ||
  fail "install: $out"
grep -q "perch init" <<<"$out" || fail "postinst did not print the next steps: $out"
in_ct getent passwd perch >/dev/null || fail "no perch user"
[[ $(in_ct systemctl is-enabled perch) == enabled ]] || fail "unit not enabled"
[[ $(in_ct stat -c '%U:%G %a' /etc/perch/perch.toml) == "root:perch 640" ]] ||
  fail "config permissions: $(in_ct stat -c '%U:%G %a' /etc/perch/perch.toml)"
COMPLETIONS=(/usr/share/bash-completion/completions/perch /usr/share/zsh/vendor-completions/_perch
  /usr/share/fish/vendor_completions.d/perch.fish)
for f in "${COMPLETIONS[@]}"; do
  in_ct test -s "$f" || fail "$f is not installed"
done
log "installed: user perch, unit enabled, /etc/perch/perch.toml root:perch 640, completions"

# The test setup: a self-signed certificate (Let's Encrypt needs the
# internet), no PLC directory or relays. /run drop-ins vanish by themselves, so
# they cannot hide leftovers from the purge check. A short watchdog keeps the
# test quick.
test_env=(PERCH_TLS=files PERCH_TLS_CERT=/etc/perch/cert.pem PERCH_TLS_KEY=/etc/perch/key.pem
  PERCH_PLC_URL= PERCH_RELAYS=)
in_ct mkdir -p /run/systemd/system/perch.service.d
in_ct sh -c 'cat > /run/systemd/system/perch.service.d/test.conf' <<EOF
[Service]
Environment=${test_env[*]}
WatchdogSec=3s
EOF
in_ct systemctl daemon-reload
new_cert() {
  in_ct sh -c 'cd /etc/perch &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=pds.example.com -addext subjectAltName=DNS:pds.example.com \
      -keyout key.pem -out cert.pem 2>/dev/null &&
    chgrp perch key.pem cert.pem && chmod 0640 key.pem cert.pem'
}
served_serial() {
  in_ct sh -c 'openssl s_client -connect 127.0.0.1:443 -servername pds.example.com \
    </dev/null 2>/dev/null | openssl x509 -noout -serial'
}
new_cert

# --- a start before `perch init` fails once, with the reason -----------------
in_ct timeout 60 systemctl start perch 2>/dev/null && fail "started without a hostname"
wait_for 10 "perch to fail" state_is failed
[[ $(show NRestarts) == 0 ]] || fail "a config error was restarted $(show NRestarts) times"
in_ct journalctl -u perch --no-pager | grep -q "hostname" || fail "no config error in the journal"
in_ct systemctl reset-failed perch
log "start before init: failed once (exit 2), not restarted"

# --- perch init, start ----------------------------------------------------------
out=$(printf 'a long test password\n' | in_ct env "${test_env[@]}" \
  perch init --non-interactive --hostname pds.example.com --password-stdin 2>&1) ||
  fail "perch init: $out"
grep -q "did:web:pds.example.com" <<<"$out" || fail "perch init: $out"
in_ct timeout 90 systemctl start perch || fail "systemctl start perch"
[[ $(in_ct systemctl is-active perch) == active ]] || fail "not active"
status_text=$(show StatusText)
[[ -n $status_text ]] || fail "no STATUS= text"
log "active (READY=1 received), status: $status_text"
# Lines reach the journal with their priority (a <N> prefix perch writes because systemd
# names its stdout in JOURNAL_STREAM) and without a timestamp of perch's own.
line=$(in_ct journalctl -u perch --no-pager -o cat -p info --grep "listening on" | tail -n 1)
[[ $line == "perch::cli::commands: perch "* ]] || fail "journal line: $line"
in_ct journalctl -u perch --no-pager -o cat -p info --grep "starting perch" | grep -q "pds.example.com" ||
  fail "no start-up line in the journal"
if in_ct journalctl -u perch --no-pager -o cat -p warning | grep -q "listening on"; then
  fail "an info line passes journalctl -p warning"
fi
log "journal: lines with their priority, no timestamps of their own"

health() {
  in_ct curl -fsS --max-time 5 --cacert /etc/perch/cert.pem \
    --resolve pds.example.com:443:127.0.0.1 https://pds.example.com/xrpc/_health
}
out=$(health) || fail "/xrpc/_health"
grep -q '"version"' <<<"$out" || fail "health answered $out"
log "/xrpc/_health over HTTPS on port 443: $out"

pid=$(show MainPID)
proc=$(in_ct cat "/proc/$pid/status")
grep -q '^CapEff:[[:space:]]*0000000000000400$' <<<"$proc" || fail "capabilities: $(grep ^Cap <<<"$proc")"
grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$proc" || fail "no_new_privs is off"
grep -q '^Seccomp:[[:space:]]*2$' <<<"$proc" || fail "no seccomp filter"
[[ $(in_ct stat -c '%U %a' /var/lib/perch) == "perch 700" ]] || fail "/var/lib/perch ownership"
log "sandbox: CapEff=0x400 (CAP_NET_BIND_SERVICE), NoNewPrivs, seccomp; /var/lib/perch perch 700"

old_serial=$(served_serial)
new_cert
in_ct systemctl reload perch || fail "reload"
new_served() { [[ $(served_serial) != "$old_serial" ]]; }
wait_for 10 "the new certificate after reload" new_served
[[ $(show MainPID) == "$pid" && $(in_ct systemctl is-active perch) == active ]] ||
  fail "reload (SIGHUP) did not keep the process"
log "reload: same process now serves the new certificate"

# --- the watchdog restarts a wedged process -------------------------------------
in_ct kill -STOP "$pid"
wait_for 30 "a watchdog restart" restarted
wait_for 30 "perch to be active again" state_is active
in_ct journalctl -u perch --no-pager | grep -q "Watchdog timeout" || fail "no watchdog timeout in the journal"
[[ $(show MainPID) != "$pid" ]] || fail "same PID after the restart"
health >/dev/null || fail "health after the restart"
log "watchdog: SIGSTOPped process killed and restarted (NRestarts=$(show NRestarts))"

# --- purge leaves nothing ---------------------------------------------------------
out=$(in_ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q perch 2>&1) || fail "purge: $out"
for path in /etc/perch /var/lib/perch /usr/bin/perch /usr/lib/systemd/system/perch.service \
  /usr/lib/sysusers.d/perch.conf /etc/systemd/system/multi-user.target.wants/perch.service \
  /usr/share/doc/perch /usr/share/man/man1/perch.1.gz "${COMPLETIONS[@]}"; do
  ! in_ct test -e "$path" || fail "$path is left after purge"
done
! in_ct pgrep -x perch >/dev/null || fail "perch still runs after purge: $out"
! in_ct getent passwd perch >/dev/null || fail "user perch is left after purge: $out"
! in_ct getent group perch >/dev/null || fail "group perch is left after purge"
! in_ct dpkg-statoverride --list /etc/perch/perch.toml >/dev/null || fail "statoverride is left"
leftover=$(in_ct sh -c 'ls -d /var/lib/systemd/deb-systemd-helper-enabled/*perch* 2>/dev/null' || true)
[[ -z $leftover ]] || fail "left after purge: $leftover"
log "purge: stopped; no process, files, user, group or statoverride left"
log "ok"
