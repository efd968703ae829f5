// Federation: what a relay or AppView sees of this server, checked with the
// official libraries.
//
//   getRepo          the full CAR, verified with @atproto/repo (verifyRepoCar,
//                    readCarWithRoot, verifyCommitSig, MST) against the
//                    account key from the DID document (@atproto/identity);
//   subscribeRepos   frames decoded with @atproto/xrpc-server's Frame (the
//                    @atproto/lex-cbor decoder); each #commit is checked with
//                    @atproto/sync's parseCommitAuthenticated (signature and
//                    MST proofs of every op), and with a Sync v1.1 inversion
//                    (@atproto/repo MST over only the event's blocks: undoing
//                    the ops must give prevData);
//   cursor replay    identical bytes for the same seq;
//   FutureCursor     an error frame for a cursor beyond the head.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import WebSocket from 'ws'
import { env, login, newAgent, latestCommit, rkeyOf } from './lib.mjs'

const require = createRequire(import.meta.url)
const {
  MST,
  MemoryBlockstore,
  cborToLex,
  cborToLexRecord,
  readCar,
  readCarWithRoot,
  verifyCommitSig,
  verifyRepo,
  verifyRepoCar,
} = require('@atproto/repo')
const { IdResolver } = require('@atproto/identity')
const { parseCommitAuthenticated } = require('@atproto/sync')
const { Frame } = require('@atproto/xrpc-server')

const WAIT_MS = 15_000

const str = (cid) => (cid == null ? cid : cid.toString())

async function getJson(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(WAIT_MS) })
  const text = await res.text()
  assert.equal(res.status, 200, `GET ${url}: ${res.status} ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

// --- the account key -----------------------------------------------------------

let resolver
let signingKey // did:key of the account's #atproto verification method

async function accountKey() {
  if (signingKey) return signingKey
  resolver = new IdResolver({ plcUrl: env.plcUrl ?? undefined, timeout: WAIT_MS })
  const key = await resolver.did.resolveAtprotoKey(env.did, true)
  assert.match(key, /^did:key:z/, `resolved atproto key ${key}`)
  if (env.plcUrl) {
    // The directory's view must agree with the resolver's.
    const data = await getJson(`${env.plcUrl}/${env.did}/data`)
    assert.equal(key, data.verificationMethods.atproto)
  }
  signingKey = key
  return key
}

// --- firehose connection ---------------------------------------------------------

/**
 * Opens subscribeRepos; every binary message is kept as raw bytes plus the
 * frame decoded by @atproto/xrpc-server (or the decode error).
 */
function openFirehose(cursor) {
  const base = env.url.replace(/^http/, 'ws')
  const url = `${base}/xrpc/com.atproto.sync.subscribeRepos${cursor === undefined ? '' : `?cursor=${cursor}`}`
  const ws = new WebSocket(url)
  const state = { ws, url, frames: [], closed: null, error: null, opened: false }
  let wake = []
  const notify = () => {
    const w = wake
    wake = []
    for (const fn of w) fn()
  }
  ws.on('open', () => {
    state.opened = true
    notify()
  })
  ws.on('message', (data, isBinary) => {
    const bytes = new Uint8Array(Buffer.isBuffer(data) ? data : Buffer.concat(data))
    let frame = null
    let decodeError = null
    if (!isBinary) decodeError = new Error(`text message: ${bytes.length} bytes`)
    else {
      try {
        frame = Frame.fromBytes(bytes)
      } catch (err) {
        decodeError = err
      }
    }
    state.frames.push({ bytes, frame, decodeError })
    notify()
  })
  ws.on('close', (code, reason) => {
    state.closed = { code, reason: reason.toString() }
    notify()
  })
  ws.on('error', (err) => {
    state.error = err
    notify()
  })
  /** Waits (bounded) until pred(state) is truthy; returns its value. */
  state.waitFor = async (pred, what, ms = WAIT_MS) => {
    const deadline = Date.now() + ms
    for (;;) {
      const v = pred(state)
      if (v) return v
      if (state.error) throw new Error(`${what}: socket error ${state.error.message}`)
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new Error(
          `${what}: timed out after ${ms} ms (${state.frames.length} frames, closed ${JSON.stringify(state.closed)})`,
        )
      }
      if (state.closed && !pred(state)) {
        // Nothing more will come; give pred one last look above.
        const v2 = pred(state)
        if (v2) return v2
        throw new Error(`${what}: socket closed ${JSON.stringify(state.closed)} with ${state.frames.length} frames`)
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250))
        wake.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }
  state.close = async () => {
    if (state.closed) return
    ws.close()
    const t = setTimeout(() => ws.terminate(), 3000)
    await state.waitFor((s) => s.closed, 'close', 5000).catch(() => ws.terminate())
    clearTimeout(t)
  }
  return state
}

function commitFrames(state) {
  return state.frames.filter((f) => f.frame?.isMessage() && f.frame.type === '#commit')
}

function assertFramesDecoded(state) {
  const bad = state.frames.filter((f) => f.decodeError)
  assert.equal(
    bad.length,
    0,
    `frames the official decoder (@atproto/xrpc-server Frame.fromBytes) rejected: ${bad
      .map((f) => `${f.decodeError.message} [${Buffer.from(f.bytes.slice(0, 40)).toString('hex')}…]`)
      .join('; ')}`,
  )
}

function assertSeqIncreasing(state) {
  let last = -Infinity
  for (const { frame } of state.frames) {
    if (!frame?.isMessage() || frame.type === '#info') continue
    const seq = frame.body.seq
    assert.equal(typeof seq, 'number', `${frame.type} without a numeric seq`)
    assert.ok(seq > last, `seq not strictly increasing: ${seq} after ${last} (${frame.type})`)
    last = seq
  }
}

// --- #commit checks -------------------------------------------------------------

/** The signed commit object carried in a #commit event's blocks. */
async function commitOf(body) {
  const { roots, blocks } = await readCar(body.blocks)
  assert.equal(roots.length, 1, `#commit blocks: CAR with ${roots.length} roots`)
  assert.equal(str(roots[0]), str(body.commit), 'CAR root must be the commit CID')
  const bytes = blocks.get(body.commit)
  assert.ok(bytes, `#commit seq ${body.seq}: the commit block ${body.commit} is not in blocks`)
  return { commit: cborToLex(bytes), blocks }
}

