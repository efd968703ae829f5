#!/usr/bin/env node
// Small helpers for run.sh (kept in Node so the script needs nothing but
// bash, node and npm):
//
//   node harness.mjs free-port             print a free TCP port on 127.0.0.1
//   node harness.mjs probe URL             exit 0 iff GET URL answers 200
//   node harness.mjs whoami URL ID PASS    log in, print the account's DID
import net from 'node:net'

const [cmd, ...args] = process.argv.slice(2)

async function freePort() {
  const server = net.createServer()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function probe(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
  await res.arrayBuffer()
  return res.status === 200
}

async function whoami(url, identifier, password) {
  const res = await fetch(`${url}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier, password }),
    signal: AbortSignal.timeout(10_000),
  })
  const body = await res.text()
  if (res.status !== 200) {
    throw new Error(`createSession: HTTP ${res.status} ${body.slice(0, 300)}`)
  }
  const { did } = JSON.parse(body)
  if (typeof did !== 'string' || !did.startsWith('did:')) {
    throw new Error(`createSession returned no DID: ${body.slice(0, 300)}`)
  }
  return did
}

try {
  if (cmd === 'free-port' && args.length === 0) {
    console.log(await freePort())
  } else if (cmd === 'probe' && args.length === 1) {
    process.exitCode = (await probe(args[0])) ? 0 : 1
  } else if (cmd === 'whoami' && args.length === 3) {
    console.log(await whoami(...args))
  } else {
    console.error('usage: harness.mjs free-port | probe URL | whoami URL IDENTIFIER PASSWORD')
    process.exitCode = 2
  }
} catch (err) {
  if (cmd !== 'probe') console.error(`harness ${cmd}: ${err.message ?? err}`)
  process.exitCode = 1
}
