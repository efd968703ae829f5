//! What the sign-in and consent pages decide: whether this browser is signed in, whether
//! the owner already approved this app for these permissions, and, on approval, the code
//! the app exchanges for tokens. The pages themselves (HTML) are a face (`web`).
//!
//! A browser is known by a random device id in a cookie; the database keeps only its hash,
//! and only once the owner has signed in with it. Forms carry a token bound to the device id
//! and the request (CSRF), and a sign-in hands out a fresh device id (no fixation).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::client::Client;
use super::par::Params;
use super::{CODE_LIFETIME, DEVICE_LIFETIME, OAuth, OAuthError, REQUEST_LIFETIME, now};
use crate::account::AccountError;
use crate::auth::permissions::Permissions;
use crate::store::account::AccountStatus;
use crate::store::oauth as db;
use crate::syntax::form::percent_encode;

/// What the page should show.
pub enum View {
    /// The owner must sign in first.
    SignIn(Prompt),
    /// The owner is signed in; ask whether to allow.
    Consent(Prompt),
    /// Done: send the browser back to the app.
    Redirect(String),
}

/// What a page needs to say who is asking for what.
pub struct Prompt {
    pub client: Arc<Client>,
    pub request_uri: String,
    /// Where the app wants the browser back (the pages' `form-action` must allow it).
    pub redirect_uri: String,
    pub permissions: Permissions,
    /// What the permission sets it includes say they are for.
    pub set_lines: Vec<String>,
    pub handle: String,
    /// The form token for this browser and request.
    pub csrf: String,
    /// A device id the browser must be given (set as its cookie) before it posts a form.
    pub new_device: Option<String>,
    /// Why the last attempt failed, in words for the owner.
    pub error: Option<String>,
    /// The owner has passkeys, so the sign-in page offers one.
    pub passkeys: bool,
}

/// How the owner proves who they are on the sign-in page.
pub enum Credential<'a> {
    Password(String),
    /// A passkey's answer, made for this origin.
    Passkey {
        origin: &'a str,
        answer: crate::account::AssertionForm<'a>,
    },
}

/// The owner's answer on the consent page.
pub struct Decision {
    pub allow: bool,
    pub remember: bool,
}

