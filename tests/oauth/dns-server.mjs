// A DNS server on loopback that answers TXT questions from a JSON file ({ "name": ["txt",
// ...] }, read on every question so the test can fill it after start) and NXDOMAIN for
// anything else: perch's `_lexicon` lookups for permission sets go here
// (PERCH_DNS_RESOLVER, honoured only with PERCH_ALLOW_LOOPBACK).
//
//   node dns-server.mjs --records FILE --port-file FILE
import dgram from 'node:dgram'
import { readFileSync, writeFileSync } from 'node:fs'

const arg = (name) => process.argv[process.argv.indexOf(name) + 1]
const recordsFile = arg('--records')
const portFile = arg('--port-file')

function records() {
  try {
    return JSON.parse(readFileSync(recordsFile, 'utf8'))
  } catch {
    return {}
  }
}

function questionName(msg) {
  const labels = []
  let i = 12
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i]
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('ascii'))
    i += 1 + len
  }
  return { name: labels.join('.').toLowerCase(), end: i + 5 }
}

const server = dgram.createSocket('udp4')
server.on('message', (msg, rinfo) => {
  if (msg.length < 17) return
  const { name, end } = questionName(msg)
  const qtype = msg.readUInt16BE(end - 4)
  const txts = qtype === 16 ? records()[name] : undefined
  const header = Buffer.alloc(12)
  msg.copy(header, 0, 0, 2)
  header.writeUInt16BE(txts ? 0x8180 : 0x8183, 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(txts ? txts.length : 0, 6)
  const question = msg.subarray(12, end)
  const answers = (txts ?? []).map((t) => {
    const data = Buffer.from(t, 'utf8')
    const rr = Buffer.alloc(12)
    rr.writeUInt16BE(0xc00c, 0)
    rr.writeUInt16BE(16, 2)
    rr.writeUInt16BE(1, 4)
    rr.writeUInt32BE(60, 6)
    rr.writeUInt16BE(data.length + 1, 10)
    return Buffer.concat([rr, Buffer.from([data.length]), data])
  })
  server.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address)
})
server.bind(0, '127.0.0.1', () => {
  writeFileSync(portFile, String(server.address().port))
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
