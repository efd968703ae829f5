// The account's email and a forgotten password, through the official client: the codes
// arrive by mail at the test's relay (smtp-sink.mjs, started by run.sh and named in
// PERCH_SMTP_URL) and are the same ones `perch account codes` shows on the box.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { env, expectXrpcError, login, newAgent } from './lib.mjs'

const mailDir = process.env.PERCH_MAIL_DIR
const perch = (args, input) =>
  execFileSync(
    process.env.PERCH_BIN,
    [...args, '--dev', '--data-dir', process.env.PERCH_DATA_DIR],
    { input, env: { ...process.env, NO_COLOR: '1' } },
  ).toString()

/** purpose -> code, as `perch account codes` prints them. */
function codesOnBox() {
  const out = {}
  for (const line of perch(['account', 'codes']).split('\n')) {
    const [purpose, code] = line.trim().split(/\s+/)
    if (/^[0-9A-F]{5}-[0-9A-F]{5}$/.test(code ?? '')) out[purpose] = code
  }
  return out
}

const mails = () =>
  fs.existsSync(mailDir) ? fs.readdirSync(mailDir).filter((f) => f.endsWith('.json')).sort() : []

/** The first mail after the first `seen` ones, waiting for it up to 10 s. */
async function nextMail(seen) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const all = mails()
    if (all.length > seen) return JSON.parse(fs.readFileSync(path.join(mailDir, all[seen])))
    assert.ok(Date.now() < deadline, 'no mail arrived at the relay in 10 s')
    await new Promise((r) => setTimeout(r, 100))
  }
}

const codeIn = (mail) => mail.data.match(/\b([0-9A-F]{5}-[0-9A-F]{5})\b/)?.[1]

describe('email', () => {
  test('set, confirm and change the address; the app stops asking to verify it', async () => {
    assert.ok(mailDir && process.env.PERCH_DATA_DIR, 'run.sh passes PERCH_MAIL_DIR and PERCH_DATA_DIR')
    const agent = await login()
    const srv = agent.com.atproto.server
    assert.equal((await srv.getSession()).data.emailConfirmed, false)
    await expectXrpcError(srv.requestEmailConfirmation(), { status: 400, error: 'InvalidRequest' })

    // An unconfirmed (here: absent) address changes without a code.
    assert.equal((await srv.requestEmailUpdate()).data.tokenRequired, false)
    await expectXrpcError(srv.updateEmail({ email: 'not an address' }), { status: 400, error: 'InvalidRequest' })
    await srv.updateEmail({ email: 'alice@mail.test' })
    let s = (await srv.getSession()).data
    assert.equal(s.email, 'alice@mail.test')
    assert.equal(s.emailConfirmed, false)

    const seen = mails().length
    await srv.requestEmailConfirmation()
    const mail = await nextMail(seen)
    assert.deepEqual(mail.to, ['alice@mail.test'])
    assert.equal(mail.from, 'perch@localhost')
    assert.deepEqual(mail.auth, ['perch', 's:cret@x'], 'AUTH PLAIN with the decoded user and password')
    assert.match(mail.data, /^Subject: Your code to confirm your email address$/m)
    const code = codeIn(mail)
    assert.ok(code, mail.data)
    assert.equal(codesOnBox()['confirm-email'], code, '`perch account codes` shows the mailed code')

    await expectXrpcError(srv.confirmEmail({ email: 'someone@mail.test', token: code }), { status: 400, error: 'InvalidEmail' })
    await expectXrpcError(srv.confirmEmail({ email: 'alice@mail.test', token: '00000-00000' }), { status: 400, error: 'InvalidToken' })
    await srv.confirmEmail({ email: 'ALICE@mail.test', token: code })
    s = (await srv.getSession()).data
    assert.equal(s.emailConfirmed, true, 'the app stops nagging')
    await expectXrpcError(srv.confirmEmail({ email: 'alice@mail.test', token: code }), { status: 400, error: 'InvalidToken' })
    assert.equal(codesOnBox()['confirm-email'], undefined, 'a used code is gone')

    // A confirmed address changes only with the code mailed to it.
    const before = mails().length
    assert.equal((await srv.requestEmailUpdate()).data.tokenRequired, true)
    const change = await nextMail(before)
    assert.deepEqual(change.to, ['alice@mail.test'])
    await expectXrpcError(srv.updateEmail({ email: 'alice2@mail.test' }), { status: 400, error: 'TokenRequired' })
    await expectXrpcError(
      srv.updateEmail({ email: 'alice2@mail.test', emailAuthFactor: true, token: codeIn(change) }),
      { status: 400, error: 'InvalidRequest' },
    )
    await srv.updateEmail({ email: 'alice2@mail.test', token: codeIn(change) })
    s = (await srv.getSession()).data
    assert.equal(s.email, 'alice2@mail.test')
    assert.equal(s.emailConfirmed, false, 'a new address starts unconfirmed')
  })

  test('a forgotten password is reset with the mailed code; the old sessions end', async () => {
    const agent = await login()
    const srv = newAgent().com.atproto.server
    const seen = mails().length
    // Another address: the same answer, nothing sent.
    await srv.requestPasswordReset({ email: 'nobody@mail.test' })
    await srv.requestPasswordReset({ email: 'ALICE2@mail.test' })
    const mail = await nextMail(seen)
    assert.deepEqual(mail.to, ['alice2@mail.test'])
    assert.match(mail.data, /^Subject: Your code to reset your password$/m)
    await new Promise((r) => setTimeout(r, 500))
    assert.equal(mails().length, seen + 1, 'one mail: none for the address that is not the account\'s')
    const code = codeIn(mail)
    assert.equal(codesOnBox()['reset-password'], code)

    await expectXrpcError(srv.resetPassword({ token: code, password: 'short' }), { status: 400, error: 'InvalidRequest' })
    await expectXrpcError(srv.resetPassword({ token: '00000-00000', password: 'a-new-password' }), { status: 400, error: 'InvalidToken' })
    const fresh = `reset-${Date.now()}`
    await srv.resetPassword({ token: code, password: fresh })
    await expectXrpcError(agent.com.atproto.server.getSession(), { status: [400, 401] })
    await login(fresh)
    await assert.rejects(login(env.password))
    await expectXrpcError(srv.resetPassword({ token: code, password: 'another-one' }), { status: 400, error: 'InvalidToken' })

    // Back to the suite's password, with the command line's --password-stdin.
    perch(['account', 'set-password', '--password-stdin'], `${env.password}\n`)
    await login(env.password)
  })
})
