// The OAuth protocol against the live server, one rule at a time, with a hand-made client
// (raw.mjs): discovery, PAR's checks, PKCE, single-use codes and refresh tokens (a reuse
// revokes the grant), DPoP on the API (URL, method, freshness, replay, nonce, the token's
// hash, the token's key), scopes enforced, revocation, remembered consent, the owner's
// `perch account apps`, and the outbound guard on client metadata URLs.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import net from 'node:net'
import { test } from 'node:test'
import { RawClient, env, loopbackClientId, now, proof, ath } from './raw.mjs'

const REDIRECT = 'http://127.0.0.1:4001/cb'
const newClient = (scope = 'atproto transition:generic') =>
  new RawClient({ clientId: loopbackClientId(REDIRECT, scope), redirectUri: REDIRECT, scope })

const post = {
  repo: env.did,
  collection: 'app.bsky.feed.post',
  record: { $type: 'app.bsky.feed.post', text: 'hello from a raw client', createdAt: new Date().toISOString() },
}

test('discovery documents name this server as its own authorization server', async () => {
  const pr = await (await fetch(`${env.url}/.well-known/oauth-protected-resource`)).json()
  assert.equal(pr.resource, env.url)
  assert.deepEqual(pr.authorization_servers, [env.url])
  const as = await (await fetch(`${env.url}/.well-known/oauth-authorization-server`)).json()
  assert.equal(as.issuer, env.url)
  assert.equal(as.require_pushed_authorization_requests, true)
  assert.equal(as.authorization_response_iss_parameter_supported, true)
  assert.equal(as.client_id_metadata_document_supported, true)
  assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'))
  assert.deepEqual(as.token_endpoint_auth_methods_supported, ['none', 'private_key_jwt'])
  assert.deepEqual(as.code_challenge_methods_supported, ['S256'])
  for (const s of ['atproto', 'transition:generic', 'transition:chat.bsky', 'transition:email']) {
    assert.ok(as.scopes_supported.includes(s), s)
  }
  assert.equal(as.pushed_authorization_request_endpoint, `${env.url}/oauth/par`)
})

test('PAR: DPoP and its nonce are required', async () => {
  const c = newClient()
  const none = await c.post('/oauth/par', { client_id: c.clientId }, { noProof: true })
  assert.equal(none.status, 400)
  assert.equal(none.body.error, 'invalid_dpop_proof')
  const noNonce = await c.par({}, {})
  assert.equal(noNonce.status, 201, 'a client that retries with the nonce gets through')
  const bare = await c.post('/oauth/par', { client_id: c.clientId }, { noNonce: true })
  assert.equal(bare.status, 400)
  assert.equal(bare.body.error, 'use_dpop_nonce')
  assert.ok(bare.headers.get('dpop-nonce'), 'the nonce comes with the error')
})

test('PAR: PKCE S256 is required, a challenge is never accepted twice', async () => {
  const c = newClient()
  let r = await c.par({ code_challenge: undefined })
  assert.equal(r.status, 400)
  assert.match(r.body.error_description, /code_challenge/)
  r = await c.par({ code_challenge_method: 'plain' })
  assert.equal(r.status, 400)
  assert.match(r.body.error_description, /S256/)
  r = await c.par({ code_challenge: 'short' })
  assert.equal(r.status, 400)
  r = await c.par()
  assert.equal(r.status, 201)
  assert.match(r.body.request_uri, /^urn:ietf:params:oauth:request_uri:/)
  assert.equal(r.body.expires_in, 300)
  const again = await c.post('/oauth/par', {
    client_id: c.clientId,
    response_type: 'code',
    code_challenge: c.pkce.challenge,
    code_challenge_method: 'S256',
    state: 'x',
    redirect_uri: REDIRECT,
    scope: c.scope,
  })
  assert.equal(again.status, 400)
  assert.match(again.body.error_description, /used before/)
})

