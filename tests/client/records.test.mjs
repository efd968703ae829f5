// Records and commits, through the official @atproto/api client.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import {
  env,
  expectXrpcError,
  latestCommit,
  login,
  rkeyOf,
  strangerDid,
} from './lib.mjs'

const POST = 'app.bsky.feed.post'
const LIKE = 'app.bsky.feed.like'
const FOLLOW = 'app.bsky.graph.follow'
const PROFILE = 'app.bsky.actor.profile'

let agent
let repo

before(async () => {
  agent = await login()
  repo = agent.com.atproto.repo
})

/** Runs a write and checks the repo revision moved strictly forward. */
async function advances(label, write) {
  const before = await latestCommit()
  const result = await write()
  const after = await latestCommit()
  assert.ok(
    after.rev > before.rev,
    `${label}: rev must increase (was ${before.rev}, now ${after.rev})`,
  )
  assert.notEqual(after.cid, before.cid, `${label}: commit cid must change`)
  return result
}

function newPost(text) {
  return agent.post({ text, createdAt: new Date().toISOString() })
}

async function getRecord(collection, rkey) {
  const { data } = await repo.getRecord({ repo: env.did, collection, rkey })
  return data
}

/** Every record of a collection, following cursors. */
async function listAll(collection, { limit, reverse } = {}) {
  const out = []
  let cursor
  for (let page = 0; page < 1000; page++) {
    const { data } = await repo.listRecords({
      repo: env.did,
      collection,
      limit,
      cursor,
      reverse,
    })
    out.push(...data.records)
    if (!data.cursor || data.records.length === 0) return out
    cursor = data.cursor
  }
  throw new Error('listRecords pagination did not end')
}

describe('create through the client helpers', () => {
  let post

  test('post', async () => {
    const text = `hello from the client suite ${Date.now()}`
    post = await advances('post', () => newPost(text))
    assert.match(post.uri, new RegExp(`^at://${env.did}/${POST}/[a-z2-7]{13}$`))
    assert.match(post.cid, /^bafyrei[a-z2-7]+$/)
    const got = await getRecord(POST, rkeyOf(post.uri))
    assert.equal(got.uri, post.uri)
    assert.equal(got.cid, post.cid)
    assert.equal(got.value.$type, POST)
    assert.equal(got.value.text, text)
  })

  test('like it', async () => {
    const like = await advances('like', () => agent.like(post.uri, post.cid))
    assert.match(like.uri, new RegExp(`^at://${env.did}/${LIKE}/`))
    const got = await getRecord(LIKE, rkeyOf(like.uri))
    assert.equal(got.value.$type, LIKE)
    assert.deepEqual(got.value.subject, { uri: post.uri, cid: post.cid })
  })

  test('follow a DID', async () => {
    const subject = strangerDid('records.test follow')
    const follow = await advances('follow', () => agent.follow(subject))
    assert.match(follow.uri, new RegExp(`^at://${env.did}/${FOLLOW}/`))
    const got = await getRecord(FOLLOW, rkeyOf(follow.uri))
    assert.equal(got.value.subject, subject)
  })
})

describe('listRecords', () => {
  const mine = []

  before(async () => {
    for (let i = 0; i < 5; i++) {
      mine.push(await newPost(`listRecords ordering ${i}`))
    }
  })

  test('default order is newest first (rkey descending)', async () => {
    const { data } = await repo.listRecords({ repo: env.did, collection: POST, limit: 5 })
    assert.deepEqual(
      data.records.map((r) => r.uri),
      mine.map((p) => p.uri).reverse(),
    )
    for (const r of data.records) {
      assert.equal(typeof r.cid, 'string')
      assert.equal(r.value.$type, POST)
    }
  })

  test('reverse=true is oldest first', async () => {
    const all = await listAll(POST, { limit: 100, reverse: true })
    const rkeys = all.map((r) => rkeyOf(r.uri))
    assert.deepEqual(rkeys, [...rkeys].sort(), 'reverse listing must be ascending')
    assert.deepEqual(
      all.slice(-5).map((r) => r.uri),
      mine.map((p) => p.uri),
    )
  })

  test('limit/cursor pages cover the collection exactly once, in order', async () => {
    const whole = await listAll(POST, { limit: 100 })
    const paged = await listAll(POST, { limit: 2 })
    assert.deepEqual(
      paged.map((r) => r.uri),
      whole.map((r) => r.uri),
    )
    const rkeys = whole.map((r) => rkeyOf(r.uri))
    assert.deepEqual(rkeys, [...rkeys].sort().reverse(), 'default listing must be descending')
    assert.equal(new Set(rkeys).size, rkeys.length, 'duplicate records across pages')
    assert.ok(whole.length >= 5)

    const pagedReverse = await listAll(POST, { limit: 2, reverse: true })
    assert.deepEqual(
      pagedReverse.map((r) => r.uri),
      whole.map((r) => r.uri).reverse(),
    )
  })

  test('limit is honoured', async () => {
    const { data } = await repo.listRecords({ repo: env.did, collection: POST, limit: 1 })
    assert.equal(data.records.length, 1)
    assert.equal(typeof data.cursor, 'string')
  })

  test('an empty collection lists nothing', async () => {
    const { data } = await repo.listRecords({
      repo: env.did,
      collection: 'app.bsky.feed.repost',
    })
    assert.deepEqual(data.records, [])
    assert.equal(data.cursor, undefined)
  })
})

