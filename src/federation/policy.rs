//! What a relay's answers mean and what to do about them. Pure: the answers, our head and
//! the time come in; the relay's new view and the decision to ask it to crawl go out.
//!
//! The rule: a relay that is idle, offline or has never heard of this host is asked to crawl
//! at once; one whose copy of the repo trails ours for longer than a grace period (relays take
//! seconds; minutes mean it dropped its subscription) is asked too. Asking again waits twice
//! as long each time (one check interval, two, four, … at most twelve hours) until the relay
//! reports active and current, which resets it. A throttled or banned host, or an account the
//! relay holds as taken down, is not something a crawl request fixes: the view says what the
//! owner can do instead.

use serde::{Deserialize, Serialize};

/// The longest a relay may trail our head before it is asked to crawl (shorter when checks
/// are more frequent than this: two check intervals).
pub const GRACE_SECS: i64 = 5 * 60;
/// The longest wait between two crawl requests to a relay that stays unhealthy.
pub const MAX_BACKOFF_SECS: i64 = 12 * 3600;

/// What one check of one relay found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// `getHostStatus`'s `status` (lower case), `"not-found"` (`HostNotFound`),
    /// `"unsupported"` (an older relay without the method) or `""` (answered without one).
    pub host: String,
    pub host_seq: Option<i64>,
    /// Whether the relay knows the repo at all (`getRepoStatus`, or `getLatestCommit` on
    /// older relays).
    pub repo_found: bool,
    pub rev: Option<String>,
    /// `getRepoStatus`'s `status` when it says `active: false`.
    pub repo_status: Option<String>,
    /// The relay could not be asked: why.
    pub error: Option<String>,
}

/// Our side at the time of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub rev: String,
    pub seq: i64,
    /// The account is active here (a deactivated or moved-away account is not healed).
    pub active: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    /// Not checked yet.
    #[default]
    Unchecked,
    /// Active, and its copy of the repo is ours.
    Healthy,
    /// Its copy trails ours, for less than the grace period.
    CatchingUp,
    /// It needs a crawl request (and gets one when the back-off allows).
    Healing,
    /// Something a crawl request does not fix; see the advice.
    Attention,
    /// It did not answer.
    Unreachable,
    /// The account is not active here, so there is nothing to keep current.
    Inactive,
}

/// One relay as this server sees it: the last answers and what was done about them. Shown on
/// the owner's page, in `/readyz` and by `perch status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RelayView {
    pub relay: String,
    pub health: Health,
    /// Unix seconds of the last check; 0 before the first.
    pub checked_at: i64,
    /// See [`Observation::host`].
    pub host: String,
    pub host_seq: Option<i64>,
    pub repo_found: bool,
    pub rev: Option<String>,
    pub repo_status: Option<String>,
    pub error: Option<String>,
    /// Our rev and seq at the last check.
    pub local_rev: Option<String>,
    pub local_seq: i64,
    /// When its rev last equalled ours (0: never seen).
    pub matched_at: i64,
    /// Since when its rev has differed from ours (0: it does not).
    pub behind_since: i64,
    /// Crawl requests since it was last healthy (the back-off exponent).
    pub crawls: u32,
    /// Crawl requests since start.
    pub crawls_total: u64,
    pub crawled_at: i64,
    /// "ok", or what went wrong.
    pub crawl_result: Option<String>,
    /// No crawl request before this (unix seconds).
    pub next_crawl_at: i64,
}

impl RelayView {
    pub fn new(relay: &str) -> RelayView {
        RelayView {
            relay: relay.to_owned(),
            ..RelayView::default()
        }
    }

    /// Takes in a check's answers: the new health, and how long the relay has matched or
    /// trailed our head.
    pub fn observe(&mut self, obs: Observation, head: Option<&Head>, now: i64, grace: i64) {
        self.checked_at = now;
        self.host = obs.host;
        self.host_seq = obs.host_seq;
        self.repo_found = obs.repo_found;
        self.rev = obs.rev;
        self.repo_status = obs.repo_status;
        self.error = obs.error;
        self.local_rev = head.map(|h| h.rev.clone());
        self.local_seq = head.map_or(0, |h| h.seq);
        if self.error.is_none() {
            if self.rev.is_some() && self.rev == self.local_rev {
                self.matched_at = now;
                self.behind_since = 0;
            } else if self.behind_since == 0 {
                self.behind_since = now;
            }
        }
        self.health = self.assess(head, now, grace);
        if self.health == Health::Healthy {
            self.crawls = 0;
            self.next_crawl_at = 0;
        }
    }

