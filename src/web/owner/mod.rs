//! `/account`: the owner's page on the PDS's own origin. Signing in takes the account
//! password (behind the login limiter); the session lives in an HttpOnly, Secure,
//! SameSite=Strict cookie scoped to `/account`. Every form is a POST that must come from this
//! origin and carry the session's form token; a form's outcome is shown once (a new app
//! password in the answer itself, never again; the rest after a redirect, as a fixed notice).

mod forms;
mod glance;
mod manage;
mod pages;
mod passkeys;
mod plots;

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{form, html, param, rate, same_origin, see_other};
use crate::account::{AccountError, OWNER_SESSION_SECS, OwnerSession};
use crate::app::App;
use crate::oauth::rate::Kind;
use crate::xrpc::Body;
use pages::Notice;

const COOKIE: &str = "perch_owner";

/// Whether `path` is the page's.
pub fn handles(path: &str) -> bool {
    path == "/account" || path.starts_with("/account/")
}

pub async fn route(app: Arc<App>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    if let Err(e) = rate(&app, peer, Kind::Page) {
        let mut r = problem(&app, StatusCode::TOO_MANY_REQUESTS, &e.description);
        if let Some(s) = e.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/account") => show(&app, &req).await,
        (Method::GET | Method::HEAD, "/account/passkey.js") => passkeys::script(),
        (Method::GET, "/account/export") => export(&app, &req, peer).await,
        (Method::POST, "/account/sign-in") => sign_in(&app, req, peer).await,
        (Method::POST, "/account/passkeys/sign-in-options") => {
            passkeys::sign_in_options(&app, &req).await
        }
        (Method::POST, "/account/passkeys/sign-in") => passkeys::sign_in(&app, req, peer).await,
        (Method::POST, action) => match posted(&app, req, peer).await {
            Ok((session, token, fields)) => act(&app, action, session, &token, &fields, peer).await,
            Err(r) => r,
        },
        _ => problem(&app, StatusCode::NOT_FOUND, "There is no such page."),
    }
}

fn server(app: &App) -> &str {
    &app.config.hostname
}

/// A page of these, with the headers every page has (`script-src 'self'`: passkeys need
/// this origin's script and its `fetch` calls).
fn page(status: StatusCode, markup: maud::Markup) -> Response<Body> {
    html(status, markup, None)
}

/// The sign-in page with a problem on it: how every refusal on these pages reads.
fn problem(app: &App, status: StatusCode, message: &str) -> Response<Body> {
    page(
        status,
        pages::sign_in(server(app), Some(message), true, false),
    )
}

fn token(req: &Request<Incoming>) -> Option<String> {
    super::cookie(req, COOKIE, 2048)
}

fn set_cookie(mut r: Response<Body>, value: Option<&str>) -> Response<Body> {
    let cookie = match value {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/account; Max-Age={OWNER_SESSION_SECS}; HttpOnly; Secure; SameSite=Strict"
        ),
        None => format!("{COOKIE}=; Path=/account; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn session(app: &App, req: &Request<Incoming>) -> Option<(OwnerSession, String)> {
    let token = token(req)?;
    let s = app.accounts().owner_session(&token).await.ok()?;
    Some((s, token))
}

/// What a redirect after a form may say (the query names one of these, so nothing a link
/// carries is ever shown).
fn done_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "revoked" => "The app password was revoked; apps using it are signed out.",
        "app-signed-out" => "The app was signed out; its tokens no longer work.",
        "crawl" => "The relays were asked to crawl this server.",
        "passkey-added" => "The passkey was added: you can sign in with it now.",
        "passkey-removed" => "The passkey was removed.",
        _ => return None,
    })
}

async fn show(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let Some((s, _)) = session(app, req).await else {
        let has_account = matches!(app.account().await, Ok(Some(_)));
        let has_passkeys =
            has_account && app.accounts().passkeys().await.is_ok_and(|p| !p.is_empty());
        return page(
            StatusCode::OK,
            pages::sign_in(server(app), None, has_account, has_passkeys),
        );
    };
    let notices: Vec<Notice> = crate::syntax::form::decode_form(req.uri().query().unwrap_or(""))
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k == "done")
        .filter_map(|(_, v)| done_text(v).or_else(|| manage::done_text(v)))
        .map(Notice::Done)
        .collect();
    dashboard(app, s, StatusCode::OK, &notices).await
}

async fn dashboard(
    app: &App,
    s: OwnerSession,
    status: StatusCode,
    notices: &[Notice],
) -> Response<Body> {
    let token = s.form_token.clone();
    let g = glance::gather(app, s.account).await;
    page(status, pages::dashboard(server(app), &g, &token, notices))
}

