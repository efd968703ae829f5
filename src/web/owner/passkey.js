// Passkeys on the owner's page: the browser's WebAuthn calls and the forms around them.
// Served from /account/passkey.js (the pages allow scripts from this origin only).
'use strict'

const b64u = {
  enc: (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, ''),
  dec: (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)),
}

async function post(url, fields) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
    credentials: 'same-origin',
  })
  const body = await r.json().catch(() => ({}))
  if (!r.ok) throw new Error(body.message || `the server answered ${r.status}`)
  return body
}

function say(id, text) {
  const el = document.getElementById(id)
  el.textContent = text
  el.hidden = !text
}

function ids(list) {
  return list.map((id) => ({ type: 'public-key', id: b64u.dec(id) }))
}

const add = document.getElementById('passkey-add')
if (add) {
  add.addEventListener('submit', async (e) => {
    e.preventDefault()
    const f = new FormData(add)
    say('passkey-add-error', '')
    try {
      if (!window.PublicKeyCredential) throw new Error('This browser cannot make passkeys.')
      const o = await post('/account/passkeys/options', { csrf: f.get('csrf'), password: f.get('password') })
      const cred = await navigator.credentials.create({
        publicKey: {
          challenge: b64u.dec(o.challenge),
          rp: { id: o.rpId, name: o.rpName },
          user: { id: b64u.dec(o.userId), name: o.userName, displayName: o.userName },
          pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
          authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
          attestation: 'none',
          excludeCredentials: ids(o.exclude),
          timeout: 120000,
        },
      })
      await post('/account/passkeys', {
        csrf: f.get('csrf'),
        name: f.get('name'),
        clientDataJSON: b64u.enc(cred.response.clientDataJSON),
        attestationObject: b64u.enc(cred.response.attestationObject),
      })
      location.assign('/account?done=passkey-added#passkeys')
    } catch (err) {
      say('passkey-add-error', err.message)
    }
  })
}

const signIn = document.getElementById('passkey-sign-in')
if (signIn && window.PublicKeyCredential) {
  signIn.hidden = false
  signIn.addEventListener('click', async () => {
    say('passkey-error', '')
    try {
      // On the OAuth sign-in page the answer goes with that form's fields (not the password).
      const extra = signIn.dataset.form
        ? Object.fromEntries(new FormData(document.getElementById(signIn.dataset.form)))
        : {}
      delete extra.password
      const o = await post('/account/passkeys/sign-in-options', {})
      const a = await navigator.credentials.get({
        publicKey: {
          challenge: b64u.dec(o.challenge),
          rpId: o.rpId,
          allowCredentials: ids(o.allow),
          userVerification: 'preferred',
          timeout: 120000,
        },
      })
      const done = await post(signIn.dataset.endpoint || '/account/passkeys/sign-in', {
        ...extra,
        id: a.id,
        clientDataJSON: b64u.enc(a.response.clientDataJSON),
        authenticatorData: b64u.enc(a.response.authenticatorData),
        signature: b64u.enc(a.response.signature),
      })
      location.assign(done.redirect || '/account')
    } catch (err) {
      say('passkey-error', err.message)
    }
  })
}
