#!/usr/bin/env python3
"""Idle TCP sockets against a running perch (reliability plan item 21).

Opens SOCKETS connections that never send a byte, spread over SOURCES
loopback source addresses (127.0.1.1, 127.0.1.2, ...), then:
  * counts how many perch holds (its open descriptors) and how many the
    client saw closed at once (connection caps; older silent sockets making
    way). Sockets the kernel completed but perch never accepted (listen
    backlog overflow) look open to the client: `client_open` counts them;
  * times a new request from yet another address (127.0.0.254) until it is
    answered, retrying when the connection is refused;
  * watches the kept sockets until perch drops them (the header timeout) and
    records how long each lived;
  * samples perch's open file descriptors and RSS (/proc/PID).
Prints one line: `abuse: idle key=value ...`. Asserts nothing about time.

usage: idle.py HOST:PORT PID SOCKETS SOURCES [LABEL]
"""

import errno
import resource
import select
import socket
import sys
import time

PROBE_ADDR = "127.0.0.254"
WATCH_SECONDS = 30


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def fds(pid):
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue was full."""
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


def source(i, sources):
    # 127.0.1.1 upwards: clear of 127.0.0.x, which other phases use.
    n = i % sources
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def closed(sock):
    """True when the peer has closed (EOF or reset) this never-written socket."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
        return data == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def connected(sock):
    try:
        sock.getpeername()
        return True
    except OSError:
        return False


def probe(host, port):
    """One GET /xrpc/_health from PROBE_ADDR: the status code, or None when the
    connection was closed or refused without an answer."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((PROBE_ADDR, 0))
        s.connect((host, port))
        s.sendall(b"GET /xrpc/_health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 "):
            return None
        return int(data.split()[1])
    except OSError:
        return None
    finally:
        s.close()


def main():
    target, pid, total, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    label = sys.argv[5] if len(sys.argv) > 5 else "idle"
    host, port = target.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fds_before, rss_before = fds(pid), proc_kib(pid, "VmRSS")
    overflows_before = listen_overflows()

    socks, opened, connect_failed = [], [], 0
    t0 = time.monotonic()
    # Non-blocking connects in batches: opening 10,000 one by one takes long
    # enough for the header timeout to close the first ones meanwhile.
    for start in range(0, total, 500):
        batch = []
        for i in range(start, min(total, start + 500)):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.bind((source(i, sources), 0))
            except OSError as e:
                s.close()
                connect_failed += 1
                if e.errno == errno.EMFILE:
                    break
                continue
            if s.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
                s.close()
                connect_failed += 1
                continue
            batch.append(s)
        poller = select.poll()
        for s in batch:
            poller.register(s, select.POLLOUT)
        waiting, deadline = len(batch), time.monotonic() + 10
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(100):
                poller.unregister(fd)
                waiting -= 1
        for s in batch:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and connected(s):
                socks.append(s)
                opened.append(time.monotonic())
            else:
                s.close()
                connect_failed += 1
    open_s = time.monotonic() - t0
    # Give perch a moment to accept (and refuse) everything in its backlog.
    time.sleep(1.5)
    fds_held, rss_held = fds(pid), proc_kib(pid, "VmRSS")
    overflows = listen_overflows() - overflows_before
    alive = [not closed(s) for s in socks]
    accepted = sum(alive)
    refused = len(socks) - accepted

    # A new client: how long until it is served, and after how many tries.
    t1 = time.monotonic()
    attempts, status = 0, None
    while time.monotonic() - t1 < 60:
        attempts += 1
        status = probe(host, port)
        if status == 200:
            break
        time.sleep(0.05)
    served_ms = (time.monotonic() - t1) * 1000

    # How long perch keeps the idle ones.
    lifetimes = []
    deadline = time.monotonic() + WATCH_SECONDS
    pending = [i for i, a in enumerate(alive) if a]
    while pending and time.monotonic() < deadline:
        poller = select.poll()
        for i in pending:
            poller.register(socks[i], select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.poll(250)
        now = time.monotonic()
        still = []
        for i in pending:
            if closed(socks[i]):
                lifetimes.append(now - opened[i])
            else:
                still.append(i)
        pending = still
    fds_after, rss_after, hwm = fds(pid), proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM")
    for s in socks:
        s.close()
    lifetimes.sort()

    def q(p):
        if not lifetimes:
            return "none"
        return f"{lifetimes[min(len(lifetimes) - 1, int(len(lifetimes) * p))]:.1f}"

    # perch's own count: descriptors beyond its idle baseline are these sockets.
    print(
        f"abuse: {label} sockets={total} sources={sources} connected={len(socks)} "
        f"connect_failed={connect_failed} open_s={open_s:.1f} perch_held={fds_held - fds_before} "
        f"closed_at_once={refused} client_open={accepted} listen_overflows={overflows} "
        f"new_request_status={status} new_request_ms={served_ms:.0f} new_request_attempts={attempts} "
        f"idle_closed={len(lifetimes)}/{accepted} idle_lifetime_p50_s={q(0.5)} "
        f"idle_lifetime_max_s={q(1.0)} client_open_after_{WATCH_SECONDS}s={len(pending)} "
        f"perch_fds_before={fds_before} perch_fds_held={fds_held} perch_fds_after={fds_after} "
        f"rss_before_kib={rss_before} rss_held_kib={rss_held} rss_after_kib={rss_after} "
        f"vmhwm_kib={hwm} client_nofile={hard}"
    )


if __name__ == "__main__":
    main()
