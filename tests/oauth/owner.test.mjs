// The owner's page (/account) in headless Chromium against the running perch: a wrong
// password and then the right one; the account, the box and the federation panel (two relay
// stand-ins: one idle, which perch asks to crawl, one that keeps up); an app password made
// on the page, shown once, used by @atproto/api, revoked; signing out. Then the rules no
// browser shows: the cookie's attributes, the page's headers, forms without the form token
// or from another origin, and a signed-out cookie. Every page is screenshotted.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { SHOTS, answerCallbacks, launchBrowser } from './browser.mjs'
import { RawClient, env, loopbackClientId } from './raw.mjs'

const RELAY_IDLE = process.env.RELAY_IDLE
const RELAY_FOLLOW = process.env.RELAY_FOLLOW

let browser
before(async () => {
  browser = await launchBrowser()
})
after(async () => {
  await browser?.close()
})

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const text = (page, sel) => page.$eval(sel, (e) => e.innerText)

async function signIn(page, password) {
  await page.type('#password', password)
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
}

async function standIn(url) {
  return (await fetch(`${url}/_stand-in`)).json()
}

/** Signs in over plain HTTP: the Set-Cookie header and the cookie's value. */
async function rawSignIn() {
  const res = await fetch(`${env.url}/account/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ password: env.password }),
    redirect: 'manual',
  })
  assert.equal(res.status, 303)
  assert.equal(res.headers.get('location'), '/account')
  const setCookie = res.headers.get('set-cookie')
  return { setCookie, cookie: setCookie.split(';')[0] }
}

async function formToken(cookie) {
  const html = await (await fetch(`${env.url}/account`, { headers: { cookie } })).text()
  return html.match(/name="csrf" value="([^"]+)"/)[1]
}

async function appPasswordNames() {
  const agent = new AtpAgent({ service: env.url })
  await agent.login({ identifier: env.handle, password: env.password })
  const { data } = await agent.com.atproto.server.listAppPasswords()
  await agent.com.atproto.server.deleteSession().catch(() => {})
  return data.passwords.map((p) => p.name)
}

test('the owner signs in, sees the box and its federation, and manages app passwords', async () => {
  // Something to plot: two posts and a like today.
  const writer = new AtpAgent({ service: env.url })
  await writer.login({ identifier: env.handle, password: env.password })
  const post = await writer.post({ text: 'for the plot', createdAt: new Date().toISOString() })
  await writer.post({ text: 'and another', createdAt: new Date().toISOString() })
  await writer.like(post.uri, post.cid)
  const page = await browser.newPage()
  await page.setViewport({ width: 1100, height: 900 })
  await page.goto(`${env.url}/account`, { waitUntil: 'networkidle0' })
  assert.match(await text(page, 'h1'), /Sign in to your perch/)
  await page.screenshot({ path: `${SHOTS}/account-sign-in.png`, fullPage: true })

  await signIn(page, 'not the password')
  assert.match(await text(page, '[role=alert]'), /Wrong password/)

  await signIn(page, env.password)
  assert.equal(new URL(page.url()).pathname, '/account')
  assert.equal(await text(page, '#handle'), `@${env.handle}`)
  assert.equal(await text(page, '#did'), env.did)
  const account = await text(page, 'section[aria-labelledby=account-h]')
  assert.match(account, /this server/, 'the DID document points here')
  const box = await text(page, 'section[aria-labelledby=box-h]')
  assert.match(box, /Storage\s+healthy/)
  assert.match(box, /Free disk\s+[\d.]+ [KMGT]iB/)
  // The plots: four charts; today's bar holds at least the two posts and the like.
  assert.equal((await page.$$('#plots figure svg')).length, 4)
  const today = new Date().toISOString().slice(0, 10)
  const tips = await page.$$eval('#plots svg title', (ts) => ts.map((t) => t.textContent))
  const bar = tips.find((t) => t.startsWith(`${today}:`) && t.includes('posts'))
  const [, posts, likes] = bar.match(/(\d+) posts, (\d+) likes/).map(Number)
  assert.ok(posts >= 2 && likes >= 1, bar)
  assert.match(await text(page, '#plots'), /\d+ records in 90 days/)
  assert.match(await text(page, '#plots'), /[1-9]\d* requests, \d+ server errors in the last 24 hours/)

  // The federation panel: perch checks every 2 s here; wait until both relays are judged
  // and the idle one has been asked to crawl.
  let fed = ''
  for (let i = 0; i < 40; i++) {
    await page.reload({ waitUntil: 'networkidle0' })
    fed = await text(page, '#federation')
    if (/following, current/.test(fed) && /not following: healing/.test(fed) && (await standIn(RELAY_IDLE)).crawls > 0) break
    await sleep(500)
  }
  const rows = await page.$$eval('#federation tbody tr:not(.advice)', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)),
  )
  assert.equal(rows.length, 2, fed)
  const [idle, follow] = rows
  assert.equal(idle[0], RELAY_IDLE)
  assert.equal(idle[1], 'not following: healing')
  assert.equal(idle[2], 'idle')
  assert.notEqual(idle[5], 'never', 'the idle relay was asked to crawl')
  assert.equal(follow[0], RELAY_FOLLOW)
  assert.equal(follow[1], 'following, current')
  assert.match(fed, /perch asks it to crawl/, 'advice for the idle relay')
  assert.equal((await standIn(RELAY_FOLLOW)).crawls, 0, 'a relay that keeps up is left alone')
  assert.match(await text(page, '#manage'), /Change handle[\s\S]*Change password[\s\S]*Delete the account/)
  await page.screenshot({ path: `${SHOTS}/account.png`, fullPage: true })
  // README's picture: the top of the page (PERCH_BLESS=1 writes it into the repo).
  const top = { x: 0, y: 0, width: 1100, height: 1150 }
  await page.screenshot({ path: `${SHOTS}/account-top.png`, clip: top })
  if (process.env.PERCH_BLESS) await page.screenshot({ path: 'account-page.png', clip: top })

  // "Ask the relays to crawl now".
  const before = (await standIn(RELAY_FOLLOW)).crawls
  await Promise.all([page.waitForNavigation(), page.click('#federation button[type=submit]')])
  assert.match(await text(page, '[role=status]'), /asked to crawl/)
  for (let i = 0; i < 20 && (await standIn(RELAY_FOLLOW)).crawls === before; i++) await sleep(100)
  assert.equal((await standIn(RELAY_FOLLOW)).crawls, before + 1)

  // An app password, shown once.
  await page.type('#ap-name', 'owner-page phone')
  await Promise.all([page.waitForNavigation(), page.click('#app-passwords button.primary')])
  const secret = await text(page, '#new-app-password')
  assert.match(secret, /^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/)
  await page.screenshot({ path: `${SHOTS}/account-app-password.png`, fullPage: true })
  const app = new AtpAgent({ service: env.url })
  await app.login({ identifier: env.handle, password: secret })
  assert.equal(app.session.did, env.did)
  await page.goto(`${env.url}/account`, { waitUntil: 'networkidle0' })
  assert.equal(await page.$('#new-app-password'), null, 'never shown twice')
  assert.ok(!(await page.content()).includes(secret))
  const names = await page.$$eval('#app-passwords td.name', (tds) => tds.map((t) => t.innerText))
  assert.ok(names.includes('owner-page phone'), names.join())
  // A second one by the same name is refused on the page.
  await page.type('#ap-name', 'owner-page phone')
  await Promise.all([page.waitForNavigation(), page.click('#app-passwords button.primary')])
  assert.match(await text(page, '[role=alert]'), /already exists/)

  // Revoked: the app's session ends and the password no longer signs in.
  await page.goto(`${env.url}/account`, { waitUntil: 'networkidle0' })
  const row = (await page.$$('#app-passwords tbody tr')).length
  const revoke = await page.$(`#app-passwords form[action$=revoke]:has(input[value="owner-page phone"]) button`)
  await Promise.all([page.waitForNavigation(), revoke.click()])
  assert.match(await text(page, '[role=status]'), /revoked/)
  assert.equal((await page.$$('#app-passwords tbody tr')).length, row - 1)
  await assert.rejects(app.com.atproto.server.getSession(), /revoked|expired|Token/i)
  await assert.rejects(
    new AtpAgent({ service: env.url }).login({ identifier: env.handle, password: secret }),
    /Invalid identifier or password/,
  )

  // Signing out ends the page session.
  await Promise.all([page.waitForNavigation(), page.click('header.top button')])
  assert.match(await text(page, 'h1'), /Sign in to your perch/)
  await page.close()
})

