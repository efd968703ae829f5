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

/// Ready when the database answers and an account exists.
pub async fn readyz(app: &Arc<App>) -> Response<Body> {
    let account = app.account().await;
    let (status, body) = match account {
        Ok(Some(a)) => (
            StatusCode::OK,
            json!({
                "ready": true,
                "did": a.did,
                "handle": a.handle,
                "relays": app.crawl.to_json(),
                "firehoseSeq": *app.writer.seq_watch().borrow(),
                "firehoseSubscribers": app.subscribers.load(std::sync::atomic::Ordering::Relaxed),
            }),
        ),
        Ok(None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "ready": false, "reason": "no account yet: run `perch account create`" }),
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
