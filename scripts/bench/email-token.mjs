// Prints the newest emailed token of PURPOSE (e.g. plc_operation) for DID from a reference
// PDS data directory: the reference PDS emails such tokens, and the migration test has no
// mail server, so it reads what would have been sent.
//
//   node email-token.mjs DATA_DIR DID PURPOSE
import Database from 'better-sqlite3'
import { join } from 'node:path'

const [dataDir, did, purpose] = process.argv.slice(2)
if (!dataDir || !did || !purpose) {
  console.error('usage: node email-token.mjs DATA_DIR DID PURPOSE')
  process.exit(2)
}
const db = new Database(join(dataDir, 'account.sqlite'), { readonly: true, fileMustExist: true })
const row = db
  .prepare('SELECT token FROM email_token WHERE did = ? AND purpose = ? ORDER BY requestedAt DESC LIMIT 1')
  .get(did, purpose)
db.close()
if (!row) {
  console.error(`no ${purpose} token for ${did}`)
  process.exit(1)
}
console.log(row.token)
