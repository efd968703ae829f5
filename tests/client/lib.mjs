// Shared helpers for the client suite. The *.test.mjs files import this; it
// is not a test file itself (run.sh only runs *.test.mjs).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { deflateSync } from 'node:zlib'
import { AtpAgent } from '@atproto/api'

function required(name) {
  const value = process.env[name]
  if (!value) {
    throw new Error(
      `${name} is not set: run the suite through tests/client/run.sh`,
    )
  }
  return value
}

/** Where the server under test is and who lives there (set by run.sh). */
export const env = {
  url: required('PERCH_URL').replace(/\/+$/, ''),
  handle: required('PERCH_HANDLE'),
  password: required('PERCH_PASSWORD'),
  did: required('PERCH_DID'),
  plcUrl: process.env.PLC_URL ? process.env.PLC_URL.replace(/\/+$/, '') : null,
  blobLimit: Number(process.env.PERCH_BLOB_LIMIT || 1024 * 1024),
}

/** A fresh official client, not logged in. */
export function newAgent() {
  return new AtpAgent({ service: env.url })
}

/** A fresh official client logged in as the account (own session). */
export async function login(password = env.password) {
  const agent = newAgent()
  await agent.login({ identifier: env.handle, password })
  return agent
}

/**
 * Raw XRPC call with fetch (no client-side validation, no retries).
 * Returns { status, headers, text, json, bytes }; json is null when the body
 * is not JSON.
 */
export async function xrpc(nsid, opts = {}) {
  const {
    method = 'GET',
    params,
    body,
    json,
    token,
    headers = {},
    contentType,
  } = opts
  const url = new URL(`${env.url}/xrpc/${nsid}`)
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined) continue
    for (const item of Array.isArray(v) ? v : [v]) {
      url.searchParams.append(k, String(item))
    }
  }
  const h = { ...headers }
  if (token) h.authorization = `Bearer ${token}`
  let payload = body
  if (json !== undefined) {
    payload = JSON.stringify(json)
    h['content-type'] = 'application/json'
  }
  if (contentType) h['content-type'] = contentType
  let res
  try {
    res = await fetch(url, { method, headers: h, body: payload })
  } catch (err) {
    // A connection reset while the request body is still being sent usually
    // means the server answered early and closed without reading the body.
    throw new Error(
      `${method} ${url.pathname}: request failed before a response was read ` +
        `(${err?.cause?.code ?? err?.cause?.message ?? err}). If the server ` +
        `rejects a body early it must still read (drain) it, or close ` +
        `gracefully, so the client can see the response.`,
      { cause: err },
    )
  }
  const bytes = new Uint8Array(await res.arrayBuffer())
  const text = new TextDecoder().decode(bytes)
  let parsed = null
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = null
  }
  return { status: res.status, headers: res.headers, text, json: parsed, bytes }
}

/**
 * Asserts that a raw response is an XRPC error: the given status (or one of
 * them), a JSON body with string `error` and `message`, and, if given, the
 * error name (or one of them).
 */
export function assertXrpcError(res, status, error, what = '') {
  const label = what ? `${what}: ` : ''
  const statuses = Array.isArray(status) ? status : [status]
  assert.ok(
    statuses.includes(res.status),
    `${label}expected HTTP ${statuses.join(' or ')}, got ${res.status}: ${res.text.slice(0, 300)}`,
  )
  const ctype = res.headers.get('content-type') ?? ''
  assert.match(
    ctype,
    /^application\/json/i,
    `${label}error responses must be JSON, got content-type "${ctype}"`,
  )
  assert.ok(
    res.json && typeof res.json === 'object',
    `${label}error body is not a JSON object: ${res.text.slice(0, 300)}`,
  )
  assert.equal(
    typeof res.json.error,
    'string',
    `${label}error body needs a string "error": ${res.text.slice(0, 300)}`,
  )
  assert.ok(res.json.error.length > 0, `${label}"error" is empty`)
  assert.equal(
    typeof res.json.message,
    'string',
    `${label}error body needs a string "message": ${res.text.slice(0, 300)}`,
  )
  if (error !== undefined) {
    const names = Array.isArray(error) ? error : [error]
    assert.ok(
      names.includes(res.json.error),
      `${label}expected error ${names.join(' or ')}, got ${res.json.error} (${res.json.message})`,
    )
  }
  return res.json
}

