// Checks, with the official client, that an account moved to URL arrived whole: every record
// with the same CID, every blob byte for byte, preferences, a repository that verifies under
// the key in the DID document, and a DID document naming URL.
//
//   node migrate-verify.mjs URL PASSWORD SEED.json PLC_URL [--post-first]
//
// --post-first: write one post before checking the repo signature. The reference PDS does
// not re-sign an imported repo when the account is activated, so until its first write the
// head commit still carries the previous PDS's signature.
import { AtpAgent } from '@atproto/api'
import { verifyRepoCar } from '@atproto/repo'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import assert from 'node:assert/strict'

const [url, password, seedFile, plcUrl, flag] = process.argv.slice(2)
const seed = JSON.parse(readFileSync(seedFile, 'utf8'))
const agent = new AtpAgent({ service: url })
await agent.login({ identifier: seed.did, password })

const got = {}
let cursor
do {
  const { data } = await agent.com.atproto.repo.listRecords({ repo: seed.did, collection: 'app.bsky.feed.post', limit: 100, cursor })
  for (const r of data.records) got[r.uri.split('/').pop()] = r.cid
  cursor = data.records.length ? data.cursor : undefined
} while (cursor)
assert.deepEqual(got, seed.records, 'every record, same CIDs')

for (const b of seed.blobs) {
  const { data } = await agent.com.atproto.sync.getBlob({ did: seed.did, cid: b.cid })
  assert.equal(createHash('sha256').update(data).digest('hex'), b.sha256, `blob ${b.cid}`)
}

const prefs = await agent.app.bsky.actor.getPreferences()
assert.ok(prefs.data.preferences.some((p) => p.$type === 'app.bsky.actor.defs#adultContentPref'), 'preferences copied')

const doc = await (await fetch(`${plcUrl}/${seed.did}`)).json()
const pds = doc.service.find((s) => s.id.endsWith('#atproto_pds'))
assert.equal(pds.serviceEndpoint.replace(/\/$/, ''), url, 'DID document names the new PDS')
// The directory's /data view names the signing key as a did:key.
const data = await (await fetch(`${plcUrl}/${seed.did}/data`)).json()
let expected = Object.keys(seed.records).length
if (flag === '--post-first') {
  await agent.post({ text: 'first post after the move' })
  expected += 1
}
const { data: car } = await agent.com.atproto.sync.getRepo({ did: seed.did })
const verified = await verifyRepoCar(car, seed.did, data.verificationMethods.atproto)
assert.equal(verified.creates.length, expected, 'repo verifies with every record')

const status = (await agent.com.atproto.server.checkAccountStatus()).data
assert.equal(status.activated, true)
assert.equal(status.validDid, true)
assert.equal(status.expectedBlobs, seed.blobs.length)
assert.equal(status.importedBlobs, seed.blobs.length)
console.log(`verified: ${Object.keys(got).length} records, ${seed.blobs.length} blobs, repo rev ${verified.commit.rev} signed by the key in the DID document`)
