//! The token endpoint: a code for a grant (PKCE, the DPoP key of the pushed request, the
//! client's own key), refresh with rotation (single use; a refresh token used twice ends the
//! whole grant, since one of the two users is a thief), revocation, and the grants list the
//! owner sees.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::par::{Params, required, single};
use super::{OAuth, OAuthError, now};
use crate::crypto::{Jwt, sign_hs256};
use crate::store::oauth::{self as db, Grant};

/// Header `typ` of OAuth access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";

/// What `/oauth/token` answers.
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
    pub sub: String,
}

impl TokenResponse {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "access_token": self.access_token,
            "token_type": "DPoP",
            "expires_in": self.expires_in,
            "scope": self.scope,
            "sub": self.sub,
        });
        if let (Some(r), Some(m)) = (&self.refresh_token, v.as_object_mut()) {
            m.insert("refresh_token".into(), r.clone().into());
        }
        v
    }
}

/// A grant as the owner sees it (`perch account apps`).
pub struct GrantInfo {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
}

/// The verified claims of an access token.
pub(super) struct AccessClaims {
    pub sub: String,
    pub scope: String,
    pub jkt: String,
    pub grant: String,
}

/// PKCE (RFC 7636 S256): the verifier is 43–128 unreserved characters whose SHA-256 is the
/// challenge.
fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    shape && crate::crypto::jwt::b64url_encode(&Sha256::digest(verifier.as_bytes())) == challenge
}

