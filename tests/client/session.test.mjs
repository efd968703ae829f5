// Sessions and app passwords, through the official @atproto/api client.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  env,
  expectXrpcError,
  jwtPayload,
  login,
  newAgent,
  xrpc,
} from './lib.mjs'

// What the reference PDS answers for any failed password login (unknown
// identifier or wrong password alike, so accounts cannot be enumerated).
const BAD_LOGIN = {
  status: 401,
  error: 'AuthenticationRequired',
  message: 'Invalid identifier or password',
}

function pdsEndpoint(didDoc) {
  const service = (didDoc?.service ?? []).find(
    (s) => s.id === '#atproto_pds' || s.id === `${didDoc.id}#atproto_pds`,
  )
  return service?.serviceEndpoint
}

describe('createSession', () => {
  test('logs in with handle and password', async () => {
    const agent = await login()
    const s = agent.session
    assert.equal(s.did, env.did)
    assert.equal(s.handle, env.handle)
    assert.ok(s.accessJwt, 'no access token')
    assert.ok(s.refreshJwt, 'no refresh token')
    assert.notEqual(s.accessJwt, s.refreshJwt)
    // If the server hands back a DID document, the client switches to the
    // PDS endpoint in it: it must point back at this server.
    assert.equal(agent.pdsUrl ? agent.pdsUrl.origin : env.url, new URL(env.url).origin)
  })

  test('logs in with the DID as identifier', async () => {
    const agent = newAgent()
    await agent.login({ identifier: env.did, password: env.password })
    assert.equal(agent.session.did, env.did)
  })

  test('getSession describes the logged-in account', async () => {
    const agent = await login()
    const { data } = await agent.com.atproto.server.getSession()
    assert.equal(data.did, env.did)
    assert.equal(data.handle, env.handle)
    if (data.didDoc !== undefined) {
      assert.equal(data.didDoc.id, env.did)
      assert.equal(pdsEndpoint(data.didDoc), env.url)
    }
    if (data.active !== undefined) assert.equal(data.active, true)
  })

  test('wrong password is refused with 401 AuthenticationRequired', async () => {
    const agent = newAgent()
    await expectXrpcError(
      agent.login({ identifier: env.handle, password: `${env.password}-wrong` }),
      BAD_LOGIN,
    )
    assert.equal(agent.hasSession, false)
  })

  test('unknown handle is refused exactly like a wrong password', async () => {
    await expectXrpcError(
      newAgent().login({ identifier: 'nobody-here.test', password: env.password }),
      BAD_LOGIN,
    )
  })

  test('getSession without a token is refused with 401', async () => {
    const res = await xrpc('com.atproto.server.getSession')
    assert.equal(res.status, 401, res.text)
  })
})

describe('refreshSession', () => {
  test('rotates the refresh token and the new tokens work', async () => {
    const agent = await login()
    const before = { ...agent.session }
    await agent.sessionManager.refreshSession()
    const after = agent.session
    assert.equal(after.did, env.did)
    assert.equal(after.handle, env.handle)
    // (the access token may come out byte-identical within the same second,
    // as the reference's does: it carries no id; the refresh token must not)
    assert.ok(after.accessJwt, 'no new access token')
    assert.notEqual(after.refreshJwt, before.refreshJwt, 'refresh token not rotated')
    const { data } = await agent.com.atproto.server.getSession()
    assert.equal(data.did, env.did)
  })

  test('reusing the old refresh token never yields a second, different session', async () => {
    // The reference PDS keeps a rotated refresh token usable for a grace
    // period (2 h) so a client that lost the response can retry, but every
    // reuse hands back a token with the SAME id (jti) as the first rotation.
    // Outright refusal (400 ExpiredToken/InvalidToken or 401) is also fine.
    const agent = await login()
    const old = agent.session.refreshJwt
    await agent.sessionManager.refreshSession()
    const next = agent.session.refreshJwt

    const res = await xrpc('com.atproto.server.refreshSession', {
      method: 'POST',
      token: old,
    })
    if (res.status === 200) {
      assert.equal(res.json.did, env.did)
      const a = jwtPayload(next)
      const b = jwtPayload(res.json.refreshJwt)
      if (a?.jti !== undefined || b?.jti !== undefined) {
        assert.equal(
          b?.jti,
          a?.jti,
          'reuse of a rotated refresh token must map to the same successor token id',
        )
      }
    } else if (res.status === 400) {
      assert.ok(
        ['ExpiredToken', 'InvalidToken'].includes(res.json?.error),
        `400 must be ExpiredToken or InvalidToken, got ${res.text}`,
      )
    } else {
      assert.equal(res.status, 401, `unexpected answer: ${res.status} ${res.text}`)
    }
  })

  test('an access token is not accepted as a refresh token', async () => {
    const agent = await login()
    const res = await xrpc('com.atproto.server.refreshSession', {
      method: 'POST',
      token: agent.session.accessJwt,
    })
    // reference: 400 InvalidToken "Bad token scope"
    assert.ok([400, 401].includes(res.status), `${res.status} ${res.text}`)
    if (res.status === 400) assert.equal(res.json?.error, 'InvalidToken', res.text)
  })

  test('a refresh token is not accepted as an access token', async () => {
    const agent = await login()
    const res = await xrpc('com.atproto.server.getSession', {
      token: agent.session.refreshJwt,
    })
    // reference: 400 InvalidToken "Bad token scope"
    assert.ok([400, 401].includes(res.status), `${res.status} ${res.text}`)
    if (res.status === 400) assert.equal(res.json?.error, 'InvalidToken', res.text)
  })
})

