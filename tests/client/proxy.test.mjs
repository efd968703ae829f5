// Service proxying: a stand-in AppView on loopback with its own did:web
// document receives calls that perch forwards (via the atproto-proxy
// header), and accepts perch's service-auth token with the official
// @atproto/xrpc-server verifier, resolving the account key with the official
// @atproto/identity resolver.
import assert from 'node:assert/strict'
import http from 'node:http'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import { env, login } from './lib.mjs'

const require = createRequire(import.meta.url)
const { verifyJwt } = require('@atproto/xrpc-server')
const { IdResolver } = require('@atproto/identity')

let server
let did
const verified = []

before(async () => {
  const resolver = new IdResolver({ plcUrl: env.plcUrl ?? undefined, timeout: 10000 })
  server = http.createServer(async (req, res) => {
    const port = server.address().port
    if (req.url === '/.well-known/did.json') {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({
        '@context': ['https://www.w3.org/ns/did/v1'],
        id: did,
        service: [{ id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: `http://localhost:${port}` }],
      }))
      return
    }
    const nsid = new URL(req.url, 'http://x').pathname.replace('/xrpc/', '')
    try {
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
      const payload = await verifyJwt(token, `${did}#bsky_appview`, nsid, (iss, force) =>
        resolver.did.resolveAtprotoKey(iss, force),
      )
      verified.push({ nsid, payload, query: new URL(req.url, 'http://x').search })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ feed: [], servedBy: 'stub' }))
    } catch (e) {
      res.statusCode = 401
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ error: e.error ?? 'AuthFailed', message: String(e.message) }))
    }
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  did = `did:web:localhost%3A${server.address().port}`
})

after(() => server?.close())

describe('atproto-proxy to a service with a did:web document', () => {
  test('forwards with a token the official verifier accepts', async () => {
    const agent = await login()
    const res = await fetch(`${env.url}/xrpc/app.bsky.feed.getTimeline?limit=3`, {
      headers: {
        authorization: `Bearer ${agent.session.accessJwt}`,
        'atproto-proxy': `${did}#bsky_appview`,
      },
    })
    const body = await res.json()
    assert.equal(res.status, 200, JSON.stringify(body))
    assert.equal(body.servedBy, 'stub')
    const v = verified.at(-1)
    assert.equal(v.nsid, 'app.bsky.feed.getTimeline')
    assert.equal(v.query, '?limit=3')
    assert.equal(v.payload.iss, env.did)
    assert.equal(v.payload.lxm, 'app.bsky.feed.getTimeline')
    assert.ok(v.payload.exp - v.payload.iat <= 60)
  })

  test('without a session nothing is forwarded', async () => {
    const n = verified.length
    const res = await fetch(`${env.url}/xrpc/app.bsky.feed.getTimeline`, {
      headers: { 'atproto-proxy': `${did}#bsky_appview` },
    })
    assert.equal(res.status, 401)
    assert.equal(verified.length, n)
  })

  test('a service id the document does not list is refused', async () => {
    const agent = await login()
    const res = await fetch(`${env.url}/xrpc/app.bsky.feed.getTimeline`, {
      headers: {
        authorization: `Bearer ${agent.session.accessJwt}`,
        'atproto-proxy': `${did}#nope`,
      },
    })
    assert.equal(res.status, 400)
    assert.equal(typeof (await res.json()).error, 'string')
  })
})
