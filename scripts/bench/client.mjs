// Small XRPC client and timing helpers for scripts/bench.sh. Node builtins
// only, so it runs on the system Node (>= 18) without `npm ci`. Every network
// call goes to the URL it is given (the bench only gives 127.0.0.1 URLs), and
// every loop is bounded by a count and a deadline.
//
//   node client.mjs free-port
//   node client.mjs wait-health URL TIMEOUT_S
//   node client.mjs create-account URL HANDLE PASSWORD      -> {"did","accessJwt"}
//   node client.mjs session URL IDENTIFIER PASSWORD         -> {"did","accessJwt"}
//   node client.mjs writes URL DID TOKEN N                  -> {"ok","failed","statuses","seconds"}
//   node client.mjs lists URL DID N                         -> {"ok","failed","statuses","seconds"}
//   node client.mjs rkeys URL DID TOKEN N OUTFILE           -> {"rkeys","created"}
//   node client.mjs cold-start URL TIMEOUT_S LOGFILE -- CMD [ARGS...]  -> {"ms"}
//   node client.mjs fsync-rate DIR SECONDS                  -> {"fsyncs_per_sec", ...}
//   node client.mjs rss PID                                 -> {"rss_kib","anon_kib","hwm_kib","threads","cpu_ms"}
//   node client.mjs fill URL DID TOKEN N                    -> {"created","calls","seconds"}
//   node client.mjs get-repo URL DID RUNS                   -> {"bytes","blocks","ms_runs","ms","ttfb_ms","mb_per_s"}
import { spawn } from 'node:child_process'
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'

const COLLECTION = 'app.bsky.feed.post'
const die = (msg) => {
  console.error(`client.mjs: ${msg}`)
  process.exit(1)
}
const out = (obj) => console.log(JSON.stringify(obj))

async function xrpc(base, method, nsid, { token, body, query } = {}) {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v)
  const headers = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = { raw: text }
  }
  return { status: res.status, json }
}

function post(n) {
  return {
    $type: COLLECTION,
    text: `bench post ${n} ${Date.now()}`,
    createdAt: new Date().toISOString(),
  }
}

