// Lexicon validation (issue 16), through the official @atproto/api client: records of
// known types come back `valid`, invalid ones are refused with 400 InvalidRequest and
// leave the repo head where it was, `validate: false` and unknown collections behave as
// at the reference PDS, and blob references must tell the truth about the stored blob.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import {
  env,
  expectXrpcError,
  latestCommit,
  login,
  makePng,
  strangerDid,
} from './lib.mjs'

let agent
let repo

before(async () => {
  agent = await login()
  repo = agent.com.atproto.repo
})

const now = () => new Date().toISOString()

async function create(collection, record, extra = {}) {
  const { data } = await repo.createRecord({
    repo: env.did,
    collection,
    record: { $type: collection, ...record },
    ...extra,
  })
  return data
}

/** The write fails with 400 InvalidRequest (message containing `words`) and the head stays. */
async function refused(label, write, words, error = 'InvalidRequest') {
  const head = await latestCommit()
  const err = await expectXrpcError(write(), { status: 400, error })
  if (words) {
    assert.ok(err.message.includes(words), `${label}: ${err.message} lacks ${words}`)
  }
  assert.deepEqual(await latestCommit(), head, `${label}: the repo head moved`)
}

describe('records of known types', () => {
  test('valid records of the common types are reported valid', async () => {
    const post = await create('app.bsky.feed.post', { text: 'valid', createdAt: now(), langs: ['en'] })
    assert.equal(post.validationStatus, 'valid')
    const strong = { uri: post.uri, cid: post.cid }
    const cases = [
      ['app.bsky.feed.like', { subject: strong, createdAt: now() }],
      ['app.bsky.feed.repost', { subject: strong, createdAt: now() }],
      ['app.bsky.graph.follow', { subject: strangerDid('followee'), createdAt: now() }],
      ['app.bsky.graph.list', { name: 'friends', purpose: 'app.bsky.graph.defs#curatelist', createdAt: now() }],
      ['app.bsky.feed.threadgate', {
        post: post.uri,
        createdAt: now(),
        allow: [{ $type: 'app.bsky.feed.threadgate#mentionRule' }],
      }, { rkey: post.uri.split('/').pop() }],
    ]
    for (const [collection, record, extra] of cases) {
      const out = await create(collection, record, extra)
      assert.equal(out.validationStatus, 'valid', collection)
    }
    const { data: profile } = await repo.putRecord({
      repo: env.did,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
      record: { $type: 'app.bsky.actor.profile', displayName: 'Valid Alice' },
    })
    assert.equal(profile.validationStatus, 'valid')
    // The client's own helper says so too.
    const viaHelper = await agent.post({ text: 'via agent.post', createdAt: now() })
    assert.ok(viaHelper.uri)
  })

  test('the reviewed invalid records are refused and change nothing', async () => {
    const post = (r) => () => repo.createRecord({
      repo: env.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', createdAt: now(), text: 'x', ...r },
    })
    await refused('text 42', post({ text: 42 }), 'Record/text must be a string')
    await refused('no text', () => repo.createRecord({
      repo: env.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', createdAt: now() },
    }), 'Record must have the property "text"')
    await refused('400 graphemes', post({ text: 'é'.repeat(400) }), 'must not be longer than 300 graphemes')
    await refused('createdAt yesterday', post({ createdAt: 'yesterday' }), 'Record/createdAt')
    await refused('like of "nope"', () => create('app.bsky.feed.like', { subject: 'nope', createdAt: now() }),
      'Record/subject must be an object')
    await refused('profile at rkey foo', () => repo.putRecord({
      repo: env.did,
      collection: 'app.bsky.actor.profile',
      rkey: 'foo',
      record: { $type: 'app.bsky.actor.profile', displayName: 'x' },
    }), 'Invalid record key')
    // One invalid op fails the whole applyWrites.
    await refused('applyWrites with one bad op', () => repo.applyWrites({
      repo: env.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post',
          value: { $type: 'app.bsky.feed.post', text: 'fine', createdAt: now() } },
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post',
          value: { $type: 'app.bsky.feed.post', text: 7, createdAt: now() } },
      ],
    }), 'Record/text must be a string')
  })

  test('validate:false skips validation and reports no status; true needs a known type', async () => {
    const skipped = await create('app.bsky.feed.post', { text: 42, createdAt: 'yesterday' }, { validate: false })
    assert.equal(skipped.validationStatus, undefined)
    const unknown = await create('com.example.perch.thing', { anything: [1, 2, 3] })
    assert.equal(unknown.validationStatus, 'unknown')
    await refused('validate:true on an unknown type',
      () => create('com.example.perch.thing', { anything: 1 }, { validate: true }),
      'Unknown lexicon type')
    const { data } = await repo.applyWrites({
      repo: env.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post',
          value: { $type: 'app.bsky.feed.post', text: 'a', createdAt: now() } },
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'com.example.perch.thing',
          value: { $type: 'com.example.perch.thing', x: 1 } },
      ],
    })
    assert.deepEqual(data.results.map((r) => r.validationStatus), ['valid', 'unknown'])
  })
})

describe('blob references', () => {
  test('a reference must state the stored type and size, within the field limits', async () => {
    const png = makePng(4, 4, 77)
    const { data } = await repo.uploadBlob(png, { encoding: 'image/png' })
    const blob = data.blob.toJSON()
    assert.equal(blob.mimeType, 'image/png')
    const withImage = (image) => () => repo.createRecord({
      repo: env.did,
      collection: 'app.bsky.feed.post',
      record: {
        $type: 'app.bsky.feed.post',
        text: 'pic',
        createdAt: now(),
        embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image }] },
      },
    })
    await refused('claims video/mp4', withImage({ ...blob, mimeType: 'video/mp4' }), 'image/*')
    await refused('claims 999,999 bytes', withImage({ ...blob, size: 999_999 }),
      'Referenced Size does not match stored blob', 'InvalidSize')
    await refused('claims 3,000,000 bytes', withImage({ ...blob, size: 3_000_000 }), 'too large')
    // A type the field accepts but that is not what was stored.
    await refused('claims image/jpeg', withImage({ ...blob, mimeType: 'image/jpeg' }),
      'Referenced Mimetype does not match stored blob', 'InvalidMimeType')
    const ok = await withImage(blob)()
    assert.equal(ok.data.validationStatus, 'valid')
  })
})
