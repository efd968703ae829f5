//! The passkey requests of the owner's page, answered in JSON for its script
//! (`passkey.js`): options to create one (after the password again) and the new credential;
//! options to sign in with one and the assertion, which sets the page's cookie.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{param, set_cookie};
use crate::account::{AccountError, AssertionForm, OwnerSession};
use crate::app::App;
use crate::web::{form, no_store, same_origin};
use crate::xrpc::{self, Body};

const SCRIPT: &str = include_str!("passkey.js");

pub(super) fn script() -> Response<Body> {
    let mut r = Response::new(xrpc::full(SCRIPT));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = xrpc::json_response(status, body.to_string());
    no_store(&mut r);
    r
}

fn refused(e: &AccountError) -> Response<Body> {
    let (status, error) = match e {
        AccountError::InvalidLogin => (StatusCode::UNAUTHORIZED, "AuthenticationRequired"),
        AccountError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded"),
        AccountError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
        AccountError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
    };
    let message = match e {
        AccountError::InvalidLogin => "Wrong password.".to_owned(),
        other => other.to_string(),
    };
    answer(status, &json!({ "error": error, "message": message }))
}

fn origin(app: &App) -> String {
    app.oauth().issuer()
}

/// `POST /account/passkeys/options`: the password again, then the creation options.
pub(super) async fn options(
    app: &App,
    s: &OwnerSession,
    peer: IpAddr,
    f: &[(String, String)],
) -> Response<Body> {
    let password = param(f, "password").to_owned();
    match app.accounts().passkey_registration(peer, s, password).await {
        Ok(o) => answer(
            StatusCode::OK,
            &json!({
                "challenge": o.challenge,
                "rpId": o.rp_id,
                "rpName": format!("perch · {}", o.rp_id),
                "userId": o.user_id,
                "userName": o.user_name,
                "exclude": o.exclude,
            }),
        ),
        Err(e) => refused(&e),
    }
}

/// `POST /account/passkeys`: the new credential.
pub(super) async fn register(
    app: &App,
    s: &OwnerSession,
    f: &[(String, String)],
) -> Response<Body> {
    match app
        .accounts()
        .add_passkey(
            s,
            &origin(app),
            param(f, "name"),
            param(f, "clientDataJSON"),
            param(f, "attestationObject"),
        )
        .await
    {
        Ok(p) => answer(StatusCode::OK, &json!({ "id": p.id, "name": p.name })),
        Err(e) => refused(&e),
    }
}

/// `POST /account/passkeys/sign-in-options`.
pub(super) async fn sign_in_options(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if !same_origin(app, req) {
        return refused(&AccountError::Invalid(
            "the request came from another site".into(),
        ));
    }
    match app.accounts().passkey_sign_in_options().await {
        Ok(o) if o.allow.is_empty() => refused(&AccountError::Invalid(
            "no passkey is registered yet: sign in with the password".into(),
        )),
        Ok(o) => answer(
            StatusCode::OK,
            &json!({ "challenge": o.challenge, "rpId": o.rp_id, "allow": o.allow }),
        ),
        Err(e) => refused(&e),
    }
}

/// `POST /account/passkeys/sign-in`: the assertion; the page's cookie on success.
pub(super) async fn sign_in(app: &App, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    if !same_origin(app, &req) {
        return refused(&AccountError::Invalid(
            "the request came from another site".into(),
        ));
    }
    let f = match form(req, peer).await {
        Ok(f) => f,
        Err(e) => return refused(&AccountError::Invalid(e.description)),
    };
    let assertion = AssertionForm {
        id: param(&f, "id"),
        client_data_json: param(&f, "clientDataJSON"),
        authenticator_data: param(&f, "authenticatorData"),
        signature: param(&f, "signature"),
    };
    match app
        .accounts()
        .passkey_sign_in(peer, &origin(app), &assertion)
        .await
    {
        Ok(token) => set_cookie(answer(StatusCode::OK, &json!({ "ok": true })), Some(&token)),
        Err(AccountError::InvalidLogin) => refused(&AccountError::Invalid(
            "the passkey was not accepted".into(),
        )),
        Err(e) => refused(&e),
    }
}