test('PAR: scopes beyond the client, unknown redirect URIs and others\' login hints are refused', async () => {
  const c = newClient('atproto repo:app.bsky.feed.like')
  let r = await c.par({ scope: 'atproto transition:generic' })
  assert.equal(r.status, 400)
  assert.equal(r.body.error, 'invalid_scope')
  r = await c.par({ scope: 'transition:generic' })
  assert.equal(r.body.error, 'invalid_scope')
  r = await c.par({ redirect_uri: 'http://127.0.0.1:4001/elsewhere' })
  assert.equal(r.status, 400)
  assert.match(r.body.error_description, /redirect_uri/)
  r = await c.par({ login_hint: 'bob.example.com' })
  assert.equal(r.status, 400)
  assert.match(r.body.error_description, /login_hint/)
})

test('token: wrong verifier refused; a code works once, and its reuse revokes the grant', async () => {
  const c = newClient()
  const par = await c.par()
  const q = await c.approve(par.body.request_uri)
  assert.equal(q.iss, env.url)
  assert.equal(q.state, c.state)
  const verifier = c.pkce.verifier
  c.pkce.verifier = 'x'.repeat(43)
  let t = await c.exchange(q.code)
  assert.equal(t.status, 400)
  assert.equal(t.body.error, 'invalid_grant')
  c.pkce.verifier = verifier
  t = await c.exchange(q.code)
  assert.equal(t.status, 200, JSON.stringify(t.body))
  assert.equal(t.body.token_type, 'DPoP')
  assert.equal(t.body.sub, env.did)
  assert.equal(t.body.scope, 'atproto transition:generic')
  assert.ok(t.body.expires_in > 0 && t.body.expires_in <= 1800)
  const ok = await c.xrpc('GET', 'com.atproto.server.getSession', { token: t.body.access_token })
  assert.equal(ok.status, 200)
  const reused = await c.exchange(q.code)
  assert.equal(reused.status, 400)
  assert.equal(reused.body.error, 'invalid_grant')
  const after = await c.xrpc('GET', 'com.atproto.server.getSession', { token: t.body.access_token })
  assert.equal(after.status, 401, 'the grant the code made is gone')
  const refresh = await c.refresh(t.body.refresh_token)
  assert.equal(refresh.body.error, 'invalid_grant')
})

test('token: the code must be exchanged with the DPoP key of the pushed request', async () => {
  const c = newClient()
  const par = await c.par()
  const q = await c.approve(par.body.request_uri)
  const thief = newClient()
  thief.pkce = c.pkce
  const t = await thief.exchange(q.code)
  assert.equal(t.status, 400)
  assert.equal(t.body.error, 'invalid_dpop_proof')
})

test('refresh: rotates, binds to the DPoP key, and a reused refresh token ends the grant', async () => {
  const c = newClient()
  const first = await c.signIn()
  const other = newClient()
  const wrongKey = await other.refresh(first.refresh_token)
  assert.equal(wrongKey.status, 400)
  const second = await c.refresh(first.refresh_token)
  assert.equal(second.status, 200, JSON.stringify(second.body))
  assert.notEqual(second.body.refresh_token, first.refresh_token)
  assert.notEqual(second.body.access_token, first.access_token)
  const works = await c.xrpc('GET', 'com.atproto.server.getSession', { token: second.body.access_token })
  assert.equal(works.status, 200)
  // The old one again: a replay; the whole grant ends.
  const replay = await c.refresh(first.refresh_token)
  assert.equal(replay.status, 400)
  assert.equal(replay.body.error, 'invalid_grant')
  const gone = await c.xrpc('GET', 'com.atproto.server.getSession', { token: second.body.access_token })
  assert.equal(gone.status, 401)
  const third = await c.refresh(second.body.refresh_token)
  assert.equal(third.status, 400)
})