/**
 * Every check on one #commit event: signature, fields, official proof check,
 * and the Sync v1.1 inversion. Returns the commit's data root.
 */
async function checkCommitEvent(body, key) {
  const label = `#commit seq ${body.seq} rev ${body.rev}`
  assert.equal(body.repo, env.did, `${label}: repo`)
  const { commit, blocks } = await commitOf(body)
  assert.equal(commit.did, env.did, `${label}: commit.did`)
  assert.equal(commit.version, 3, `${label}: commit.version`)
  assert.equal(commit.rev, body.rev, `${label}: commit.rev vs event rev`)
  assert.equal(
    await verifyCommitSig(commit, key),
    true,
    `${label}: commit signature does not verify with ${key}`,
  )
  assert.ok(Array.isArray(body.ops), `${label}: ops`)
  // An empty ops list is allowed (the genesis commit has none); then the
  // inversion below requires data === prevData.
  assert.ok(typeof body.time === 'string' && !Number.isNaN(Date.parse(body.time)), `${label}: time ${body.time}`)

  // Official: @atproto/sync resolves the key itself and checks each op's
  // MST inclusion (or, for a delete, exclusion) proof against the commit.
  const parsed = await parseCommitAuthenticated(resolver, body)
  assert.equal(
    parsed.length,
    body.ops.length,
    `${label}: @atproto/sync verified ${parsed.length} of ${body.ops.length} ops`,
  )

  // Sync v1.1 inversion, using ONLY the blocks in the event.
  assert.ok(body.prevData, `${label}: no prevData`)
  const storage = new MemoryBlockstore(blocks)
  let mst = MST.load(storage, commit.data)
  for (const op of body.ops) {
    const where = `${label}: ${op.action} ${op.path}`
    const now = await mst.get(op.path)
    if (op.action === 'create') {
      assert.ok(op.cid, `${where}: no cid`)
      assert.ok(!op.prev, `${where}: a create has no prev`)
      assert.equal(str(now), str(op.cid), `${where}: the new tree holds another cid`)
      assert.ok(blocks.has(op.cid), `${where}: record block missing from blocks`)
      mst = await mst.delete(op.path)
    } else if (op.action === 'update') {
      assert.ok(op.cid, `${where}: no cid`)
      assert.ok(op.prev, `${where}: an update needs prev (Sync v1.1)`)
      assert.equal(str(now), str(op.cid), `${where}: the new tree holds another cid`)
      assert.ok(blocks.has(op.cid), `${where}: record block missing from blocks`)
      mst = await mst.update(op.path, op.prev)
    } else if (op.action === 'delete') {
      assert.ok(!op.cid, `${where}: a delete has cid null`)
      assert.ok(op.prev, `${where}: a delete needs prev (Sync v1.1)`)
      assert.equal(now, null, `${where}: the new tree still holds the key`)
      mst = await mst.add(op.path, op.prev)
    } else {
      assert.fail(`${where}: unknown action`)
    }
  }
  const inverted = await mst.getPointer()
  assert.equal(
    str(inverted),
    str(body.prevData),
    `${label}: inverting the ops over the event's blocks gives ${inverted}, not prevData ${body.prevData}`,
  )
  return commit.data
}

