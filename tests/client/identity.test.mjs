// Identity: the DID document (at the local PLC directory for did:plc, on the
// server itself for did:web), handle resolution, and /.well-known/atproto-did.
import assert from 'node:assert/strict'
import http from 'node:http'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { describe, test } from 'node:test'
import { env, login, newAgent } from './lib.mjs'

const require = createRequire(import.meta.url)
const plc = require('@did-plc/lib')

const isPlc = env.did.startsWith('did:plc:')
const isWeb = env.did.startsWith('did:web:')

function service(doc, id) {
  return (doc.service ?? []).find((s) => s.id === `#${id}` || s.id === `${doc.id}#${id}`)
}

function checkDoc(doc) {
  assert.equal(doc.id, env.did)
  assert.ok(
    (doc.alsoKnownAs ?? []).includes(`at://${env.handle}`),
    `alsoKnownAs ${JSON.stringify(doc.alsoKnownAs)} lacks at://${env.handle}`,
  )
  const pds = service(doc, 'atproto_pds')
  assert.ok(pds, `no #atproto_pds service in ${JSON.stringify(doc.service)}`)
  assert.equal(pds.type, 'AtprotoPersonalDataServer')
  assert.equal(pds.serviceEndpoint, env.url)
  const key = (doc.verificationMethod ?? []).find(
    (m) => m.id === '#atproto' || m.id === `${doc.id}#atproto`,
  )
  assert.ok(key, 'no #atproto verification method')
  assert.match(key.publicKeyMultibase, /^z[1-9A-HJ-NP-Za-km-z]+$/)
}

