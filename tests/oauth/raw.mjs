// A hand-made OAuth client for the negative cases: DPoP proofs, PKCE, PAR, the pages
// driven over plain HTTP (cookies and form tokens by hand), code and refresh grants, and
// private_key_jwt assertions. Everything is built from node:crypto, so each request can be
// bent in exactly one way.
import crypto from 'node:crypto'

export const env = {
  url: process.env.PERCH_URL,
  handle: process.env.PERCH_HANDLE,
  password: process.env.PERCH_PASSWORD,
  did: process.env.PERCH_DID,
}

const b64u = (buf) => Buffer.from(buf).toString('base64url')

export function newKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' })
  return { privateKey, publicKey, jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } }
}

export function signJwt(key, header, claims) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`
  const sig = crypto.sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
  return `${input}.${b64u(sig)}`
}

export const now = () => Math.floor(Date.now() / 1000)

/** A DPoP proof; `over` replaces or adds claims (undefined values are dropped). */
export function proof(key, method, url, { nonce, ath, over = {} } = {}) {
  const claims = { jti: crypto.randomUUID(), htm: method, htu: url, iat: now() }
  if (nonce) claims.nonce = nonce
  if (ath) claims.ath = ath
  Object.assign(claims, over)
  for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k]
  const alg = key.jwk.crv === 'secp256k1' ? 'ES256K' : 'ES256'
  return signJwt(key, { typ: 'dpop+jwt', alg, jwk: key.jwk }, claims)
}

export const ath = (token) => b64u(crypto.createHash('sha256').update(token).digest())

export function pkce() {
  const verifier = b64u(crypto.randomBytes(32))
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest())
  return { verifier, challenge }
}

const form = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined))

// One nonce serves every client of a server (as the spec allows); sharing it spares each new
// client its first `use_dpop_nonce` round trip.
const nonces = new Map()

/** A client of the OAuth endpoints with one DPoP key and the server's latest nonce. */
export class RawClient {
  constructor({ clientId, redirectUri, scope = 'atproto transition:generic', key = newKey(), assertion } = {}) {
    this.clientId = clientId
    this.redirectUri = redirectUri
    this.scope = scope
    this.key = key
    this.assertion = assertion // () => extra form fields for a confidential client
  }

  get nonce() {
    return nonces.get(env.url)
  }

  set nonce(n) {
    nonces.set(env.url, n)
  }

  async post(path, fields, { proofOver, noProof, noNonce, retry = true } = {}) {
    const url = `${env.url}${path}`
    const headers = { 'content-type': 'application/x-www-form-urlencoded' }
    if (!noProof) {
      headers.dpop = proof(this.key, 'POST', url, { nonce: noNonce ? undefined : this.nonce, over: proofOver })
    }
    const extra = this.assertion ? this.assertion() : {}
    const res = await fetch(url, { method: 'POST', headers, body: form({ ...fields, ...extra }) })
    const n = res.headers.get('dpop-nonce')
    if (n) this.nonce = n
    const body = await res.json()
    if (retry && !noNonce && res.status === 400 && body.error === 'use_dpop_nonce') {
      return this.post(path, fields, { proofOver, noProof, noNonce, retry: false })
    }
    return { status: res.status, body, headers: res.headers }
  }

  async par(over = {}) {
    this.pkce = pkce()
    this.state = b64u(crypto.randomBytes(12))
    return this.post('/oauth/par', {
      client_id: this.clientId,
      response_type: 'code',
      code_challenge: this.pkce.challenge,
      code_challenge_method: 'S256',
      state: this.state,
      redirect_uri: this.redirectUri,
      scope: this.scope,
      login_hint: env.handle,
      ...over,
    })
  }

  /** Signs in and approves on the pages over plain HTTP; returns the redirect's query. */
  async approve(requestUri, { password = env.password, decision = 'allow' } = {}) {
    const jar = new Map()
    const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
    const keep = (res) => {
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';')
        const i = pair.indexOf('=')
        jar.set(pair.slice(0, i), pair.slice(i + 1))
      }
    }
    const page = async (url) => {
      const res = await fetch(url, { headers: { cookie: cookies() }, redirect: 'manual' })
      keep(res)
      return { res, html: await res.text() }
    }
    const submit = async (path, fields) => {
      const res = await fetch(`${env.url}${path}`, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          cookie: cookies(),
          origin: env.url,
        },
        body: form(fields),
      })
      keep(res)
      return res
    }
    const authorize = `${env.url}/oauth/authorize?client_id=${encodeURIComponent(this.clientId)}&request_uri=${encodeURIComponent(requestUri)}`
    let { res, html } = await page(authorize)
    if (res.status !== 200) throw new Error(`authorize page: ${res.status} ${html}`)
    const csrf = () => html.match(/name="csrf" value="([^"]+)"/)?.[1]
    if (html.includes('name="password"')) {
      const signIn = await submit('/oauth/authorize/sign-in', {
        client_id: this.clientId,
        request_uri: requestUri,
        csrf: csrf(),
        password,
      })
      if (signIn.status !== 303) return { signInStatus: signIn.status, html: await signIn.text() }
      ;({ res, html } = await page(new URL(signIn.headers.get('location'), env.url).href))
    }
    let location
    if (res.status === 303) {
      location = res.headers.get('location')
    } else {
      this.consentHtml = html
      const consent = await submit('/oauth/authorize/consent', {
        client_id: this.clientId,
        request_uri: requestUri,
        csrf: csrf(),
        decision,
        remember: '1',
      })
      if (consent.status !== 303) throw new Error(`consent: ${consent.status} ${await consent.text()}`)
      location = consent.headers.get('location')
    }
    const u = new URL(location)
    return Object.fromEntries(u.searchParams)
  }

  async exchange(code, over = {}, opts = {}) {
    return this.post(
      '/oauth/token',
      {
        grant_type: 'authorization_code',
        code,
        code_verifier: this.pkce.verifier,
        redirect_uri: this.redirectUri,
        client_id: this.clientId,
        ...over,
      },
      opts,
    )
  }

  async refresh(refreshToken, opts = {}) {
    return this.post(
      '/oauth/token',
      { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: this.clientId },
      opts,
    )
  }

  /** The whole flow: a session's tokens. */
  async signIn(parOver = {}) {
    const par = await this.par(parOver)
    if (par.status !== 201) throw new Error(`par: ${par.status} ${JSON.stringify(par.body)}`)
    const q = await this.approve(par.body.request_uri)
    if (!q.code) throw new Error(`no code: ${JSON.stringify(q)}`)
    const t = await this.exchange(q.code)
    if (t.status !== 200) throw new Error(`token: ${t.status} ${JSON.stringify(t.body)}`)
    return t.body
  }

  /** An XRPC call with the access token and a DPoP proof. */
  async xrpc(method, nsid, { token, body, query = '', proofOver, scheme = 'DPoP', noProof, retry = true } = {}) {
    const url = `${env.url}/xrpc/${nsid}`
    const headers = { authorization: `${scheme} ${token}` }
    if (!noProof) headers.dpop = proof(this.key, method, url, { nonce: this.nonce, ath: ath(token), over: proofOver })
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${url}${query}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const n = res.headers.get('dpop-nonce')
    if (n) this.nonce = n
    const text = await res.text()
    let json
    try {
      json = JSON.parse(text)
    } catch {
      json = text
    }
    if (retry && res.status === 401 && (res.headers.get('www-authenticate') ?? '').includes('use_dpop_nonce')) {
      return this.xrpc(method, nsid, { token, body, query, proofOver, scheme, noProof, retry: false })
    }
    return { status: res.status, body: json, headers: res.headers }
  }
}

export const loopbackClientId = (redirectUri, scope) =>
  `http://localhost?redirect_uri=${encodeURIComponent(redirectUri)}&scope=${encodeURIComponent(scope)}`
