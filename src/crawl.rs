//! Asking relays to crawl us (`com.atproto.sync.requestCrawl`): on start,
//! and after writes once the last request is older than the throttle (the
//! reference PDS asks at most every 20 minutes). The last answer of each
//! relay is kept for the status page, since "my posts don't show up" most
//! often means a relay never heard of this PDS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use tokio::sync::watch;

use crate::net::Net;
use crate::store::{Store, account, repo};

pub const THROTTLE: Duration = Duration::from_secs(20 * 60);

#[derive(Clone, Debug, Default)]
pub struct RelayStatus {
    pub relay: String,
    /// Unix seconds of the last request.
    pub at: i64,
    /// "ok", or what went wrong.
    pub result: String,
}

/// Who to ask, as whom, and what each relay answered last.
pub struct Crawler {
    relays: Vec<String>,
    hostname: String,
    net: Net,
    store: Arc<Store>,
    answers: Mutex<Vec<RelayStatus>>,
}

impl Crawler {
    pub fn new(relays: Vec<String>, hostname: String, net: Net, store: Arc<Store>) -> Crawler {
        Crawler {
            relays,
            hostname,
            net,
            store,
            answers: Mutex::default(),
        }
    }

    pub fn has_relays(&self) -> bool {
        !self.relays.is_empty()
    }

    pub fn snapshot(&self) -> Vec<RelayStatus> {
        self.answers.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn record(&self, s: RelayStatus) {
        if let Ok(mut v) = self.answers.lock() {
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

    /// Ask every configured relay once.
    pub async fn request_all(&self) {
        for relay in &self.relays {
            let url = format!(
                "{}/xrpc/com.atproto.sync.requestCrawl",
                relay.trim_end_matches('/')
            );
            let body = json!({ "hostname": self.hostname });
            let result = match self.net.json(Method::POST, &url, Some(&body)).await {
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
                tracing::info!("asked {relay} to crawl {}", self.hostname);
            } else {
                tracing::warn!("requestCrawl to {relay} failed: {result}");
            }
            self.record(RelayStatus {
                relay: relay.clone(),
                at: crate::clock::unix_secs(),
                result,
            });
        }
    }

    /// Whether some relay's latest rev for our repo differs from ours (or it
    /// does not know the repo at all).
    pub async fn relays_lag(&self) -> bool {
        let Ok(Some((acct, root))) = self
            .store
            .read(|db| Ok(account::get_account(db)?.zip(repo::get_root(db)?)))
            .await
        else {
            return false;
        };
        for relay in &self.relays {
            let url = format!(
                "{}/xrpc/com.atproto.sync.getLatestCommit?did={}",
                relay.trim_end_matches('/'),
                acct.did.replace('%', "%25")
            );
            let theirs = match self.net.json(Method::GET, &url, None).await {
                Ok((st, body)) if st.is_success() => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("rev").and_then(Value::as_str).map(str::to_owned)),
                Ok(_) => None,
                // Unreachable relays are not "lagging"; asking again won't help.
                Err(_) => continue,
            };
            if theirs.as_deref() != Some(root.rev.as_str()) {
                return true;
            }
        }
        false
    }
}

/// How often to compare each relay's view of the repo with ours.
pub const LAG_CHECK: Duration = Duration::from_secs(30 * 60);

/// Background task: ask on start; then after writes, at most once per
/// `THROTTLE`; and again whenever a relay still lags our head at two
/// checks in a row (it missed us, or dropped its subscription).
pub async fn run(crawler: Arc<Crawler>, mut seqs: watch::Receiver<i64>) {
    if !crawler.has_relays() {
        return;
    }
    crawler.request_all().await;
    let mut last = tokio::time::Instant::now();
    let mut lag_checks = tokio::time::interval(LAG_CHECK);
    lag_checks.tick().await;
    let mut lagged_before = false;
    loop {
        tokio::select! {
            changed = seqs.changed() => {
                if changed.is_err() {
                    return;
                }
                let since = last.elapsed();
                if since < THROTTLE {
                    tokio::time::sleep(THROTTLE - since).await;
                }
                seqs.borrow_and_update();
            }
            _ = lag_checks.tick() => {
                let lagging = crawler.relays_lag().await;
                let ask = lagging && lagged_before;
                lagged_before = lagging;
                if !ask {
                    continue;
                }
                tracing::warn!("a relay has lagged our repo head for {:?}; asking again", LAG_CHECK);
            }
        }
        crawler.request_all().await;
        last = tokio::time::Instant::now();
    }
}
