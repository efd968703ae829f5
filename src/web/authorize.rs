//! The pages' requests: `GET /oauth/authorize` (sign-in or consent, or straight back to the
//! app when the owner already approved it), and the two forms. Forms are accepted only from
//! this server's own pages: a matching form token (bound to the browser's cookie and the
//! request), and, where the browser says where the form came from, this origin.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::{form, html, no_store, pages, param, rate, same_origin, see_other};
use crate::app::App;
use crate::oauth::rate::Kind;
use crate::oauth::{Credential, Decision, OAuthError, Prompt, View};
use crate::syntax::form::{decode_form, percent_encode};
use crate::xrpc::{self, Body};

const COOKIE: &str = "perch_device";

fn server(app: &App) -> String {
    app.config.hostname.clone()
}

/// The browser's device id, from its cookie.
fn device(req: &Request<Incoming>) -> Option<String> {
    super::cookie(req, COOKIE, 64)
}

fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/oauth; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        crate::oauth::DEVICE_LIFETIME
    )
}

fn error_page(app: &App, e: &OAuthError) -> Response<Body> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = html(status, pages::error(&e.description, &server(app)), None);
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn with_cookie(mut r: Response<Body>, id: Option<&str>) -> Response<Body> {
    if let Some(id) = id
        && let Ok(v) = HeaderValue::from_str(&cookie(id))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn render(app: &App, view_is_consent: bool, prompt: &Prompt) -> Response<Body> {
    let markup = if view_is_consent {
        pages::consent(prompt, &server(app))
    } else {
        pages::sign_in(prompt, &server(app))
    };
    let status = if prompt.error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let r = html(status, markup, Some(&prompt.redirect_uri));
    with_cookie(r, prompt.new_device.as_deref())
}

pub(super) async fn show(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    if let Err(e) = rate(&app, peer, Kind::Page) {
        return error_page(&app, &e);
    }
    let Some(query) = decode_form(req.uri().query().unwrap_or("")) else {
        return error_page(&app, &OAuthError::invalid_request("Malformed query"));
    };
    let (client_id, request_uri) = (param(&query, "client_id"), param(&query, "request_uri"));
    let oauth = app.oauth();
    match oauth
        .authorize(client_id, request_uri, device(&req).as_deref())
        .await
    {
        Ok(View::Redirect(url)) => see_other(&url),
        Ok(View::SignIn(p)) => render(&app, false, &p),
        Ok(View::Consent(p)) => render(&app, true, &p),
        Err(e) => error_page(&app, &e),
    }
}

/// A form posted from one of the pages: within the address's budget, from this origin;
/// the browser's device id and the fields, or the error page to answer with.
async fn posted(
    app: &App,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<(Option<String>, Vec<(String, String)>), Response<Body>> {
    rate(app, peer, Kind::Page).map_err(|e| error_page(app, &e))?;
    if !same_origin(app, &req) {
        return Err(error_page(
            app,
            &OAuthError::access_denied("The form was sent from another site"),
        ));
    }
    let dev = device(&req);
    let f = form(req, peer).await.map_err(|e| error_page(app, &e))?;
    Ok((dev, f))
}

/// Where the browser goes once signed in: the authorize page again, now for consent.
fn back_to(client_id: &str, request_uri: &str) -> String {
    format!(
        "/oauth/authorize?client_id={}&request_uri={}",
        percent_encode(client_id),
        percent_encode(request_uri)
    )
}

pub(super) async fn sign_in(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let (dev, f) = match posted(&app, req, peer).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let (client_id, request_uri) = (param(&f, "client_id"), param(&f, "request_uri"));
    let oauth = app.oauth();
    let outcome = oauth
        .sign_in(
            peer,
            client_id,
            request_uri,
            dev.as_deref(),
            param(&f, "csrf"),
            Credential::Password(param(&f, "password").to_owned()),
        )
        .await;
    match outcome {
        Ok(Ok(new_device)) => with_cookie(
            see_other(&back_to(client_id, request_uri)),
            Some(&new_device),
        ),
        Ok(Err(prompt)) => render(&app, false, &prompt),
        Err(e) => error_page(&app, &e),
    }
}

/// `POST /oauth/authorize/passkey`: the sign-in page's script sends a passkey's answer with
/// the form's fields; JSON back (where to go next, or why not).
pub(super) async fn passkey(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let json = |status: u16, body: serde_json::Value| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = xrpc::json_response(status, body.to_string());
        no_store(&mut r);
        r
    };
    let refused = |e: OAuthError| {
        json(
            e.status,
            serde_json::json!({"error": e.error, "message": e.description}),
        )
    };
    if let Err(e) = rate(&app, peer, Kind::Page) {
        return refused(e);
    }
    if !same_origin(&app, &req) {
        return refused(OAuthError::access_denied(
            "The request came from another site",
        ));
    }
    let dev = device(&req);
    let f = match form(req, peer).await {
        Ok(f) => f,
        Err(e) => return refused(e),
    };
    let (client_id, request_uri) = (param(&f, "client_id"), param(&f, "request_uri"));
    let origin = app.oauth().issuer();
    let answer = crate::account::AssertionForm {
        id: param(&f, "id"),
        client_data_json: param(&f, "clientDataJSON"),
        authenticator_data: param(&f, "authenticatorData"),
        signature: param(&f, "signature"),
    };
    let credential = Credential::Passkey {
        origin: &origin,
        answer,
    };
    let oauth = app.oauth();
    match oauth
        .sign_in(
            peer,
            client_id,
            request_uri,
            dev.as_deref(),
            param(&f, "csrf"),
            credential,
        )
        .await
    {
        Ok(Ok(new_device)) => with_cookie(
            json(
                200,
                serde_json::json!({ "redirect": back_to(client_id, request_uri) }),
            ),
            Some(&new_device),
        ),
        Ok(Err(prompt)) => json(
            401,
            serde_json::json!({"error": "access_denied", "message": prompt.error.unwrap_or_default()}),
        ),
        Err(e) => refused(e),
    }
}

pub(super) async fn consent(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let (dev, f) = match posted(&app, req, peer).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let decision = Decision {
        allow: param(&f, "decision") == "allow",
        remember: param(&f, "remember") == "1",
    };
    let oauth = app.oauth();
    match oauth
        .decide(
            param(&f, "client_id"),
            param(&f, "request_uri"),
            dev.as_deref(),
            param(&f, "csrf"),
            decision,
        )
        .await
    {
        Ok(url) => see_other(&url),
        Err(e) => error_page(&app, &e),
    }
}
