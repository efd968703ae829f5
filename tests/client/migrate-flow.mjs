// Moves an account from one PDS to another the way the atproto account-migration guide does
// it with the official client (@atproto/api): two agents, `old` on the PDS the account lives
// on and `new` on the one it moves to, every step a plain XRPC call (no perch-specific tool).
// Used by tests/migrate/run.sh to move an account from the reference PDS into perch.
//
//   node migrate-flow.mjs OLD_URL NEW_URL HANDLE PASSWORD INVITE SEED.json -- TOKEN_CMD...
//
// TOKEN_CMD (each `{did}` in it replaced by the DID) prints the PLC confirmation code the old
// PDS emails
// (tests/migrate/run.sh reads it from the reference PDS's database). Each step checks what
// it can: checkAccountStatus is read (and validated by the client against its lexicon) after
// the account is created, after the import and after the blobs.
import { AtpAgent } from '@atproto/api'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import assert from 'node:assert/strict'

const sep = process.argv.indexOf('--')
const [oldUrl, newUrl, handle, password, inviteCode, seedFile] = process.argv.slice(2, sep)
const tokenCmd = process.argv.slice(sep + 1)
if (sep < 0 || !seedFile || tokenCmd.length === 0) {
  console.error('usage: node migrate-flow.mjs OLD_URL NEW_URL HANDLE PASSWORD INVITE SEED.json -- TOKEN_CMD...')
  process.exit(2)
}
const seed = JSON.parse(readFileSync(seedFile, 'utf8'))

const log = (m) => console.error(`[migrate-flow] ${m}`)
async function step(name, fn) {
  try {
    const out = await fn()
    log(`ok: ${name}`)
    return out
  } catch (err) {
    const detail = err?.error ? `${err.status} ${err.error}: ${err.message}` : (err?.stack ?? err)
    throw new Error(`step "${name}" failed: ${detail}`, { cause: err })
  }
}

const oldAgent = new AtpAgent({ service: oldUrl })
const newAgent = new AtpAgent({ service: newUrl })

await step('log in to the old PDS', () => oldAgent.login({ identifier: handle, password }))
const did = oldAgent.session.did
assert.equal(did, seed.did)
const email = (await oldAgent.com.atproto.server.getSession()).data.email

// --- the account on the new PDS ---------------------------------------------------------
const { data: described } = await step('describeServer (new)', () =>
  newAgent.com.atproto.server.describeServer(),
)
const { data: serviceAuth } = await step('getServiceAuth for createAccount (old)', () =>
  oldAgent.com.atproto.server.getServiceAuth({
    aud: described.did,
    lxm: 'com.atproto.server.createAccount',
  }),
)
await step('createAccount with the DID, invite and service token (new)', () =>
  newAgent.com.atproto.server.createAccount(
    { handle, email, password, did, inviteCode },
    { headers: { authorization: `Bearer ${serviceAuth.token}` }, encoding: 'application/json' },
  ),
)
await step('log in to the new PDS', () => newAgent.login({ identifier: handle, password }))
assert.equal(newAgent.session.did, did)
assert.equal(newAgent.session.active, false, 'the moving account starts deactivated')

const status = async (when) =>
  (await step(`checkAccountStatus ${when} (new)`, () => newAgent.com.atproto.server.checkAccountStatus())).data
const created = await status('after createAccount')
assert.equal(created.activated, false)
assert.equal(created.validDid, false)
assert.equal(created.indexedRecords, 0)

// --- data ---------------------------------------------------------------------------------
const { data: car } = await step('getRepo (old)', () => oldAgent.com.atproto.sync.getRepo({ did }))
await step('importRepo (new)', () =>
  newAgent.com.atproto.repo.importRepo(car, { encoding: 'application/vnd.ipld.car' }),
)
const imported = await status('after importRepo')
assert.equal(imported.indexedRecords, Object.keys(seed.records).length)
assert.equal(imported.expectedBlobs, seed.blobs.length)
assert.equal(imported.importedBlobs, 0)

// Until activation the repo is not public and takes no record writes.
const someRkey = Object.keys(seed.records)[0]
await assert.rejects(
  new AtpAgent({ service: newUrl }).com.atproto.repo.getRecord({
    repo: did,
    collection: 'app.bsky.feed.post',
    rkey: someRkey,
  }),
  (err) => err.status === 400 && err.error === 'RepoDeactivated',
)
await assert.rejects(
  newAgent.post({ text: 'too early' }),
  (err) => err.status === 401 && err.error === 'AccountDeactivated',
)

let uploaded = 0
let cursor
do {
  const { data: page } = await step('listMissingBlobs (new)', () =>
    newAgent.com.atproto.repo.listMissingBlobs({ cursor, limit: 100 }),
  )
  for (const { cid } of page.blobs) {
    const blob = await oldAgent.com.atproto.sync.getBlob({ did, cid })
    const { data: up } = await newAgent.com.atproto.repo.uploadBlob(blob.data, {
      encoding: blob.headers['content-type'],
    })
    assert.equal(up.blob.ref.toString(), cid, 'the uploaded blob is the one missing')
    uploaded += 1
  }
  cursor = page.cursor
} while (cursor)
log(`ok: ${uploaded} blobs uploaded while deactivated`)
assert.equal(uploaded, seed.blobs.length)
const stillMissing = (await newAgent.com.atproto.repo.listMissingBlobs({})).data.blobs
assert.deepEqual(stillMissing, [], 'no blob is missing')
const withBlobs = await status('after the blobs')
assert.equal(withBlobs.importedBlobs, withBlobs.expectedBlobs)

const { data: prefs } = await step('getPreferences (old)', () => oldAgent.app.bsky.actor.getPreferences())
await step('putPreferences (new)', () => newAgent.app.bsky.actor.putPreferences(prefs))

// --- identity -------------------------------------------------------------------------------
const { data: creds } = await step('getRecommendedDidCredentials (new)', () =>
  newAgent.com.atproto.identity.getRecommendedDidCredentials(),
)
await step('requestPlcOperationSignature (old)', () =>
  oldAgent.com.atproto.identity.requestPlcOperationSignature(),
)
const [cmd, ...args] = tokenCmd.map((a) => a.replaceAll('{did}', did))
const token = execFileSync(cmd, args, { encoding: 'utf8' }).trim()
const { data: signed } = await step('signPlcOperation (old)', () =>
  oldAgent.com.atproto.identity.signPlcOperation({ token, ...creds }),
)
await step('submitPlcOperation (new)', () =>
  newAgent.com.atproto.identity.submitPlcOperation({ operation: signed.operation }),
)

// --- finish ---------------------------------------------------------------------------------
await step('activateAccount (new)', () => newAgent.com.atproto.server.activateAccount())
await step('deactivateAccount (old)', () => oldAgent.com.atproto.server.deactivateAccount({}))

const done = await status('after activation')
assert.equal(done.activated, true)
assert.equal(done.validDid, true)
assert.equal(done.importedBlobs, seed.blobs.length)

// A fresh login by handle works (migrate-verify.mjs then checks the data, logged in by DID).
const again = new AtpAgent({ service: newUrl })
await step('log in again by handle (new)', () => again.login({ identifier: handle, password }))
assert.equal(again.session.did, did)
assert.equal(again.session.active, true)
log(`moved ${did} (${handle}) from ${oldUrl} to ${newUrl}`)
