//! DPoP (RFC 9449) proof checking, for both halves of the PDS: the authorization
//! server (PAR and token endpoints) and the resource server (every XRPC call made with
//! an OAuth access token).
//!
//! An OAuth token is bound to a key the client keeps (`cnf.jkt`, the key's thumbprint),
//! so a leaked token is useless without that key. Each request carries a fresh proof, a
//! small JWT signed by the key over the method and URL; a captured proof must not be
//! usable again, which three things ensure together: the proof's `iat` must be recent,
//! it must carry a nonce the server handed out recently, and its `jti` may be seen once.
//!
//! Pure: no clock reads and no I/O; the caller passes `now` (UNIX seconds) and owns the
//! [`ReplayCache`] (one per process, behind a lock). The checks are split so the caller
//! can answer each failure the way the spec wants; in this order:
//!
//! 1. [`verify_proof`]: shape, key, signature, `htm`/`htu`, `iat`.
//!    [`DpopError::Invalid`] → `invalid_dpop_proof`.
//! 2. [`Nonces::check`] on [`Proof::nonce`]. [`DpopError::UseNonce`] → `use_dpop_nonce`
//!    (AS: 400 JSON; RS: 401 + `WWW-Authenticate: DPoP error="use_dpop_nonce"`), always
//!    with a fresh `DPoP-Nonce` header from [`Nonces::current`].
//! 3. Resource server only: [`Proof::check_ath`] against the access token, and
//!    [`Proof::jkt`] equal to the token's `cnf.jkt`.
//! 4. Last, [`ReplayCache::check_and_insert`] on [`Proof::jti`], so that only proofs
//!    that passed everything else take room in the cache.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::crypto::jwk::{key_thumbprint, public_key_from_jwk};
use crate::crypto::jwt::{b64url_decode_strict, b64url_encode};
use crate::crypto::{Jwt, KeyType};

/// Longest proof accepted. A proof is a header with one EC key and half a dozen short
/// claims, under 1 KiB in practice; the bound caps the work hostile input can cause.
pub const MAX_PROOF_LEN: usize = 8192;

/// How far a proof's `iat` may lie in the past (seconds). Freshness is really enforced
/// by the server nonce (valid for two to three [`ROTATE_SECS`] windows); this bound
/// limits how long a `jti` must be remembered. Five minutes leaves room for a slow
/// client or a retried request without growing the replay cache much.
pub const IAT_PAST: i64 = 300;

/// How far a proof's `iat` may lie in the future (seconds). Client clocks drift, and a
/// Pi without a real-time clock may run behind until NTP syncs; the reference server
/// tolerates three minutes, so clients that work there work here.
pub const IAT_FUTURE: i64 = 180;

/// Nonce rotation period (seconds), as the reference server (the spec allows at most
/// five minutes).
pub const ROTATE_SECS: i64 = 180;

/// Longest `jti` accepted, in characters. Real ones are UUIDs or ~22-43 character
/// random strings.
pub const MAX_JTI_CHARS: usize = 256;

/// Extra time a `jti` is remembered beyond the `iat` window, so that a clock adjusted
/// between two requests cannot reopen the window a moment early.
const REPLAY_MARGIN: i64 = 60;

/// How long the [`ReplayCache`] remembers a `jti` after accepting it. A proof accepted
/// at `t` has `iat <= t + IAT_FUTURE`, so it stays acceptable until at most
/// `iat + IAT_PAST <= t + IAT_FUTURE + IAT_PAST`; past that its `iat` refuses it.
pub const REPLAY_TTL: i64 = IAT_PAST + IAT_FUTURE + REPLAY_MARGIN;

/// Why a proof or nonce was refused.
///
/// The [`DpopError::Invalid`] reason is for logs; the client gets only the OAuth error
/// code (`invalid_dpop_proof`), since the reason would help probe which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// The proof is malformed, badly signed, for another request, or too old/new:
    /// `invalid_dpop_proof`.
    #[error("invalid DPoP proof: {0}")]
    Invalid(&'static str),
    /// The proof has no nonce, or one this server no longer accepts: `use_dpop_nonce`.
    #[error("missing or stale DPoP nonce")]
    UseNonce,
    /// The proof's `jti` was already used: `invalid_dpop_proof`.
    #[error("DPoP proof replayed")]
    Replayed,
    /// The replay cache is at capacity with live entries. Accepting the proof would
    /// mean forgetting one that could then be replayed, so the request is refused;
    /// answer 503 with a `Retry-After` (entries expire within [`REPLAY_TTL`]).
    #[error("DPoP replay cache is full")]
    Full,
}

