//! Counters for the opt-in Prometheus `/metrics` endpoint. Plain atomics: a handful of
//! numbers a home server's owner wants on a dashboard, with no registry crate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    started: std::time::Instant,
    /// Requests by status class 1xx..5xx.
    requests: [AtomicU64; 5],
    /// Cumulative counts per bucket, plus +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    storage_ok: AtomicBool,
    /// The last day, hour by hour, for the owner's page.
    hours: [Hour; 24],
}

/// One hour's figures; `hour` says which hour (Unix hours) they belong to.
#[derive(Default)]
struct Hour {
    hour: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    subscribers: AtomicU64,
}

/// An hour of the last day: its start (Unix seconds), requests, server errors (5xx), and
/// the most firehose subscribers seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourFigures {
    pub start: i64,
    pub requests: u64,
    pub errors: u64,
    pub subscribers: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: std::time::Instant::now(),
            requests: Default::default(),
            latency: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            storage_ok: AtomicBool::new(true),
            hours: Default::default(),
        }
    }
}

/// Values owned elsewhere, read when rendering.
pub struct Snapshot {
    pub commits: u64,
    pub firehose_seq: i64,
    pub firehose_subscribers: usize,
    pub cert_not_after: Option<i64>,
    pub certs_issued: u64,
    pub password_hashes: u64,
    pub password_queue: usize,
    pub relays: Vec<RelayMetric>,
}

/// One relay's figures (from the federation service's view).
pub struct RelayMetric {
    pub relay: String,
    /// Active and current at the last check.
    pub healthy: bool,
    pub crawl_requests: u64,
    /// When its copy of the repo last matched ours (Unix time; 0 never).
    pub matched_at: i64,
}

