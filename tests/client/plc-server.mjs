#!/usr/bin/env node
// A throwaway did:plc directory for the client suite: the official
// @did-plc/server with its in-memory database (no Postgres), on loopback.
//
//   node plc-server.mjs [--port N] [--port-file FILE]
//
// --port 0 (the default) lets the OS pick a free port; the chosen port is
// printed ("plc directory listening on http://localhost:N") and, with
// --port-file, written to FILE once the server accepts connections.
// SIGTERM / SIGINT shut it down cleanly. Everything is lost on exit.
import { writeFileSync, renameSync } from 'node:fs'
import plcServer from '@did-plc/server'

const { PlcServer, Database } = plcServer

function parseArgs(argv) {
  const opts = { port: Number(process.env.PORT ?? 0), portFile: undefined }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`)
      return argv[++i]
    }
    if (arg === '--port') opts.port = Number(value())
    else if (arg === '--port-file') opts.portFile = value()
    else throw new Error(`unknown argument: ${arg}`)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`bad port: ${opts.port}`)
  }
  return opts
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  // Database.mock() is the package's own in-memory store (the same one its
  // bin.ts uses when DATABASE_URL is unset); it validates every operation
  // with @did-plc/lib exactly like the Postgres store does.
  const plc = PlcServer.create({ db: Database.mock(), port: opts.port })
  const server = await plc.start()
  const { port } = server.address()
  if (opts.portFile) {
    // write-then-rename so a reader never sees a half-written file
    writeFileSync(`${opts.portFile}.tmp`, `${port}\n`)
    renameSync(`${opts.portFile}.tmp`, opts.portFile)
  }
  console.log(`plc directory listening on http://localhost:${port}`)

  // Nothing is persisted, so shutdown only has to stop accepting and drop
  // open (keep-alive) connections; do it at once rather than waiting on
  // http-terminator's grace period.
  let stopping = false
  const stop = (signal) => {
    if (stopping) return
    stopping = true
    console.log(`plc directory: ${signal}, shutting down`)
    server.close(() => process.exit(0))
    server.closeAllConnections()
    setTimeout(() => process.exit(0), 1000).unref()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main().catch((err) => {
  console.error('plc directory failed to start:', err)
  process.exit(1)
})