use DpopError::Invalid;

/// What a valid proof says, for the checks [`verify_proof`] leaves to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the header `jwk`: compare with the token's `cnf.jkt`, or
    /// record it as `cnf.jkt` when issuing a token.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The server nonce, if the proof carries one (check with [`Nonces::check`]).
    pub nonce: Option<String>,
    /// The access-token hash, if present (check with [`Proof::check_ath`]).
    pub ath: Option<String>,
}

impl Proof {
    /// Resource server: the proof's `ath` must be the hash of the access token that came
    /// with it, so a proof cannot be moved to another token. The hash is of a value the
    /// client already holds, so a plain comparison leaks nothing.
    pub fn check_ath(&self, access_token: &str) -> Result<(), DpopError> {
        match &self.ath {
            Some(ath) if *ath == access_token_hash(access_token) => Ok(()),
            Some(_) => Err(Invalid("ath does not match the access token")),
            None => Err(Invalid("missing ath")),
        }
    }
}

/// Checks a proof JWT for a request with `method` (as received, uppercase) to `url`
/// (scheme, host and path as the server is reached, without query).
///
/// Header: `typ` "dpop+jwt", `alg` ES256 or ES256K matching the curve of `jwk`, a public
/// EC `jwk`; the signature by that key. Claims: `jti` (string, 1..=[`MAX_JTI_CHARS`]
/// characters), `htm` equal to `method`, `htu` equal to `url` after [`normalize_htu`] on
/// both, `iat` an integer within `[now - IAT_PAST, now + IAT_FUTURE]`.
///
/// Does not check `nonce`, `ath` or replay; it returns them for the caller.
pub fn verify_proof(proof: &str, method: &str, url: &str, now: i64) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(Invalid("proof too long"));
    }
    let jwt = Jwt::decode(proof).map_err(|_| Invalid("malformed proof"))?;

    // `typ` is a media type, so compared case-insensitively; it keeps other JWTs signed
    // by the same key (client assertions) from passing as proofs.
    match jwt.typ() {
        Some(typ) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(Invalid("typ is not dpop+jwt")),
    }
    let alg = KeyType::from_jwt_alg(jwt.alg()).ok_or(Invalid("unsupported alg"))?;
    let Some(Value::Object(jwk)) = jwt.header.get("jwk") else {
        return Err(Invalid("missing jwk"));
    };
    let key = public_key_from_jwk(jwk).map_err(|_| Invalid("unacceptable jwk"))?;
    if key.key_type() != alg {
        return Err(Invalid("alg does not match the jwk curve"));
    }

    // Claims are checked before the signature: they are cheap, the signature is not.
    let claims = &jwt.claims;
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.chars().count() <= MAX_JTI_CHARS => {
            jti.clone()
        }
        _ => return Err(Invalid("missing or bad jti")),
    };
    match claims.get("htm") {
        Some(Value::String(htm)) if htm == method => {}
        _ => return Err(Invalid("htm does not match the request method")),
    }
    let htu = match claims.get("htu") {
        Some(Value::String(htu)) => {
            normalize_htu(htu).ok_or(Invalid("htu is not an http(s) URL"))?
        }
        _ => return Err(Invalid("missing htu")),
    };
    let expected = normalize_htu(url).ok_or(Invalid("request URL is not http(s)"))?;
    if htu != expected {
        return Err(Invalid("htu does not match the request URL"));
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_i64().ok_or(Invalid("iat is not an integer"))?,
        _ => return Err(Invalid("missing iat")),
    };
    if iat < now.saturating_sub(IAT_PAST) {
        return Err(Invalid("iat too old"));
    }
    if iat > now.saturating_add(IAT_FUTURE) {
        return Err(Invalid("iat in the future"));
    }
    let nonce = optional_string(claims, "nonce")?;
    let ath = optional_string(claims, "ath")?;

    jwt.verify_jose(&key)
        .map_err(|_| Invalid("bad signature"))?;
    let jkt = key_thumbprint(&key).ok_or(Invalid("unacceptable jwk"))?;
    Ok(Proof {
        jkt,
        jti,
        iat,
        nonce,
        ath,
    })
}