fn now_hour() -> u64 {
    (crate::clock::unix_secs().max(0) / 3600) as u64
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn record_request(&self, status: u16, elapsed: std::time::Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Relaxed);
        let hour = self.hour(now_hour());
        hour.requests.fetch_add(1, Relaxed);
        if status >= 500 {
            hour.errors.fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// The bucket of `hour`, emptied first when it still holds the same hour of yesterday.
    /// Two threads crossing the hour at once may lose a count or two: fine for a plot.
    fn hour(&self, hour: u64) -> &Hour {
        let b = &self.hours[(hour % 24) as usize];
        if b.hour.load(Relaxed) != hour && b.hour.swap(hour, Relaxed) != hour {
            b.requests.store(0, Relaxed);
            b.errors.store(0, Relaxed);
            b.subscribers.store(0, Relaxed);
        }
        b
    }

    /// Notes how many firehose subscribers there are now (the hour keeps the most).
    pub fn note_subscribers(&self, n: usize) {
        self.hour(now_hour())
            .subscribers
            .fetch_max(n as u64, Relaxed);
    }

    /// The 24 hours up to now, oldest first; hours with nothing recorded are zero.
    pub fn last_day(&self) -> Vec<HourFigures> {
        let now = now_hour();
        (now.saturating_sub(23)..=now)
            .map(|h| {
                let b = &self.hours[(h % 24) as usize];
                let mut f = HourFigures {
                    start: (h * 3600) as i64,
                    ..HourFigures::default()
                };
                if b.hour.load(Relaxed) == h {
                    f.requests = b.requests.load(Relaxed);
                    f.errors = b.errors.load(Relaxed);
                    f.subscribers = b.subscribers.load(Relaxed);
                }
                f
            })
            .collect()
    }

    /// Time since the server started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn set_storage_ok(&self, ok: bool) {
        self.storage_ok.store(ok, Relaxed);
    }

    pub fn storage_ok(&self) -> bool {
        self.storage_ok.load(Relaxed)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |v: String| vec![(String::new(), v)];
        metric(
            "perch_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            &plain(self.started.elapsed().as_secs().to_string()),
        );
        let by_class: Vec<_> = (0..5)
            .map(|i| {
                (
                    format!("{{class=\"{}xx\"}}", i + 1),
                    self.requests[i].load(Relaxed).to_string(),
                )
            })
            .collect();
        metric(
            "perch_http_requests_total",
            "counter",
            "HTTP requests answered, by status class.",
            &by_class,
        );
        let mut cumulative = 0;
        let mut hist = Vec::new();
        for (i, bound) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .enumerate()
        {
            cumulative += self.latency[i].load(Relaxed);
            hist.push((format!("_bucket{{le=\"{bound}\"}}"), cumulative.to_string()));
        }
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        hist.push(("_sum".to_owned(), sum.to_string()));
        hist.push(("_count".to_owned(), cumulative.to_string()));
        metric(
            "perch_http_request_duration_seconds",
            "histogram",
            "Time to produce a response head.",
            &hist,
        );
        metric(
            "perch_connections_open",
            "gauge",
            "Client connections open now.",
            &plain(self.connections_open.load(Relaxed).to_string()),
        );
        metric(
            "perch_connections_rejected_total",
            "counter",
            "Connections closed at once because a connection limit was reached.",
            &plain(self.connections_rejected.load(Relaxed).to_string()),
        );
        metric(
            "perch_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            &plain(self.tls_handshake_failures.load(Relaxed).to_string()),
        );
        metric(
            "perch_repo_commits_total",
            "counter",
            "Repository commits since start.",
            &plain(s.commits.to_string()),
        );
        metric(
            "perch_firehose_seq",
            "gauge",
            "Sequence number of the latest firehose event.",
            &plain(s.firehose_seq.to_string()),
        );
        metric(
            "perch_firehose_subscribers",
            "gauge",
            "Open firehose connections.",
            &plain(s.firehose_subscribers.to_string()),
        );
        if let Some(t) = s.cert_not_after {
            metric(
                "perch_tls_certificate_expiry_timestamp_seconds",
                "gauge",
                "When the served certificate expires (Unix time).",
                &plain(t.to_string()),
            );
        }
        metric(
            "perch_tls_certificates_issued_total",
            "counter",
            "Certificates obtained from the ACME CA since start.",
            &plain(s.certs_issued.to_string()),
        );
        metric(
            "perch_password_hashes_total",
            "counter",
            "Password hashes computed (logins, deletion checks, new passwords) since start.",
            &plain(s.password_hashes.to_string()),
        );
        metric(
            "perch_password_queue",
            "gauge",
            "Password checks waiting for a hashing thread.",
            &plain(s.password_queue.to_string()),
        );
        let per_relay = |f: &dyn Fn(&RelayMetric) -> String| -> Vec<(String, String)> {
            s.relays
                .iter()
                .map(|r| (format!("{{relay=\"{}\"}}", label(&r.relay)), f(r)))
                .collect()
        };
        metric(
            "perch_relay_healthy",
            "gauge",
            "1 when the relay was active and had the repo's head at the last check.",
            &per_relay(&|r| u8::from(r.healthy).to_string()),
        );
        metric(
            "perch_relay_crawl_requests_total",
            "counter",
            "Crawl requests sent to the relay since start.",
            &per_relay(&|r| r.crawl_requests.to_string()),
        );
        metric(
            "perch_relay_matched_timestamp_seconds",
            "gauge",
            "When the relay's copy of the repo last matched this server's (Unix time; 0 never).",
            &per_relay(&|r| r.matched_at.to_string()),
        );
        metric(
            "perch_storage_healthy",
            "gauge",
            "1 when the last database probe succeeded.",
            &plain(u8::from(self.storage_ok()).to_string()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_day_counts_this_hours_requests_errors_and_subscribers() {
        let m = Metrics::default();
        m.record_request(200, std::time::Duration::from_millis(1));
        m.record_request(502, std::time::Duration::from_millis(1));
        m.note_subscribers(3);
        m.note_subscribers(1);
        let day = m.last_day();
        assert_eq!(day.len(), 24);
        let now = day[23];
        assert_eq!((now.requests, now.errors, now.subscribers), (2, 1, 3));
        assert_eq!(now.start % 3600, 0);
        assert!(day[..23].iter().all(|h| h.requests == 0));
        // The same bucket a day later starts empty.
        let h = now_hour() + 24;
        assert_eq!(m.hour(h).requests.load(Relaxed), 0);
    }

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request(200, std::time::Duration::from_millis(3));
        m.record_request(404, std::time::Duration::from_millis(30));
        m.record_request(503, std::time::Duration::from_secs(20));
        let text = m.render(&Snapshot {
            commits: 7,
            firehose_seq: 9,
            firehose_subscribers: 1,
            password_hashes: 0,
            password_queue: 0,
            cert_not_after: Some(1_900_000_000),
            certs_issued: 2,
            relays: vec![RelayMetric {
                relay: "https://relay.example/\"x\"".into(),
                healthy: true,
                crawl_requests: 3,
                matched_at: 1_800_000_000,
            }],
        });
        assert!(text.contains("perch_http_requests_total{class=\"2xx\"} 1\n"));
        assert!(text.contains("perch_http_requests_total{class=\"4xx\"} 1\n"));
        assert!(text.contains("perch_http_requests_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("perch_http_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("perch_http_request_duration_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("perch_http_request_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("perch_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("perch_http_request_duration_seconds_count 3\n"));
        assert!(text.contains("perch_repo_commits_total 7\n"));
        assert!(text.contains("perch_tls_certificate_expiry_timestamp_seconds 1900000000\n"));
        let relay = "{relay=\"https://relay.example/\\\"x\\\"\"}";
        assert!(
            text.contains(&format!("perch_relay_healthy{relay} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!("perch_relay_crawl_requests_total{relay} 3\n")));
        assert!(text.contains(&format!(
            "perch_relay_matched_timestamp_seconds{relay} 1800000000\n"
        )));
    }
}
