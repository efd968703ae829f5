//! The resource server's check on every `Authorization: DPoP <token>` request: the proof
//! (method, URL, freshness, this server's nonce, never replayed, the token's hash), the token
//! (signed here, not expired, bound to the proof's key), and its grant (still there: revoking
//! an app ends its tokens at once, whatever their age).

use super::{OAuth, now};
use crate::auth::dpop::{self, DpopError};
use crate::auth::permissions::Permissions;
use crate::store::account::AccountStatus;
use crate::store::oauth as db;

/// An authenticated OAuth caller.
pub struct Resource {
    pub did: String,
    pub handle: String,
    pub permissions: Permissions,
}

/// Why a DPoP request was refused; each maps to a `WWW-Authenticate: DPoP error=…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("Resource server requires nonce in DPoP proof")]
    UseNonce,
    #[error("{0}")]
    InvalidProof(String),
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("Account has been taken down")]
    Takendown,
    /// Every remembered proof is still live (a flood); try again shortly.
    #[error("Too many requests at once")]
    Busy,
    #[error("{0}")]
    Store(String),
}

impl OAuth<'_> {
    /// Checks a resource request: `token` from `Authorization: DPoP`, `proof` from the
    /// `DPoP` header, `method` and `path` (without query) of the request.
    pub async fn authenticate(
        &self,
        token: &str,
        proof: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<Resource, ResourceError> {
        let proof =
            proof.ok_or_else(|| ResourceError::InvalidProof("DPoP proof required".into()))?;
        let t = now();
        let url = format!("{}{path}", self.issuer());
        let p = dpop::verify_proof(proof, method, &url, t).map_err(|e| match e {
            DpopError::UseNonce => ResourceError::UseNonce,
            other => ResourceError::InvalidProof(format!("Invalid DPoP proof: {other}")),
        })?;
        if !p
            .nonce
            .as_deref()
            .is_some_and(|n| self.state.nonces.is_valid(n, t))
        {
            return Err(ResourceError::UseNonce);
        }
        if p.ath.as_deref() != Some(dpop::access_token_hash(token).as_str()) {
            return Err(ResourceError::InvalidProof(
                "DPoP proof ath does not match the access token".into(),
            ));
        }
        let claims = self
            .verify_access(token, false)
            .ok_or(ResourceError::InvalidToken(
                "Invalid or expired access token",
            ))?;
        if claims.jkt != p.jkt {
            return Err(ResourceError::InvalidProof(
                "DPoP key does not match the access token's".into(),
            ));
        }
        self.remember_proof(&p.jti, t, true).map_err(|e| match e {
            DpopError::Replayed => ResourceError::InvalidProof("DPoP proof replayed".into()),
            DpopError::Full => ResourceError::Busy,
            other => ResourceError::InvalidProof(other.to_string()),
        })?;
        let grant_id = claims.grant.clone();
        let (grant, acct) = self
            .store
            .read(move |c| {
                Ok((
                    db::get_grant(c, &grant_id)?,
                    crate::store::account::get_account(c)?,
                ))
            })
            .await
            .map_err(|e| ResourceError::Store(e.to_string()))?;
        grant
            .filter(|g| g.expires_at >= t)
            .ok_or(ResourceError::InvalidToken(
                "The session was revoked or has ended",
            ))?;
        let acct = acct
            .filter(|a| a.did == claims.sub)
            .ok_or(ResourceError::InvalidToken("Token for another account"))?;
        if acct.status == AccountStatus::Takendown {
            return Err(ResourceError::Takendown);
        }
        let permissions = Permissions::parse(&claims.scope)
            .map_err(|_| ResourceError::InvalidToken("Token scope is not understood"))?;
        Ok(Resource {
            did: acct.did,
            handle: acct.handle,
            permissions,
        })
    }
}
