// The reference PDS (@atproto/pds) for scripts/bench.sh, run on the Node 22
// from this folder's node_modules (node_modules/.bin/node).
//
//   node ref-pds.mjs --data-dir DIR --port PORT --plc-url URL
//
// Listens on 127.0.0.1:PORT only, dev mode, no invites, no rate limits, no
// crawlers, no app view, no email. Its secrets (JWT secret, PLC rotation key)
// are made on the first start and kept in DIR/bench-secrets.json, so a later
// start on the same DIR serves the same accounts (the cold-start measurement
// restarts it). The account itself is made by the caller over XRPC
// (com.atproto.server.createAccount). SIGTERM / SIGINT exit.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'
import { Secp256k1Keypair } from '@atproto/crypto'

function parseArgs(argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]
    const value = argv[i + 1]
    if (value === undefined) throw new Error(`${key} needs a value`)
    if (key === '--data-dir') opts.dataDir = resolve(value)
    else if (key === '--port') opts.port = Number(value)
    else if (key === '--plc-url') opts.plcUrl = value
    else throw new Error(`unknown argument ${key}`)
  }
  if (!opts.dataDir || !opts.plcUrl || !Number.isInteger(opts.port) || opts.port <= 0) {
    throw new Error('usage: node ref-pds.mjs --data-dir DIR --port PORT --plc-url URL')
  }
  return opts
}

async function loadSecrets(dataDir) {
  const file = join(dataDir, 'bench-secrets.json')
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'))
  const rotation = await Secp256k1Keypair.create({ exportable: true })
  const secrets = {
    jwtSecret: randomBytes(32).toString('hex'),
    adminPassword: randomBytes(12).toString('hex'),
    rotationKeyHex: Buffer.from(await rotation.export()).toString('hex'),
  }
  writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 })
  return secrets
}

const opts = parseArgs(process.argv.slice(2))
mkdirSync(join(opts.dataDir, 'blobs'), { recursive: true })
const secrets = await loadSecrets(opts.dataDir)

Object.assign(process.env, {
  PDS_HOSTNAME: 'localhost',
  PDS_PORT: String(opts.port),
  PDS_DEV_MODE: 'true',
  PDS_DATA_DIRECTORY: opts.dataDir,
  PDS_BLOBSTORE_DISK_LOCATION: join(opts.dataDir, 'blobs'),
  PDS_DID_PLC_URL: opts.plcUrl,
  PDS_JWT_SECRET: secrets.jwtSecret,
  PDS_ADMIN_PASSWORD: secrets.adminPassword,
  PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: secrets.rotationKeyHex,
  PDS_SERVICE_HANDLE_DOMAINS: '.test',
  PDS_INVITE_REQUIRED: 'false',
  PDS_RATE_LIMITS_ENABLED: 'false',
  PDS_CRAWLERS: '',
  PDS_DISABLE_SSRF_PROTECTION: 'true',
})
for (const name of ['PDS_BSKY_APP_VIEW_URL', 'PDS_BSKY_APP_VIEW_DID', 'PDS_EMAIL_SMTP_URL']) {
  delete process.env[name]
}
// Preferences (app.bsky.actor.*Preferences) are only routed when an app view is configured;
// the migration test needs them, and never reaches the (unused) app view itself.
if (process.env.REF_PDS_APPVIEW_DID) {
  process.env.PDS_BSKY_APP_VIEW_URL = 'http://127.0.0.1:9'
  process.env.PDS_BSKY_APP_VIEW_DID = process.env.REF_PDS_APPVIEW_DID
}

const env = readEnv()
const pds = await PDS.create(envToCfg(env), envToSecrets(env))

// PDS.start() listens on every interface; do the same steps on loopback.
await pds.ctx.sequencer.start()
const server = pds.app.listen(opts.port, '127.0.0.1')
server.keepAliveTimeout = 90_000
pds.server = server
await new Promise((ok, fail) => {
  server.once('listening', ok)
  server.once('error', fail)
})
console.log(`reference PDS (@atproto/pds, node ${process.version}) on http://127.0.0.1:${opts.port}`)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(0), 2000).unref()
  server.closeAllConnections()
  server.close()
  try {
    await pds.ctx.destroy()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
