// The official client end to end: @atproto/oauth-client-node (a loopback development
// client) against the running perch, its authorization URL opened in headless Chromium,
// the password typed, the app approved, the redirect caught; then with the DPoP-bound
// session: getSession, createRecord, getRecord, a forced refresh, sign-out, and a call
// with the signed-out session's token refused by the server.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Agent } from '@atproto/api'
import { NodeOAuthClient } from '@atproto/oauth-client-node'
import { SHOTS, answerCallbacks, launchBrowser } from './browser.mjs'
import { RawClient, env } from './raw.mjs'
import crypto from 'node:crypto'

const APP = 'http://127.0.0.1:4000'
const REDIRECT = `${APP}/callback`

let browser
before(async () => {
  browser = await launchBrowser()
})
after(async () => {
  await browser?.close()
})

function memoryStore() {
  const m = new Map()
  return {
    map: m,
    async get(k) {
      return m.get(k)
    },
    async set(k, v) {
      m.set(k, v)
    },
    async del(k) {
      m.delete(k)
    },
  }
}

function client(scope) {
  const sessionStore = memoryStore()
  const c = new NodeOAuthClient({
    clientMetadata: {
      client_id: `http://localhost?redirect_uri=${encodeURIComponent(REDIRECT)}&scope=${encodeURIComponent(scope)}`,
      redirect_uris: [REDIRECT],
      scope,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      dpop_bound_access_tokens: true,
    },
    stateStore: memoryStore(),
    sessionStore,
    handleResolver: env.url,
    plcDirectoryUrl: process.env.PLC_URL,
    allowHttp: true,
  })
  return { c, sessionStore }
}

/** Opens `url` in a fresh page, runs `steps`, and resolves with the callback URL the
 * server redirected the browser to (answered here, never reaching a real server). */
async function inBrowser(url, steps) {
  const page = await browser.newPage()
  const { sentBack } = await answerCallbacks(page, APP)
  await page.goto(url, { waitUntil: 'networkidle0' })
  await steps(page)
  await page.close()
  const callback = sentBack()
  assert.ok(callback, 'the browser was sent back to the app')
  return new URL(callback)
}

