//! `app.bsky.actor.{get,put}Preferences`: private to the account, stored
//! opaquely by the PDS, never in the repo.
//!
//! Two preferences are special, as at the reference PDS: `personalDetailsPref` (the birth
//! date) belongs to full sessions only (an app password neither reads nor replaces it),
//! and `declaredAgePref` is never stored: it is derived from the birth date on every read,
//! so apps holding only an app password learn the age bracket and not the date.

use std::sync::Arc;

use serde_json::{Value, json};

use super::HandlerResult;
use super::auth::{self, Permit};
use crate::app::App;
use crate::store::account;
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

const PERSONAL_DETAILS: &str = "app.bsky.actor.defs#personalDetailsPref";
const DECLARED_AGE: &str = "app.bsky.actor.defs#declaredAgePref";

/// Preferences belong to the AppView's namespace: an app's permission to call them names
/// the AppView as their audience, as if the call went there.
pub(super) fn appview(app: &App) -> String {
    format!("{}#bsky_appview", app.config.appview_did)
}

fn pref_type(p: &Value) -> Option<&str> {
    p.get("$type").and_then(Value::as_str)
}

/// Whether a session may read or write a preference of this type.
fn allowed(pref_type: Option<&str>, full_access: bool) -> bool {
    full_access || pref_type != Some(PERSONAL_DETAILS)
}

pub async fn get_preferences(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    session.permit_rpc(&req.nsid, &appview(&app))?;
    let full = !session.scope.is_app_password();
    let mut prefs = stored(&app).await?;
    let birth_date = prefs
        .iter()
        .find(|p| pref_type(p) == Some(PERSONAL_DETAILS))
        .and_then(|p| p.get("birthDate"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    if let Some(date) = birth_date {
        let age = age_on(&date, auth::now());
        let over = |years: i64| age.is_some_and(|a| a >= years);
        prefs.push(json!({
            "$type": DECLARED_AGE,
            "isOverAge13": over(13),
            "isOverAge16": over(16),
            "isOverAge18": over(18),
        }));
    }
    prefs.retain(|p| allowed(pref_type(p), full));
    Ok(XrpcResponse::Json(json!({ "preferences": prefs })))
}

pub async fn put_preferences(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    session.permit_rpc(&req.nsid, &appview(&app))?;
    let full = !session.scope.is_app_password();
    let body: Value = req.json(JSON_LIMIT).await?;
    let Some(prefs) = body.get("preferences").and_then(Value::as_array) else {
        return Err(XrpcError::invalid_request("preferences must be an array"));
    };
    // As the reference does: each typed, only app.bsky preferences, and only those this
    // session may set.
    if prefs.iter().any(|p| pref_type(p).is_none()) {
        return Err(XrpcError::invalid_request("Preference is missing a $type"));
    }
    if !prefs
        .iter()
        .all(|p| pref_type(p).is_some_and(|t| t.starts_with("app.bsky.")))
    {
        return Err(XrpcError::invalid_request(
            "Some preferences are not in the app.bsky namespace",
        ));
    }
    let forbidden: Vec<&str> = prefs
        .iter()
        .filter_map(pref_type)
        .filter(|t| !allowed(Some(t), full))
        .collect();
    if !forbidden.is_empty() {
        return Err(XrpcError::invalid_request(format!(
            "Do not have authorization to set preferences: {}",
            forbidden.join(", ")
        )));
    }
    let mut new: Vec<Value> = prefs
        .iter()
        .filter(|p| pref_type(p) != Some(DECLARED_AGE))
        .cloned()
        .collect();
    app.writer
        .exec(move |c, _| {
            // An app password replaces everything but what it may not see, which stays as
            // it was (read again here, inside the write, so nothing in between is lost).
            if !full {
                let current = match account::get_preferences(c)? {
                    Some(s) => serde_json::from_str::<Vec<Value>>(&s).unwrap_or_default(),
                    None => vec![],
                };
                new.extend(
                    current
                        .into_iter()
                        .filter(|p| !allowed(pref_type(p), false)),
                );
            }
            account::put_preferences(c, &Value::Array(new).to_string())
        })
        .await?;
    Ok(XrpcResponse::Empty)
}

async fn stored(app: &App) -> Result<Vec<Value>, XrpcError> {
    match app.store.read(account::get_preferences).await? {
        Some(s) => serde_json::from_str(&s).map_err(XrpcError::internal),
        None => Ok(vec![]),
    }
}

/// Whole years from the date at the start of `date` (an atproto datetime or a plain
/// `YYYY-MM-DD`) to the UTC day of `now` (UNIX seconds); `None` when it is not a date.
fn age_on(date: &str, now: i64) -> Option<i64> {
    let born = ymd(date)?;
    let today = ymd(&crate::syntax::format_datetime_millis(
        now.saturating_mul(1000),
    ))?;
    let mut age = today.0 - born.0;
    if (today.1, today.2) < (born.1, born.2) {
        age -= 1;
    }
    Some(age)
}

fn ymd(s: &str) -> Option<(i64, u32, u32)> {
    let d = s.get(..10)?;
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return None;
    }
    let year = d[..4].parse().ok()?;
    let month = d[5..7].parse().ok().filter(|m| (1..=12).contains(m))?;
    let day = d[8..10].parse().ok().filter(|d| (1..=31).contains(d))?;
    Some((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T12:00:00Z
    const NOW: i64 = 1_796_299_200;

    #[test]
    fn ages() {
        assert_eq!(
            crate::syntax::format_datetime_millis(NOW * 1000),
            "2026-12-03T12:00:00.000Z"
        );
        assert_eq!(age_on("2008-12-03T00:00:00.000Z", NOW), Some(18));
        assert_eq!(age_on("2008-12-04T00:00:00.000Z", NOW), Some(17));
        assert_eq!(age_on("2010-11-30", NOW), Some(16));
        assert_eq!(age_on("2013-12-04", NOW), Some(12));
        assert_eq!(age_on("yesterday", NOW), None);
        assert_eq!(age_on("2013-13-04", NOW), None);
        assert_eq!(age_on("", NOW), None);
        assert_eq!(age_on("20é8-12-03T00:00:00Z", NOW), None);
    }

    #[test]
    fn birth_date_is_for_full_sessions_only() {
        assert!(allowed(Some(PERSONAL_DETAILS), true));
        assert!(!allowed(Some(PERSONAL_DETAILS), false));
        assert!(allowed(Some(DECLARED_AGE), false));
        assert!(allowed(Some("app.bsky.actor.defs#savedFeedsPrefV2"), false));
    }
}
