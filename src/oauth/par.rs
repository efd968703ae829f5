//! Pushed authorization requests (RFC 9126): the app states everything about its request
//! here, over a back channel with a DPoP proof, and gets a short-lived `request_uri` to
//! send the browser to. Nothing the browser carries can change what was pushed.

use serde::{Deserialize, Serialize};

use super::{OAuth, OAuthError, REQUEST_LIFETIME, now};
use crate::auth::permissions::Permissions;
use crate::store::oauth as db;

/// The `request_uri` prefix (RFC 9126).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

const MAX_STATE: usize = 1024;
const MAX_HINT: usize = 256;

/// What perch keeps of a pushed request (stored as JSON in `oauth_request.params`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Params {
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    pub login_hint: Option<String>,
    /// `query` or `fragment`.
    pub response_mode: String,
    pub prompt: Option<String>,
}

/// The answer to a pushed request.
pub struct Pushed {
    pub request_uri: String,
    pub expires_in: i64,
}

/// The form's value for `name`, refusing a repeated parameter (RFC 6749 §3.1).
pub(super) fn single<'f>(
    form: &'f [(String, String)],
    name: &str,
) -> Result<Option<&'f str>, OAuthError> {
    let mut it = form.iter().filter(|(k, _)| k == name);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(OAuthError::invalid_request(format!(
            "{name} must not be repeated"
        )));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

pub(super) fn required<'f>(
    form: &'f [(String, String)],
    name: &str,
) -> Result<&'f str, OAuthError> {
    single(form, name)?.ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// A PKCE S256 challenge: base64url of a SHA-256, 43 characters.
fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl OAuth<'_> {
    /// Handles `POST /oauth/par`.
    pub async fn par(
        &self,
        form: &[(String, String)],
        dpop: Option<&str>,
    ) -> Result<Pushed, OAuthError> {
        let proof = self.check_proof(dpop, "POST", "/oauth/par")?;
        let client_id = required(form, "client_id")?;
        let client = self.client(client_id).await?;
        let client_key = self.authenticate_client(&client, form).await?;
        if single(form, "request")?.is_some() {
            return Err(OAuthError::new(
                400,
                "request_not_supported",
                "Request objects are not supported",
            ));
        }
        if required(form, "response_type")? != "code" {
            return Err(OAuthError::new(
                400,
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        let code_challenge = required(form, "code_challenge")?;
        if single(form, "code_challenge_method")? != Some("S256") {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
        if !valid_challenge(code_challenge) {
            return Err(OAuthError::invalid_request(
                "code_challenge must be a base64url SHA-256 (43 characters)",
            ));
        }
        let state = required(form, "state")?;
        if state.len() > MAX_STATE {
            return Err(OAuthError::invalid_request("state is too long"));
        }
        let redirect_uri = match single(form, "redirect_uri")? {
            Some(r) if client.allows_redirect(r) => r.to_owned(),
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is not one of the client's",
                ));
            }
            None if client.redirect_uris.len() == 1 && !client.loopback => {
                client.redirect_uris[0].clone()
            }
            None => return Err(OAuthError::invalid_request("redirect_uri is required")),
        };
        let scope = single(form, "scope")?.unwrap_or(client.scope.as_str());
        let perms =
            Permissions::parse(scope).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
        if !perms.is_subset_of_client(&client.scope) {
            return Err(OAuthError::invalid_scope(
                "the scope asks for more than the client's metadata declares",
            ));
        }
        self.check_sets(&perms).await?;
        let response_mode = match single(form, "response_mode")? {
            None | Some("query") => "query",
            Some("fragment") => "fragment",
            Some(other) => {
                return Err(OAuthError::invalid_request(format!(
                    "response_mode {other:?} is not supported (query or fragment)"
                )));
            }
        };
        let prompt = match single(form, "prompt")? {
            None => None,
            Some(p @ ("login" | "none" | "consent" | "select_account")) => Some(p.to_owned()),
            Some(other) => {
                return Err(OAuthError::invalid_request(format!(
                    "unknown prompt {other:?}"
                )));
            }
        };
        let login_hint = single(form, "login_hint")?.map(str::to_owned);
        if login_hint.as_ref().is_some_and(|h| h.len() > MAX_HINT) {
            return Err(OAuthError::invalid_request("login_hint is too long"));
        }
        if let Some(hint) = &login_hint {
            self.check_login_hint(hint).await?;
        }
        let params = Params {
            redirect_uri,
            scope: perms.tokens().join(" "),
            state: state.to_owned(),
            code_challenge: code_challenge.to_owned(),
            login_hint,
            response_mode: response_mode.to_owned(),
            prompt,
        };
        let t = now();
        let id = super::secret("req-");
        let row = db::Request {
            id: id.clone(),
            client_id: client.client_id.clone(),
            params: serde_json::to_string(&params).map_err(OAuthError::server)?,
            dpop_jkt: proof.jkt,
            client_key,
            expires_at: t + REQUEST_LIFETIME,
            code_hash: None,
            grant_id: None,
        };
        let challenge = params.code_challenge.clone();
        let outcome = self
            .writer
            .exec(move |c, _| {
                if db::count_live_requests(c, t)? >= super::MAX_LIVE_REQUESTS {
                    return Ok(Err(OAuthError::rate_limited(REQUEST_LIFETIME as u64)));
                }
                if !db::use_once(
                    c,
                    "challenge",
                    &challenge,
                    None,
                    t + super::CHALLENGE_MEMORY,
                    t,
                )? {
                    return Ok(Err(OAuthError::invalid_request(
                        "this code_challenge was used before; make a new one",
                    )));
                }
                db::insert_request(c, &row, t)?;
                Ok(Ok(()))
            })
            .await?;
        outcome?;
        Ok(Pushed {
            request_uri: format!("{REQUEST_URI_PREFIX}{id}"),
            expires_in: REQUEST_LIFETIME,
        })
    }

    /// A `login_hint` must name this server's account (by handle or DID): an app that
    /// sends someone else's is talking to the wrong server.
    async fn check_login_hint(&self, hint: &str) -> Result<(), OAuthError> {
        let acct = self
            .accounts
            .store
            .read(crate::store::account::get_account)
            .await?
            .ok_or_else(|| OAuthError::access_denied("This server has no account yet"))?;
        let h = hint.trim().trim_start_matches('@').to_ascii_lowercase();
        if h == acct.handle || hint.trim() == acct.did {
            Ok(())
        } else {
            Err(OAuthError::invalid_request(
                "login_hint names an account this server does not host",
            ))
        }
    }

    /// The pushed request a `request_uri` names, if it is live and for this client.
    pub(super) async fn pushed(
        &self,
        client_id: &str,
        request_uri: &str,
    ) -> Result<(db::Request, Params), OAuthError> {
        let id = request_uri
            .strip_prefix(REQUEST_URI_PREFIX)
            .filter(|id| id.len() <= 64)
            .ok_or_else(|| OAuthError::invalid_request("Invalid request_uri"))?
            .to_owned();
        let row = self
            .store
            .read(move |c| db::get_request(c, &id))
            .await?
            .filter(|r| r.expires_at >= now() && r.code_hash.is_none())
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "This sign-in request has expired; start again from the app",
                )
            })?;
        if row.client_id != client_id {
            return Err(OAuthError::invalid_request(
                "request_uri belongs to another client",
            ));
        }
        let params: Params = serde_json::from_str(&row.params).map_err(OAuthError::server)?;
        Ok((row, params))
    }
}