    fn assess(&self, head: Option<&Head>, now: i64, grace: i64) -> Health {
        if self.error.is_some() {
            return Health::Unreachable;
        }
        if !head.is_some_and(|h| h.active) {
            return Health::Inactive;
        }
        match self.host.as_str() {
            "throttled" | "banned" => return Health::Attention,
            "idle" | "offline" | "not-found" => return Health::Healing,
            _ => {}
        }
        match self.repo_status.as_deref() {
            Some("desynchronized") => return Health::Healing,
            Some(_) => return Health::Attention,
            None => {}
        }
        if !self.repo_found {
            return Health::Healing;
        }
        if self.rev.is_some() && self.rev == self.local_rev {
            return Health::Healthy;
        }
        if now - self.behind_since >= grace {
            Health::Healing
        } else {
            Health::CatchingUp
        }
    }

    /// Whether to ask it to crawl now: it needs it and the back-off has run out.
    pub fn wants_crawl(&self, now: i64) -> bool {
        self.health == Health::Healing && now >= self.next_crawl_at
    }

    /// Records a crawl request and sets when the next may be made: one `base` after the
    /// first, then twice as long each time, at most [`MAX_BACKOFF_SECS`].
    pub fn crawled(&mut self, result: String, now: i64, base: i64) {
        let wait = base
            .max(1)
            .saturating_mul(1 << self.crawls.min(20))
            .min(MAX_BACKOFF_SECS);
        self.crawls = self.crawls.saturating_add(1);
        self.crawls_total += 1;
        self.crawled_at = now;
        self.crawl_result = Some(result);
        self.next_crawl_at = now + wait;
    }

    /// When a relay trailing our head runs out of grace: the time to look again.
    pub fn grace_ends(&self, grace: i64) -> Option<i64> {
        (self.health == Health::CatchingUp).then_some(self.behind_since + grace)
    }

    /// One sentence for the owner: what the state means and what to do, when there is
    /// something to say.
    pub fn advice(&self) -> Option<String> {
        let text = match self.health {
            Health::Unchecked | Health::Healthy | Health::Inactive => return None,
            Health::CatchingUp => "The relay is a little behind; it usually catches up within seconds.".to_owned(),
            Health::Unreachable => "The relay did not answer; perch tries again at the next check (is this box online?).".to_owned(),
            Health::Healing => match self.host.as_str() {
                "idle" | "offline" | "not-found" => "The relay is not following this server; perch asks it to crawl, waiting longer after each try.".to_owned(),
                _ => "The relay's copy of your repo is behind; perch asks it to crawl, waiting longer after each try.".to_owned(),
            },
            Health::Attention => match (self.host.as_str(), self.repo_status.as_deref()) {
                ("throttled", _) => "The relay is limiting this server's events; this usually lifts by itself within a day, otherwise write to the relay's operator.".to_owned(),
                ("banned", _) => "The relay refuses this server; only its operator can lift that, so write to them.".to_owned(),
                (_, Some(s)) => format!("The relay holds your account as {s}; if that is wrong, write to the relay's operator."),
                _ => "The relay's answer needs a look.".to_owned(),
            },
        };
        Some(text)
    }
}

/// "just now", "12 min ago", "3 h ago", "2 days ago"; "never" for 0.
pub fn ago(now: i64, then: i64) -> String {
    if then == 0 {
        return "never".to_owned();
    }
    match now.saturating_sub(then) {
        s if s < 60 => "just now".to_owned(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Health::Unchecked => "not checked yet",
            Health::Healthy => "following, current",
            Health::CatchingUp => "catching up",
            Health::Healing => "not following: healing",
            Health::Attention => "needs attention",
            Health::Unreachable => "unreachable",
            Health::Inactive => "account inactive here",
        }
    }
}