/// `GET /account/export`: what `perch export` writes (the repo as a CAR, preferences,
/// every blob, in one tar), streamed as it is made.
async fn export(app: &Arc<App>, req: &Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let Some((s, _)) = session(app, req).await else {
        return see_other("/account");
    };
    let Some(slot) = app.exports.try_take(peer) else {
        return problem(
            app,
            StatusCode::TOO_MANY_REQUESTS,
            "Another export is running; try again when it is done.",
        );
    };
    let data = app.config.data_dir.clone();
    let body = crate::xrpc::stream::written(
        move |w| {
            crate::backup::archive::export(&data, w, &crate::progress::Quiet)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        slot,
    );
    let day = crate::syntax::format_datetime_millis(crate::clock::unix_millis());
    let name = format!("perch-export-{}-{}.tar", s.account.handle, &day[..10]);
    let mut r = Response::new(http_body_util::BodyExt::boxed(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn sign_in(app: &App, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    if !same_origin(app, &req) {
        return problem(
            app,
            StatusCode::FORBIDDEN,
            "The form was sent from another site.",
        );
    }
    let fields = match form(req, peer).await {
        Ok(f) => f,
        Err(e) => return problem(app, StatusCode::BAD_REQUEST, &e.description),
    };
    let password = param(&fields, "password").to_owned();
    match app.accounts().owner_sign_in(peer, password).await {
        Ok(token) => set_cookie(see_other("/account"), Some(&token)),
        Err(e) => {
            let (status, text) = match &e {
                AccountError::InvalidLogin => (StatusCode::UNAUTHORIZED, "Wrong password.".into()),
                AccountError::RateLimited(s) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many wrong passwords from here; try again in {s} seconds."),
                ),
                AccountError::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy checking other sign-ins; try again in a moment.".into(),
                ),
                AccountError::NoSuchAccount => {
                    return page(
                        StatusCode::NOT_FOUND,
                        pages::sign_in(server(app), None, false, false),
                    );
                }
                other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
            };
            problem(app, status, &text)
        }
    }
}

/// A form from the signed-in page: from this origin, in a live session, with its form
/// token. The session, its cookie token and the fields, or the answer to give instead.
async fn posted(
    app: &App,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<(OwnerSession, String, Vec<(String, String)>), Response<Body>> {
    if !same_origin(app, &req) {
        return Err(problem(
            app,
            StatusCode::FORBIDDEN,
            "The form was sent from another site.",
        ));
    }
    let Some((s, token)) = session(app, &req).await else {
        return Err(problem(
            app,
            StatusCode::UNAUTHORIZED,
            "You were signed out; sign in again.",
        ));
    };
    let fields = form(req, peer)
        .await
        .map_err(|e| problem(app, StatusCode::BAD_REQUEST, &e.description))?;
    if !s.form_ok(param(&fields, "csrf")) {
        return Err(problem(
            app,
            StatusCode::FORBIDDEN,
            "The form has expired; sign in again.",
        ));
    }
    Ok((s, token, fields))
}

async fn act(
    app: &App,
    action: &str,
    s: OwnerSession,
    token: &str,
    f: &[(String, String)],
    peer: IpAddr,
) -> Response<Body> {
    let s = match manage::act(app, action, s, f, peer).await {
        Ok(r) => return r,
        Err(s) => s,
    };
    let accounts = app.accounts();
    match action {
        "/account/passkeys/options" => passkeys::options(app, &s, peer, f).await,
        "/account/passkeys" => passkeys::register(app, &s, f).await,
        "/account/passkeys/remove" => {
            let password = param(f, "password").to_owned();
            match accounts
                .remove_passkey(peer, param(f, "id"), password)
                .await
            {
                Ok(true) => see_other("/account?done=passkey-removed#passkeys"),
                Ok(false) => {
                    let n = Notice::Problem("There is no such passkey.".into());
                    dashboard(app, s, StatusCode::NOT_FOUND, &[n]).await
                }
                Err(AccountError::InvalidLogin) => {
                    let n = Notice::Problem("Wrong password: the passkey was kept.".into());
                    dashboard(app, s, StatusCode::UNAUTHORIZED, &[n]).await
                }
                Err(e) => {
                    let status = match e {
                        AccountError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    dashboard(app, s, status, &[Notice::Problem(e.to_string())]).await
                }
            }
        }
        "/account/sign-out" => {
            if let Err(e) = accounts.logout(token).await {
                tracing::warn!("owner page sign-out: {e}");
            }
            set_cookie(see_other("/account"), None)
        }
        "/account/app-passwords" => {
            let privileged = param(f, "privileged") == "1";
            match accounts
                .create_app_password(param(f, "name").trim(), privileged)
                .await
            {
                Ok(new) => {
                    tracing::info!(
                        "app password {:?} created on the owner's page",
                        new.row.name
                    );
                    let n = Notice::NewAppPassword {
                        name: new.row.name,
                        password: new.password,
                    };
                    dashboard(app, s, StatusCode::OK, &[n]).await
                }
                Err(e) => {
                    let status = match e {
                        AccountError::Invalid(_) | AccountError::NameTaken(_) => {
                            StatusCode::BAD_REQUEST
                        }
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    dashboard(app, s, status, &[Notice::Problem(e.to_string())]).await
                }
            }
        }
        "/account/app-passwords/revoke" => {
            match accounts.revoke_app_password(param(f, "name")).await {
                Ok(true) => see_other("/account?done=revoked#app-passwords"),
                Ok(false) => {
                    let n = Notice::Problem("There is no app password by that name.".into());
                    dashboard(app, s, StatusCode::NOT_FOUND, &[n]).await
                }
                Err(e) => {
                    dashboard(
                        app,
                        s,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &[Notice::Problem(e.to_string())],
                    )
                    .await
                }
            }
        }
        "/account/apps/revoke" => match app.oauth().revoke_grant(param(f, "id")).await {
            Ok(true) => see_other("/account?done=app-signed-out#apps"),
            Ok(false) => {
                let n = Notice::Problem("That app is not signed in.".into());
                dashboard(app, s, StatusCode::NOT_FOUND, &[n]).await
            }
            Err(e) => {
                dashboard(
                    app,
                    s,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &[Notice::Problem(e.description)],
                )
                .await
            }
        },
        "/account/relays/crawl" => {
            // The answers arrive in the relay table; a slow relay does not hold the page.
            let federation = Arc::clone(&app.federation);
            tokio::spawn(async move { federation.request_all().await });
            see_other("/account?done=crawl#federation")
        }
        _ => problem(app, StatusCode::NOT_FOUND, "There is no such page."),
    }
}
