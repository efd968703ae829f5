//! The owner's passkeys: registering one from a signed-in page (after the password again),
//! signing in to the page with one, listing and removing them. The WebAuthn checks are
//! `auth::webauthn`'s; here are the challenges and the rows.
//!
//! A challenge is stateless: an expiry and random bytes under an HMAC of the server secret
//! that also covers its purpose and, for a registration, the page session it was issued to;
//! it lives five minutes, and one that worked is remembered until it expires so it cannot
//! work twice.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::{AccountError, Accounts, OwnerSession};
use crate::auth::webauthn::{self, Expected};
use crate::store::account;
use crate::store::oauth::use_once;
use crate::store::passkeys::{self, Passkey};

const CHALLENGE_SECS: i64 = 5 * 60;
/// At most this many passkeys: enough for every device a person owns.
pub const MAX_PASSKEYS: usize = 16;
const MAX_NAME_CHARS: usize = 64;

#[derive(Clone, Copy)]
enum Purpose {
    Register,
    SignIn,
}

/// What the browser needs to create a passkey (`PublicKeyCredentialCreationOptions`).
pub struct Registration {
    pub challenge: String,
    pub rp_id: String,
    /// A stable opaque id for the account (base64url), never the DID itself.
    pub user_id: String,
    pub user_name: String,
    /// Credential ids already registered, so the authenticator does not make a second.
    pub exclude: Vec<String>,
}

/// What the browser needs to sign in with one (`PublicKeyCredentialRequestOptions`).
pub struct SignIn {
    pub challenge: String,
    pub rp_id: String,
    pub allow: Vec<String>,
}

/// A passkey's answer to a sign-in, as the browser sends it (each base64url).
pub struct AssertionForm<'a> {
    pub id: &'a str,
    pub client_data_json: &'a str,
    pub authenticator_data: &'a str,
    pub signature: &'a str,
}

fn b64(s: &str) -> Result<Vec<u8>, AccountError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| AccountError::Invalid("the passkey's answer is not base64url".into()))
}