/**
 * Awaits a client call that must fail with an XRPC error; checks status,
 * error name and (optionally) message, each a value or a list of values.
 */
export async function expectXrpcError(promise, { status, error, message }) {
  let thrown
  try {
    await promise
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, 'expected the call to fail, but it succeeded')
  const oneOf = (v) => (Array.isArray(v) ? v : [v])
  if (status !== undefined) {
    assert.ok(
      oneOf(status).includes(thrown.status),
      `expected status ${oneOf(status).join(' or ')}, got ${thrown.status} (${thrown.error}: ${thrown.message})`,
    )
  }
  if (error !== undefined) {
    assert.ok(
      oneOf(error).includes(thrown.error),
      `expected error ${oneOf(error).join(' or ')}, got ${thrown.error} (${thrown.status}: ${thrown.message})`,
    )
  }
  if (message !== undefined) {
    assert.ok(
      oneOf(message).includes(thrown.message),
      `expected message ${oneOf(message).map((m) => JSON.stringify(m)).join(' or ')}, got ${JSON.stringify(thrown.message)}`,
    )
  }
  return thrown
}

/** com.atproto.sync.getLatestCommit for the account, as { cid, rev }. */
export async function latestCommit() {
  const res = await xrpc('com.atproto.sync.getLatestCommit', {
    params: { did: env.did },
  })
  assert.equal(res.status, 200, `getLatestCommit: ${res.status} ${res.text}`)
  assert.equal(typeof res.json.cid, 'string')
  assert.equal(typeof res.json.rev, 'string')
  return { cid: res.json.cid, rev: res.json.rev }
}

/** The payload of a JWT, or null if the token is not a JWT. */
export function jwtPayload(token) {
  const parts = String(token).split('.')
  if (parts.length !== 3) return null
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
  } catch {
    return null
  }
}

/** The rkey (last path segment) of an at:// URI. */
export function rkeyOf(uri) {
  return uri.split('/').pop()
}

/** A syntactically valid did:plc that nobody has registered. */
export function strangerDid(seed = 'stranger') {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  const h = createHash('sha256').update(seed).digest()
  let id = ''
  for (let i = 0; i < 24; i++) id += alphabet[h[i] % 32]
  return `did:plc:${id}`
}

// --- bytes -----------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

function crc32(bytes) {
  let c = 0xffffffff
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function pngChunk(type, data) {
  const out = Buffer.alloc(12 + data.length)
  out.writeUInt32BE(data.length, 0)
  out.write(type, 4, 'ascii')
  Buffer.from(data).copy(out, 8)
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length)
  return out
}

/**
 * A valid RGB PNG of the given size, made here (no files): a gradient whose
 * colours depend on `seed`, so different seeds give different bytes.
 */
export function makePng(width = 8, height = 8, seed = 1) {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: truecolour
  ihdr[10] = 0 // compression
  ihdr[11] = 0 // filter
  ihdr[12] = 0 // no interlace
  const raw = Buffer.alloc(height * (1 + width * 3))
  let o = 0
  for (let y = 0; y < height; y++) {
    raw[o++] = 0 // filter: none
    for (let x = 0; x < width; x++) {
      raw[o++] = (x * 31 + seed * 17) & 0xff
      raw[o++] = (y * 47 + seed * 29) & 0xff
      raw[o++] = (x * y + seed * 53) & 0xff
    }
  }
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', deflateSync(raw)),
      pngChunk('IEND', Buffer.alloc(0)),
    ]),
  )
}

function base32lower(bytes) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

/** The CIDv1 (raw codec, sha2-256, base32) that atproto uses for a blob. */
export function blobCid(bytes) {
  const digest = createHash('sha256').update(bytes).digest()
  return 'b' + base32lower(Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]))
}