describe('putRecord', () => {
  test('creates then updates the profile (rkey self)', async () => {
    const first = await advances('put (create)', () =>
      repo.putRecord({
        repo: env.did,
        collection: PROFILE,
        rkey: 'self',
        record: { $type: PROFILE, displayName: 'Alice' },
      }),
    )
    assert.equal(first.data.uri, `at://${env.did}/${PROFILE}/self`)
    let got = await getRecord(PROFILE, 'self')
    assert.equal(got.value.displayName, 'Alice')
    assert.equal(got.cid, first.data.cid)

    const second = await advances('put (update)', () =>
      repo.putRecord({
        repo: env.did,
        collection: PROFILE,
        rkey: 'self',
        record: { $type: PROFILE, displayName: 'Alice B.', description: 'perch test' },
      }),
    )
    assert.notEqual(second.data.cid, first.data.cid)
    got = await getRecord(PROFILE, 'self')
    assert.equal(got.cid, second.data.cid)
    assert.equal(got.value.displayName, 'Alice B.')
    assert.equal(got.value.description, 'perch test')
  })

  test('swapRecord mismatch is refused with InvalidSwap', async () => {
    const current = await getRecord(PROFILE, 'self')
    const stale = (await newPost('not a profile')).cid
    await expectXrpcError(
      repo.putRecord({
        repo: env.did,
        collection: PROFILE,
        rkey: 'self',
        record: { $type: PROFILE, displayName: 'Mallory' },
        swapRecord: stale,
      }),
      { status: 400, error: 'InvalidSwap' },
    )
    const after = await getRecord(PROFILE, 'self')
    assert.equal(after.cid, current.cid)
  })

  test('the client upsertProfile flow works', async () => {
    await agent.upsertProfile((existing) => ({
      ...(existing ?? {}),
      description: 'updated through upsertProfile',
    }))
    const got = await getRecord(PROFILE, 'self')
    assert.equal(got.value.description, 'updated through upsertProfile')
    assert.equal(got.value.displayName, 'Alice B.')
  })
})

describe('deleteRecord', () => {
  test('removes the record', async () => {
    const post = await newPost('to be deleted')
    const rkey = rkeyOf(post.uri)
    await advances('delete', () =>
      repo.deleteRecord({ repo: env.did, collection: POST, rkey }),
    )
    await expectXrpcError(getRecord(POST, rkey), { status: 400, error: 'RecordNotFound' })
    const all = await listAll(POST, { limit: 100 })
    assert.equal(all.some((r) => r.uri === post.uri), false)
  })
})

