// The SD image's setup page (`perch welcome`) in headless Chromium, with the hand-over the
// image's units do played by the test: the owner fills in the form with the code read off
// the card (a temp dir standing in for the boot partition), `perch firstboot` applies it (as
// perch-setup.service does), the page is stopped and `perch serve` starts with the new
// config on the same address; the progress page, never reloaded, follows all of it until
// the box is live (a relay stand-in that is idle gets asked to crawl). Screenshots of the
// form, a refusal and each progress state.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { SHOTS, launchBrowser } from './browser.mjs'

const PERCH_BIN = process.env.PERCH_BIN
const PASSWORD = 'set up in a browser'

let browser
const children = []
const work = mkdtempSync(join(tmpdir(), 'perch-setup-'))
before(async () => {
  browser = await launchBrowser()
})
after(async () => {
  await browser?.close()
  for (const c of children) c.kill('SIGKILL')
  rmSync(work, { recursive: true, force: true })
})

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function start(name, cmd, args, env = {}) {
  const child = spawn(cmd, args, {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.output = ''
  child.stdout.on('data', (d) => (child.output += d))
  child.stderr.on('data', (d) => (child.output += d))
  child.name = name
  children.push(child)
  return child
}

async function untilAnswers(url, child) {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`${child.name} exited: ${child.output}`)
    try {
      await fetch(url)
      return
    } catch {
      await sleep(50)
    }
  }
  throw new Error(`${url} does not answer`)
}

async function stop(child) {
  const done = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await done
}

const codeOnCard = (boot) =>
  readFileSync(join(boot, 'perch-setup.txt'), 'utf8').match(/^ *([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}) *$/m)?.[1]

const stepState = (page, id) => page.$eval(`#${id}`, (li) => ({ cls: li.className, text: li.querySelector('.state').innerText }))

async function until(what, check, ms = 60000) {
  const end = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(250)
  }
}

test('a new owner sets the box up from the browser and watches it go live', async () => {
  assert.ok(PERCH_BIN, 'PERCH_BIN is needed')
  const boot = join(work, 'boot')
  const run = join(work, 'run')
  const root = join(work, 'root')
  const data = join(work, 'data')
  mkdirSync(boot, { recursive: true })
  copyFileSync(new URL('../../image/boot/perch.toml', import.meta.url), join(boot, 'perch.toml'))
  writeFileSync(join(boot, 'perch-setup.txt'), '2026-12-04T00:00:00.000Z\n\nperch.toml sets nothing yet: fill it in.\n')

  const relayPortFile = join(work, 'relay.port')
  const relay = start('relay', process.execPath, [new URL('./relay-stand-in.mjs', import.meta.url).pathname, '--mode', 'idle', '--port-file', relayPortFile])
  await until('the relay stand-in', () => existsSync(relayPortFile) && readFileSync(relayPortFile, 'utf8').trim())
  const relayUrl = `http://127.0.0.1:${readFileSync(relayPortFile, 'utf8').trim()}`

  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const welcome = start('welcome', PERCH_BIN, ['welcome', '--listen', `127.0.0.1:${port}`, '--boot-dir', boot, '--run-dir', run])
  await untilAnswers(`${origin}/readyz`, welcome)
  const code = codeOnCard(boot)
  assert.ok(code, 'the setup code is on the card')
  await until('the code on the console', () => welcome.output.includes(`setup code: ${code}`), 10000)

  const page = await browser.newPage()
  await page.setViewport({ width: 900, height: 1300 })
  await page.goto(origin, { waitUntil: 'networkidle0' })
  assert.match(await page.title(), /Set up/)
  assert.ok(!(await page.content()).includes(code), 'the page shows the setup code')
  await page.screenshot({ path: join(SHOTS, 'setup-form.png'), fullPage: true })

  const fill = async (codeTyped) => {
    await page.type('#code', codeTyped)
    await page.type('#hostname', 'pds.example.com')
    await page.type('#password', PASSWORD)
    await page.type('#password2', PASSWORD)
    await page.type('#email', 'owner@example.com')
    await page.type('#ssh', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB owner@laptop')
    await page.click('details summary')
    await page.$eval('#more', (t) => (t.value = ''))
    await page.type('#more', `tls = "off"\nlisten = "127.0.0.1:${port}"\nplc_url = ""\nrelays = ["${relayUrl}"]`)
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
  }

  // A wrong code: refused, what was typed kept (never the password), nothing on the card.
  await fill('2222-3333-4444')
  assert.match(await page.$eval('#error', (e) => e.innerText), /not the setup code/)
  assert.equal(await page.$eval('#hostname', (e) => e.value), 'pds.example.com')
  assert.equal(await page.$eval('#password', (e) => e.value), '')
  assert.equal(readFileSync(join(boot, 'perch.toml'), 'utf8'), readFileSync(new URL('../../image/boot/perch.toml', import.meta.url), 'utf8'))
  await page.screenshot({ path: join(SHOTS, 'setup-refused.png'), fullPage: true })

  // The right code, typed in lower case: the progress page.
  await page.$eval('#hostname', (e) => (e.value = ''))
  await page.$eval('#email', (e) => (e.value = ''))
  await page.$eval('#ssh', (e) => (e.value = ''))
  await fill(code.toLowerCase())
  assert.equal(new URL(page.url()).pathname, '/progress')
  assert.match(await page.$eval('h1', (e) => e.innerText), /Setting up pds\.example\.com/)
  await until('applying', async () => (await stepState(page, 'step-account')).text.includes('Creating your account'))
  assert.ok(existsSync(join(run, 'apply')), 'the request for perch-setup.path')
  await page.screenshot({ path: join(SHOTS, 'setup-applying.png'), fullPage: true })

  // perch-setup.service: first boot applies the card's perch.toml...
  const fb = spawnSync(PERCH_BIN, ['--data-dir', data, 'firstboot', '--boot-dir', boot, '--root', root], { encoding: 'utf8' })
  assert.equal(fb.status, 0, fb.stdout + fb.stderr)
  assert.ok(!existsSync(join(boot, 'perch.toml')), 'the password left the card')
  await until('applied', async () => (await stepState(page, 'step-account')).cls === 'done')

  // ...then stops the page and starts perch, which answers on the same address.
  await stop(welcome)
  const perch = start('perch', PERCH_BIN, ['serve', '--config', join(root, 'etc/perch/perch.toml'), '--data-dir', data], {
    PERCH_ALLOW_LOOPBACK: '1',
    PERCH_RELAY_CHECK_SECS: '2',
  })
  await untilAnswers(`${origin}/xrpc/_health`, perch)
  await until('perch running', async () => (await stepState(page, 'step-start')).cls === 'done')
  assert.match((await stepState(page, 'step-account')).text, /did:web:pds\.example\.com/)
  assert.match((await stepState(page, 'step-cert')).text, /HTTPS is off/)
  await until('live', () => page.$eval('#live', (e) => !e.hidden), 90000)
  assert.match((await stepState(page, 'step-relay')).text, /crawl this box|has your repository/)
  const crawls = (await (await fetch(`${relayUrl}/_stand-in`)).json()).crawls
  assert.ok(crawls >= 1, 'perch asked the relay to crawl')
  assert.match(await page.$eval('#live', (e) => e.innerText), /https:\/\/pds\.example\.com\/account/)
  await page.screenshot({ path: join(SHOTS, 'setup-live.png'), fullPage: true })

  // The password from the form signs in.
  const res = await fetch(`${origin}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: 'pds.example.com', password: PASSWORD }),
  })
  assert.equal(res.status, 200, await res.text())
  await stop(perch)
  await stop(relay)
  await page.close()
})
