//! `app.bsky.actor.{get,put}Preferences`: private to the account, stored
//! opaquely by the PDS, never in the repo.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{HandlerResult, auth};
use crate::app::App;
use crate::store::account;
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

pub async fn get_preferences(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    auth::require_user(&app, &req).await?;
    let stored = app.store.read(account::get_preferences).await?;
    let prefs: Value = match stored {
        Some(s) => serde_json::from_str(&s).map_err(XrpcError::internal)?,
        None => json!([]),
    };
    Ok(XrpcResponse::Json(json!({ "preferences": prefs })))
}

pub async fn put_preferences(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    auth::require_user(&app, &req).await?;
    let body: Value = req.json(JSON_LIMIT).await?;
    let Some(prefs) = body.get("preferences").and_then(Value::as_array) else {
        return Err(XrpcError::invalid_request("preferences must be an array"));
    };
    // As the reference does: only app.bsky preferences, each typed.
    for p in prefs {
        match p.get("$type").and_then(Value::as_str) {
            Some(t) if t.starts_with("app.bsky.") => {}
            _ => {
                return Err(XrpcError::invalid_request(
                    "Some preferences are not in the app.bsky namespace",
                ));
            }
        }
    }
    let text = Value::Array(prefs.clone()).to_string();
    app.writer
        .exec(move |c, _| account::put_preferences(c, &text))
        .await?;
    Ok(XrpcResponse::Empty)
}