test('API: DPoP proofs are checked (URL, method, age, replay, nonce, token hash, key)', async () => {
  const c = newClient()
  const t = await c.signIn()
  const token = t.access_token
  const call = (opts) => c.xrpc('GET', 'com.atproto.server.getSession', { token, ...opts })
  assert.equal((await call()).status, 200)
  const expectRefused = async (opts, what, code = 'invalid_dpop_proof') => {
    const r = await call({ retry: false, ...opts })
    assert.equal(r.status, 401, what)
    assert.match(r.headers.get('www-authenticate') ?? '', new RegExp(`error="${code}"`), what)
  }
  await expectRefused({ proofOver: { htu: `${env.url}/xrpc/com.atproto.repo.createRecord` } }, 'another URL')
  await expectRefused({ proofOver: { htm: 'POST' } }, 'another method')
  await expectRefused({ proofOver: { iat: now() - 3600 } }, 'a stale iat')
  await expectRefused({ proofOver: { ath: ath('another token') } }, 'another token')
  await expectRefused({ proofOver: { nonce: 'not-a-nonce' } }, 'a wrong nonce', 'use_dpop_nonce')
  await expectRefused({ proofOver: { nonce: undefined } }, 'no nonce', 'use_dpop_nonce')
  const jti = `fixed-${Math.random()}`
  assert.equal((await call({ proofOver: { jti } })).status, 200)
  await expectRefused({ proofOver: { jti } }, 'a replayed jti')
  // Without a proof, or as a Bearer token.
  const noProof = await call({ noProof: true, retry: false })
  assert.equal(noProof.status, 401)
  const bearer = await call({ scheme: 'Bearer', noProof: true, retry: false })
  assert.ok([400, 401].includes(bearer.status), `bearer: ${bearer.status}`)
  assert.equal(bearer.body.error, 'InvalidToken')
  // A proof by another key than the token's.
  const stranger = newClient()
  stranger.nonce = c.nonce
  const r = await stranger.xrpc('GET', 'com.atproto.server.getSession', { token })
  assert.equal(r.status, 401)
  // Every answer to a DPoP request carries a nonce.
  assert.ok((await call()).headers.get('dpop-nonce'))
})

test('scopes: writes only to granted collections, rpc only to granted audiences, no account management', async () => {
  const c = newClient(
    'atproto repo:app.bsky.feed.like?action=create rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview blob:image/*',
  )
  const t = await c.signIn()
  const token = t.access_token
  const like = {
    repo: env.did,
    collection: 'app.bsky.feed.like',
    record: {
      $type: 'app.bsky.feed.like',
      subject: { uri: `at://${env.did}/app.bsky.feed.post/3jzfcijpj2z2a`, cid: 'bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a' },
      createdAt: new Date().toISOString(),
    },
  }
  const created = await c.xrpc('POST', 'com.atproto.repo.createRecord', { token, body: like })
  assert.equal(created.status, 200, JSON.stringify(created.body))
  const rkey = created.body.uri.split('/').pop()
  const del = await c.xrpc('POST', 'com.atproto.repo.deleteRecord', {
    token,
    body: { repo: env.did, collection: 'app.bsky.feed.like', rkey },
  })
  assert.equal(del.status, 403, 'create only: no delete')
  const p = await c.xrpc('POST', 'com.atproto.repo.createRecord', { token, body: post })
  assert.equal(p.status, 403)
  assert.match(p.body.message, /repo:app\.bsky\.feed\.post/)
  const aw = await c.xrpc('POST', 'com.atproto.repo.applyWrites', {
    token,
    body: {
      repo: env.did,
      writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: post.record }],
    },
  })
  assert.equal(aw.status, 403)
  // Service auth for the granted method and audience only.
  const sa = (aud, lxm) =>
    c.xrpc('GET', 'com.atproto.server.getServiceAuth', { token, query: `?aud=${encodeURIComponent(aud)}&lxm=${lxm}` })
  assert.equal((await sa('did:web:api.bsky.app#bsky_appview', 'app.bsky.feed.getTimeline')).status, 200)
  assert.equal((await sa('did:web:evil.example#bsky_appview', 'app.bsky.feed.getTimeline')).status, 403)
  assert.equal((await sa('did:web:api.bsky.app#bsky_appview', 'app.bsky.feed.getAuthorFeed')).status, 403)
  // Blobs by type.
  const upload = async (type) => {
    const res = await fetch(`${env.url}/xrpc/com.atproto.repo.uploadBlob`, {
      method: 'POST',
      headers: {
        authorization: `DPoP ${token}`,
        dpop: proof(c.key, 'POST', `${env.url}/xrpc/com.atproto.repo.uploadBlob`, { nonce: c.nonce, ath: ath(token) }),
        'content-type': type,
      },
      body: Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;'),
    })
    return res.status
  }
  assert.equal(await upload('image/gif'), 200)
  assert.equal(await upload('video/mp4'), 403)
  // Account management is not for apps without the permission.
  const appPw = await c.xrpc('POST', 'com.atproto.server.createAppPassword', { token, body: { name: 'x' } })
  assert.equal(appPw.status, 403)
  const deact = await c.xrpc('POST', 'com.atproto.server.deactivateAccount', { token, body: {} })
  assert.equal(deact.status, 403)
  const handle = await c.xrpc('POST', 'com.atproto.identity.updateHandle', { token, body: { handle: env.handle } })
  assert.equal(handle.status, 403)
  const s = await c.xrpc('GET', 'com.atproto.server.getSession', { token })
  assert.equal(s.status, 200)
  assert.equal(s.body.email, undefined)
})