async function getJson(url) {
  const res = await fetch(url)
  const text = await res.text()
  assert.equal(res.status, 200, `GET ${url}: ${res.status} ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

/** GET with an arbitrary Host header (fetch() does not allow setting it). */
function getWithHost(path, host) {
  const target = new URL(env.url)
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname: target.hostname,
        port: target.port,
        path,
        method: 'GET',
        headers: { host },
      },
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')))
    req.end()
  })
}

describe('did:plc at the local directory', { skip: !isPlc && 'the account is not did:plc' }, () => {
  test('the directory serves a document pointing at this server', async () => {
    assert.ok(env.plcUrl, 'PLC_URL must be set for a did:plc account')
    checkDoc(await getJson(`${env.plcUrl}/${env.did}`))
  })

  test('the operation log is valid per the official @did-plc/lib', async () => {
    const log = await getJson(`${env.plcUrl}/${env.did}/log`)
    assert.ok(log.length >= 1)
    assert.equal(log[0].type, 'plc_operation', 'genesis must be a modern plc_operation')
    assert.equal(log[0].prev, null)
    const data = await plc.validateOperationLog(env.did, log)
    assert.equal(data.did, env.did)
    assert.equal(data.services.atproto_pds.endpoint, env.url)
    assert.ok(data.rotationKeys.length >= 1)
    assert.match(data.verificationMethods.atproto, /^did:key:z/)
  })

  test('updateHandle signs a PLC update the directory accepts, and back again', async () => {
    const agent = await login()
    const other = `renamed-${Date.now()}.test`
    for (const handle of [other, env.handle]) {
      await agent.com.atproto.identity.updateHandle({ handle })
      const data = await getJson(`${env.plcUrl}/${env.did}/data`)
      assert.deepEqual(data.alsoKnownAs, [`at://${handle}`])
      const log = await getJson(`${env.plcUrl}/${env.did}/log`)
      // The whole log, including our update, is valid per @did-plc/lib.
      await plc.validateOperationLog(env.did, log)
      const { data: resolved } = await newAgent().com.atproto.identity.resolveHandle({ handle })
      assert.equal(resolved.did, env.did)
    }
  })

  test('signPlcOperation + submitPlcOperation, with a token from `perch account plc-token`', async () => {
    assert.ok(process.env.PERCH_BIN && process.env.PERCH_DATA_DIR, 'run.sh passes PERCH_BIN and PERCH_DATA_DIR')
    const agent = await login()
    const id = agent.com.atproto.identity
    await id.requestPlcOperationSignature()
    await assert.rejects(
      id.signPlcOperation({ token: 'NOPE-NOPE' }),
      (e) => e.error === 'InvalidToken',
    )
    const token = execFileSync(process.env.PERCH_BIN, [
      'account', 'plc-token', '--dev', '--data-dir', process.env.PERCH_DATA_DIR,
    ]).toString().trim()
    assert.match(token, /^[0-9A-F]{5}-[0-9A-F]{5}$/)
    const extra = 'https://perch.example/alice'
    const { data } = await id.signPlcOperation({
      token,
      alsoKnownAs: [`at://${env.handle}`, extra],
    })
    // A token works once.
    await assert.rejects(id.signPlcOperation({ token }), (e) => e.error === 'InvalidToken')
    await id.submitPlcOperation({ operation: data.operation })
    const state = await getJson(`${env.plcUrl}/${env.did}/data`)
    assert.deepEqual(state.alsoKnownAs, [`at://${env.handle}`, extra])
    await plc.validateOperationLog(env.did, await getJson(`${env.plcUrl}/${env.did}/log`))
    // An operation that would move the account away is not submitted here.
    const foreign = { ...data.operation, verificationMethods: { atproto: 'did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc' } }
    await assert.rejects(id.submitPlcOperation({ operation: foreign }), (e) => e.status === 400)
    // Put the document back as the other tests expect it.
    const again = execFileSync(process.env.PERCH_BIN, [
      'account', 'plc-token', '--dev', '--data-dir', process.env.PERCH_DATA_DIR,
    ]).toString().trim()
    const back = await id.signPlcOperation({ token: again, alsoKnownAs: [`at://${env.handle}`] })
    await id.submitPlcOperation({ operation: back.data.operation })
    assert.deepEqual((await getJson(`${env.plcUrl}/${env.did}/data`)).alsoKnownAs, [`at://${env.handle}`])
  })

  test('getRecommendedDidCredentials matches the directory', async () => {
    const agent = await login()
    const { data: rec } = await agent.com.atproto.identity.getRecommendedDidCredentials()
    const data = await getJson(`${env.plcUrl}/${env.did}/data`)
    assert.deepEqual(rec.rotationKeys, data.rotationKeys)
    assert.deepEqual(rec.verificationMethods, data.verificationMethods)
    assert.deepEqual(rec.services, data.services)
    assert.deepEqual(rec.alsoKnownAs, data.alsoKnownAs)
  })

  test('the document the server reports matches the directory', async () => {
    const data = await getJson(`${env.plcUrl}/${env.did}/data`)
    const { data: described } = await newAgent().com.atproto.repo.describeRepo({
      repo: env.did,
    })
    assert.equal(described.didDoc.id, env.did)
    assert.equal(service(described.didDoc, 'atproto_pds')?.serviceEndpoint, data.services.atproto_pds.endpoint)
    assert.deepEqual(described.didDoc.alsoKnownAs, data.alsoKnownAs)
  })
})

describe('did:web on the server', { skip: !isWeb && 'the account is not did:web' }, () => {
  test('the server serves the did:web document', async () => {
    // did:web:<host>[:<path>...] lives at https://<host>/.well-known/did.json
    // (or /<path>/did.json); ask this server for it under that Host.
    const [host, ...path] = env.did.slice('did:web:'.length).split(':').map(decodeURIComponent)
    const docPath = path.length ? `/${path.join('/')}/did.json` : '/.well-known/did.json'
    const res = await getWithHost(docPath, host)
    assert.equal(res.status, 200, `GET ${docPath} (Host: ${host}): ${res.status} ${res.body.slice(0, 300)}`)
    checkDoc(JSON.parse(res.body))
  })
})

describe('handles', () => {
  test('resolveHandle maps the handle to the DID', async () => {
    const { data } = await newAgent().com.atproto.identity.resolveHandle({
      handle: env.handle,
    })
    assert.equal(data.did, env.did)
  })

  test('/.well-known/atproto-did for the handle host is the DID', async () => {
    const res = await getWithHost('/.well-known/atproto-did', env.handle)
    assert.equal(res.status, 200, `${res.status} ${res.body.slice(0, 300)}`)
    assert.equal(res.body.trim(), env.did)
    assert.match(String(res.headers['content-type'] ?? ''), /^text\/plain/)
  })
})