fn optional_string(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DpopError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid("nonce or ath is not a string")),
    }
}

/// The `ath` claim for an access token: base64url (unpadded) of SHA-256 of its ASCII
/// text.
pub fn access_token_hash(token: &str) -> String {
    b64url_encode(&Sha256::digest(token.as_bytes()))
}

/// Normalises an `htu` claim or a request URL for comparison (RFC 9449 §4.3 asks for
/// RFC 3986 syntax-based normalisation): scheme and host lowercased, the default port
/// (443 for https, 80 for http) dropped, an empty path made "/", percent-encoding hex
/// digits uppercased, query and fragment dropped. The path is otherwise kept as is
/// (case-sensitive, no dot-segment removal: a client has no reason to send those, and a
/// mismatch only refuses the proof).
///
/// `None` for anything but an absolute http(s) URL, for userinfo (`user@host`), a bad
/// port, an empty host, or characters outside printable ASCII (clients percent-encode).
pub fn normalize_htu(url: &str) -> Option<String> {
    if url.len() > MAX_PROOF_LEN || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let rest = match rest.find(['?', '#']) {
        Some(end) => rest.get(..end)?,
        None => rest,
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (rest.get(..slash)?, rest.get(slash..)?),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority)?;

    let mut out = String::with_capacity(url.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    push_path(&mut out, path);
    Some(out)
}

/// Splits `host[:port]` (host possibly an IPv6 literal in brackets) into a lowercased
/// host and the port, if one is written.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let host = authority.get(..=close)?;
        let inner = host.get(1..close)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let after = authority.get(close + 1..)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        // A '@' (userinfo) fails here too: it is not a host character.
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        {
            return None;
        }
        (host, port)
    };
    let port = match port {
        // RFC 3986 §6.2.3: an empty port is the same as none.
        None | Some("") => None,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Appends `path` with the hex digits of percent-encodings uppercased (`%2f` → `%2F`).
fn push_path(out: &mut String, path: &str) {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        out.push(char::from(b));
        i += 1;
        if b == b'%' {
            for _ in 0..2 {
                match bytes.get(i) {
                    Some(h) if h.is_ascii_hexdigit() => {
                        out.push(char::from(h.to_ascii_uppercase()));
                        i += 1;
                    }
                    _ => break,
                }
            }
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Length of a nonce: base64url of 16 bytes.
const NONCE_LEN: usize = 22;
const NONCE_BYTES: usize = 16;

/// Server-issued DPoP nonces, stateless: the nonce of a time window is
/// HMAC-SHA256(secret, window) truncated to 16 bytes, so nothing is stored and every
/// client shares the current nonce (which the spec allows). Windows last
/// [`ROTATE_SECS`]; the previous, current and next windows' nonces are accepted, so a
/// nonce handed out just before a rotation still works, and so does one from a
/// moment later if the clock steps back.
///
/// The secret must be random and used for nothing else; if it is lost (a restart with
/// a new secret) clients just get `use_dpop_nonce` once and retry.
pub struct Nonces {
    secret: [u8; 32],
}

impl fmt::Debug for Nonces {
    // The secret must never end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces").finish_non_exhaustive()
    }
}

impl Nonces {
    pub fn new(secret: [u8; 32]) -> Self {
        Nonces { secret }
    }

    /// The nonce to hand out now (`DPoP-Nonce` header).
    pub fn current(&self, now: i64) -> String {
        // The MAC cannot fail to key (HMAC takes any key length); if it did, an empty
        // nonce is never accepted, so this fails closed.
        self.mac(window(now))
            .map(|mac| {
                let tag = mac.finalize().into_bytes();
                b64url_encode(tag.get(..NONCE_BYTES).unwrap_or_default())
            })
            .unwrap_or_default()
    }

    /// Whether `nonce` is the nonce of the previous, current or next window. The tag is
    /// compared in constant time, so a forger learns nothing from timing.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        if nonce.len() != NONCE_LEN {
            return false;
        }
        let Ok(tag) = b64url_decode_strict(nonce) else {
            return false;
        };
        // `verify_truncated_left` accepts any prefix length, so the length is pinned
        // here: a short prefix of a real nonce must not pass.
        if tag.len() != NONCE_BYTES {
            return false;
        }
        let w = window(now);
        [w.saturating_sub(1), w, w.saturating_add(1)]
            .into_iter()
            .any(|w| {
                self.mac(w)
                    .is_some_and(|mac| mac.verify_truncated_left(&tag).is_ok())
            })
    }

    /// [`Nonces::is_valid`] on a proof's optional nonce, as the error the caller answers
    /// with ([`DpopError::UseNonce`]).
    pub fn check(&self, nonce: Option<&str>, now: i64) -> Result<(), DpopError> {
        match nonce {
            Some(nonce) if self.is_valid(nonce, now) => Ok(()),
            _ => Err(DpopError::UseNonce),
        }
    }

    fn mac(&self, window: i64) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).ok()?;
        // Domain label: the MAC input can never collide with another use of a key, even
        // if one were (wrongly) shared.
        mac.update(b"perch dpop nonce v1\0");
        mac.update(&window.to_be_bytes());
        Some(mac)
    }
}