// A raw HTTP/1.1 GET with a fresh connection; resolves to the status code,
// or 0 when the connection is refused / reset / times out.
function probe(host, port, path, timeoutMs = 1000) {
  return new Promise((resolve) => {
    let data = ''
    let done = false
    const finish = (code) => {
      if (done) return
      done = true
      sock.destroy()
      resolve(code)
    }
    const sock = net.connect({ host, port })
    sock.setTimeout(timeoutMs, () => finish(0))
    sock.on('error', () => finish(0))
    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`)
    })
    sock.on('data', (chunk) => {
      data += chunk
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data)
      if (m) finish(Number(m[1]))
    })
    sock.on('end', () => finish(0))
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const commands = {
  async 'free-port'() {
    const srv = net.createServer()
    await new Promise((r) => srv.listen(0, '127.0.0.1', r))
    const { port } = srv.address()
    await new Promise((r) => srv.close(r))
    console.log(port)
  },

  async 'wait-health'(base, timeoutS) {
    const u = new URL('/xrpc/_health', base)
    const deadline = Date.now() + Number(timeoutS) * 1000
    while (Date.now() < deadline) {
      if ((await probe(u.hostname, Number(u.port), u.pathname)) === 200) return
      await sleep(20)
    }
    die(`${u} not healthy after ${timeoutS}s`)
  },

  async 'create-account'(base, handle, password) {
    const r = await xrpc(base, 'POST', 'com.atproto.server.createAccount', {
      body: { handle, password, email: `${handle.split('.')[0]}@example.com` },
    })
    if (r.status !== 200) die(`createAccount: ${r.status} ${JSON.stringify(r.json)}`)
    out({ did: r.json.did, accessJwt: r.json.accessJwt })
  },

  async session(base, identifier, password) {
    const r = await xrpc(base, 'POST', 'com.atproto.server.createSession', {
      body: { identifier, password },
    })
    if (r.status !== 200) die(`createSession: ${r.status} ${JSON.stringify(r.json)}`)
    out({ did: r.json.did, accessJwt: r.json.accessJwt })
  },

  // N sequential createRecords on one keep-alive connection (fetch pools).
  async writes(base, did, token, n) {
    const statuses = {}
    let ok = 0
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < Number(n); i++) {
      const r = await xrpc(base, 'POST', 'com.atproto.repo.createRecord', {
        token,
        body: { repo: did, collection: COLLECTION, record: post(i) },
      })
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      if (r.status === 200) ok++
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    out({ ok, failed: Number(n) - ok, statuses, seconds })
  },

  // N sequential listRecords (limit 50), as the wrk phase sends them.
  async lists(base, did, n) {
    const statuses = {}
    let ok = 0
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < Number(n); i++) {
      const query = { repo: did, collection: COLLECTION, limit: '50' }
      const r = await xrpc(base, 'GET', 'com.atproto.repo.listRecords', { query })
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      if (r.status === 200) ok++
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    out({ ok, failed: Number(n) - ok, statuses, seconds })
  },

  // Make sure at least N records exist, then write N of their rkeys.
  async rkeys(base, did, token, n, outfile) {
    n = Number(n)
    const keys = []
    let cursor
    for (let page = 0; page < 1000 && keys.length < n; page++) {
      const query = { repo: did, collection: COLLECTION, limit: '100' }
      if (cursor) query.cursor = cursor
      const r = await xrpc(base, 'GET', 'com.atproto.repo.listRecords', { query })
      if (r.status !== 200) die(`listRecords: ${r.status} ${JSON.stringify(r.json)}`)
      for (const rec of r.json.records) keys.push(rec.uri.split('/').pop())
      cursor = r.json.cursor
      if (!cursor || r.json.records.length === 0) break
    }
    let created = 0
    while (keys.length < n && created < n) {
      const r = await xrpc(base, 'POST', 'com.atproto.repo.createRecord', {
        token,
        body: { repo: did, collection: COLLECTION, record: post(created) },
      })
      if (r.status !== 200) die(`createRecord: ${r.status} ${JSON.stringify(r.json)}`)
      keys.push(r.json.uri.split('/').pop())
      created++
    }
    const chosen = keys.slice(0, n)
    writeFileSync(outfile, chosen.join('\n') + '\n')
    out({ rkeys: chosen.length, created })
  },

  // Time from spawn to the first 200 on /xrpc/_health, polling every 1 ms
  // with a fresh connection each time; then SIGTERM (SIGKILL after 5 s).
  async 'cold-start'(base, timeoutS, logfile, sep, cmd, ...args) {
    if (sep !== '--' || !cmd) die('cold-start URL TIMEOUT_S LOGFILE -- CMD [ARGS...]')
    const u = new URL('/xrpc/_health', base)
    const log = openSync(logfile, 'a')
    const t0 = process.hrtime.bigint()
    const child = spawn(cmd, args, { stdio: ['ignore', log, log] })
    let exited = false
    child.on('exit', () => {
      exited = true
    })
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.on(sig, () => {
        if (!exited) child.kill('SIGKILL')
        process.exit(1)
      })
    }
    const deadline = Date.now() + Number(timeoutS) * 1000
    let ms = null
    while (!exited && Date.now() < deadline) {
      if ((await probe(u.hostname, Number(u.port), u.pathname)) === 200) {
        ms = Number(process.hrtime.bigint() - t0) / 1e6
        break
      }
      await sleep(1)
    }
    if (!exited) {
      child.kill('SIGTERM')
      const killDeadline = Date.now() + 5000
      while (!exited && Date.now() < killDeadline) await sleep(10)
      if (!exited) child.kill('SIGKILL')
    }
    closeSync(log)
    if (ms === null) die(`no healthy response from ${cmd} within ${timeoutS}s (see ${logfile})`)
    out({ ms })
  },

  // The disk's fsync rate: append 4 KiB and fsync, for SECONDS, in DIR.
  async 'fsync-rate'(dir, seconds) {
    const file = join(dir, 'fsync-probe.bin')
    const buf = Buffer.alloc(4096, 0x5a)
    const fd = openSync(file, 'w')
    const end = process.hrtime.bigint() + BigInt(Math.round(Number(seconds) * 1e9))
    const t0 = process.hrtime.bigint()
    let n = 0
    while (process.hrtime.bigint() < end && n < 10_000_000) {
      writeSync(fd, buf)
      fsyncSync(fd)
      n++
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9
    closeSync(fd)
    rmSync(file, { force: true })
    out({ fsyncs: n, seconds: secs, fsyncs_per_sec: n / secs })
  },

  async rss(pid) {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kib = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
    const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN)
    // utime + stime of all threads, in clock ticks (USER_HZ, 100 on Linux)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
    // RssAnon: the process's own memory; the rest of VmRSS is mapped files (the binary's
    // code, shared and reclaimable).
    out({ rss_kib: kib('VmRSS'), anon_kib: kib('RssAnon'), hwm_kib: kib('VmHWM'), threads, cpu_ms: cpuMs })
  },
}

// N records through applyWrites, 200 creates per call (the reference's
// maximum); bounded by N/200 + 1 calls of 120 s each.
commands.fill = async (base, did, token, n) => {
  n = Number(n)
  let created = 0
  let calls = 0
  const t0 = process.hrtime.bigint()
  while (created < n && calls <= Math.ceil(n / 200)) {
    const k = Math.min(200, n - created)
    const writes = Array.from({ length: k }, (_, i) => ({
      $type: 'com.atproto.repo.applyWrites#create',
      collection: COLLECTION,
      value: post(created + i),
    }))
    const url = new URL('/xrpc/com.atproto.repo.applyWrites', base)
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repo: did, writes }),
      signal: AbortSignal.timeout(120_000),
    })
    const text = await res.text()
    calls++
    if (res.status !== 200) die(`applyWrites (${created} created): ${res.status} ${text.slice(0, 300)}`)
    created += k
  }
  out({ created, calls, seconds: Number(process.hrtime.bigint() - t0) / 1e9 })
}

// GET com.atproto.sync.getRepo, body fully read, RUNS times; the median.
// The CAR is walked (varint-framed sections) to count its blocks.
commands['get-repo'] = async (base, did, runs) => {
  const url = new URL('/xrpc/com.atproto.sync.getRepo', base)
  url.searchParams.set('did', did)
  const msRuns = []
  const ttfbRuns = []
  let bytes = null
  let blocks = null
  let contentType = null
  for (let i = 0; i < Number(runs); i++) {
    const t0 = process.hrtime.bigint()
    const res = await fetch(url, { signal: AbortSignal.timeout(300_000) })
    // Read as it streams: the time to the first bytes, then the whole body.
    const reader = res.body.getReader()
    const chunks = []
    let total = 0
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (!chunks.length) ttfbRuns.push(Number(process.hrtime.bigint() - t0) / 1e6)
      chunks.push(value)
      total += value.length
    }
    const buf = new Uint8Array(total)
    let at = 0
    for (const c of chunks) {
      buf.set(c, at)
      at += c.length
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (res.status !== 200) die(`getRepo: ${res.status} ${Buffer.from(buf.slice(0, 300)).toString()}`)
    msRuns.push(ms)
    if (bytes !== null && buf.length !== bytes) die(`getRepo: size changed between runs (${bytes} -> ${buf.length})`)
    bytes = buf.length
    contentType = res.headers.get('content-type')
    let pos = 0
    let sections = 0
    while (pos < buf.length && sections < 10_000_000) {
      let len = 0
      let shift = 0
      let b
      do {
        b = buf[pos++]
        len += (b & 0x7f) * 2 ** shift
        shift += 7
      } while (b & 0x80 && pos < buf.length)
      pos += len
      sections++
    }
    if (pos !== buf.length) die(`getRepo: the CAR does not parse (section ends at ${pos} of ${buf.length})`)
    blocks = sections - 1 // the first section is the CAR header
  }
  const median = (v) => {
    const s = [...v].sort((a, b) => a - b)
    return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  }
  const ms = median(msRuns)
  out({ bytes, blocks, content_type: contentType, ms_runs: msRuns, ms, ttfb_ms: median(ttfbRuns), mb_per_s: bytes / 1e6 / (ms / 1000) })
}

const [name, ...rest] = process.argv.slice(2)
if (!commands[name]) die(`unknown command ${name ?? '(none)'}`)
await commands[name](...rest)
