#!/usr/bin/env node
// A relay stand-in for the owner's page: it answers getHostStatus and getRepoStatus and
// counts requestCrawl calls.
//
//   node relay-stand-in.mjs --mode idle|follow --port-file FILE [--perch URL]
//
// `idle`: the host is idle and the repo unknown (a relay that stopped following).
// `follow`: the host is active and the repo's rev is the PDS's own (read from --perch on
// every question), as a relay that keeps up.
// GET /_stand-in answers {"crawls": N, "mode": "..."}; POST /_stand-in?mode=M changes mode.
import http from 'node:http'
import { writeFileSync } from 'node:fs'

const args = process.argv.slice(2)
const opt = (name) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
let mode = opt('mode') ?? 'idle'
const perch = opt('perch')
let crawls = 0

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://relay')
  try {
    switch (url.pathname) {
      case '/_stand-in':
        if (req.method === 'POST') mode = url.searchParams.get('mode') ?? mode
        return send(res, 200, { crawls, mode })
      case '/xrpc/com.atproto.sync.requestCrawl':
        crawls += 1
        return send(res, 200, {})
      case '/xrpc/com.atproto.sync.getHostStatus': {
        const hostname = url.searchParams.get('hostname')
        const status = mode === 'follow' ? 'active' : 'idle'
        return send(res, 200, { hostname, seq: 1, status })
      }
      case '/xrpc/com.atproto.sync.getRepoStatus': {
        const did = url.searchParams.get('did')
        if (mode !== 'follow') return send(res, 400, { error: 'RepoNotFound', message: 'not here' })
        const r = await fetch(`${perch}/xrpc/com.atproto.sync.getLatestCommit?did=${encodeURIComponent(did)}`)
        const { rev } = await r.json()
        return send(res, 200, { did, active: true, rev })
      }
      default:
        return send(res, 404, { error: 'NotFound', message: 'no such method' })
    }
  } catch (e) {
    return send(res, 500, { error: 'InternalServerError', message: String(e) })
  }
})

server.listen(0, '127.0.0.1', () => {
  writeFileSync(opt('port-file'), String(server.address().port))
})
