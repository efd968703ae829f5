//! Who is calling: the session behind an `Authorization: Bearer` header.

use crate::app::App;
use crate::auth::Scope;
pub use crate::auth::permissions::{AccountAction, AccountAttr, IdentityAttr, RepoAction};
use crate::xrpc::{XrpcError, XrpcRequest};

pub use crate::account::Session;

/// Account management needs the main password's session, not an app password's.
pub trait RequireFull {
    fn require_full(&self) -> Result<(), XrpcError>;
}

impl RequireFull for Session {
    fn require_full(&self) -> Result<(), XrpcError> {
        if self.is_full() {
            Ok(())
        } else {
            // The reference answers 400 with this exact message; the Bluesky app looks
            // for it.
            Err(XrpcError::invalid_token("Bad token scope"))
        }
    }
}

/// What an OAuth session's permissions must allow, checked where the action happens.
/// Password sessions pass these checks (the legacy rules, full session or app password,
/// stay where they were), except the account and identity ones, which need the full
/// session as before.
pub trait Permit {
    fn permit_repo(&self, collection: &str, action: RepoAction) -> Result<(), XrpcError>;
    fn permit_blob(&self, mime: &str) -> Result<(), XrpcError>;
    /// A method served through this server for `aud` (proxied, or a service-auth token), or
    /// one served here that no finer permission covers (`aud`: the service it belongs to).
    fn permit_rpc(&self, lxm: &str, aud: &str) -> Result<(), XrpcError>;
    fn permit_account(&self, attr: AccountAttr, action: AccountAction) -> Result<(), XrpcError>;
    fn permit_identity(&self, attr: IdentityAttr) -> Result<(), XrpcError>;
    /// Methods the reference never lets an OAuth session call (app passwords, activating or
    /// deactivating the account): a full password session only.
    fn require_password_session(&self) -> Result<(), XrpcError>;
    /// Whether the session may see the account's email address.
    fn sees_email(&self) -> bool;
    /// Refuses OAuth sessions; password sessions keep their own rules.
    fn refuse_oauth(&self) -> Result<(), XrpcError>;
}

fn missing(scope: String) -> XrpcError {
    XrpcError::forbidden(format!("Missing required scope \"{scope}\""))
}

impl Permit for Session {
    fn permit_repo(&self, collection: &str, action: RepoAction) -> Result<(), XrpcError> {
        match &self.permissions {
            Some(p) if !p.allows_repo(collection, action) => {
                let a = match action {
                    RepoAction::Create => "create",
                    RepoAction::Update => "update",
                    RepoAction::Delete => "delete",
                };
                Err(missing(format!("repo:{collection}?action={a}")))
            }
            _ => Ok(()),
        }
    }

    fn permit_blob(&self, mime: &str) -> Result<(), XrpcError> {
        match &self.permissions {
            Some(p) if !p.allows_blob(mime) => Err(missing(format!("blob:{mime}"))),
            _ => Ok(()),
        }
    }

    fn permit_rpc(&self, lxm: &str, aud: &str) -> Result<(), XrpcError> {
        match &self.permissions {
            Some(p) if !p.allows_rpc(lxm, aud) => Err(missing(format!("rpc:{lxm}?aud={aud}"))),
            _ => Ok(()),
        }
    }

    fn permit_account(&self, attr: AccountAttr, action: AccountAction) -> Result<(), XrpcError> {
        match &self.permissions {
            None => self.require_full(),
            Some(p) if p.allows_account(attr, action) => Ok(()),
            Some(_) => {
                let attr = match attr {
                    AccountAttr::Email => "email",
                    AccountAttr::Repo => "repo",
                    AccountAttr::Status => "status",
                };
                let action = match action {
                    AccountAction::Read => "read",
                    AccountAction::Manage => "manage",
                };
                Err(missing(format!("account:{attr}?action={action}")))
            }
        }
    }

    fn permit_identity(&self, attr: IdentityAttr) -> Result<(), XrpcError> {
        match &self.permissions {
            None => self.require_full(),
            Some(p) if p.allows_identity(attr) => Ok(()),
            Some(_) => Err(missing(match attr {
                IdentityAttr::Handle => "identity:handle".into(),
                IdentityAttr::Any => "identity:*".into(),
            })),
        }
    }

    fn require_password_session(&self) -> Result<(), XrpcError> {
        self.refuse_oauth()?;
        self.require_full()
    }

    fn refuse_oauth(&self) -> Result<(), XrpcError> {
        if self.permissions.is_some() {
            return Err(XrpcError::forbidden(
                "This method is not available to apps signed in with OAuth",
            ));
        }
        Ok(())
    }

    fn sees_email(&self) -> bool {
        match &self.permissions {
            Some(p) => p.email_readable(),
            None => !self.scope.is_app_password(),
        }
    }
}

