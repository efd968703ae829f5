// Write-to-firehose latency for scripts/bench.sh. Needs the `ws` and `cborg`
// packages from scripts/bench/node_modules (both come with the reference
// PDS's `npm ci`); runs on the system Node (>= 18).
//
//   node firehose.mjs URL DID TOKEN SUBSCRIBERS WRITES
//     -> {"subscribers","writes","ok_writes","samples","p50_ms","p99_ms",
//         "max_ms","write_p50_ms","missing","out_of_order","gaps",...}
//
// Opens SUBSCRIBERS live connections (no cursor) to
// URL/xrpc/com.atproto.sync.subscribeRepos, then makes WRITES sequential
// createRecords. For each write and each subscriber, the latency is the time
// from sending the createRecord request to that subscriber receiving the
// #commit frame whose `commit` CID is the one in the createRecord response.
// The next write starts once every subscriber has the frame (or after 5 s,
// when the missing subscribers are counted as `missing`). Frames are checked
// to arrive in strictly increasing seq order per subscriber.
//
// Bounded: every connection, request and wait has a deadline; the whole run
// gives up after 10 minutes.
import { decode, decodeFirst } from 'cborg'
import WebSocket from 'ws'

const COLLECTION = 'app.bsky.feed.post'
const FRAME_WAIT_MS = 5000
const die = (msg) => {
  console.error(`firehose.mjs: ${msg}`)
  process.exit(1)
}
setTimeout(() => die('gave up after 10 minutes'), 600_000).unref()

const [base, did, token, nSubsArg, nWritesArg] = process.argv.slice(2)
const nSubs = Number(nSubsArg)
const nWrites = Number(nWritesArg)
if (!base || !did || !token || !(nSubs >= 1 && nSubs <= 100) || !(nWrites >= 1 && nWrites <= 10_000)) {
  die('usage: firehose.mjs URL DID TOKEN SUBSCRIBERS(1..100) WRITES(1..10000)')
}

// CID bytes (tag 42: 0x00 then the binary CID) -> base32 multibase string
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
function cidString(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes[0] !== 0) return null
  let out = 'b'
  let bits = 0
  let value = 0
  for (let i = 1; i < bytes.length; i++) {
    value = (value << 8) | bytes[i]
    bits += 8
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31]
  return out
}
const tags = []
tags[42] = (bytes) => ({ cid: cidString(bytes) })
const cborOpts = { tags }

const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// --- subscribers ---------------------------------------------------------------
const arrivals = new Map() // commit cid -> Array(nSubs) of arrival times (ms)
const stats = {
  frames: 0,
  commit_frames: 0,
  other_frames: {},
  error_frames: [],
  decode_errors: 0,
  out_of_order: 0,
  gaps: 0,
  duplicates: 0,
  wrong_repo: 0,
  closed_early: 0,
  ws_errors: [],
}
let waiter = null // {cid, resolve}
let finished = false

function onFrame(sub, state, data) {
  const t = now()
  stats.frames++
  let header
  let body
  try {
    const buf = data instanceof Buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data)
    const [h, rest] = decodeFirst(buf, cborOpts)
    header = h
    body = decode(rest, cborOpts)
  } catch (e) {
    stats.decode_errors++
    return
  }
  if (header?.op === -1) {
    if (stats.error_frames.length < 5) stats.error_frames.push(body)
    return
  }
  const type = header?.t
  if (typeof body?.seq === 'number') {
    if (state.lastSeq !== null) {
      if (body.seq <= state.lastSeq) stats.out_of_order++
      else if (body.seq > state.lastSeq + 1) stats.gaps++
    }
    state.lastSeq = body.seq
  }
  if (type !== '#commit') {
    stats.other_frames[type] = (stats.other_frames[type] ?? 0) + 1
    return
  }
  stats.commit_frames++
  if (body.repo !== did) stats.wrong_repo++
  const cid = body.commit?.cid
  if (!cid) {
    stats.decode_errors++
    return
  }
  let a = arrivals.get(cid)
  if (!a) {
    a = new Array(nSubs).fill(null)
    arrivals.set(cid, a)
  }
  if (a[sub] !== null) stats.duplicates++
  else a[sub] = t
  if (waiter && waiter.cid === cid && a.every((x) => x !== null)) waiter.resolve()
}

const wsUrl = new URL('/xrpc/com.atproto.sync.subscribeRepos', base)
wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:'
const sockets = []
await Promise.all(
  Array.from({ length: nSubs }, (_, i) => {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false, handshakeTimeout: 10_000 })
      const state = { lastSeq: null }
      sockets.push(ws)
      ws.on('open', resolve)
      ws.on('message', (data) => onFrame(i, state, data))
      ws.on('error', (e) => {
        if (stats.ws_errors.length < 5) stats.ws_errors.push(String(e.message ?? e))
        reject(e)
      })
      ws.on('close', () => {
        if (!finished) stats.closed_early++
      })
    })
  }),
).catch((e) => die(`subscribeRepos connect failed: ${e.message ?? e}`))
await sleep(200) // let the server register every subscriber

// --- writes --------------------------------------------------------------------
const latencies = []
const writeMs = []
const afterResp = [] // frame arrival less the createRecord response's arrival
const statuses = {}
let ok = 0
let missing = 0
let slowWaits = 0
for (let i = 0; i < nWrites; i++) {
  const t0 = now()
  let status = 0
  let json = null
  try {
    const res = await fetch(new URL('/xrpc/com.atproto.repo.createRecord', base), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        repo: did,
        collection: COLLECTION,
        record: { $type: COLLECTION, text: `firehose bench ${i}`, createdAt: new Date().toISOString() },
      }),
      signal: AbortSignal.timeout(30_000),
    })
    status = res.status
    json = await res.json().catch(() => null)
  } catch {
    status = 0
  }
  const tResp = now()
  writeMs.push(tResp - t0)
  statuses[status] = (statuses[status] ?? 0) + 1
  const cid = json?.commit?.cid
  if (status !== 200 || !cid) continue
  ok++
  let a = arrivals.get(cid)
  if (!a || a.some((x) => x === null)) {
    const tw = now()
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, FRAME_WAIT_MS)
      waiter = {
        cid,
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
      }
      a = arrivals.get(cid)
      if (a && a.every((x) => x !== null)) waiter.resolve()
    })
    waiter = null
    if (now() - tw > 1000) slowWaits++
    a = arrivals.get(cid)
  }
  for (let s = 0; s < nSubs; s++) {
    const t = a?.[s] ?? null
    if (t === null) missing++
    else {
      latencies.push(t - t0)
      afterResp.push(t - tResp)
    }
  }
  arrivals.delete(cid)
}
finished = true
for (const ws of sockets) ws.terminate()

const pct = (xs, p) => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
console.log(
  JSON.stringify({
    subscribers: nSubs,
    writes: nWrites,
    ok_writes: ok,
    statuses,
    samples: latencies.length,
    p50_ms: pct(latencies, 50),
    p99_ms: pct(latencies, 99),
    max_ms: pct(latencies, 100),
    write_p50_ms: pct(writeMs, 50),
    write_p99_ms: pct(writeMs, 99),
    frame_after_response_p50_ms: pct(afterResp, 50),
    frame_after_response_p99_ms: pct(afterResp, 99),
    frames_before_response: afterResp.filter((x) => x < 0).length,
    missing,
    waits_over_1s: slowWaits,
    unmatched_commit_frames: arrivals.size,
    ...stats,
  }),
)
process.exit(0)