test('sign in with the official client in a real browser, then use the session', async () => {
  const { c, sessionStore } = client('atproto transition:generic')
  const url = await c.authorize(env.handle, { scope: 'atproto transition:generic' })
  assert.match(url.toString(), /\/oauth\/authorize\?/)
  const back = await inBrowser(url.toString(), async (page) => {
    // The sign-in page: names the app's host, asks for the account password.
    const text = await page.$eval('main', (m) => m.innerText)
    assert.match(text, /localhost/)
    assert.match(text, new RegExp(`@${env.handle.replace('.', '\\.')}`))
    const label = await page.$eval('label[for=password]', (l) => l.textContent)
    assert.equal(label, 'Password')
    await page.screenshot({ path: `${SHOTS}/sign-in.png`, fullPage: true })
    // A wrong password first: the page says so and asks again.
    await page.type('#password', 'not-the-password')
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
    assert.match(await page.$eval('[role=alert]', (e) => e.textContent), /Wrong password/)
    await page.screenshot({ path: `${SHOTS}/sign-in-wrong-password.png`, fullPage: true })
    await page.type('#password', env.password)
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
    // The consent page: what the app may do, in words.
    const consent = await page.$eval('main', (m) => m.innerText)
    assert.match(consent, /Allow .* to use your account\?/)
    assert.match(consent, /It will be able to/)
    const items = await page.$$eval('.permissions li', (lis) => lis.map((l) => l.textContent))
    assert.ok(items.length >= 1, 'the permissions are listed')
    await page.screenshot({ path: `${SHOTS}/consent.png`, fullPage: true })
    await Promise.all([
      page.waitForRequest((r) => r.url().startsWith(`${APP}/`)),
      page.click('button[value=allow]'),
    ])
  })
  assert.equal(back.searchParams.get('iss'), env.url)
  const { session } = await c.callback(back.searchParams)
  assert.equal(session.did, env.did)
  const agent = new Agent(session)

  const s = await agent.com.atproto.server.getSession()
  assert.equal(s.data.did, env.did)
  assert.equal(s.data.handle, env.handle)
  assert.equal(s.data.email, undefined, 'no transition:email: no email address')

  const created = await agent.com.atproto.repo.createRecord({
    repo: env.did,
    collection: 'app.bsky.feed.post',
    record: { $type: 'app.bsky.feed.post', text: 'posted over OAuth', createdAt: new Date().toISOString() },
  })
  const rkey = created.data.uri.split('/').pop()
  const got = await agent.com.atproto.repo.getRecord({ repo: env.did, collection: 'app.bsky.feed.post', rkey })
  assert.equal(got.data.value.text, 'posted over OAuth')

  // A forced refresh: new tokens, the old refresh token spent, the session still works.
  const before = sessionStore.map.get(env.did).tokenSet
  const info = await session.getTokenInfo(true)
  assert.equal(info.sub, env.did)
  const refreshed = sessionStore.map.get(env.did).tokenSet
  assert.notEqual(refreshed.access_token, before.access_token)
  assert.notEqual(refreshed.refresh_token, before.refresh_token)
  const again = await agent.com.atproto.server.getSession()
  assert.equal(again.data.did, env.did)

  // Sign out, then the server itself refuses the session's token (a fresh, valid proof
  // made with the session's own DPoP key).
  const saved = sessionStore.map.get(env.did)
  await session.signOut()
  const key = {
    privateKey: crypto.createPrivateKey({ key: saved.dpopJwk, format: 'jwk' }),
    jwk: { kty: 'EC', crv: saved.dpopJwk.crv, x: saved.dpopJwk.x, y: saved.dpopJwk.y },
  }
  const raw = new RawClient({ key })
  const refused = await raw.xrpc('GET', 'com.atproto.server.getSession', { token: saved.tokenSet.access_token })
  assert.equal(refused.status, 401)
  assert.match(refused.headers.get('www-authenticate'), /error="invalid_token"/)
})

test('a second app signs in without the password (the browser stays signed in)', async () => {
  // A fresh browser profile: sign in once for the first app, then the second app's
  // authorization goes straight to consent.
  const context = await browser.createBrowserContext()
  const run = async (scope, expectPassword) => {
    const { c } = client(scope)
    const url = await c.authorize(env.handle, { scope })
    const p = await context.newPage()
    const { sentBack } = await answerCallbacks(p, APP)
    await p.goto(url.toString(), { waitUntil: 'networkidle0' })
    const hasPassword = (await p.$('#password')) !== null
    assert.equal(hasPassword, expectPassword)
    if (hasPassword) {
      await p.type('#password', env.password)
      await Promise.all([p.waitForNavigation(), p.click('button[type=submit]')])
    }
    assert.equal(sentBack(), undefined, 'a new app is always asked about')
    await Promise.all([
      p.waitForRequest((r) => r.url().startsWith(`${APP}/`)),
      p.click('button[value=allow]'),
    ])
    await p.close()
    const callback = sentBack()
    const params = new URL(callback).searchParams
    assert.ok(params.get('code'), `a code in ${callback}`)
    const { session } = await c.callback(params)
    return session
  }
  const first = await run('atproto transition:generic', true)
  const second = await run('atproto repo:app.bsky.feed.like', false)
  assert.equal(second.did, env.did)
  // The second app may like but not post.
  const agent = new Agent(second)
  await agent.com.atproto.repo.createRecord({
    repo: env.did,
    collection: 'app.bsky.feed.like',
    record: {
      $type: 'app.bsky.feed.like',
      subject: { uri: `at://${env.did}/app.bsky.feed.post/3jzfcijpj2z2a`, cid: 'bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a' },
      createdAt: new Date().toISOString(),
    },
  })
  await assert.rejects(
    agent.com.atproto.repo.createRecord({
      repo: env.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'not allowed', createdAt: new Date().toISOString() },
    }),
    (e) => e.status === 403 && /repo:app\.bsky\.feed\.post/.test(e.message),
  )
  await first.signOut()
  await second.signOut()
  await context.close()
})