test('revocation: /oauth/revoke and `perch account apps revoke` end a grant at once', async () => {
  const c = newClient()
  const t = await c.signIn()
  assert.equal((await c.xrpc('GET', 'com.atproto.server.getSession', { token: t.access_token })).status, 200)
  const r = await c.post('/oauth/revoke', { token: t.refresh_token })
  assert.equal(r.status, 200)
  assert.equal((await c.xrpc('GET', 'com.atproto.server.getSession', { token: t.access_token })).status, 401)

  const d = newClient('atproto repo:app.bsky.feed.post')
  const t2 = await d.signIn()
  const perch = (...args) =>
    execFileSync(process.env.PERCH_BIN, [...args, '--dev', '--data-dir', process.env.PERCH_DATA_DIR], {
      env: { ...process.env, PERCH_ALLOW_LOOPBACK: '1', NO_COLOR: '1' },
      encoding: 'utf8',
    })
  const listed = perch('account', 'apps')
  assert.match(listed, /scope:\s+atproto repo:app\.bsky\.feed\.post/)
  const id = listed
    .split('\n')
    .find((l, i, all) => /^grt-/.test(l) && /repo:app\.bsky\.feed\.post/.test(all[i + 2] ?? ''))
    ?.split(/\s+/)[0]
  assert.ok(id, listed)
  assert.match(perch('account', 'apps', 'revoke', id), /signed out/)
  const refused = await d.xrpc('POST', 'com.atproto.repo.createRecord', { token: t2.access_token, body: post })
  assert.equal(refused.status, 401)
  assert.doesNotMatch(perch('account', 'apps'), new RegExp(id))

  // A password change signs every app out (then the password is put back).
  const e = newClient('atproto repo:app.bsky.feed.threadgate')
  const t3 = await e.signIn()
  assert.equal((await e.xrpc('GET', 'com.atproto.server.getSession', { token: t3.access_token })).status, 200)
  const setPassword = (pw) =>
    execFileSync(
      process.env.PERCH_BIN,
      ['account', 'set-password', '--password-stdin', '--dev', '--data-dir', process.env.PERCH_DATA_DIR],
      {
        env: { ...process.env, PERCH_PASSWORD: '', PERCH_ALLOW_LOOPBACK: '1', NO_COLOR: '1' },
        input: `${pw}\n`,
        encoding: 'utf8',
      },
    )
  setPassword(`${env.password}-changed`)
  try {
    assert.equal((await e.xrpc('GET', 'com.atproto.server.getSession', { token: t3.access_token })).status, 401)
    assert.equal((await e.refresh(t3.refresh_token)).body.error, 'invalid_grant')
  } finally {
    setPassword(env.password)
  }
})