impl OAuth<'_> {
    fn form_token(&self, device: &str, request_uri: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.state.form_key) else {
            return String::new();
        };
        mac.update(device.as_bytes());
        mac.update(b"\n");
        mac.update(request_uri.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn check_form_token(&self, device: &str, request_uri: &str, token: &str) -> bool {
        let want = self.form_token(device, request_uri);
        !want.is_empty() && crate::crypto::same_secret(want.as_bytes(), token.as_bytes())
    }

    async fn device_signed_in(&self, device: Option<&str>) -> Result<bool, OAuthError> {
        let Some(d) = device.filter(|d| d.len() <= 64) else {
            return Ok(false);
        };
        let h = super::hash(d);
        let t = now();
        Ok(self.store.read(move |c| db::device_live(c, &h, t)).await?)
    }

    async fn prompt(
        &self,
        client_id: &str,
        request_uri: &str,
        device: Option<&str>,
    ) -> Result<(Prompt, Params), OAuthError> {
        let (_, params) = self.pushed(client_id, request_uri).await?;
        let client = self.client(client_id).await?;
        let permissions =
            Permissions::parse(&params.scope).map_err(|e| OAuthError::server(e.to_string()))?;
        let set_lines = self.set_descriptions(&permissions).await;
        let handle = self
            .accounts
            .store
            .read(crate::store::account::get_account)
            .await?
            .map(|a| a.handle)
            .unwrap_or_default();
        let passkeys = self.accounts.passkeys().await.is_ok_and(|p| !p.is_empty());
        let (device, new_device) = match device.filter(|d| d.len() <= 64 && !d.is_empty()) {
            Some(d) => (d.to_owned(), None),
            None => {
                let d = super::secret("");
                (d.clone(), Some(d))
            }
        };
        Ok((
            Prompt {
                csrf: self.form_token(&device, request_uri),
                client,
                request_uri: request_uri.to_owned(),
                redirect_uri: params.redirect_uri.clone(),
                permissions,
                set_lines,
                handle,
                new_device,
                error: None,
                passkeys,
            },
            params,
        ))
    }

    /// `GET /oauth/authorize`: what to show this browser (`device`: its cookie).
    pub async fn authorize(
        &self,
        client_id: &str,
        request_uri: &str,
        device: Option<&str>,
    ) -> Result<View, OAuthError> {
        let signed_in = self.device_signed_in(device).await?;
        let (prompt, params) = self.prompt(client_id, request_uri, device).await?;
        let none = params.prompt.as_deref() == Some("none");
        if !signed_in {
            if none {
                return Ok(View::Redirect(error_redirect(
                    &params,
                    &self.issuer(),
                    "login_required",
                    "The user is not signed in",
                )));
            }
            return Ok(View::SignIn(prompt));
        }
        let remembered = params.prompt.as_deref() != Some("consent")
            && self
                .consent_remembered(client_id, &prompt.permissions)
                .await?;
        if remembered {
            let url = self.approve(request_uri, client_id, &params).await?;
            return Ok(View::Redirect(url));
        }
        if none {
            return Ok(View::Redirect(error_redirect(
                &params,
                &self.issuer(),
                "consent_required",
                "The user has not approved this app",
            )));
        }
        Ok(View::Consent(prompt))
    }

    async fn consent_remembered(
        &self,
        client_id: &str,
        perms: &Permissions,
    ) -> Result<bool, OAuthError> {
        let id = client_id.to_owned();
        let approved = self.store.read(move |c| db::consents(c, &id)).await?;
        Ok(approved.iter().any(|scope| {
            let granted: Vec<&str> = scope.split(' ').collect();
            perms.tokens().iter().all(|t| granted.contains(&t.as_str()))
        }))
    }

    /// `POST` of the sign-in form (or a passkey's answer). On success returns the browser's
    /// new device id (its cookie); on a wrong password, the page again with the reason.
    pub async fn sign_in(
        &self,
        ip: IpAddr,
        client_id: &str,
        request_uri: &str,
        device: Option<&str>,
        csrf: &str,
        credential: Credential<'_>,
    ) -> Result<Result<String, Prompt>, OAuthError> {
        let device = device.unwrap_or_default();
        if device.is_empty() || !self.check_form_token(device, request_uri, csrf) {
            return Err(OAuthError::invalid_request(
                "The form has expired or was not sent from this page; reload it",
            ));
        }
        let (mut prompt, _) = self.prompt(client_id, request_uri, Some(device)).await?;
        let (outcome, wrong) = match credential {
            Credential::Password(password) => (
                self.accounts
                    .check_owner_password(ip, "OAuth sign-in", password)
                    .await,
                "Wrong password.",
            ),
            Credential::Passkey { origin, answer } => (
                self.accounts
                    .passkey_account(ip, origin, &answer, "OAuth passkey sign-in")
                    .await,
                "The passkey was not accepted.",
            ),
        };
        let acct = match outcome {
            Ok(a) => a,
            Err(e) => {
                prompt.error = Some(match e {
                    AccountError::InvalidLogin => wrong.into(),
                    AccountError::RateLimited(s) => {
                        format!("Too many failed attempts; try again in {s} seconds.")
                    }
                    AccountError::Busy => "The server is busy; try again in a moment.".into(),
                    AccountError::NoSuchAccount => "This server has no account yet.".into(),
                    other => return Err(OAuthError::server(other)),
                });
                return Ok(Err(prompt));
            }
        };
        if acct.status != AccountStatus::Active {
            prompt.error = Some(format!(
                "The account is {}; apps cannot sign in to it.",
                acct.status
            ));
            return Ok(Err(prompt));
        }
        let fresh = super::secret("");
        let h = super::hash(&fresh);
        let t = now();
        let id = request_uri
            .strip_prefix(super::par::REQUEST_URI_PREFIX)
            .unwrap_or_default()
            .to_owned();
        self.writer
            .exec(move |c, _| {
                db::insert_device(c, &h, t, t + DEVICE_LIFETIME)?;
                // Typing a password takes time: the request gets a fresh five minutes.
                db::extend_request(c, &id, t + REQUEST_LIFETIME)
            })
            .await?;
        Ok(Ok(fresh))
    }

    /// The form token for a device id that was just handed out (after sign-in).
    pub fn csrf_for(&self, device: &str, request_uri: &str) -> String {
        self.form_token(device, request_uri)
    }

    /// `POST` of the consent form: the URL to send the browser back to the app with.
    pub async fn decide(
        &self,
        client_id: &str,
        request_uri: &str,
        device: Option<&str>,
        csrf: &str,
        decision: Decision,
    ) -> Result<String, OAuthError> {
        let d = device.unwrap_or_default();
        if d.is_empty() || !self.check_form_token(d, request_uri, csrf) {
            return Err(OAuthError::invalid_request(
                "The form has expired or was not sent from this page; reload it",
            ));
        }
        if !self.device_signed_in(device).await? {
            return Err(OAuthError::access_denied(
                "This browser is not signed in; reload the page",
            ));
        }
        let (row, params) = self.pushed(client_id, request_uri).await?;
        if !decision.allow {
            let id = row.id.clone();
            self.writer
                .exec(move |c, _| db::delete_request(c, &id))
                .await?;
            return Ok(error_redirect(
                &params,
                &self.issuer(),
                "access_denied",
                "The user denied the request",
            ));
        }
        if decision.remember {
            let (id, scope, t) = (client_id.to_owned(), params.scope.clone(), now());
            self.writer
                .exec(move |c, _| db::remember_consent(c, &id, &scope, t))
                .await?;
        }
        self.approve(request_uri, client_id, &params).await
    }

    /// Issues the code for an approved request and builds the redirect that carries it.
    async fn approve(
        &self,
        request_uri: &str,
        client_id: &str,
        params: &Params,
    ) -> Result<String, OAuthError> {
        let id = request_uri
            .strip_prefix(super::par::REQUEST_URI_PREFIX)
            .unwrap_or_default()
            .to_owned();
        let code = super::secret("cod-");
        let h = super::hash(&code);
        let t = now();
        let set = self
            .writer
            .exec(move |c, _| db::set_request_code(c, &id, &h, t + CODE_LIFETIME))
            .await?;
        if !set {
            return Err(OAuthError::invalid_request(
                "This sign-in request was already answered; start again from the app",
            ));
        }
        tracing::info!("oauth: approved {client_id} for {}", params.scope);
        Ok(redirect(
            params,
            &[
                ("code", &code),
                ("state", &params.state),
                ("iss", &self.issuer()),
            ],
        ))
    }
}

fn redirect(params: &Params, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    let query = query.join("&");
    let uri = &params.redirect_uri;
    if params.response_mode == "fragment" {
        format!("{uri}#{query}")
    } else if uri.contains('?') {
        format!("{uri}&{query}")
    } else {
        format!("{uri}?{query}")
    }
}

fn error_redirect(params: &Params, issuer: &str, error: &str, description: &str) -> String {
    redirect(
        params,
        &[
            ("error", error),
            ("error_description", description),
            ("state", &params.state),
            ("iss", issuer),
        ],
    )
}