// --- tests -------------------------------------------------------------------------

describe('federation (official @atproto/repo, @atproto/sync, @atproto/xrpc-server)', () => {
  before(async () => {
    await accountKey()
  })

  test('getRepo: the full CAR verifies and its MST holds every record', async () => {
    const key = await accountKey()
    const head = await latestCommit()
    const res = await fetch(
      `${env.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(env.did)}`,
      { signal: AbortSignal.timeout(WAIT_MS) },
    )
    const car = new Uint8Array(await res.arrayBuffer())
    assert.equal(res.status, 200, `getRepo: ${res.status} ${Buffer.from(car).toString('utf8').slice(0, 300)}`)
    assert.match(res.headers.get('content-type') ?? '', /^application\/vnd\.ipld\.car/)

    // Official verification: signature with the DID document's key, the did,
    // and every MST node and record block present (ensureLeaves).
    const verified = await verifyRepoCar(car, env.did, key)
    assert.equal(str(verified.commit.cid), head.cid, 'CAR head vs getLatestCommit')
    assert.equal(verified.commit.rev, head.rev)

    // And by hand: root, signature, the whole tree.
    const { root, blocks } = await readCarWithRoot(car)
    assert.equal(str(root), head.cid)
    const commit = cborToLex(blocks.get(root))
    assert.equal(commit.did, env.did)
    assert.equal(commit.version, 3)
    assert.equal(await verifyCommitSig(commit, key), true, 'commit signature')
    const forged = { ...commit, sig: Uint8Array.from(commit.sig, (b, i) => (i === 10 ? b ^ 1 : b)) }
    assert.equal(await verifyCommitSig(forged, key), false, 'a flipped signature bit must not verify')

    const mst = MST.load(new MemoryBlockstore(blocks), commit.data)
    const leaves = await mst.list()
    assert.equal(leaves.length, verified.creates.length)
    assert.equal(await mst.leafCount(), leaves.length)
    const perCollection = new Map()
    for (const leaf of leaves) {
      const [collection, rkey, ...rest] = leaf.key.split('/')
      assert.ok(collection && rkey && rest.length === 0, `bad MST key ${leaf.key}`)
      const bytes = blocks.get(leaf.value)
      assert.ok(bytes, `record ${leaf.key} (${leaf.value}) missing from the CAR`)
      const record = cborToLexRecord(bytes)
      if (record.$type !== undefined) assert.equal(record.$type, collection, `${leaf.key}: $type`)
      perCollection.set(collection, (perCollection.get(collection) ?? 0) + 1)
    }

    // Counts match listRecords over describeRepo's collections.
    const agent = newAgent()
    const { data: described } = await agent.com.atproto.repo.describeRepo({ repo: env.did })
    assert.deepEqual(
      [...described.collections].sort(),
      [...perCollection.keys()].sort(),
      'describeRepo collections vs the CAR',
    )
    let total = 0
    for (const collection of described.collections) {
      let cursor
      const cids = new Map()
      for (let page = 0; page < 1000; page++) {
        const { data } = await agent.com.atproto.repo.listRecords({
          repo: env.did,
          collection,
          limit: 100,
          cursor,
        })
        for (const r of data.records) cids.set(rkeyOf(r.uri), r.cid)
        if (!data.cursor || data.records.length === 0) break
        cursor = data.cursor
      }
      assert.equal(cids.size, perCollection.get(collection) ?? 0, `listRecords ${collection} vs the CAR`)
      for (const [rkey, cid] of cids) {
        assert.equal(str(await mst.get(`${collection}/${rkey}`)), cid, `${collection}/${rkey}: cid`)
      }
      total += cids.size
    }
    assert.equal(total, leaves.length)
  })

  test('getRepo?since: the diff plus the old CAR is a complete, verifiable newer repo', async () => {
    const key = await accountKey()
    const getRepo = async (since) => {
      const q = new URLSearchParams({ did: env.did })
      if (since) q.set('since', since)
      const res = await fetch(`${env.url}/xrpc/com.atproto.sync.getRepo?${q}`, {
        signal: AbortSignal.timeout(WAIT_MS),
      })
      const car = new Uint8Array(await res.arrayBuffer())
      assert.equal(res.status, 200, `getRepo since=${since}: ${res.status} ${Buffer.from(car).toString('utf8').slice(0, 300)}`)
      return car
    }
    const agent = await login()
    const collection = 'app.bsky.feed.like'
    const like = (n) =>
      agent.com.atproto.repo.createRecord({
        repo: env.did,
        collection,
        record: {
          $type: collection,
          subject: { uri: `at://${env.did}/app.bsky.feed.post/3jzfcijpj2z2${n}`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' },
          createdAt: new Date().toISOString(),
        },
      })
    const made = []
    try {
      made.push((await like('a')).data) // exists before `since`
      const before = await latestCommit()
      const full = await readCarWithRoot(await getRepo())
      assert.equal(str(full.root), before.cid)
      const old = await MST.load(new MemoryBlockstore(full.blocks), cborToLex(full.blocks.get(full.root)).data).list()
      made.push((await like('b')).data) // made after `since`

      const head = await latestCommit()
      const diff = await readCarWithRoot(await getRepo(before.rev))
      assert.equal(str(diff.root), head.cid, 'diff root is the current head')
      // (BlockMap keys are CID strings, so a string CID works for has/get.)
      assert.ok(diff.blocks.has(made[1].cid), 'the new record is in the diff')
      assert.ok(!diff.blocks.has(before.cid), 'the old commit block is not in a diff since its rev')
      assert.ok(old.some((l) => str(l.value) === made[0].cid), 'the earlier record is in the old CAR')
      for (const leaf of old) {
        assert.ok(!diff.blocks.has(leaf.value), `unchanged record ${leaf.key} (${leaf.value}) is in the diff since ${before.rev}`)
      }
      const commit = cborToLex(diff.blocks.get(diff.root))
      assert.equal(await verifyCommitSig(commit, key), true)
      // A mirror holding the old CAR can apply the diff: together they form
      // the new repo, every node and record present (official verifyRepo).
      const merged = full.blocks
      merged.addMap(diff.blocks)
      const verified = await verifyRepo(merged, diff.root, env.did, key)
      assert.ok(
        made.every((m) => verified.creates.some((c) => c.collection === collection && c.rkey === rkeyOf(m.uri) && str(c.cid) === m.cid)),
        'both records are in the verified repo',
      )

      // Deleting the newer record brings back tree nodes from before `mid`
      // (same content, same CID). A mirror holding only the repo at `mid`
      // needs them in the diff since `mid` to verify the new head.
      const mid = await latestCommit()
      const fullMid = await readCarWithRoot(await getRepo())
      assert.equal(str(fullMid.root), mid.cid)
      const gone = made.pop()
      await agent.com.atproto.repo.deleteRecord({ repo: env.did, collection, rkey: rkeyOf(gone.uri) })
      const after = await latestCommit()
      const diff2 = await readCarWithRoot(await getRepo(mid.rev))
      assert.equal(str(diff2.root), after.cid, 'diff root is the current head')
      const data2 = cborToLex(diff2.blocks.get(diff2.root)).data
      const mirror = fullMid.blocks
      mirror.addMap(diff2.blocks)
      let verified2
      try {
        verified2 = await verifyRepo(mirror, diff2.root, env.did, key)
      } catch (err) {
        assert.fail(
          `getRepo since=${mid.rev} is incomplete: the repo at ${mid.rev} plus the diff does not verify ` +
            `(${err.message}); the diff has ${diff2.blocks.size} blocks, new data root ${data2} ` +
            `${diff2.blocks.has(data2) ? 'included' : 'NOT included'}`,
        )
      }
      assert.ok(!verified2.creates.some((c) => c.rkey === rkeyOf(gone.uri)), 'the deleted record is gone')
    } finally {
      for (const m of made) {
        await agent.com.atproto.repo.deleteRecord({ repo: env.did, collection, rkey: rkeyOf(m.uri) })
      }
    }
  })

  // Shared by the firehose tests below (node:test runs them in order).
  const seen = { writes: [], live: null }

  test('subscribeRepos: backlog from cursor 0, then create/update/delete, each #commit verified', async () => {
    const key = await accountKey()
    const head = await latestCommit()
    const fh = openFirehose(0)
    seen.live = fh
    try {
      // The backlog reaches the current head.
      await fh.waitFor(
        (s) => commitFrames(s).some((f) => f.frame.body.rev === head.rev),
        `backlog up to rev ${head.rev}`,
      )
      assertFramesDecoded(fh)
      const backlog = commitFrames(fh).length
      assert.ok(backlog >= 1)

      const agent = await login()
      const collection = 'app.bsky.feed.post'
      const created = await agent.com.atproto.repo.createRecord({
        repo: env.did,
        collection,
        record: { $type: collection, text: 'federation: created', createdAt: new Date().toISOString() },
      })
      const rkey = rkeyOf(created.data.uri)
      const put = await agent.com.atproto.repo.putRecord({
        repo: env.did,
        collection,
        rkey,
        record: { $type: collection, text: 'federation: updated', createdAt: new Date().toISOString() },
      })
      assert.notEqual(put.data.cid, created.data.cid)
      await agent.com.atproto.repo.deleteRecord({ repo: env.did, collection, rkey })
      const after = await latestCommit()
      const path = `${collection}/${rkey}`

      const expected = [
        { action: 'create', cid: created.data.cid, prev: null, rev: created.data.commit?.rev },
        { action: 'update', cid: put.data.cid, prev: created.data.cid, rev: put.data.commit?.rev },
        { action: 'delete', cid: null, prev: put.data.cid, rev: after.rev },
      ]
      await fh.waitFor(
        (s) => commitFrames(s).length >= backlog + 3 && commitFrames(s).some((f) => f.frame.body.rev === after.rev),
        'the three #commit events',
      )
      assertFramesDecoded(fh)
      assertSeqIncreasing(fh)

      const commits = commitFrames(fh)
      const mine = commits.slice(backlog)
      assert.equal(mine.length, 3, `expected 3 new #commit events, got ${mine.length}`)
      for (let i = 0; i < 3; i++) {
        const body = mine[i].frame.body
        const want = expected[i]
        assert.equal(body.ops.length, 1, `${want.action}: ops ${JSON.stringify(body.ops.map((o) => o.action))}`)
        const op = body.ops[0]
        assert.equal(op.action, want.action)
        assert.equal(op.path, path)
        assert.equal(str(op.cid) ?? null, want.cid)
        assert.equal(str(op.prev) ?? null, want.prev)
        if (want.rev) assert.equal(body.rev, want.rev, `${want.action}: rev vs the write's commit`)
        seen.writes.push(mine[i])
      }

      // Every #commit (backlog and new): signature, proofs, inversion; and
      // the chain: since = previous rev, prevData = previous data root.
      let prevData = null
      let prevRev = null
      for (const f of commits) {
        const body = f.frame.body
        if (prevRev !== null) {
          assert.equal(body.since, prevRev, `seq ${body.seq}: since vs previous rev`)
          assert.ok(body.rev > prevRev, `seq ${body.seq}: rev ${body.rev} not after ${prevRev}`)
          assert.equal(str(body.prevData), str(prevData), `seq ${body.seq}: prevData vs previous commit's data`)
        }
        if (body.since === null || body.since === undefined) {
          assert.equal(prevRev, null, `seq ${body.seq}: since missing after rev ${prevRev}`)
          // The first commit of the repo: nothing to invert against unless prevData is given.
          if (!body.prevData) {
            prevData = (await commitOf(body)).commit.data
            prevRev = body.rev
            continue
          }
        }
        prevData = await checkCommitEvent(body, key)
        prevRev = body.rev
      }
      assert.equal(prevRev, after.rev)
    } finally {
      // Kept open for the replay test's comparison; closed in after().
    }
  })

  test('subscribeRepos: a cursor replays the same seq with identical bytes', async () => {
    assert.equal(seen.writes.length, 3, 'needs the events of the previous test')
    for (const target of [seen.writes[0], seen.writes[2]]) {
      const seq = target.frame.body.seq
      const fh = openFirehose(seq - 1)
      try {
        const first = await fh.waitFor((s) => s.frames[0], `first frame from cursor ${seq - 1}`)
        assert.equal(first.decodeError, null, `decode: ${first.decodeError?.message}`)
        assert.ok(first.frame.isMessage(), `first frame is not a message: ${JSON.stringify(first.frame.body)}`)
        assert.equal(first.frame.body.seq, seq, `cursor ${seq - 1} must start at seq ${seq}`)
        assert.ok(
          Buffer.from(first.bytes).equals(Buffer.from(target.bytes)),
          `seq ${seq}: replayed frame differs (${first.bytes.length} vs ${target.bytes.length} bytes)`,
        )
        // What follows matches the live stream too.
        const liveAfter = seen.live.frames.filter((f) => f.frame?.isMessage() && f.frame.body.seq > seq)
        await fh.waitFor((s) => s.frames.length >= 1 + liveAfter.length, 'the rest of the replay')
        for (let i = 0; i < liveAfter.length; i++) {
          assert.ok(
            Buffer.from(fh.frames[1 + i].bytes).equals(Buffer.from(liveAfter[i].bytes)),
            `replay frame ${i + 1} after seq ${seq} differs from the live one`,
          )
        }
      } finally {
        await fh.close()
      }
    }
  })

  test('subscribeRepos: a cursor beyond the head gets a FutureCursor error frame', async () => {
    const live = seen.live ?? openFirehose(0)
    seen.live = live
    const lastSeq = await live.waitFor(
      (s) => {
        const seqs = s.frames.filter((f) => f.frame?.isMessage() && typeof f.frame.body.seq === 'number')
        return seqs.length ? seqs[seqs.length - 1].frame.body.seq : null
      },
      'a seq from the live stream',
    )
    const fh = openFirehose(lastSeq + 1000)
    try {
      const first = await fh.waitFor((s) => s.frames[0], 'the error frame')
      assert.equal(first.decodeError, null, `decode: ${first.decodeError?.message}`)
      assert.ok(first.frame.isError(), `expected an error frame (op -1), got ${first.frame.op} ${first.frame.type}`)
      assert.equal(first.frame.header.op, -1)
      assert.equal(first.frame.code, 'FutureCursor', `error ${first.frame.code}: ${first.frame.message}`)
      // The server ends the stream after an error frame.
      await fh.waitFor((s) => s.closed, 'the socket to close after the error frame')
      assert.equal(fh.frames.length, 1, 'nothing follows the error frame')
    } finally {
      await fh.close()
    }
  })

  after(async () => {
    if (seen.live) await seen.live.close()
  })
})