describe('deleteSession', () => {
  test('revokes the refresh token', async () => {
    const agent = await login()
    const { refreshJwt } = agent.session
    const del = await xrpc('com.atproto.server.deleteSession', {
      method: 'POST',
      token: refreshJwt,
    })
    assert.equal(del.status, 200, `deleteSession: ${del.status} ${del.text}`)

    const res = await xrpc('com.atproto.server.refreshSession', {
      method: 'POST',
      token: refreshJwt,
    })
    // reference: 400 ExpiredToken "Token has been revoked"
    assert.ok([400, 401].includes(res.status), `refresh after delete: ${res.status} ${res.text}`)
    if (res.status === 400) {
      assert.ok(['ExpiredToken', 'InvalidToken'].includes(res.json?.error), res.text)
    }
  })

  test('the client logout() clears the session', async () => {
    const agent = await login()
    await agent.logout()
    assert.equal(agent.hasSession, false)
  })
})

describe('app passwords', () => {
  const name = `client-suite-${process.pid}-${Date.now()}`
  let main
  let created

  test('create returns a xxxx-xxxx-xxxx-xxxx password once', async () => {
    main = await login()
    const { data } = await main.com.atproto.server.createAppPassword({ name })
    created = data
    assert.equal(data.name, name)
    assert.match(
      data.password,
      /^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/,
      'clients recognise app passwords by the 4x4 format',
    )
    assert.ok(!Number.isNaN(Date.parse(data.createdAt)), 'createdAt is not a datetime')
  })

  test('list shows the name but never the password', async () => {
    const { data } = await main.com.atproto.server.listAppPasswords()
    const entry = data.passwords.find((p) => p.name === name)
    assert.ok(entry, `${name} missing from ${JSON.stringify(data.passwords)}`)
    for (const p of data.passwords) {
      assert.equal('password' in p, false, 'listAppPasswords must not return passwords')
    }
    assert.equal(JSON.stringify(data).includes(created.password), false)
  })

  let appAgent
  test('logs in with the app password', async () => {
    appAgent = await login(created.password)
    assert.equal(appAgent.session.did, env.did)
    const { data } = await appAgent.com.atproto.server.getSession()
    assert.equal(data.did, env.did)
  })

  test('an app-password session cannot create app passwords', async () => {
    // reference: 400 InvalidToken "Bad token scope"
    const err = await expectXrpcError(
      appAgent.com.atproto.server.createAppPassword({ name: `${name}-2` }),
      { status: [400, 401, 403] },
    )
    assert.equal(typeof err.error, 'string')
    const { data } = await main.com.atproto.server.listAppPasswords()
    assert.equal(data.passwords.some((p) => p.name === `${name}-2`), false)
  })

  test('revoke: the password no longer logs in, its sessions no longer refresh', async () => {
    const refreshJwt = appAgent.session.refreshJwt
    await main.com.atproto.server.revokeAppPassword({ name })

    const { data } = await main.com.atproto.server.listAppPasswords()
    assert.equal(data.passwords.some((p) => p.name === name), false)

    await expectXrpcError(
      newAgent().login({ identifier: env.handle, password: created.password }),
      BAD_LOGIN,
    )

    const res = await xrpc('com.atproto.server.refreshSession', {
      method: 'POST',
      token: refreshJwt,
    })
    assert.ok(
      [400, 401].includes(res.status),
      `refresh with a revoked app password's token: ${res.status} ${res.text}`,
    )
  })
})