impl RelayView {
    /// What the relay said, in one line: host status, its copy of the repo against ours, and
    /// the last crawl request.
    pub fn describe(&self, now: i64) -> String {
        let mut out = format!("{}: {}", self.relay, self.health.word());
        if let Some(e) = &self.error {
            out.push_str(&format!(" ({e})"));
            return out;
        }
        if self.checked_at == 0 {
            return out;
        }
        let host = match self.host.as_str() {
            "" | "unsupported" => "host status not given".to_owned(),
            h => match self.host_seq {
                Some(seq) => format!("host {h} at seq {seq} (ours {})", self.local_seq),
                None => format!("host {h}"),
            },
        };
        let repo = match (&self.rev, self.repo_found) {
            (Some(r), _) if self.rev == self.local_rev => format!("repo current at rev {r}"),
            (Some(r), _) => format!(
                "repo at rev {r}, ours {}",
                self.local_rev.as_deref().unwrap_or("none")
            ),
            (None, true) => "repo known, no rev given".to_owned(),
            (None, false) => "no copy of the repo".to_owned(),
        };
        out.push_str(&format!(
            "; {host}; {repo}; matched {}; checked {}",
            ago(now, self.matched_at),
            ago(now, self.checked_at)
        ));
        if let Some(result) = &self.crawl_result {
            out.push_str(&format!(
                "; crawl requested {} ({result})",
                ago(now, self.crawled_at)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 300;

    fn head(rev: &str) -> Head {
        Head {
            rev: rev.into(),
            seq: 7,
            active: true,
        }
    }

    fn answered(host: &str, rev: Option<&str>) -> Observation {
        Observation {
            host: host.into(),
            host_seq: Some(5),
            repo_found: rev.is_some(),
            rev: rev.map(str::to_owned),
            ..Observation::default()
        }
    }

    #[test]
    fn an_idle_or_unknown_host_is_healed_at_once_and_then_with_back_off() {
        for host in ["idle", "offline", "not-found"] {
            let mut v = RelayView::new("r");
            v.observe(answered(host, Some("3a")), Some(&head("3a")), 1000, GRACE);
            assert_eq!(v.health, Health::Healing, "{host}");
            assert!(v.wants_crawl(1000));
            v.crawled("ok".into(), 1000, 60);
            assert_eq!(v.next_crawl_at, 1060);
            assert!(!v.wants_crawl(1059));
            v.observe(answered(host, Some("3a")), Some(&head("3a")), 1060, GRACE);
            assert!(v.wants_crawl(1060));
            v.crawled("ok".into(), 1060, 60);
            assert_eq!(v.next_crawl_at, 1060 + 120);
            v.crawled("ok".into(), 1180, 60);
            assert_eq!(v.next_crawl_at, 1180 + 240);
            assert_eq!(v.crawls_total, 3);
        }
    }

    #[test]
    fn the_back_off_stops_at_twelve_hours_and_resets_once_healthy() {
        let mut v = RelayView::new("r");
        v.observe(answered("idle", None), Some(&head("3a")), 0, GRACE);
        for _ in 0..40 {
            v.crawled("ok".into(), 0, 1800);
        }
        assert_eq!(v.next_crawl_at, MAX_BACKOFF_SECS);
        v.observe(answered("active", Some("3a")), Some(&head("3a")), 10, GRACE);
        assert_eq!(v.health, Health::Healthy);
        assert_eq!((v.crawls, v.next_crawl_at, v.matched_at), (0, 0, 10));
        assert_eq!(v.crawls_total, 40);
    }

    #[test]
    fn a_trailing_relay_gets_the_grace_period_first() {
        let mut v = RelayView::new("r");
        v.observe(
            answered("active", Some("3a")),
            Some(&head("3b")),
            100,
            GRACE,
        );
        assert_eq!(v.health, Health::CatchingUp);
        assert_eq!(v.grace_ends(GRACE), Some(400));
        assert!(!v.wants_crawl(100));
        v.observe(
            answered("active", Some("3a")),
            Some(&head("3c")),
            399,
            GRACE,
        );
        assert_eq!(
            v.health,
            Health::CatchingUp,
            "behind since the first sighting"
        );
        v.observe(
            answered("active", Some("3a")),
            Some(&head("3c")),
            400,
            GRACE,
        );
        assert_eq!(v.health, Health::Healing);
        assert!(v.wants_crawl(400));
        // Catching up ends the lag.
        v.observe(
            answered("active", Some("3c")),
            Some(&head("3c")),
            500,
            GRACE,
        );
        assert_eq!(
            (v.health, v.behind_since, v.matched_at),
            (Health::Healthy, 0, 500)
        );
    }

    #[test]
    fn a_relay_without_the_repo_is_healed_but_a_relay_without_host_status_is_judged_by_the_repo() {
        let mut v = RelayView::new("r");
        v.observe(answered("active", None), Some(&head("3a")), 0, GRACE);
        assert_eq!(v.health, Health::Healing);
        for host in ["unsupported", ""] {
            let mut v = RelayView::new("r");
            v.observe(answered(host, Some("3a")), Some(&head("3a")), 0, GRACE);
            assert_eq!(v.health, Health::Healthy, "{host}");
        }
    }

    #[test]
    fn what_a_crawl_cannot_fix_is_left_to_the_owner_with_advice() {
        for (host, status, words) in [
            ("throttled", None, "limiting"),
            ("banned", None, "refuses"),
            ("active", Some("takendown"), "as takendown"),
        ] {
            let mut v = RelayView::new("r");
            let mut obs = answered(host, Some("3a"));
            obs.repo_status = status.map(str::to_owned);
            v.observe(obs, Some(&head("3b")), 0, GRACE);
            assert_eq!(v.health, Health::Attention, "{host}");
            assert!(!v.wants_crawl(10_000));
            assert!(v.advice().unwrap().contains(words), "{host}");
        }
        let mut v = RelayView::new("r");
        let mut obs = answered("active", Some("3a"));
        obs.repo_status = Some("desynchronized".into());
        v.observe(obs, Some(&head("3a")), 0, GRACE);
        assert_eq!(v.health, Health::Healing);
    }

    #[test]
    fn no_answer_or_an_inactive_account_asks_for_nothing() {
        let mut v = RelayView::new("r");
        let obs = Observation {
            error: Some("connection refused".into()),
            ..Observation::default()
        };
        v.observe(obs, Some(&head("3a")), 50, GRACE);
        assert_eq!(v.health, Health::Unreachable);
        assert_eq!(v.behind_since, 0, "no answer says nothing about lag");
        assert!(!v.wants_crawl(50));
        let mut inactive = head("3a");
        inactive.active = false;
        v.observe(answered("idle", None), Some(&inactive), 60, GRACE);
        assert_eq!(v.health, Health::Inactive);
        assert_eq!(v.advice(), None);
        v.observe(answered("idle", None), None, 70, GRACE);
        assert_eq!(v.health, Health::Inactive, "no account yet");
    }

    #[test]
    fn a_view_reads_as_one_line() {
        let mut v = RelayView::new("https://relay.example");
        v.observe(answered("idle", Some("3a")), Some(&head("3b")), 1000, GRACE);
        v.crawled("ok".into(), 1000, 60);
        assert_eq!(
            v.describe(1000 + 600),
            "https://relay.example: not following: healing; host idle at seq 5 (ours 7); \
             repo at rev 3a, ours 3b; matched never; checked 10 min ago; crawl requested 10 min ago (ok)"
        );
        assert_eq!(ago(10_000, 10_000 - 3 * 86400), "3 days ago");
        assert_eq!(ago(10_000, 10_000 - 7200), "2 h ago");
    }

    #[test]
    fn the_view_round_trips_through_json() {
        let mut v = RelayView::new("https://relay.example");
        v.observe(answered("idle", Some("3a")), Some(&head("3b")), 9, GRACE);
        v.crawled("ok".into(), 9, 60);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["health"], "healing");
        assert_eq!(json["nextCrawlAt"], 69);
        let back: RelayView = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }
}
