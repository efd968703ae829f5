//! Liveness and readiness.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::xrpc::{self, Body};

pub fn health() -> Response<Body> {
    xrpc::json_response(
        StatusCode::OK,
        json!({ "version": env!("CARGO_PKG_VERSION") }).to_string(),
    )
}

/// Ready when the database answers, storage has not failed, an account exists and, with
/// HTTPS on, a certificate is being served. `tls` and `storage` say what the front door
/// and the disk are doing either way.
pub async fn readyz(app: &Arc<App>) -> Response<Body> {
    let account = app.account().await;
    let failure = app.writer.health().failure();
    let storage = json!({
        "healthy": failure.is_none(),
        "error": failure,
        "writable": failure.is_none(),
    });
    let tls_on = app.config.tls != crate::config::TlsMode::Off;
    let tls = app.tls.status();
    let days_left = app.tls.days_left();
    let tls_json = tls_on.then(|| {
        json!({
            "serving": tls.serving,
            "status": tls.message,
            "certificateSerial": tls.cert.as_ref().map(|c| c.serial.clone()),
            "certificateNotAfter": tls.cert.as_ref().map(|c| c.not_after),
            "certificateDaysLeft": days_left,
            "certificateExpiring": days_left.is_some_and(|d| d < crate::tls::EXPIRY_WARNING_DAYS),
            "lastError": tls.last_error,
        })
    });
    let (status, body) = match account {
        Ok(_) if failure.is_some() => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "ready": false,
                "reason": format!(
                    "storage failed ({}); read-only until perch is restarted",
                    failure.unwrap_or_default()
                ),
                "storage": storage,
                "tls": tls_json,
            }),
        ),
        Ok(Some(_)) if tls_on && !tls.serving => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "ready": false,
                "reason": format!("no TLS certificate yet: {}", tls.message),
                "storage": storage,
                "tls": tls_json,
            }),
        ),
        Ok(Some(a)) => (
            StatusCode::OK,
            json!({
                "ready": true,
                "storage": storage,
                "tls": tls_json,
                "did": a.did,
                "handle": a.handle,
                "relays": app.federation.views(),
                "firehoseSeq": *app.writer.seq_watch().borrow(),
                "firehoseSubscribers": app.subscribers.load(std::sync::atomic::Ordering::Relaxed),
            }),
        ),
        Ok(None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "ready": false,
                "reason": "no account yet: run `sudo perch init` (or `perch account create`)",
                "storage": storage,
                "tls": tls_json,
            }),
        ),
        Err(e) => {
            tracing::warn!("readiness check: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "ready": false, "reason": "database unavailable" }),
            )
        }
    };
    xrpc::json_response(status, body.to_string())
}
