// Makes the account the migration test moves: on a PDS (the reference one), an account with
// N posts, M of them with an image blob, and preferences; writes what it made to a JSON file
// for migrate-verify.mjs.
//
//   node migrate-seed.mjs URL HANDLE PASSWORD RECORDS BLOBS OUT.json
import { AtpAgent } from '@atproto/api'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'

const [url, handle, password, nRecords, nBlobs, out] = process.argv.slice(2)
const agent = new AtpAgent({ service: url })
await agent.createAccount({ handle, password, email: `${handle.split('.')[0]}@example.com` })
const did = agent.session.did
const blobs = []
for (let i = 0; i < Number(nBlobs); i++) {
  // Not real PNGs, but PDSes store blobs as given; sizes vary so the copy is exercised.
  const bytes = randomBytes(2000 + i * 3000)
  const { data } = await agent.uploadBlob(bytes, { encoding: 'image/png' })
  blobs.push({ cid: data.blob.ref.toString(), sha256: createHash('sha256').update(bytes).digest('hex') })
}
const records = {}
for (let i = 0; i < Number(nRecords); i++) {
  const record = {
    $type: 'app.bsky.feed.post',
    text: `post ${i} of the migration test`,
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  }
  if (i < blobs.length) {
    record.embed = {
      $type: 'app.bsky.embed.images',
      images: [{ alt: `image ${i}`, image: { $type: 'blob', ref: { $link: blobs[i].cid }, mimeType: 'image/png', size: 2000 + i * 3000 } }],
    }
  }
  const { data } = await agent.com.atproto.repo.createRecord({ repo: did, collection: 'app.bsky.feed.post', record })
  records[data.uri.split('/').pop()] = data.cid
}
await agent.app.bsky.actor.putPreferences({
  preferences: [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }],
})
writeFileSync(out, JSON.stringify({ did, handle, records, blobs }, null, 1))
console.log(did)
