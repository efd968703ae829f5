// Blobs: upload through the official client, embed, and fetch back raw.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import {
  assertXrpcError,
  blobCid,
  env,
  login,
  makePng,
  rkeyOf,
  xrpc,
} from './lib.mjs'

let agent

before(async () => {
  agent = await login()
})

async function listAllBlobs() {
  const cids = []
  let cursor
  for (let page = 0; page < 1000; page++) {
    const { data } = await agent.com.atproto.sync.listBlobs({
      did: env.did,
      limit: 100,
      cursor,
    })
    cids.push(...data.cids)
    if (!data.cursor || data.cids.length === 0) return cids
    cursor = data.cursor
  }
  throw new Error('listBlobs pagination did not end')
}

describe('an image post', () => {
  const png = makePng(12, 9, 7)
  const expectedCid = blobCid(png)
  let blob

  test('uploadBlob returns a blob ref for the exact bytes', async () => {
    const { data } = await agent.uploadBlob(png, { encoding: 'image/png' })
    blob = data.blob
    assert.equal(blob.ref.toString(), expectedCid, 'blob CID must be CIDv1 raw sha2-256 of the bytes')
    assert.equal(blob.mimeType, 'image/png')
    assert.equal(blob.size, png.length)
  })

  let post
  test('a post can embed it (app.bsky.embed.images)', async () => {
    post = await agent.post({
      text: 'a very small picture',
      createdAt: new Date().toISOString(),
      embed: {
        $type: 'app.bsky.embed.images',
        images: [{ image: blob, alt: 'a 12x9 gradient', aspectRatio: { width: 12, height: 9 } }],
      },
    })
    const { data } = await agent.com.atproto.repo.getRecord({
      repo: env.did,
      collection: 'app.bsky.feed.post',
      rkey: rkeyOf(post.uri),
    })
    const image = data.value.embed.images[0].image
    assert.equal(image.ref.toString(), expectedCid)
    assert.equal(image.mimeType, 'image/png')
    assert.equal(image.size, png.length)
  })

  test('sync.getBlob returns identical bytes with safe headers', async () => {
    const res = await xrpc('com.atproto.sync.getBlob', {
      params: { did: env.did, cid: expectedCid },
    })
    assert.equal(res.status, 200, res.text.slice(0, 300))
    assert.deepEqual(res.bytes, png, 'getBlob bytes differ from the upload')
    const csp = res.headers.get('content-security-policy') ?? ''
    assert.ok(csp.includes("default-src 'none'"), `content-security-policy: "${csp}"`)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    assert.match(res.headers.get('content-type') ?? '', /^image\/png/)
  })

  test('sync.listBlobs includes it', async () => {
    const cids = await listAllBlobs()
    assert.ok(cids.includes(expectedCid), `${expectedCid} not in ${cids}`)
  })

  test('getBlob of an unknown blob is an XRPC error', async () => {
    const res = await xrpc('com.atproto.sync.getBlob', {
      params: { did: env.did, cid: blobCid(makePng(3, 3, 99)) },
    })
    // reference: 400 BlobNotFound (older: InvalidRequest "blob not found")
    assertXrpcError(res, [400, 404], undefined, 'getBlob unknown')
  })
})

describe('blob size limit', () => {
  // run.sh starts perch with PERCH_BLOB_LIMIT and passes the same value here
  const limit = env.blobLimit

  async function upload(size) {
    const { accessJwt } = agent.session
    const bytes = new Uint8Array(size)
    for (let i = 0; i < size; i++) bytes[i] = (i * 7 + size) & 0xff
    return xrpc('com.atproto.repo.uploadBlob', {
      method: 'POST',
      token: accessJwt,
      contentType: 'application/octet-stream',
      body: bytes,
    })
  }

  test('a blob of exactly the limit is accepted', async () => {
    const res = await upload(limit)
    assert.equal(res.status, 200, res.text.slice(0, 300))
    assert.equal(res.json.blob.size, limit)
  })

  test('one byte over the limit is 413 PayloadTooLarge', async () => {
    const res = await upload(limit + 1)
    assertXrpcError(res, 413, 'PayloadTooLarge', 'uploadBlob over the limit')
  })
})
