//! The owner's page's account forms: handle, password, email and its codes, a backup now,
//! and deleting the account. The password again guards the password change and deletion;
//! every outcome is a redirect with a fixed notice, or the page with the problem.

use std::net::IpAddr;

use hyper::{Response, StatusCode};

use super::pages::Notice;
use super::{dashboard, page, param, see_other, server, set_cookie};
use crate::account::{AccountError, OwnerSession};
use crate::app::App;
use crate::xrpc::Body;

/// The notices these forms' redirects name.
pub(super) fn done_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "handle" => "The handle was changed; apps and the network see the new one now.",
        "password" => "The password was changed; every other device and app is signed out.",
        "email" => "The email address was changed; it needs confirming.",
        "code-sent" => {
            "A code is on its way to the email address (or waiting in `perch account codes`)."
        }
        "email-confirmed" => "The email address is confirmed.",
        "backup" => "A backup is running; it is listed here once it is complete.",
        "deactivated" => {
            "The account is deactivated: the network no longer gets your posts from here."
        }
        "activated" => "The account is active again, and the relays were asked to crawl.",
        "others-signed-out" => "Every other session is signed out; app passwords stay.",
        _ => return None,
    })
}

fn status_of(e: &AccountError) -> StatusCode {
    match e {
        AccountError::InvalidLogin => StatusCode::UNAUTHORIZED,
        AccountError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        AccountError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        AccountError::Store(_) | AccountError::Other(_) | AccountError::Plc(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

fn words(e: &AccountError) -> String {
    match e {
        AccountError::InvalidLogin => "Wrong password: nothing was changed.".to_owned(),
        other => other.to_string(),
    }
}

/// Handles `action` if it is one of these forms; otherwise gives the session back.
pub(super) async fn act(
    app: &App,
    action: &str,
    s: OwnerSession,
    f: &[(String, String)],
    peer: IpAddr,
) -> Result<Response<Body>, OwnerSession> {
    let accounts = app.accounts();
    let did = s.account.did.clone();
    let outcome: Result<Response<Body>, AccountError> = match action {
        "/account/handle" => accounts
            .set_handle(&did, param(f, "handle").trim())
            .await
            .map(|_| see_other("/account?done=handle#manage")),
        "/account/password" => {
            let new = param(f, "new");
            if new != param(f, "confirm") {
                Err(AccountError::Invalid(
                    "The two new passwords differ: nothing was changed.".into(),
                ))
            } else {
                accounts
                    .owner_change_password(peer, param(f, "current").to_owned(), new)
                    .await
                    .map(|token| {
                        set_cookie(see_other("/account?done=password#manage"), Some(&token))
                    })
            }
        }
        "/account/email" => {
            let code = Some(param(f, "code").trim()).filter(|c| !c.is_empty());
            accounts
                .update_email(param(f, "email"), code)
                .await
                .map(|()| see_other("/account?done=email#manage"))
        }
        "/account/email/code" => {
            let confirmed = s.account.email_confirmed_at.is_some();
            let sent = if confirmed {
                accounts.request_email_update().await.map(|_| ())
            } else {
                accounts.request_email_confirmation().await
            };
            sent.map(|()| see_other("/account?done=code-sent#manage"))
        }
        "/account/email/confirm" => {
            let email = s.account.email.clone().unwrap_or_default();
            accounts
                .confirm_email(&email, param(f, "code"))
                .await
                .map(|()| see_other("/account?done=email-confirmed#manage"))
        }
        "/account/backup" => Ok(backup_now(app)),
        "/account/deactivate" => accounts
            .owner_deactivate(peer, param(f, "password").to_owned())
            .await
            .map(|_| see_other("/account?done=deactivated#manage")),
        "/account/activate" => match accounts.activate().await {
            Ok(_) => {
                let federation = std::sync::Arc::clone(&app.federation);
                tokio::spawn(async move { federation.request_all().await });
                Ok(see_other("/account?done=activated#manage"))
            }
            Err(e) => Err(e),
        },
        "/account/sessions/sign-out" => accounts
            .owner_sign_out_others(&s)
            .await
            .map(|_| see_other("/account?done=others-signed-out#apps")),
        "/account/delete" => {
            if !param(f, "confirm")
                .trim()
                .trim_start_matches('@')
                .eq_ignore_ascii_case(&s.account.handle)
            {
                Err(AccountError::Invalid(
                    "Type the handle exactly to delete the account: nothing was deleted.".into(),
                ))
            } else {
                match accounts
                    .owner_delete(peer, param(f, "password").to_owned())
                    .await
                {
                    Ok(cids) => {
                        let blobs = app.blobs.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || blobs.delete_many_blocking(&cids))
                                .await;
                        let gone = super::pages::sign_in(server(app), None, false, false);
                        Ok(set_cookie(page(StatusCode::OK, gone), None))
                    }
                    Err(e) => Err(e),
                }
            }
        }
        _ => return Err(s),
    };
    Ok(match outcome {
        Ok(r) => r,
        Err(e) => dashboard(app, s, status_of(&e), &[Notice::Problem(words(&e))]).await,
    })
}

/// Starts a backup into `backup_dir` in the background (the page lists it once complete).
fn backup_now(app: &App) -> Response<Body> {
    let Some(root) = app.config.backup_dir.clone() else {
        return see_other("/account#manage");
    };
    let data = app.config.data_dir.clone();
    let keep = usize::try_from(app.config.backup_keep).ok();
    tokio::task::spawn_blocking(move || {
        let opts = crate::backup::snapshot::Options { keep };
        match crate::backup::snapshot::take(&data, &root, &opts, &crate::progress::Quiet) {
            Ok(out) => tracing::info!(
                "backup from the owner's page written to {}",
                out.dir.display()
            ),
            Err(e) => tracing::warn!("backup from the owner's page failed: {e}"),
        }
    });
    see_other("/account?done=backup#manage")
}