describe('applyWrites', () => {
  test('create + update + delete in one commit', async () => {
    const toUpdate = await newPost('applyWrites: before update')
    const toDelete = await newPost('applyWrites: to delete')
    const createdAt = new Date().toISOString()

    const { data } = await advances('applyWrites', () =>
      repo.applyWrites({
        repo: env.did,
        writes: [
          {
            $type: 'com.atproto.repo.applyWrites#create',
            collection: POST,
            value: { $type: POST, text: 'applyWrites: created', createdAt },
          },
          {
            $type: 'com.atproto.repo.applyWrites#update',
            collection: POST,
            rkey: rkeyOf(toUpdate.uri),
            value: { $type: POST, text: 'applyWrites: after update', createdAt },
          },
          {
            $type: 'com.atproto.repo.applyWrites#delete',
            collection: POST,
            rkey: rkeyOf(toDelete.uri),
          },
        ],
      }),
    )

    // the reference returns the new commit and one result per write
    assert.equal(typeof data.commit?.cid, 'string', 'applyWrites output needs commit.cid')
    assert.equal(typeof data.commit?.rev, 'string', 'applyWrites output needs commit.rev')
    assert.deepEqual(await latestCommit(), { cid: data.commit.cid, rev: data.commit.rev })
    assert.equal(data.results?.length, 3, 'one result per write')
    assert.equal(data.results[0].$type, 'com.atproto.repo.applyWrites#createResult')
    assert.equal(data.results[1].$type, 'com.atproto.repo.applyWrites#updateResult')
    assert.equal(data.results[2].$type, 'com.atproto.repo.applyWrites#deleteResult')

    const created = await getRecord(POST, rkeyOf(data.results[0].uri))
    assert.equal(created.value.text, 'applyWrites: created')
    assert.equal(created.cid, data.results[0].cid)

    const updated = await getRecord(POST, rkeyOf(toUpdate.uri))
    assert.equal(updated.value.text, 'applyWrites: after update')
    assert.equal(updated.cid, data.results[1].cid)
    assert.notEqual(updated.cid, toUpdate.cid)

    await expectXrpcError(getRecord(POST, rkeyOf(toDelete.uri)), {
      status: 400,
      error: 'RecordNotFound',
    })
  })
})

describe('swapCommit', () => {
  test('a stale swapCommit is refused with InvalidSwap and changes nothing', async () => {
    const stale = await latestCommit()
    await newPost('moves the head past the stale commit')
    const head = await latestCommit()
    await expectXrpcError(
      repo.createRecord({
        repo: env.did,
        collection: POST,
        record: { $type: POST, text: 'must not land', createdAt: new Date().toISOString() },
        swapCommit: stale.cid,
      }),
      { status: 400, error: 'InvalidSwap' },
    )
    assert.deepEqual(await latestCommit(), head)
  })

  test('the current commit as swapCommit is accepted', async () => {
    const head = await latestCommit()
    const { data } = await repo.createRecord({
      repo: env.did,
      collection: POST,
      record: { $type: POST, text: 'swapCommit ok', createdAt: new Date().toISOString() },
      swapCommit: head.cid,
    })
    assert.match(data.uri, new RegExp(`^at://${env.did}/${POST}/`))
    if (data.commit) {
      assert.deepEqual(await latestCommit(), { cid: data.commit.cid, rev: data.commit.rev })
    }
  })
})

describe('reads', () => {
  test('getRecord of a missing record is RecordNotFound', async () => {
    await expectXrpcError(getRecord(POST, '3aaaaaaaaaaaa'), {
      status: 400,
      error: 'RecordNotFound',
    })
    await expectXrpcError(getRecord('com.example.nothing', 'self'), {
      status: 400,
      error: 'RecordNotFound',
    })
  })

  test('describeRepo lists the collections written', async () => {
    const { data } = await repo.describeRepo({ repo: env.did })
    assert.equal(data.did, env.did)
    assert.equal(data.handle, env.handle)
    assert.equal(data.didDoc.id, env.did)
    for (const c of [POST, LIKE, FOLLOW, PROFILE]) {
      assert.ok(data.collections.includes(c), `${c} missing from ${data.collections}`)
    }
    const byHandle = await repo.describeRepo({ repo: env.handle })
    assert.equal(byHandle.data.did, env.did)
  })

  test('getLatestCommit rev increases with every write', async () => {
    const revs = [(await latestCommit()).rev]
    for (let i = 0; i < 3; i++) {
      await newPost(`rev ${i}`)
      revs.push((await latestCommit()).rev)
    }
    for (let i = 1; i < revs.length; i++) {
      assert.ok(revs[i] > revs[i - 1], `rev went from ${revs[i - 1]} to ${revs[i]}`)
      assert.match(revs[i], /^[2-7a-z]{13}$/, 'rev is a TID')
    }
  })
})
