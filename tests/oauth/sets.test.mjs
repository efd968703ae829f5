// include: permission sets: the account publishes one (a com.atproto.lexicon.schema
// record), a DNS server on loopback says where (`_lexicon.alice.test`), and an app asking
// for `include:test.alice.permBasic` gets what the set grants inside its namespace, nothing
// outside it, with the set's title on the consent page.
import assert from 'node:assert/strict'
import { before, test } from 'node:test'
import { RawClient, env, loopbackClientId } from './raw.mjs'

const REDIRECT = 'http://127.0.0.1:4002/cb'
const APPVIEW = 'did:web:api.bsky.app#bsky_appview'
const SET = 'test.alice.permBasic'

const set = {
  lexicon: 1,
  id: SET,
  defs: {
    main: {
      type: 'permission-set',
      title: 'Alice notes',
      detail: 'Write notes and fetch things',
      permissions: [
        { type: 'permission', resource: 'repo', collection: ['test.alice.note'], action: ['create'] },
        // Outside the set's namespace: must not be granted.
        { type: 'permission', resource: 'repo', collection: ['app.bsky.feed.post'] },
        { type: 'permission', resource: 'rpc', lxm: ['test.alice.getThing'], inheritAud: true },
      ],
    },
  },
}

before(async () => {
  const login = await fetch(`${env.url}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: env.handle, password: env.password }),
  })
  const { accessJwt } = await login.json()
  const put = await fetch(`${env.url}/xrpc/com.atproto.repo.putRecord`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${accessJwt}` },
    body: JSON.stringify({
      repo: env.did,
      collection: 'com.atproto.lexicon.schema',
      rkey: SET,
      record: { $type: 'com.atproto.lexicon.schema', ...set },
    }),
  })
  assert.equal(put.status, 200, await put.text())
})

test('an included permission set grants its namespace and nothing else', async () => {
  const scope = `atproto include:${SET}?aud=${encodeURIComponent(APPVIEW)}`
  const c = new RawClient({ clientId: loopbackClientId(REDIRECT, scope), redirectUri: REDIRECT, scope })
  const t = await c.signIn()
  assert.equal(t.scope, scope, 'the token response names the scope as granted')
  assert.match(c.consentHtml, /Alice notes: Write notes and fetch things/)
  const token = t.access_token
  const note = await c.xrpc('POST', 'com.atproto.repo.createRecord', {
    token,
    body: { repo: env.did, collection: 'test.alice.note', record: { $type: 'test.alice.note', text: 'hi' } },
  })
  assert.equal(note.status, 200, JSON.stringify(note.body))
  const post = await c.xrpc('POST', 'com.atproto.repo.createRecord', {
    token,
    body: {
      repo: env.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'no', createdAt: new Date().toISOString() },
    },
  })
  assert.equal(post.status, 403)
  const sa = (aud, lxm) =>
    c.xrpc('GET', 'com.atproto.server.getServiceAuth', { token, query: `?aud=${encodeURIComponent(aud)}&lxm=${lxm}` })
  assert.equal((await sa(APPVIEW, 'test.alice.getThing')).status, 200, 'inheritAud takes the include\'s aud')
  assert.equal((await sa('did:web:other.example#svc', 'test.alice.getThing')).status, 403)
  // After a refresh (which expands the set again) the same holds.
  const r = await c.refresh(t.refresh_token)
  assert.equal(r.status, 200)
  const again = await c.xrpc('POST', 'com.atproto.repo.createRecord', {
    token: r.body.access_token,
    body: { repo: env.did, collection: 'test.alice.note', record: { $type: 'test.alice.note', text: 'again' } },
  })
  assert.equal(again.status, 200)
})

test('a permission set that cannot be resolved fails the request', async () => {
  const scope = 'atproto include:test.nobody.permMissing'
  const c = new RawClient({ clientId: loopbackClientId(REDIRECT, scope), redirectUri: REDIRECT, scope })
  const r = await c.par()
  assert.equal(r.status, 400)
  assert.equal(r.body.error, 'invalid_scope')
  assert.match(r.body.error_description, /test\.nobody\.permMissing/)
})
