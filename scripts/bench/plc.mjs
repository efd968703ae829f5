// A local did:plc directory for the bench's reference PDS: @did-plc/server
// with its in-memory store, listening on 127.0.0.1 only.
//
//   node plc.mjs --port-file FILE
//
// Picks a free port, writes it to FILE (write + rename) once it accepts
// connections, and exits on SIGTERM / SIGINT. Nothing is kept.
import { writeFileSync, renameSync } from 'node:fs'
import plc from '@did-plc/server'

const args = process.argv.slice(2)
const portFile = args[args.indexOf('--port-file') + 1]
if (!args.includes('--port-file') || !portFile) {
  console.error('usage: node plc.mjs --port-file FILE')
  process.exit(2)
}

// PlcServer.start() listens on all interfaces; bind the app ourselves so
// the directory is reachable on loopback only.
const server = plc.PlcServer.create({ db: plc.Database.mock(), port: 0 })
const http = server.app.listen(0, '127.0.0.1')
await new Promise((resolve, reject) => {
  http.once('listening', resolve)
  http.once('error', reject)
})
const { port } = http.address()
writeFileSync(`${portFile}.tmp`, `${port}\n`)
renameSync(`${portFile}.tmp`, portFile)
console.log(`plc directory on http://127.0.0.1:${port}`)

const stop = () => {
  http.closeAllConnections?.()
  http.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 500).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
