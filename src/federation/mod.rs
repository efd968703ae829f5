//! Federation that heals itself: this server watches how each configured relay sees it
//! (`getHostStatus`, `getRepoStatus`) and asks a relay to crawl (`requestCrawl`) when it is
//! idle, offline, has never heard of this host, or its copy of the repo trails ours for more
//! than a few minutes, backing off while the relay stays unhealthy (`policy`). "My posts don't
//! show up" most often means a relay stopped following the PDS; here that is noticed, fixed
//! where a request can fix it, and shown (owner's page, `/readyz`, `/metrics`, `perch status`)
//! where it cannot.

pub mod policy;
mod probe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Store, account, repo};
pub use policy::{Health, RelayView};

/// Between regular checks of every relay.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// After a write, when some relay was not healthy at the last check: look again this soon.
const AFTER_WRITE: Duration = Duration::from_secs(60);

/// Who to watch, as whom, and the last view of each relay.
pub struct Federation {
    relays: Vec<String>,
    hostname: String,
    net: crate::net::Net,
    store: Arc<Store>,
    /// Between regular checks; also the first back-off step.
    interval: Duration,
    views: Mutex<Vec<RelayView>>,
}

impl Federation {
    pub fn new(
        relays: Vec<String>,
        hostname: String,
        net: crate::net::Net,
        store: Arc<Store>,
        interval: Duration,
    ) -> Federation {
        let views = relays.iter().map(|r| RelayView::new(r)).collect();
        Federation {
            relays,
            hostname,
            net,
            store,
            interval: interval.max(Duration::from_secs(1)),
            views: Mutex::new(views),
        }
    }

    pub fn has_relays(&self) -> bool {
        !self.relays.is_empty()
    }

    /// The last view of every configured relay, in config order.
    pub fn views(&self) -> Vec<RelayView> {
        self.views.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, relay: &str, f: impl FnOnce(&mut RelayView)) {
        if let Ok(mut views) = self.views.lock()
            && let Some(v) = views.iter_mut().find(|v| v.relay == relay)
        {
            f(v);
        }
    }

    fn interval_secs(&self) -> i64 {
        i64::try_from(self.interval.as_secs()).unwrap_or(i64::MAX)
    }

    /// How long a relay may trail: five minutes, or two check intervals when checks are
    /// more frequent (tests).
    fn grace(&self) -> i64 {
        policy::GRACE_SECS.min(self.interval_secs().saturating_mul(2))
    }

    async fn head(&self) -> Option<(String, policy::Head)> {
        let (acct, root, seq) = self
            .store
            .read(|db| {
                let acct = account::get_account(db)?;
                let root = repo::get_root(db)?;
                Ok(acct.zip(root).map(|(a, r)| (a, r, repo::highest_seq(db))))
            })
            .await
            .ok()
            .flatten()?;
        let active = acct.is_active();
        Some((
            acct.did,
            policy::Head {
                rev: root.rev,
                seq: seq.unwrap_or(0),
                active,
            },
        ))
    }

    /// Asks one relay to crawl now and records it (counted in its back-off).
    async fn crawl(&self, relay: &str) -> String {
        let result = probe::request_crawl(&self.net, relay, &self.hostname).await;
        if result == "ok" {
            tracing::info!("asked {relay} to crawl {}", self.hostname);
        } else {
            tracing::warn!("requestCrawl to {relay} failed: {result}");
        }
        let (now, base) = (crate::clock::unix_secs(), self.interval_secs());
        self.update(relay, |v| v.crawled(result.clone(), now, base));
        result
    }

    /// Asks every relay to crawl now, whatever they said last (`perch request-crawl`, an
    /// account that has just moved in): each relay and its answer.
    pub async fn request_all(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for relay in &self.relays {
            out.push((relay.clone(), self.crawl(relay).await));
        }
        out
    }

    /// Asks every relay how it sees this server and updates the views; no crawl requests.
    pub async fn check(&self) -> Vec<RelayView> {
        let head = self.head().await;
        let did = head.as_ref().map(|(d, _)| d.as_str()).unwrap_or_default();
        let grace = self.grace();
        for relay in &self.relays {
            let obs = if did.is_empty() {
                policy::Observation::default()
            } else {
                probe::observe(&self.net, relay, &self.hostname, did).await
            };
            let now = crate::clock::unix_secs();
            self.update(relay, |v| {
                v.observe(obs, head.as_ref().map(|(_, h)| h), now, grace)
            });
        }
        self.views()
    }

    /// A check, then a crawl request to each relay that needs one and whose back-off allows.
    pub async fn heal(&self) -> Vec<RelayView> {
        let views = self.check().await;
        let now = crate::clock::unix_secs();
        let mut asked = false;
        for v in &views {
            if v.wants_crawl(now) {
                tracing::warn!(
                    "{} sees this server as {} ({}); asking it to crawl (request {} since it was last healthy)",
                    v.relay,
                    if v.host.is_empty() {
                        "unknown"
                    } else {
                        &v.host
                    },
                    v.rev
                        .as_deref()
                        .map_or("no copy of the repo".to_owned(), |r| format!(
                            "repo at rev {r}"
                        )),
                    v.crawls + 1
                );
                self.crawl(&v.relay).await;
                asked = true;
            }
        }
        if asked { self.views() } else { views }
    }

    /// When to look next: the regular interval, or sooner when a trailing relay's grace ends
    /// or its back-off runs out.
    fn next_check(&self, views: &[RelayView]) -> Duration {
        let now = crate::clock::unix_secs();
        let grace = self.grace();
        let soonest = views
            .iter()
            .filter_map(|v| {
                v.grace_ends(grace)
                    .or_else(|| (v.health == Health::Healing).then_some(v.next_crawl_at))
            })
            .map(|at| Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1)))
            .min();
        soonest.map_or(self.interval, |d| d.min(self.interval))
    }
}

/// Background task: check at once, then every interval (sooner while a relay is healing or
/// catching up), and a minute after a write when some relay was not healthy last time.
pub async fn run(fed: Arc<Federation>, mut seqs: watch::Receiver<i64>) {
    if !fed.has_relays() {
        return;
    }
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                let views = fed.heal().await;
                next = Instant::now() + fed.next_check(&views);
            }
            changed = seqs.changed() => {
                if changed.is_err() {
                    return;
                }
                let unwell = fed.views().iter().any(|v| v.health != Health::Healthy);
                if unwell {
                    next = next.min(Instant::now() + AFTER_WRITE.min(fed.interval));
                }
            }
        }
    }
}