test('the session cookie, the headers and the form rules', async () => {
  const { setCookie, cookie } = await rawSignIn()
  for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/account']) {
    assert.ok(setCookie.includes(attr), `${attr} in ${setCookie}`)
  }
  const res = await fetch(`${env.url}/account`, { headers: { cookie } })
  const csp = res.headers.get('content-security-policy')
  assert.match(csp, /frame-ancestors 'none'/)
  assert.match(csp, /default-src 'none'/)
  assert.equal(res.headers.get('x-frame-options'), 'DENY')
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const html = await res.text()
  assert.ok(html.includes(env.did))

  const csrf = await formToken(cookie)
  const post = (body, headers = {}) =>
    fetch(`${env.url}/account/app-passwords`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers },
      body: new URLSearchParams(body),
      redirect: 'manual',
    })
  // Without the form token, with a wrong one, or from another origin: refused, nothing made.
  assert.equal((await post({ name: 'csrf-none' })).status, 403)
  assert.equal((await post({ name: 'csrf-wrong', csrf: csrf.slice(1) + 'A' })).status, 403)
  assert.equal((await post({ name: 'csrf-origin', csrf }, { origin: 'https://evil.example' })).status, 403)
  assert.equal(
    (await post({ name: 'csrf-site', csrf }, { 'sec-fetch-site': 'cross-site' })).status,
    403,
  )
  // A sign-in posted from another site is refused before the password is looked at.
  const foreign = await fetch(`${env.url}/account/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
    body: new URLSearchParams({ password: env.password }),
    redirect: 'manual',
  })
  assert.equal(foreign.status, 403)
  assert.equal(foreign.headers.get('set-cookie'), null)
  // With the token: made.
  assert.equal((await post({ name: 'csrf-ok', csrf })).status, 200)
  const names = await appPasswordNames()
  assert.ok(names.includes('csrf-ok'))
  for (const n of ['csrf-none', 'csrf-wrong', 'csrf-origin', 'csrf-site']) assert.ok(!names.includes(n), n)

  // Signed out: the cookie opens nothing, and its form token is dead with it.
  const out = await fetch(`${env.url}/account/sign-out`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
    body: new URLSearchParams({ csrf }),
    redirect: 'manual',
  })
  assert.equal(out.status, 303)
  assert.match(out.headers.get('set-cookie'), /Max-Age=0/)
  const after = await (await fetch(`${env.url}/account`, { headers: { cookie } })).text()
  assert.ok(after.includes('Sign in to your perch') && !after.includes(env.did))
  assert.equal((await post({ name: 'csrf-after', csrf })).status, 401)
  // The app password made above is revoked with the CLI's peer, the API.
  const agent = new AtpAgent({ service: env.url })
  await agent.login({ identifier: env.handle, password: env.password })
  await agent.com.atproto.server.revokeAppPassword({ name: 'csrf-ok' })
})

test('a passkey made on the page signs in to it, once per challenge', async () => {
  const page = await browser.newPage()
  await page.setViewport({ width: 1100, height: 900 })
  page.on('pageerror', (e) => console.log('pageerror:', e.message))
  const cdp = await page.createCDPSession()
  await cdp.send('WebAuthn.enable')
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  })
  await page.goto(`${env.url}/account`, { waitUntil: 'networkidle0' })
  assert.equal(await page.$('#passkey-sign-in'), null, 'no passkey button before there is a passkey')
  await signIn(page, env.password)

  // The password again first: a wrong one makes nothing.
  await page.type('#pk-name', 'virtual phone')
  await page.type('#pk-password', 'not the password')
  await page.click('#passkey-add button[type=submit]')
  await page.waitForSelector('#passkey-add-error:not([hidden])')
  assert.match(await text(page, '#passkey-add-error'), /Wrong password/)
  assert.equal((await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials.length, 0)

  await page.$eval('#pk-password', (e) => (e.value = ''))
  await page.type('#pk-password', env.password)
  await Promise.all([page.waitForNavigation(), page.click('#passkey-add button[type=submit]')])
  assert.match(await text(page, '[role=status]'), /passkey was added/)
  const names = await page.$$eval('#passkeys td.name', (tds) => tds.map((t) => t.innerText))
  assert.deepEqual(names, ['virtual phone'])
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
  assert.equal(credentials.length, 1)
  assert.equal(credentials[0].rpId, new URL(env.url).hostname)
  await page.screenshot({ path: `${SHOTS}/account-passkeys.png`, fullPage: true })

  // Signed out, the sign-in page offers the passkey; it signs in without the password.
  await Promise.all([page.waitForNavigation(), page.click('header.top button')])
  await page.waitForSelector('#passkey-sign-in:not([hidden])')
  await page.screenshot({ path: `${SHOTS}/account-sign-in-passkey.png`, fullPage: true })
  let assertion
  page.on('request', (r) => {
    if (r.url().endsWith('/account/passkeys/sign-in')) assertion = r.postData()
  })
  await Promise.all([page.waitForNavigation(), page.click('#passkey-sign-in')])
  assert.equal(await text(page, '#handle'), `@${env.handle}`)
  assert.match(await text(page, '#passkeys'), /virtual phone\s+just now\s+just now/)

  // The same answer again (a captured request): the challenge is spent.
  assert.ok(assertion, 'the sign-in request was seen')
  const replay = await fetch(`${env.url}/account/passkeys/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: assertion,
  })
  assert.equal(replay.status, 400)
  assert.equal(replay.headers.get('set-cookie'), null)
  assert.equal((await replay.json()).error, 'InvalidRequest')
  // Nor may another site ask for a challenge or send an answer.
  for (const path of ['sign-in-options', 'sign-in']) {
    const r = await fetch(`${env.url}/account/passkeys/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
      body: assertion,
    })
    assert.equal(r.status, 400, path)
  }

  // An app's OAuth sign-in takes the passkey too (a fresh browser session: no device cookie).
  const redirect = 'http://127.0.0.1:4002/cb'
  const scope = 'atproto transition:generic'
  const c = new RawClient({ clientId: loopbackClientId(redirect, scope), redirectUri: redirect, scope })
  const par = await c.par()
  assert.equal(par.status, 201, JSON.stringify(par.body))
  const app = await answerCallbacks(page, new URL(redirect).origin)
  const authorize = `${env.url}/oauth/authorize?client_id=${encodeURIComponent(c.clientId)}&request_uri=${encodeURIComponent(par.body.request_uri)}`
  await page.goto(authorize, { waitUntil: 'networkidle0' })
  await page.waitForSelector('#passkey-sign-in:not([hidden])')
  await page.screenshot({ path: `${SHOTS}/oauth-sign-in-passkey.png`, fullPage: true })
  await Promise.all([page.waitForNavigation(), page.click('#passkey-sign-in')])
  assert.match(await text(page, 'main'), /Allow .* to use your account\?/)
  await Promise.all([
    page.waitForRequest((r) => r.url().startsWith(redirect)),
    page.click('button[value=allow]'),
  ])
  const q = new URL(app.sentBack()).searchParams
  assert.equal(q.get('state'), c.state)
  const tokens = await c.exchange(q.get('code'))
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body))
  assert.equal(tokens.body.sub, env.did)
  await app.stop()
  await page.goto(`${env.url}/account`, { waitUntil: 'networkidle0' })

  // Removed (with the password), it signs in no more.
  await page.type('#passkeys form.row input[type=password]', env.password)
  await Promise.all([page.waitForNavigation(), page.click('#passkeys form.row button')])
  assert.match(await text(page, '[role=status]'), /passkey was removed/)
  assert.match(await text(page, '#passkeys'), /None yet/)
  await Promise.all([page.waitForNavigation(), page.click('header.top button')])
  assert.equal(await page.$('#passkey-sign-in'), null)
  await page.close()
})
