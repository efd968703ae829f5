//! Asking relays to crawl us (`com.atproto.sync.requestCrawl`): on start,
//! and after writes once the last request is older than the throttle (the
//! reference PDS asks at most every 20 minutes). The last answer of each
//! relay is kept for the status page, since "my posts don't show up" most
//! often means a relay never heard of this PDS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::app::App;

pub const THROTTLE: Duration = Duration::from_secs(20 * 60);

#[derive(Clone, Debug, Default)]
pub struct RelayStatus {
    pub relay: String,
    /// Unix seconds of the last request.
    pub at: i64,
    /// "ok", or what went wrong.
    pub result: String,
}

#[derive(Default)]
pub struct CrawlState {
    relays: Mutex<Vec<RelayStatus>>,
}

impl CrawlState {
    pub fn snapshot(&self) -> Vec<RelayStatus> {
        self.relays.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn record(&self, s: RelayStatus) {
        if let Ok(mut v) = self.relays.lock() {
            v.retain(|x| x.relay != s.relay);
            v.push(s);
        }
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.snapshot()
                .into_iter()
                .map(|s| json!({ "relay": s.relay, "requestedAt": s.at, "result": s.result }))
                .collect(),
        )
    }
}

/// Ask every configured relay once.
pub async fn request_all(app: &App) {
    for relay in &app.config.relays {
        let url = format!(
            "{}/xrpc/com.atproto.sync.requestCrawl",
            relay.trim_end_matches('/')
        );
        let body = json!({ "hostname": app.config.hostname });
        let result = match app.net.json(Method::POST, &url, Some(&body)).await {
            Ok((status, _)) if status.is_success() => "ok".to_owned(),
            Ok((status, body)) => format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
            Err(e) => e.to_string(),
        };
        if result == "ok" {
            tracing::info!("asked {relay} to crawl {}", app.config.hostname);
        } else {
            tracing::warn!("requestCrawl to {relay} failed: {result}");
        }
        app.crawl.record(RelayStatus {
            relay: relay.clone(),
            at: crate::api::repo::unix_now(),
            result,
        });
    }
}

/// Background task: ask on start, then after writes, at most once per
/// `THROTTLE`.
pub async fn run(app: Arc<App>) {
    if app.config.relays.is_empty() {
        return;
    }
    let mut seqs = app.writer.seq_watch();
    request_all(&app).await;
    let mut last = tokio::time::Instant::now();
    while seqs.changed().await.is_ok() {
        let since = last.elapsed();
        if since < THROTTLE {
            tokio::time::sleep(THROTTLE - since).await;
        }
        seqs.borrow_and_update();
        request_all(&app).await;
        last = tokio::time::Instant::now();
    }
}
