#!/usr/bin/env node
// A mail relay for the tests: speaks enough SMTP for perch's client (EHLO, AUTH PLAIN,
// MAIL, RCPT, DATA, QUIT) and writes each accepted message to DIR/<n>.json as
// { from, to, auth, data }. Listens on 127.0.0.1; its port goes to --port-file.
//
//   node smtp-sink.mjs --dir DIR --port-file FILE
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'

const arg = (name) => {
  const i = process.argv.indexOf(name)
  if (i < 0 || !process.argv[i + 1]) throw new Error(`${name} is required`)
  return process.argv[i + 1]
}
const dir = arg('--dir')
const portFile = arg('--port-file')
fs.mkdirSync(dir, { recursive: true })
let count = 0

const server = net.createServer((sock) => {
  let buf = ''
  let inData = false
  let msg = { from: null, to: [], auth: null, data: '' }
  const say = (line) => sock.write(`${line}\r\n`)
  say('220 sink.test ESMTP')
  sock.on('data', (chunk) => {
    buf += chunk.toString('latin1')
    let i
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 2)
      if (inData) {
        if (line === '.') {
          inData = false
          count += 1
          const file = path.join(dir, `${String(count).padStart(4, '0')}.json`)
          fs.writeFileSync(`${file}.tmp`, JSON.stringify(msg))
          fs.renameSync(`${file}.tmp`, file)
          msg = { from: null, to: [], auth: msg.auth, data: '' }
          say('250 2.0.0 queued')
        } else {
          msg.data += `${line.startsWith('..') ? line.slice(1) : line}\n`
        }
        continue
      }
      const upper = line.toUpperCase()
      if (upper.startsWith('EHLO') || upper.startsWith('HELO')) {
        sock.write('250-sink.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n')
      } else if (upper.startsWith('AUTH PLAIN ')) {
        msg.auth = Buffer.from(line.slice(11), 'base64').toString('utf8').split('\0').slice(1)
        say('235 2.7.0 ok')
      } else if (upper.startsWith('MAIL FROM:')) {
        msg.from = line.slice(10).replace(/^<|>$/g, '')
        say('250 ok')
      } else if (upper.startsWith('RCPT TO:')) {
        msg.to.push(line.slice(8).replace(/^<|>$/g, ''))
        say('250 ok')
      } else if (upper === 'DATA') {
        inData = true
        say('354 go ahead')
      } else if (upper === 'QUIT') {
        say('221 bye')
        sock.end()
      } else {
        say('502 not here')
      }
    }
  })
  sock.on('error', () => {})
})
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile, String(server.address().port))
})
