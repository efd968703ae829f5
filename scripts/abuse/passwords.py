#!/usr/bin/env python3
"""Password attacks of issue 14 (items 1, 2, 9) against a running perch, from many
loopback source addresses (Linux routes all of 127/8 to lo). Each prints one
`abuse: NAME key=value ...` line; nothing is asserted.

  guess HOST:PORT PID DID SOURCES PER_SOURCE SECONDS VIA
      Wrong-password guesses (VIA `login`: createSession; `delete`: deleteAccount
      without a session, with a made-up code) from SOURCES addresses (127.0.8.x),
      PER_SOURCE at once from each, for SECONDS; meanwhile describeRepo is asked
      from 127.0.0.3 every 0.1 s (10 s allowed each). Peak RSS (sampled every
      10 ms), RSS before and after, statuses, probe latencies.
  oracle HOST:PORT DID PASSWORD COUNT
      deleteAccount without a session from one address (127.0.9.1): COUNT
      guesses with a wrong code, alternating the right and a wrong password.
      Statuses, whether the answers differ by password, guesses answered before
      the first 429.
"""

import http.client
import json
import sys
import threading
import time


def proc_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def call(host, port, source, method, path, body=None, timeout=60):
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0))
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = {}
        return r.status, parsed
    except OSError:
        return 0, {}
    finally:
        conn.close()


def pct(values):
    if not values:
        return (0, 0, 0)
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(len(v) * q + 0.999) - 1)]
    return (at(0.5), at(0.99), v[-1])


def guess(host, port, pid, did, sources, per_source, seconds, via):
    rss_before = proc_kib(pid, "VmRSS")
    peak = [rss_before]
    stop = threading.Event()
    statuses = {}
    lock = threading.Lock()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], proc_kib(pid, "VmRSS"))
            time.sleep(0.01)

    def guesser(src):
        while not stop.is_set():
            if via == "login":
                st, _ = call(host, port, src, "POST", "/xrpc/com.atproto.server.createSession",
                             {"identifier": "alice.test", "password": "not the password"})
            else:
                st, _ = call(host, port, src, "POST", "/xrpc/com.atproto.server.deleteAccount",
                             {"did": did, "password": "not the password", "token": "AAAAA-BBBBB"})
            with lock:
                statuses[st] = statuses.get(st, 0) + 1

    probes = []
    failed_probes = [0]

    def prober():
        q = "/xrpc/com.atproto.repo.describeRepo?repo=" + did.replace("%", "%25")
        while not stop.is_set():
            t = time.monotonic()
            st, _ = call(host, port, "127.0.0.3", "GET", q, timeout=10)
            if st == 200:
                probes.append((time.monotonic() - t) * 1000)
            else:
                failed_probes[0] += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=sampler), threading.Thread(target=prober)]
    for s in range(sources):
        for _ in range(per_source):
            threads.append(threading.Thread(target=guesser, args=(f"127.0.8.{s + 1}",)))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    p50, p99, mx = pct(probes)
    by_status = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(
        f"abuse: guess_{via} sources={sources} at_once={sources * per_source} seconds={seconds} "
        f"statuses={by_status} rss_before_kib={rss_before} rss_peak_kib={peak[0]} "
        f"rss_after_kib={proc_kib(pid, 'VmRSS')} probes_ok={len(probes)} "
        f"probes_failed={failed_probes[0]} probe_p50_ms={p50:.1f} probe_p99_ms={p99:.1f} "
        f"probe_max_ms={mx:.1f}",
        flush=True,
    )


def oracle(host, port, did, password, count):
    answers = {"right": set(), "wrong": set()}
    statuses = {}
    before_limit = None
    t0 = time.monotonic()
    for i in range(count):
        which = "right" if i % 2 == 0 else "wrong"
        pw = password if which == "right" else "not the password"
        st, body = call(host, port, "127.0.9.1", "POST", "/xrpc/com.atproto.server.deleteAccount",
                        {"did": did, "password": pw, "token": "AAAAA-BBBBB"})
        statuses[st] = statuses.get(st, 0) + 1
        if st == 429 and before_limit is None:
            before_limit = i
        if st != 429:
            answers[which].add((st, body.get("error", "")))
    elapsed = time.monotonic() - t0
    differ = "yes" if answers["right"] != answers["wrong"] else "no"
    by_status = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(
        f"abuse: oracle guesses={count} statuses={by_status} answers_differ_by_password={differ} "
        f"answered_before_first_429={before_limit if before_limit is not None else count} "
        f"guesses_per_sec={count / elapsed:.1f}",
        flush=True,
    )


def main():
    cmd, target = sys.argv[1], sys.argv[2]
    host, port = target.rsplit(":", 1)
    port = int(port)
    a = sys.argv[3:]
    if cmd == "guess":
        guess(host, port, int(a[0]), a[1], int(a[2]), int(a[3]), float(a[4]), a[5])
    elif cmd == "oracle":
        oracle(host, port, a[0], a[1], int(a[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
