// Error handling, with raw fetch (no client library in the way): every
// failure is a JSON XRPC error ({error, message}) with the right status, and
// none of them changes the repository.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import {
  assertXrpcError,
  env,
  latestCommit,
  strangerDid,
  xrpc,
} from './lib.mjs'

const POST = 'app.bsky.feed.post'
let token
let head

function post(text = 'should never be written') {
  return { $type: POST, text, createdAt: new Date().toISOString() }
}

function createRecord(body, opts = {}) {
  return xrpc('com.atproto.repo.createRecord', {
    method: 'POST',
    token: opts.noAuth ? undefined : token,
    ...(opts.raw ? { body: opts.raw, contentType: opts.contentType } : { json: body }),
  })
}

before(async () => {
  const res = await xrpc('com.atproto.server.createSession', {
    method: 'POST',
    json: { identifier: env.handle, password: env.password },
  })
  assert.equal(res.status, 200, `createSession: ${res.status} ${res.text}`)
  token = res.json.accessJwt
  head = await latestCommit()
})

describe('routing', () => {
  test('unknown method is 501 MethodNotImplemented', async () => {
    const get = await xrpc('com.example.perch.doesNotExist')
    assertXrpcError(get, 501, 'MethodNotImplemented', 'GET unknown')
    const postRes = await xrpc('com.example.perch.doesNotExist', {
      method: 'POST',
      json: {},
    })
    assertXrpcError(postRes, 501, 'MethodNotImplemented', 'POST unknown')
  })

  test('GET on a procedure is 400 InvalidRequest', async () => {
    const res = await xrpc('com.atproto.repo.createRecord', { token })
    assertXrpcError(res, 400, 'InvalidRequest', 'GET createRecord')
  })

  test('POST on a query is 400 InvalidRequest', async () => {
    const res = await xrpc('com.atproto.repo.describeRepo', {
      method: 'POST',
      params: { repo: env.did },
      json: {},
    })
    assertXrpcError(res, 400, 'InvalidRequest', 'POST describeRepo')
  })

  test('a missing required parameter is 400 InvalidRequest', async () => {
    const res = await xrpc('com.atproto.repo.getRecord', {
      params: { repo: env.did, collection: POST },
    })
    assertXrpcError(res, 400, 'InvalidRequest', 'getRecord without rkey')
  })
})

describe('request bodies', () => {
  test('malformed JSON is 400 InvalidRequest', async () => {
    const res = await createRecord(null, {
      raw: '{"repo": "' + env.did + '", "collection": ',
      contentType: 'application/json',
    })
    assertXrpcError(res, 400, 'InvalidRequest', 'malformed JSON')
  })

  test('wrong content type on createRecord is 400 or 415', async () => {
    const res = await createRecord(null, {
      raw: JSON.stringify({ repo: env.did, collection: POST, record: post() }),
      contentType: 'text/plain',
    })
    assertXrpcError(res, [400, 415], undefined, 'text/plain body')
  })

  test('a body over 1 MB on createRecord is 413', async () => {
    const big = 'x'.repeat(1536 * 1024)
    const res = await createRecord({
      repo: env.did,
      collection: POST,
      record: post(big),
    })
    assertXrpcError(res, 413, undefined, '1.5 MiB JSON body')
  })

  test('a body that is not an object of the right shape is 400 InvalidRequest', async () => {
    const res = await createRecord({ repo: env.did, collection: POST })
    assertXrpcError(res, 400, 'InvalidRequest', 'createRecord without record')
  })
})

describe('identifiers', () => {
  for (const rkey of ['bad rkey', '.', '..', 'a/b', 'x'.repeat(600)]) {
    test(`rkey ${JSON.stringify(rkey.length > 20 ? `${rkey.slice(0, 8)}…(${rkey.length})` : rkey)} is 400 InvalidRequest`, async () => {
      const res = await createRecord({
        repo: env.did,
        collection: POST,
        rkey,
        record: post(),
      })
      assertXrpcError(res, 400, 'InvalidRequest', `createRecord rkey=${rkey.slice(0, 20)}`)
    })
  }

  for (const collection of ['not a nsid', 'app.bsky', 'app..bsky.post']) {
    test(`collection ${JSON.stringify(collection)} is 400 InvalidRequest`, async () => {
      const res = await createRecord({ repo: env.did, collection, record: post() })
      assertXrpcError(res, 400, 'InvalidRequest', `createRecord collection=${collection}`)
    })
  }

  test('a bad NSID on getRecord (a query) is 400 InvalidRequest', async () => {
    const res = await xrpc('com.atproto.repo.getRecord', {
      params: { repo: env.did, collection: 'not a nsid', rkey: 'self' },
    })
    assertXrpcError(res, 400, 'InvalidRequest', 'getRecord bad collection')
  })

  test('a bad cursor on listRecords is 400', async () => {
    const res = await xrpc('com.atproto.repo.listRecords', {
      params: { repo: env.did, collection: POST, cursor: 'not a cursor!/%' },
    })
    assertXrpcError(res, 400, undefined, 'listRecords bad cursor')
  })
})

describe('authorization', () => {
  test('createRecord without auth is 401', async () => {
    const res = await createRecord(
      { repo: env.did, collection: POST, record: post() },
      { noAuth: true },
    )
    // The reference PDS names this error "AuthMissing" (message
    // "Authentication Required"); "AuthenticationRequired" is the generic
    // 401 name. Clients key on the status.
    assertXrpcError(res, 401, ['AuthenticationRequired', 'AuthMissing'], 'no auth')
  })

  test('createRecord with a garbage token is refused', async () => {
    const res = await xrpc('com.atproto.repo.createRecord', {
      method: 'POST',
      token: 'not.a.jwt',
      json: { repo: env.did, collection: POST, record: post() },
    })
    // reference: 400 InvalidToken "Token could not be verified"
    assertXrpcError(res, [400, 401], undefined, 'garbage token')
  })

  test("writing to another DID's repo is refused", async () => {
    const res = await createRecord({
      repo: strangerDid('errors.test other repo'),
      collection: POST,
      record: post(),
    })
    assertXrpcError(res, [400, 401, 403], undefined, 'other repo')
  })

  test("deleting from another DID's repo is refused", async () => {
    const res = await xrpc('com.atproto.repo.deleteRecord', {
      method: 'POST',
      token,
      json: { repo: strangerDid('errors.test other repo'), collection: POST, rkey: '3aaaaaaaaaaaa' },
    })
    assertXrpcError(res, [400, 401, 403], undefined, 'delete other repo')
  })
})

// Runs last (tests run in file order): none of the failed requests above may
// have touched the repository.
test('none of the refused requests changed the repository', async () => {
  assert.deepEqual(await latestCommit(), head, 'a failed request changed the repo')
})