impl OAuth<'_> {
    /// `POST /oauth/token`.
    pub async fn token(
        &self,
        form: &[(String, String)],
        dpop: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let proof = self.check_proof(dpop, "POST", "/oauth/token")?;
        let client = self.client(required(form, "client_id")?).await?;
        let client_key = self.authenticate_client(&client, form).await?;
        match required(form, "grant_type")? {
            "authorization_code" => {
                self.exchange_code(form, &client, &proof.jkt, client_key)
                    .await
            }
            "refresh_token" => {
                if !client.refresh_tokens {
                    return Err(OAuthError::new(
                        400,
                        "unauthorized_client",
                        "this client did not declare the refresh_token grant",
                    ));
                }
                self.refresh(form, &client.client_id, &proof.jkt, client_key)
                    .await
            }
            other => Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                format!("unsupported grant_type {other:?}"),
            )),
        }
    }

    async fn exchange_code(
        &self,
        form: &[(String, String)],
        client: &super::Client,
        jkt: &str,
        client_key: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let code = required(form, "code")?;
        let verifier = required(form, "code_verifier")?;
        let code_hash = super::hash(code);
        let row = self
            .store
            .read(move |c| db::get_request_by_code(c, &code_hash))
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("Invalid code"))?;
        if let Some(grant) = row.grant_id.clone() {
            // A code used twice: whoever used it first may be the thief; end what it made.
            self.writer
                .exec(move |c, _| db::delete_grant(c, &grant))
                .await?;
            tracing::warn!(
                "oauth: a code of {} was used twice; its grant is revoked",
                row.client_id
            );
            return Err(OAuthError::invalid_grant("Code already used"));
        }
        if row.expires_at < now() {
            return Err(OAuthError::invalid_grant("Code expired"));
        }
        if row.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "Code was issued to another client",
            ));
        }
        let params: Params = serde_json::from_str(&row.params).map_err(OAuthError::server)?;
        if single(form, "redirect_uri")?.is_some_and(|r| r != params.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the request's",
            ));
        }
        if !pkce_ok(verifier, &params.code_challenge) {
            return Err(OAuthError::invalid_grant("Invalid code_verifier"));
        }
        if row.dpop_jkt != jkt {
            return Err(OAuthError::invalid_dpop_proof(
                "DPoP key differs from the pushed request's",
            ));
        }
        if client.confidential && row.client_key != client_key {
            return Err(OAuthError::invalid_client(
                "the client authenticated with another key than at the pushed request",
            ));
        }
        let did = self.account_did().await?;
        let t = now();
        let (refresh_life, session_life) = if client.confidential {
            (
                super::CONFIDENTIAL_REFRESH_LIFETIME,
                super::CONFIDENTIAL_SESSION_LIFETIME,
            )
        } else {
            (
                super::PUBLIC_REFRESH_LIFETIME,
                super::PUBLIC_SESSION_LIFETIME,
            )
        };
        let refresh = super::secret("ref-");
        let grant = Grant {
            id: super::secret("grt-")[..20].to_owned(),
            client_id: client.client_id.clone(),
            client_name: client.name.clone(),
            scope: params.scope.clone(),
            dpop_jkt: jkt.to_owned(),
            client_key,
            created_at: t,
            last_used_at: t,
            expires_at: t + session_life,
            refresh_hash: super::hash(&refresh),
            refresh_expires_at: t + refresh_life.min(session_life),
        };
        let (request_id, g) = (row.id.clone(), grant.clone());
        let spent = self
            .writer
            .exec(move |c, _| {
                if !db::spend_request_code(c, &request_id, &g.id)? {
                    return Ok(false);
                }
                db::delete_expired_grants(c, t)?;
                db::delete_expired_used(c, t)?;
                db::insert_grant(c, &g)?;
                Ok(true)
            })
            .await?;
        if !spent {
            return Err(OAuthError::invalid_grant("Code already used"));
        }
        tracing::info!("oauth: {} signed in ({})", client.client_id, grant.scope);
        let access_scope = self.expanded_scope(&grant.scope).await?;
        Ok(TokenResponse {
            access_token: self.mint_access(&did, &grant, &access_scope, t),
            refresh_token: client.refresh_tokens.then_some(refresh),
            expires_in: super::ACCESS_LIFETIME,
            scope: grant.scope,
            sub: did,
        })
    }

    async fn refresh(
        &self,
        form: &[(String, String)],
        client_id: &str,
        jkt: &str,
        client_key: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let old = required(form, "refresh_token")?;
        let old_hash = super::hash(old);
        let h = old_hash.clone();
        let (grant, reused) = self
            .store
            .read(move |c| {
                Ok((
                    db::get_grant_by_refresh(c, &h)?,
                    db::used_by(c, "refresh", &h)?,
                ))
            })
            .await?;
        let Some(grant) = grant else {
            if let Some(id) = reused {
                self.writer
                    .exec(move |c, _| db::delete_grant(c, &id))
                    .await?;
                tracing::warn!(
                    "oauth: a refresh token of {client_id} was used twice; its grant is revoked"
                );
                return Err(OAuthError::invalid_grant(
                    "Refresh token replayed; the session is revoked",
                ));
            }
            return Err(OAuthError::invalid_grant("Invalid refresh token"));
        };
        let t = now();
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant("Refresh token of another client"));
        }
        if grant.dpop_jkt != jkt {
            return Err(OAuthError::invalid_dpop_proof(
                "DPoP key differs from the session's",
            ));
        }
        if grant.client_key.is_some() && grant.client_key != client_key {
            return Err(OAuthError::invalid_client(
                "the client authenticated with another key than at sign-in",
            ));
        }
        if grant.expires_at < t || grant.refresh_expires_at < t {
            return Err(OAuthError::invalid_grant("Session expired"));
        }
        let did = self.account_did().await?;
        let refresh = super::secret("ref-");
        let new_hash = super::hash(&refresh);
        let life = if grant.client_key.is_some() {
            super::CONFIDENTIAL_REFRESH_LIFETIME
        } else {
            super::PUBLIC_REFRESH_LIFETIME
        };
        let refresh_expires = (t + life).min(grant.expires_at);
        let (id, session_end) = (grant.id.clone(), grant.expires_at);
        let rotated = self
            .writer
            .exec(move |c, _| {
                if !db::rotate_refresh(c, &id, &old_hash, &new_hash, refresh_expires, t)? {
                    return Ok(false);
                }
                db::use_once(c, "refresh", &old_hash, Some(&id), session_end, t)?;
                Ok(true)
            })
            .await?;
        if !rotated {
            return Err(OAuthError::invalid_grant("Refresh token already used"));
        }
        let access_scope = self.expanded_scope(&grant.scope).await?;
        Ok(TokenResponse {
            access_token: self.mint_access(&did, &grant, &access_scope, t),
            refresh_token: Some(refresh),
            expires_in: super::ACCESS_LIFETIME,
            scope: grant.scope,
            sub: did,
        })
    }

    /// `POST /oauth/revoke` (RFC 7009): ends the grant of a refresh or access token. Unknown
    /// tokens are not an error (the answer must not say which tokens exist).
    pub async fn revoke(&self, form: &[(String, String)]) -> Result<(), OAuthError> {
        let token = required(form, "token")?;
        let grant = match self.verify_access(token, true) {
            Some(claims) => Some(claims.grant),
            None => {
                let h = super::hash(token);
                self.store
                    .read(move |c| db::get_grant_by_refresh(c, &h))
                    .await?
                    .map(|g| g.id)
            }
        };
        if let Some(id) = grant {
            self.revoke_grant(&id).await?;
        }
        Ok(())
    }

    /// Ends one grant at once (its access tokens stop working on their next use).
    pub async fn revoke_grant(&self, id: &str) -> Result<bool, OAuthError> {
        let id = id.to_owned();
        let grant = self.store.read({
            let id = id.clone();
            move |c| db::get_grant(c, &id)
        });
        let Some(g) = grant.await? else {
            return Ok(false);
        };
        let client = g.client_id.clone();
        self.writer
            .exec(move |c, _| {
                db::delete_grant(c, &id)?;
                // Revoking an app also forgets its approval: next time, the owner is asked.
                db::forget_consents(c, &client)
            })
            .await?;
        tracing::info!("oauth: grant of {} revoked", g.client_id);
        Ok(true)
    }

    /// Every live grant, newest first.
    pub async fn grants(&self) -> Result<Vec<GrantInfo>, OAuthError> {
        let t = now();
        let rows = self.store.read(db::list_grants).await?;
        Ok(rows
            .into_iter()
            .filter(|g| g.expires_at >= t && g.refresh_expires_at >= t)
            .map(|g| GrantInfo {
                id: g.id,
                client_id: g.client_id,
                client_name: g.client_name,
                scope: g.scope,
                created_at: g.created_at,
                last_used_at: g.last_used_at,
                expires_at: g.refresh_expires_at.min(g.expires_at),
            })
            .collect())
    }

    async fn account_did(&self) -> Result<String, OAuthError> {
        self.accounts
            .store
            .read(crate::store::account::get_account)
            .await?
            .map(|a| a.did)
            .ok_or_else(|| OAuthError::access_denied("This server has no account"))
    }

    /// `scope`: what the token allows (the grant's scope with its permission sets
    /// expanded); the token response names the grant's scope itself.
    fn mint_access(&self, did: &str, grant: &Grant, scope: &str, t: i64) -> String {
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer().into());
        claims.insert("aud".into(), self.service_did.into());
        claims.insert("sub".into(), did.into());
        claims.insert("scope".into(), scope.into());
        claims.insert("client_id".into(), grant.client_id.clone().into());
        claims.insert("cnf".into(), json!({ "jkt": grant.dpop_jkt }));
        claims.insert("sid".into(), grant.id.clone().into());
        claims.insert("jti".into(), super::secret("")[..22].into());
        claims.insert("iat".into(), t.into());
        claims.insert("exp".into(), (t + super::ACCESS_LIFETIME).into());
        sign_hs256(&self.state.access_key, Some(ACCESS_TYP), &claims)
    }

    /// The claims of an access token this server signed (and, unless `allow_expired`, that
    /// has not expired). Whether its grant still exists is the caller's check.
    pub(super) fn verify_access(&self, token: &str, allow_expired: bool) -> Option<AccessClaims> {
        let jwt = Jwt::decode(token).ok()?;
        jwt.verify_hs256(&self.state.access_key).ok()?;
        if jwt.typ() != Some(ACCESS_TYP) {
            return None;
        }
        let s = |k: &str| jwt.claims.get(k).and_then(Value::as_str).map(str::to_owned);
        if s("aud").as_deref() != Some(self.service_did) {
            return None;
        }
        let exp = jwt.claims.get("exp").and_then(Value::as_i64)?;
        if !allow_expired && exp < now() {
            return None;
        }
        Some(AccessClaims {
            sub: s("sub")?,
            scope: s("scope")?,
            jkt: jwt.claims.get("cnf")?.get("jkt")?.as_str()?.to_owned(),
            grant: s("sid")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pkce_ok;

    #[test]
    fn pkce_s256_as_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(verifier, challenge));
        assert!(!pkce_ok(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        // `plain` (the verifier as its own challenge) is never accepted.
        assert!(!pkce_ok(verifier, verifier));
        assert!(!pkce_ok("short", challenge));
        assert!(!pkce_ok(&"a".repeat(129), challenge));
        assert!(!pkce_ok(&format!("{verifier} "), challenge));
    }
}