test('consent is remembered per app and scope; denial sends the app an error', async () => {
  const c = newClient('atproto repo:app.bsky.feed.repost')
  await c.signIn()
  // The same app and scope again, in a new browser: the password, then no question.
  const par = await c.par()
  const q = await c.approve(par.body.request_uri)
  assert.ok(q.code, 'remembered: straight back to the app with a code')
  const d = newClient('atproto repo:app.bsky.graph.block')
  const par2 = await d.par()
  const denied = await d.approve(par2.body.request_uri, { decision: 'deny' })
  assert.equal(denied.error, 'access_denied')
  assert.equal(denied.state, d.state)
  assert.equal(denied.iss, env.url)
  // A wrong password on the page: no code, the page says why.
  const e = newClient('atproto repo:app.bsky.graph.listitem')
  const par3 = await e.par()
  const wrong = await e.approve(par3.body.request_uri, { password: 'wrong password' })
  assert.equal(wrong.signInStatus, 401)
  assert.match(wrong.html, /Wrong password/)
})

test('client metadata: private addresses refused without a connection; over-large documents refused', async () => {
  const guarded = process.env.PERCH_GUARDED_URL
  // Something listening where the client_id points (if this user may listen on 443).
  let connections = 0
  const server = net.createServer((s) => {
    connections++
    s.destroy()
  })
  const listening = await new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(443, '127.0.0.1', () => resolve(true))
  })
  const c = new RawClient({ clientId: 'https://localhost/client-metadata.json', redirectUri: 'https://localhost/cb' })
  const saved = env.url
  env.url = guarded
  try {
    const r = await c.par()
    assert.equal(r.status, 400)
    assert.equal(r.body.error, 'invalid_client_metadata')
    assert.match(r.body.error_description, /private or loopback/)
    const ip = new RawClient({ clientId: 'https://127.0.0.1/client-metadata.json', redirectUri: 'https://127.0.0.1/cb' })
    const r2 = await ip.par()
    assert.equal(r2.status, 400)
    assert.match(r2.body.error_description, /IP address/)
  } finally {
    env.url = saved
    server.close()
  }
  if (listening) assert.equal(connections, 0, 'no connection was made')

  // An over-large document, served on loopback to the test server (which allows loopback).
  const big = await serve((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ client_id: 'x', padding: 'x'.repeat(200 * 1024) }))
  })
  const clientId = `http://127.0.0.1:${big.port}/client-metadata.json`
  const b = new RawClient({ clientId, redirectUri: `http://127.0.0.1:${big.port}/cb` })
  const r3 = await b.par()
  big.close()
  assert.equal(r3.status, 400)
  assert.equal(r3.body.error, 'invalid_client_metadata')
  assert.match(r3.body.error_description, /too large/)
})

async function serve(handler) {
  const http = await import('node:http')
  const s = http.createServer(handler)
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  return { port: s.address().port, close: () => s.close() }
}

test('the endpoints anyone can call are rate-limited per address', async () => {
  // The guarded server (no PERCH_ALLOW_LOOPBACK) counts loopback callers like any other.
  const saved = env.url
  env.url = process.env.PERCH_GUARDED_URL
  try {
    const statuses = []
    for (let i = 0; i < 40; i++) {
      const r = await fetch(`${env.url}/oauth/par`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'client_id=http%3A%2F%2Flocalhost',
      })
      statuses.push(r.status)
      if (r.status === 429) {
        assert.ok(Number(r.headers.get('retry-after')) >= 1)
        assert.equal((await r.json()).error, 'rate_limited')
        break
      }
    }
    assert.equal(statuses.at(-1), 429, `statuses: ${statuses}`)
    assert.ok(statuses.length > 20, 'a burst is allowed first')
  } finally {
    env.url = saved
  }
})