pub fn now() -> i64 {
    crate::clock::unix_secs()
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(req: &XrpcRequest) -> Result<&str, XrpcError> {
    match credentials(req)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(XrpcError::auth_required("Unexpected authorization type")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

fn credentials(req: &XrpcRequest) -> Result<(Scheme, &str), XrpcError> {
    let h = req
        .header("authorization")
        .ok_or_else(|| XrpcError::auth_required("Authentication Required"))?;
    let (scheme, token) = h
        .split_once(' ')
        .ok_or_else(|| XrpcError::auth_required("Unexpected authorization type"))?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(XrpcError::auth_required("Unexpected authorization type"));
    };
    Ok((scheme, token.trim()))
}

/// A valid access token for this server's account, in a session that has not ended: a
/// password session's (`Bearer`) or an app's over OAuth (`DPoP`, with its proof).
pub async fn require_user(app: &App, req: &XrpcRequest) -> Result<Session, XrpcError> {
    match credentials(req)? {
        (Scheme::Bearer, token) => Ok(app.accounts().authenticate(token).await?),
        (Scheme::Dpop, token) => {
            let path = format!("/xrpc/{}", req.nsid);
            let r = app
                .oauth()
                .authenticate(token, req.header("dpop"), req.method.as_str(), &path)
                .await
                .map_err(dpop_error)?;
            Ok(Session {
                did: r.did,
                handle: r.handle,
                scope: Scope::AppPass,
                permissions: Some(r.permissions),
            })
        }
    }
}

/// A refused DPoP request: 401 with the challenge OAuth clients act on (`use_dpop_nonce`:
/// retry with the nonce; `invalid_token`: refresh).
fn dpop_error(e: crate::oauth::ResourceError) -> XrpcError {
    use crate::oauth::ResourceError as E;
    let (code, xrpc_error) = match &e {
        E::UseNonce => ("use_dpop_nonce", "UseDpopNonce"),
        E::InvalidProof(_) => ("invalid_dpop_proof", "InvalidToken"),
        E::InvalidToken(_) => ("invalid_token", "InvalidToken"),
        E::Takendown => return XrpcError::account_takedown(),
        E::Busy => return XrpcError::rate_limited(60),
        E::Store(cause) => return XrpcError::internal(cause),
    };
    let message = e.to_string();
    XrpcError {
        www_authenticate: Some(format!(
            "DPoP algs=\"ES256 ES256K\", error=\"{code}\", error_description=\"{}\"",
            message.replace('"', "'")
        )),
        ..XrpcError::new(hyper::StatusCode::UNAUTHORIZED, xrpc_error, message)
    }
}

/// A user session, or a service-auth token the account itself minted (with
/// `getServiceAuth`) for exactly this method and this server. The Bluesky
/// video service uploads processed videos to `uploadBlob` that way.
pub async fn require_user_or_service(
    app: &App,
    req: &XrpcRequest,
    lxm: &str,
) -> Result<Session, XrpcError> {
    let token = match credentials(req)? {
        (Scheme::Dpop, _) => return require_user(app, req).await,
        (Scheme::Bearer, token) => token,
    };
    let Ok(jwt) = crate::crypto::jwt::Jwt::decode(token) else {
        return Err(XrpcError::invalid_token("Token could not be verified"));
    };
    if jwt.alg() == "HS256" {
        return require_user(app, req).await;
    }
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_token("Token could not be verified"))?;
    let claim = |k: &str| jwt.claims.get(k).and_then(|v| v.as_str());
    // Only tokens signed by the account's own key are accepted here, so
    // the issuer's key needs no DID resolution.
    if claim("iss") != Some(acct.did.as_str()) {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtIss",
            "jwt issuer is not this account",
        ));
    }
    jwt.verify_es(&app.repo_key.public_key()).map_err(|_| {
        XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtSignature",
            "jwt signature does not match jwt issuer",
        )
    })?;
    let aud_ok = claim("aud").is_some_and(|a| {
        a == app.service_did || a.split('#').next() == Some(app.service_did.as_str())
    });
    if !aud_ok {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtAudience",
            "jwt audience does not match service did",
        ));
    }
    if claim("lxm") != Some(lxm) {
        return Err(XrpcError::new(
            hyper::StatusCode::UNAUTHORIZED,
            "BadJwtLexiconMethod",
            "bad jwt lexicon method (\"lxm\")",
        ));
    }
    crate::crypto::jwt::check_times(&jwt.claims, now(), 5).map_err(|_| {
        XrpcError::new(hyper::StatusCode::UNAUTHORIZED, "JwtExpired", "jwt expired")
    })?;
    Ok(Session {
        did: acct.did,
        handle: acct.handle,
        // A service token grants this one method and nothing else.
        scope: Scope::AppPass,
        permissions: None,
    })
}

/// `Authorization: Basic` with user `admin` and the configured admin password (the reference
/// PDS's admin scheme), compared in constant time.
pub fn basic_admin_ok(headers: &hyper::HeaderMap, password: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("admin:{password}");
    crate::crypto::same_secret(&decoded, expected.as_bytes())
}

#[cfg(test)]
mod admin_tests {
    use super::basic_admin_ok;

    #[test]
    fn basic_admin_needs_the_exact_password() {
        let mut h = hyper::HeaderMap::new();
        assert!(!basic_admin_ok(&h, "s3cret"));
        // base64("admin:s3cret")
        h.insert("authorization", "Basic YWRtaW46czNjcmV0".parse().unwrap());
        assert!(basic_admin_ok(&h, "s3cret"));
        assert!(!basic_admin_ok(&h, "s3cre"));
        assert!(!basic_admin_ok(&h, "s3cret!"));
        h.insert("authorization", "Bearer YWRtaW46czNjcmV0".parse().unwrap());
        assert!(!basic_admin_ok(&h, "s3cret"));
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(!basic_admin_ok(&h, "s3cret"));
    }
}
