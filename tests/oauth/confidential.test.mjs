// A confidential client: its metadata document (with its public key inline, or behind
// jwks_uri) served by this test on loopback, token requests authenticated with
// private_key_jwt (ES256). Assertions are checked for key, audience, age and replay.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import http from 'node:http'
import { after, before, test } from 'node:test'
import { RawClient, env, newKey, now, signJwt } from './raw.mjs'

const clientKey = newKey()
let server
let base

before(async () => {
  server = http.createServer((req, res) => {
    const jwks = { keys: [{ ...clientKey.jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] }
    const meta = (clientId, keys) => ({
      client_id: clientId,
      client_name: 'Confidential test app',
      client_uri: base,
      redirect_uris: [`${base}/cb`],
      scope: 'atproto transition:generic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'web',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      dpop_bound_access_tokens: true,
      ...keys,
    })
    res.setHeader('content-type', 'application/json')
    if (req.url === '/client-metadata.json') {
      res.end(JSON.stringify(meta(`${base}/client-metadata.json`, { jwks })))
    } else if (req.url === '/by-uri.json') {
      res.end(JSON.stringify(meta(`${base}/by-uri.json`, { jwks_uri: `${base}/jwks.json` })))
    } else if (req.url === '/jwks.json') {
      res.end(JSON.stringify(jwks))
    } else {
      res.statusCode = 404
      res.end('{}')
    }
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${server.address().port}`
})
after(() => server.close())

function assertion(clientId, { key = clientKey, over = {} } = {}) {
  const claims = { iss: clientId, sub: clientId, aud: env.url, iat: now(), exp: now() + 60, jti: crypto.randomUUID(), ...over }
  return {
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: signJwt(key, { alg: 'ES256', kid: 'k1', typ: 'JWT' }, claims),
  }
}

function confidential(path = '/client-metadata.json', opts) {
  const clientId = `${base}${path}`
  const c = new RawClient({ clientId, redirectUri: `${base}/cb` })
  c.assertion = () => assertion(clientId, opts)
  return c
}

test('a confidential client signs in and refreshes with private_key_jwt', async () => {
  const c = confidential()
  const t = await c.signIn()
  assert.equal(t.sub, env.did)
  assert.match(c.consentHtml ?? '', /Confidential test app/)
  assert.match(c.consentHtml ?? '', /127\.0\.0\.1/, 'the client host is shown beside its name')
  const s = await c.xrpc('GET', 'com.atproto.server.getSession', { token: t.access_token })
  assert.equal(s.status, 200)
  const r = await c.refresh(t.refresh_token)
  assert.equal(r.status, 200, JSON.stringify(r.body))
  // Keys behind jwks_uri work the same way.
  const u = confidential('/by-uri.json')
  const t2 = await u.signIn()
  assert.equal(t2.sub, env.did)
})

test('client assertions: missing, foreign key, wrong audience, stale, replayed', async () => {
  const c = confidential()
  const t = await c.signIn()
  const clientId = c.clientId
  const refresh = (fields) =>
    c.post('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: clientId, ...fields })
  const save = c.assertion
  c.assertion = undefined
  let r = await refresh({})
  assert.equal(r.status, 400)
  assert.equal(r.body.error, 'invalid_client')
  r = await refresh(assertion(clientId, { key: newKey() }))
  assert.equal(r.body.error, 'invalid_client', 'signed by a key not in the metadata')
  r = await refresh(assertion(clientId, { over: { aud: 'https://elsewhere.example' } }))
  assert.equal(r.body.error, 'invalid_client')
  r = await refresh(assertion(clientId, { over: { iat: now() - 600 } }))
  assert.equal(r.body.error, 'invalid_client')
  const once = assertion(clientId)
  r = await refresh(once)
  assert.equal(r.status, 200, JSON.stringify(r.body))
  const next = r.body.refresh_token
  r = await c.post('/oauth/token', { grant_type: 'refresh_token', refresh_token: next, client_id: clientId, ...once })
  assert.equal(r.status, 400)
  assert.equal(r.body.error, 'invalid_client')
  assert.match(r.body.error_description, /replay/)
  c.assertion = save
})