/// Window number; `div_euclid` so times before 1970 cannot make two windows share a
/// number.
fn window(now: i64) -> i64 {
    now.div_euclid(ROTATE_SECS)
}

/// Remembers accepted `jti`s for [`REPLAY_TTL`], bounded in memory.
///
/// Each entry is a 16-byte hash of the `jti` (fixed size whatever the client sends)
/// with its expiry. Expiries are `now + REPLAY_TTL` and `now` rarely goes backwards,
/// so insertion order is expiry order: expired entries are popped from the front of a
/// queue, amortised O(1) per insert. When the cache holds `capacity` live entries it
/// refuses ([`DpopError::Full`]) rather than forget one, which would allow a replay.
///
/// Anyone can make valid proofs for the authorization server's endpoints (any key,
/// a public nonce), so an attacker can fill a cache; keep the resource server's cache
/// separate from the authorization server's, so that filling one (which needs no
/// token) cannot stop the API. Each entry costs roughly 100 bytes.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    /// Hash of the jti → expiry (the entry is live while `now < expiry`).
    live: HashMap<[u8; 16], i64>,
    /// `(expiry, key)` in insertion order. A key re-inserted after it expired (possible
    /// only when the clock stepped back, see `check_and_insert`) leaves a stale pair
    /// here, recognised by an expiry that no longer matches `live`.
    order: VecDeque<(i64, [u8; 16])>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            live: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `jti` as used at `now`; [`DpopError::Replayed`] if it was already used
    /// and has not expired, [`DpopError::Full`] if there is no room.
    pub fn check_and_insert(&mut self, jti: &str, now: i64) -> Result<(), DpopError> {
        self.prune(now);
        let key = jti_key(jti);
        match self.live.get(&key) {
            Some(&expiry) if now < expiry => return Err(DpopError::Replayed),
            // Expired but not yet pruned: after the clock stepped back, a newer entry
            // with a later expiry can sit in front of it. Its slot is reused.
            Some(_) => {}
            None if self.live.len() >= self.capacity => return Err(DpopError::Full),
            None => {}
        }
        let expiry = now.saturating_add(REPLAY_TTL);
        self.live.insert(key, expiry);
        self.order.push_back((expiry, key));
        // Stale pairs only arise from clock steps, but they must not grow the queue
        // without bound; dropping them once they outnumber the live entries keeps the
        // cost amortised.
        if self.order.len() > self.live.len().saturating_mul(2).max(64) {
            let live = &self.live;
            self.order.retain(|(e, k)| live.get(k) == Some(e));
        }
        Ok(())
    }

    /// Number of remembered entries (expired ones not yet pruned included).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn prune(&mut self, now: i64) {
        while let Some(&(expiry, key)) = self.order.front() {
            if now < expiry {
                break;
            }
            self.order.pop_front();
            if self.live.get(&key) == Some(&expiry) {
                self.live.remove(&key);
            }
        }
    }
}

fn jti_key(jti: &str) -> [u8; 16] {
    let digest = Sha256::digest(jti.as_bytes());
    let mut key = [0u8; 16];
    for (k, d) in key.iter_mut().zip(digest.iter()) {
        *k = *d;
    }
    key
}

#[cfg(test)]
mod tests;
