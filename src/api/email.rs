//! `com.atproto.server.*` for the account's email and a forgotten password: the code
//! requests and the calls that spend them (the work is in `account::email`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::HandlerResult;
use super::auth::{AccountAction, AccountAttr, Permit, require_user};
use crate::app::App;
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

/// Signed in and allowed to manage the email (a password session, or an app granted
/// `account:email?action=manage`).
async fn may_manage_email(app: &App, req: &XrpcRequest) -> Result<(), XrpcError> {
    let session = require_user(app, req).await?;
    session.permit_account(AccountAttr::Email, AccountAction::Manage)
}

/// `com.atproto.server.requestEmailConfirmation`
pub async fn request_email_confirmation(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    may_manage_email(&app, &req).await?;
    app.accounts().request_email_confirmation().await?;
    Ok(XrpcResponse::Empty)
}

#[derive(Deserialize)]
struct ConfirmEmail {
    email: String,
    token: String,
}

/// `com.atproto.server.confirmEmail`
pub async fn confirm_email(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    may_manage_email(&app, &req).await?;
    let input: ConfirmEmail = req.json(JSON_LIMIT).await?;
    app.accounts()
        .confirm_email(&input.email, &input.token)
        .await?;
    Ok(XrpcResponse::Empty)
}

/// `com.atproto.server.requestEmailUpdate`
pub async fn request_email_update(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    may_manage_email(&app, &req).await?;
    let required = app.accounts().request_email_update().await?;
    Ok(XrpcResponse::Json(json!({ "tokenRequired": required })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateEmail {
    email: String,
    #[serde(default)]
    email_auth_factor: Option<bool>,
    #[serde(default)]
    token: Option<String>,
}

/// `com.atproto.server.updateEmail`
pub async fn update_email(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    may_manage_email(&app, &req).await?;
    let input: UpdateEmail = req.json(JSON_LIMIT).await?;
    if input.email_auth_factor == Some(true) {
        // Signing in with an emailed second factor is not built; saying yes would leave the
        // owner believing in a protection that is not there.
        return Err(XrpcError::invalid_request(
            "email sign-in codes (emailAuthFactor) are not supported by this server",
        ));
    }
    let token = input.token.as_deref().filter(|t| !t.is_empty());
    app.accounts().update_email(&input.email, token).await?;
    Ok(XrpcResponse::Empty)
}

#[derive(Deserialize)]
struct RequestPasswordReset {
    email: String,
}

/// `com.atproto.server.requestPasswordReset` (no session: the owner forgot the password).
pub async fn request_password_reset(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let input: RequestPasswordReset = req.json(JSON_LIMIT).await?;
    app.accounts()
        .request_password_reset(req.peer, &input.email)
        .await?;
    Ok(XrpcResponse::Empty)
}

#[derive(Deserialize)]
struct ResetPassword {
    token: String,
    password: String,
}

/// `com.atproto.server.resetPassword`
pub async fn reset_password(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let input: ResetPassword = req.json(JSON_LIMIT).await?;
    app.accounts()
        .reset_password(req.peer, &input.token, &input.password)
        .await?;
    Ok(XrpcResponse::Empty)
}
