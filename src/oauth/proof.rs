//! Proofs at the authorization server's endpoints: the DPoP proof every PAR and token
//! request carries (with this server's nonce, never replayed), and a confidential client's
//! `private_key_jwt` assertion (RFC 7523: signed with a key from its metadata, for this
//! issuer, fresh, never replayed).

use serde_json::Value;

use super::client::Client;
use super::{OAuth, OAuthError, now};
use crate::auth::dpop::{self, DpopError, Proof};
use crate::crypto::Jwt;
use crate::crypto::jwk;
use crate::store::oauth as db;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion older than this is refused (reference: 1 minute).
const ASSERTION_MAX_AGE: i64 = 60;

impl OAuth<'_> {
    /// Checks the DPoP proof of a request to `path` on this server.
    pub(super) fn check_proof(
        &self,
        proof: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<Proof, OAuthError> {
        let proof = proof.ok_or_else(|| OAuthError::invalid_dpop_proof("DPoP proof required"))?;
        let t = now();
        let url = format!("{}{path}", self.issuer());
        let p = dpop::verify_proof(proof, method, &url, t).map_err(proof_error)?;
        if !p
            .nonce
            .as_deref()
            .is_some_and(|n| self.state.nonces.is_valid(n, t))
        {
            return Err(OAuthError::use_dpop_nonce());
        }
        self.remember_proof(&p.jti, t, false).map_err(proof_error)?;
        Ok(p)
    }

    /// Records a proof's `jti` (`api`: of an API call); an error if it was seen before (or
    /// the cache is full).
    pub(super) fn remember_proof(&self, jti: &str, t: i64, api: bool) -> Result<(), DpopError> {
        let cache = if api {
            &self.state.replay_api
        } else {
            &self.state.replay_endpoints
        };
        cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check_and_insert(jti, t)
    }

    /// Authenticates a confidential client by its `client_assertion`; returns the
    /// thumbprint of the key it signed with (later requests of the same grant must use the
    /// same key). Public clients must not send one.
    pub(super) async fn authenticate_client(
        &self,
        client: &Client,
        form: &[(String, String)],
    ) -> Result<Option<String>, OAuthError> {
        let kind = super::par::single(form, "client_assertion_type")?;
        let assertion = super::par::single(form, "client_assertion")?;
        if !client.confidential {
            if kind.is_some() || assertion.is_some() {
                return Err(OAuthError::invalid_client(
                    "this client is public (token_endpoint_auth_method none)",
                ));
            }
            return Ok(None);
        }
        if kind != Some(ASSERTION_TYPE) {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type must be {ASSERTION_TYPE}"
            )));
        }
        let assertion =
            assertion.ok_or_else(|| OAuthError::invalid_client("client_assertion is required"))?;
        let jwt = Jwt::decode(assertion)
            .map_err(|_| OAuthError::invalid_client("client_assertion is not a JWT"))?;
        if jwt.alg() != "ES256" {
            return Err(OAuthError::invalid_client("client_assertion must be ES256"));
        }
        let kid = jwt.header.get("kid").and_then(Value::as_str);
        let keys = self.client_keys(client).await?;
        let mut verified = None;
        for k in &keys {
            if kid.is_some() && k.get("kid").and_then(Value::as_str) != kid {
                continue;
            }
            let Ok(public) = jwk::public_key_from_jwk(k) else {
                continue;
            };
            if jwt.verify_jose(&public).is_ok() {
                verified = Some(jwk::thumbprint(k).map_err(|_| {
                    OAuthError::invalid_client("the client's key cannot be thumbprinted")
                })?);
                break;
            }
        }
        let key = verified.ok_or_else(|| {
            OAuthError::invalid_client("client_assertion is not signed by a key of the client")
        })?;
        let claim = |k: &str| jwt.claims.get(k).and_then(Value::as_str);
        if claim("iss") != Some(client.client_id.as_str())
            || claim("sub") != Some(client.client_id.as_str())
        {
            return Err(OAuthError::invalid_client(
                "client_assertion iss and sub must be the client_id",
            ));
        }
        let issuer = self.issuer();
        let aud_ok = match jwt.claims.get("aud") {
            Some(Value::String(a)) => *a == issuer,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(issuer.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(OAuthError::invalid_client(
                "client_assertion aud must be this issuer",
            ));
        }
        let t = now();
        let iat = jwt.claims.get("iat").and_then(Value::as_i64);
        if !iat.is_some_and(|i| i <= t + 10 && t - i <= ASSERTION_MAX_AGE) {
            return Err(OAuthError::invalid_client(
                "client_assertion iat must be within the last minute",
            ));
        }
        if jwt
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e < t)
        {
            return Err(OAuthError::invalid_client("client_assertion has expired"));
        }
        let jti = claim("jti")
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| OAuthError::invalid_client("client_assertion needs a jti"))?;
        let value = format!("{}\n{jti}", client.client_id);
        let fresh = self
            .writer
            .exec(move |c, _| {
                db::use_once(
                    c,
                    "assertion",
                    &super::hash(&value),
                    None,
                    t + 2 * ASSERTION_MAX_AGE,
                    t,
                )
            })
            .await?;
        if !fresh {
            return Err(OAuthError::invalid_client(
                "client_assertion was used before (jti replay)",
            ));
        }
        Ok(Some(key))
    }
}

pub(super) fn proof_error(e: DpopError) -> OAuthError {
    match e {
        DpopError::UseNonce => OAuthError::use_dpop_nonce(),
        DpopError::Replayed => OAuthError::invalid_dpop_proof("DPoP proof replayed"),
        DpopError::Full => OAuthError::busy(60),
        other => OAuthError::invalid_dpop_proof(format!("Invalid DPoP proof: {other}")),
    }
}