impl Accounts<'_> {
    fn challenge_mac(&self, purpose: Purpose, binding: &str, body: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.jwt_secret) {
            mac.update(b"perch passkey challenge\n");
            mac.update(match purpose {
                Purpose::Register => b"register\n",
                Purpose::SignIn => b"sign-in\n\n",
            });
            mac.update(binding.as_bytes());
            mac.update(b"\n");
            mac.update(body);
            out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        out
    }

    fn new_challenge(&self, purpose: Purpose, binding: &str) -> String {
        let mut body = [0u8; 24];
        let expires = crate::clock::unix_secs() + CHALLENGE_SECS;
        body[..8].copy_from_slice(&expires.to_be_bytes());
        OsRng.fill_bytes(&mut body[8..]);
        let mac = self.challenge_mac(purpose, binding, &body);
        URL_SAFE_NO_PAD.encode([&body[..], &mac[..]].concat())
    }

    /// Whether `challenge` is one this server issued for `purpose` and `binding` and has not
    /// expired; its expiry if so.
    fn check_challenge(&self, challenge: &str, purpose: Purpose, binding: &str) -> Option<i64> {
        let raw = URL_SAFE_NO_PAD.decode(challenge).ok()?;
        if raw.len() != 40 {
            return None;
        }
        let want = self.challenge_mac(purpose, binding, &raw[..24]);
        let same = crate::crypto::same_secret(&want, &raw[24..]);
        let expires = i64::from_be_bytes(raw[..8].try_into().ok()?);
        (same && expires >= crate::clock::unix_secs()).then_some(expires)
    }

    /// Spends a challenge: false if it was used before.
    async fn spend_challenge(&self, challenge: &str, expires: i64) -> Result<bool, AccountError> {
        let c = challenge.to_owned();
        let now = crate::clock::unix_secs();
        Ok(self
            .writer
            .exec(move |db, _| use_once(db, "passkey_challenge", &c, None, expires, now))
            .await?)
    }

    /// The challenge named in a ceremony's client data (checked against the issued ones
    /// before anything else is believed).
    fn challenge_of(client_data_json: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(client_data_json).ok()?;
        v.get("challenge")?.as_str().map(str::to_owned)
    }

    pub async fn passkeys(&self) -> Result<Vec<Passkey>, AccountError> {
        Ok(self.store.read(passkeys::list).await?)
    }

    /// Starts registering a passkey: the password again (behind the login limiter), then the
    /// options for the browser.
    pub async fn passkey_registration(
        &self,
        ip: IpAddr,
        session: &OwnerSession,
        password: String,
    ) -> Result<Registration, AccountError> {
        self.check_owner_password(ip, "passkey registration", password)
            .await?;
        let existing = self.passkeys().await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(AccountError::Invalid(format!(
                "there are already {MAX_PASSKEYS} passkeys; remove one first"
            )));
        }
        let did = &session.account.did;
        Ok(Registration {
            challenge: self.new_challenge(Purpose::Register, &session.jti),
            rp_id: self.config.hostname.clone(),
            user_id: URL_SAFE_NO_PAD.encode(&Sha256::digest(did.as_bytes())[..16]),
            user_name: session.account.handle.clone(),
            exclude: existing.into_iter().map(|p| p.id).collect(),
        })
    }

    /// Finishes registering: the browser's answer (base64url client data and attestation
    /// object), checked against the challenge issued to this session.
    pub async fn add_passkey(
        &self,
        session: &OwnerSession,
        origin: &str,
        name: &str,
        client_data_json: &str,
        attestation_object: &str,
    ) -> Result<Passkey, AccountError> {
        let name = name.trim();
        let name = if name.is_empty() { "passkey" } else { name };
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(AccountError::Invalid(format!(
                "a passkey's name is at most {MAX_NAME_CHARS} printable characters"
            )));
        }
        let cd = b64(client_data_json)?;
        let challenge = Self::challenge_of(&cd).unwrap_or_default();
        let expires = self
            .check_challenge(&challenge, Purpose::Register, &session.jti)
            .ok_or_else(|| {
                AccountError::Invalid("the passkey request expired; try again".into())
            })?;
        let want = Expected {
            ceremony: "webauthn.create",
            challenge: &challenge,
            origin,
            rp_id: &self.config.hostname,
        };
        let cred = webauthn::register(&cd, &b64(attestation_object)?, &want)
            .map_err(|e| AccountError::Invalid(e.to_string()))?;
        if !self.spend_challenge(&challenge, expires).await? {
            return Err(AccountError::Invalid(
                "that passkey request was already used".into(),
            ));
        }
        let key = Passkey {
            id: URL_SAFE_NO_PAD.encode(&cred.id),
            name: name.to_owned(),
            public_key: cred.public_key,
            sign_count: cred.sign_count,
            created_at: crate::clock::unix_secs(),
            last_used_at: None,
        };
        let row = key.clone();
        let inserted = self
            .writer
            .exec(move |db, _| passkeys::insert(db, &row))
            .await?;
        if !inserted {
            return Err(AccountError::Invalid(
                "that passkey is already registered".into(),
            ));
        }
        tracing::info!("passkey {:?} registered", key.name);
        Ok(key)
    }

    /// Options for signing in with a passkey (anyone may ask: the challenge is free to make).
    pub async fn passkey_sign_in_options(&self) -> Result<SignIn, AccountError> {
        Ok(SignIn {
            challenge: self.new_challenge(Purpose::SignIn, ""),
            rp_id: self.config.hostname.clone(),
            allow: self.passkeys().await?.into_iter().map(|p| p.id).collect(),
        })
    }

    /// Signs in to the page with a passkey: the cookie's token.
    pub async fn passkey_sign_in(
        &self,
        ip: IpAddr,
        origin: &str,
        form: &AssertionForm<'_>,
    ) -> Result<String, AccountError> {
        let acct = self
            .passkey_account(ip, origin, form, "passkey sign-in")
            .await?;
        self.owner_token(&acct).await
    }

    /// The account a passkey's answer proves, behind the login limiter like a password (the
    /// page's sign-in, and the OAuth sign-in page's); any refusal is `InvalidLogin`, the
    /// reason logged.
    pub async fn passkey_account(
        &self,
        ip: IpAddr,
        origin: &str,
        form: &AssertionForm<'_>,
        what: &'static str,
    ) -> Result<account::Account, AccountError> {
        let attempt = self.attempt(ip, what)?;
        match self.verify_assertion(origin, form).await {
            Ok(acct) => {
                attempt.succeeded();
                Ok(acct)
            }
            Err(e) => {
                attempt.failed();
                tracing::warn!("{what} from {ip} refused: {e}");
                Err(AccountError::InvalidLogin)
            }
        }
    }

    async fn verify_assertion(
        &self,
        origin: &str,
        form: &AssertionForm<'_>,
    ) -> Result<account::Account, AccountError> {
        let cd = b64(form.client_data_json)?;
        let challenge = Self::challenge_of(&cd).unwrap_or_default();
        let expires = self
            .check_challenge(&challenge, Purpose::SignIn, "")
            .ok_or_else(|| AccountError::Invalid("the challenge is not ours or expired".into()))?;
        let id = form.id.to_owned();
        let (key, acct) = self
            .store
            .read(move |db| Ok((passkeys::get(db, &id)?, account::get_account(db)?)))
            .await?;
        let key = key.ok_or_else(|| AccountError::Invalid("no such passkey".into()))?;
        let acct = acct.ok_or(AccountError::NoSuchAccount)?;
        let want = Expected {
            ceremony: "webauthn.get",
            challenge: &challenge,
            origin,
            rp_id: &self.config.hostname,
        };
        let ok = webauthn::assert(
            &key.public_key,
            &cd,
            &b64(form.authenticator_data)?,
            &b64(form.signature)?,
            &want,
        )
        .map_err(|e| AccountError::Invalid(e.to_string()))?;
        // A counter that does not move forward means a copied authenticator (counters that
        // stay at zero are authenticators without one).
        if (ok.sign_count != 0 || key.sign_count != 0) && ok.sign_count <= key.sign_count {
            return Err(AccountError::Invalid(format!(
                "passkey {:?} answered with an old counter (a cloned authenticator?)",
                key.name
            )));
        }
        if !self.spend_challenge(&challenge, expires).await? {
            return Err(AccountError::Invalid(
                "the challenge was already used".into(),
            ));
        }
        let (id, now) = (key.id.clone(), crate::clock::unix_secs());
        self.writer
            .exec(move |db, _| passkeys::used(db, &id, ok.sign_count, now))
            .await?;
        Ok(acct)
    }

    /// Removes a passkey, after the password again.
    pub async fn remove_passkey(
        &self,
        ip: IpAddr,
        id: &str,
        password: String,
    ) -> Result<bool, AccountError> {
        self.check_owner_password(ip, "passkey removal", password)
            .await?;
        let id = id.to_owned();
        Ok(self
            .writer
            .exec(move |db, _| passkeys::delete(db, &id))
            .await?)
    }
}
