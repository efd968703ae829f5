//! Firehose fan-out (reliability plan item 22): many subscribers on one real
//! perch process, some of which never read, while clients write.
//!
//! Subscribers connect with `cursor=0` after part of the events exist (replay)
//! and stay for the rest (live). Checked: every reading subscriber receives
//! exactly the events a fresh `cursor=0` replay gives afterwards, in order,
//! with no gap or duplicate; every stalled one is disconnected by the server
//! (it must not be kept forever); every write succeeds. Printed, not asserted:
//! how long the stalled ones took to go, how they ended, RSS growth and the
//! write latency during the run, as one `abuse: fanout key=value …` line.
//!
//! Defaults are a CI smoke (1,500 events); `scripts/abuse.sh` runs 10,000
//! against the release binary. Environment: `PERCH_FANOUT_EVENTS`,
//! `PERCH_FANOUT_SUBSCRIBERS`, `PERCH_FANOUT_STALLED`, `PERCH_BIN`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use perch::cbor::Ipld;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::Client;
use crate::support::firehose::{self, Ws, split_frame};
use crate::support::process::Launch;
use crate::support::serial;

const WRITERS: usize = 4;
/// Writers and the readiness poller, subscribers and stalled subscribers come
/// from different loopback addresses, each well under the per-address cap.
const CLIENT_IP: [u8; 4] = [127, 0, 0, 2];
const GOOD_IP: [u8; 4] = [127, 0, 0, 3];
const STALLED_IP: [u8; 4] = [127, 0, 0, 4];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One createRecord; its latency.
async fn create(api: &Client, i: usize) -> Duration {
    let rec = json!({"repo": api.did, "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post",
            "text": format!("fan-out {i}"), "padding": "x".repeat(1500),
            "createdAt": "2026-01-01T00:00:00.000Z"}});
    let t = Instant::now();
    let (st, b) = api.post("com.atproto.repo.createRecord", &rec).await;
    assert_eq!(st, 200, "createRecord {i}: {b}");
    t.elapsed()
}

async fn readyz(api: &Client) -> Value {
    let (st, b) = api.fetch("GET", "/readyz", &[], Vec::new()).await;
    let b = crate::support::client::json_of(&b);
    assert_eq!(st, 200, "{b}");
    b
}

/// Writes `range` with `WRITERS` concurrent clients; the latency of each.
async fn write_all(api: &Arc<Client>, range: std::ops::Range<usize>) -> Vec<Duration> {
    let next = Arc::new(AtomicI64::new(range.start as i64));
    let end = range.end as i64;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (api, next) = (Arc::clone(api), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= end {
                    return lat;
                }
                lat.push(create(&api, i as usize).await);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// A subscriber from `ip` replaying from `cursor`; `rcvbuf` shrinks its
/// receive buffer (a stalled client then fills up sooner).
async fn subscribe(addr: SocketAddr, ip: [u8; 4], cursor: i64, rcvbuf: Option<u32>) -> Ws {
    firehose::connect_from(IpAddr::from(ip), addr, Some(cursor), rcvbuf)
        .await
        .expect("subscribe")
}

#[derive(Default)]
struct Seen {
    seqs: Vec<i64>,
    /// Set when the stream ended before the test stopped it.
    ended: Option<String>,
}

/// Reads frames until `stop` fires or the stream ends, keeping every seq.
async fn read_all(
    mut ws: Ws,
    seen: Arc<Mutex<Seen>>,
    last: Arc<AtomicI64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        let seq = match msg {
            Some(Ok(Message::Binary(b))) => {
                split_frame(&b).and_then(|(_, body)| body.get("seq").and_then(Ipld::as_integer))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => {
                seen.lock().unwrap().ended = Some(format!("{other:?}"));
                return;
            }
        };
        let Some(seq) = seq else {
            seen.lock().unwrap().ended = Some("a frame without seq".into());
            return;
        };
        seen.lock().unwrap().seqs.push(seq);
        last.store(seq, Relaxed);
    }
}

/// Reads whatever a stalled subscriber's socket still holds: the events it
/// got, and how the stream ended.
async fn drain_stalled(mut ws: Ws) -> (usize, String) {
    let mut events = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => return (events, "still-open".into()),
            Ok(Some(Ok(Message::Binary(b)))) => match split_frame(&b) {
                Some((h, body)) if h.get("op") == Some(&Ipld::Integer(-1)) => {
                    let e = body.get("error").and_then(Ipld::as_str).unwrap_or("?");
                    return (events, format!("error-frame-{e}"));
                }
                Some(_) => events += 1,
                None => return (events, "bad-frame".into()),
            },
            Ok(Some(Ok(Message::Close(_)))) => return (events, "close-frame".into()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                let e = e.to_string().to_ascii_lowercase();
                let kind = if e.contains("reset") || e.contains("closing handshake") {
                    "eof-without-close"
                } else {
                    "error"
                };
                return (events, kind.into());
            }
            Ok(None) => return (events, "eof".into()),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_subscribers_get_everything_and_stalled_ones_are_dropped() {
    let _turn = serial::one_at_a_time().await;
    let events = env_usize("PERCH_FANOUT_EVENTS", 1500);
    let n_subs = env_usize("PERCH_FANOUT_SUBSCRIBERS", 50);
    let n_stalled = env_usize("PERCH_FANOUT_STALLED", 5).min(n_subs);
    let n_good = n_subs - n_stalled;
    let dir = tempfile::tempdir().unwrap();
    // All the good subscribers come from one address: let it hold them all.
    let n = n_subs.to_string();
    let caps = [
        ("PERCH_MAX_SUBSCRIBERS", n.as_str()),
        ("PERCH_MAX_SUBSCRIBERS_PER_IP", n.as_str()),
    ];
    let perch = Launch {
        perch_bin_env: true,
        ..Launch::default()
    }
    .envs(&caps)
    .log(&dir.path().join("perch.log"))
    .start(&dir.path().join("data"));
    let password = perch.dev_account().expect("the dev account line").password;
    let mut api = Client::with_source(perch.addr, IpAddr::from(CLIENT_IP));
    api.sign_in("alice.test", &password).await;
    let api = Arc::new(api);

    // A fifth of the events exist before anyone subscribes: replayed from cursor 0.
    let before = events / 5;
    write_all(&api, 0..before).await;
    let rss_before = perch.status_kib("VmRSS");
    let peak_reset = perch.reset_peak();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut good = Vec::new();
    for _ in 0..n_good {
        let ws = subscribe(perch.addr, GOOD_IP, 0, None).await;
        let (seen, last) = (Arc::default(), Arc::new(AtomicI64::new(0)));
        let task = tokio::spawn(read_all(
            ws,
            Arc::clone(&seen),
            Arc::clone(&last),
            stop_rx.clone(),
        ));
        good.push((seen, last, task));
    }
    let mut stalled = Vec::new();
    for _ in 0..n_stalled {
        // Never polled until the end: nothing is read from these sockets.
        stalled.push(subscribe(perch.addr, STALLED_IP, 0, Some(4096)).await);
    }
    let connected = readyz(&api).await["firehoseSubscribers"].as_u64().unwrap();
    assert_eq!(connected, n_subs as u64, "not every subscriber got in");

    let started = Instant::now();
    // Watches, while the writes go on, for the moment only the readers are left.
    let poller = {
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            while Instant::now() < deadline {
                let n = readyz(&api).await["firehoseSubscribers"].as_u64().unwrap();
                if n <= n_good as u64 {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None
        })
    };
    let mut lat = write_all(&api, before..events).await;
    let writes_done = started.elapsed();
    let head = readyz(&api).await["firehoseSeq"].as_i64().unwrap();

    // Every reading subscriber reaches the head...
    let deadline = Instant::now() + Duration::from_secs(600);
    while good
        .iter()
        .any(|(seen, last, _)| last.load(Relaxed) < head && seen.lock().unwrap().ended.is_none())
    {
        assert!(Instant::now() < deadline, "subscribers did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = started.elapsed();
    // ...and the stalled ones are gone: the server counts only the readers.
    let stalled_gone = poller.await.unwrap();
    let rss_after = perch.status_kib("VmRSS");
    let rss_peak = perch.status_kib("VmHWM");
    stop_tx.send(true).unwrap();
    for (_, _, task) in &mut good {
        task.await.unwrap();
    }

    // What a fresh subscriber replays now is the truth to compare against.
    let reference = {
        let ws = subscribe(perch.addr, GOOD_IP, 0, None).await;
        let (seen, last) = (
            Arc::new(Mutex::new(Seen::default())),
            Arc::new(AtomicI64::new(0)),
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(read_all(ws, Arc::clone(&seen), Arc::clone(&last), rx));
        let deadline = Instant::now() + Duration::from_secs(120);
        while last.load(Relaxed) < head {
            assert!(Instant::now() < deadline, "the reference replay stalled");
            assert!(
                seen.lock().unwrap().ended.is_none(),
                "the reference replay ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
        std::mem::take(&mut seen.lock().unwrap().seqs)
    };
    // The account's #identity, #account and first #commit, then one #commit per write.
    assert_eq!(reference.len(), events + 3, "replay has the wrong count");
    assert!(
        reference.windows(2).all(|w| w[0] < w[1]),
        "replay out of order"
    );
    let gaps = reference.windows(2).filter(|w| w[1] != w[0] + 1).count();

    let mut complete = 0;
    for (i, (seen, _, _)) in good.iter().enumerate() {
        let seen = seen.lock().unwrap();
        if seen.seqs == reference {
            complete += 1;
        } else {
            eprintln!(
                "subscriber {i}: {} events, ended {:?}, first difference at {:?}",
                seen.seqs.len(),
                seen.ended,
                seen.seqs.iter().zip(&reference).position(|(a, b)| a != b)
            );
        }
    }

    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut got = Vec::new();
    for ws in stalled {
        let (n, end) = drain_stalled(ws).await;
        got.push(n);
        *ends.entry(end).or_default() += 1;
    }
    let ends: Vec<String> = ends.iter().map(|(k, v)| format!("{k}:{v}")).collect();

    lat.sort();
    let secs =
        |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.1}", d.as_secs_f64()));
    println!(
        "abuse: fanout subscribers={n_subs} stalled={n_stalled} events={events} \
         good_complete={complete}/{n_good} seq_gaps={gaps} \
         stalled_closed={}/{n_stalled} stalled_closed_s={} writes_s={:.1} caught_up_s={:.1} \
         stalled_events_min={} stalled_events_max={} stalled_end={} \
         rss_before_kib={rss_before} rss_after_kib={rss_after} rss_peak_kib={rss_peak} \
         rss_growth_kib={} peak_reset={peak_reset} writes={} write_p50_ms={:.1} \
         write_p99_ms={:.1} write_max_ms={:.1}",
        if stalled_gone.is_some() { n_stalled } else { 0 },
        secs(stalled_gone),
        writes_done.as_secs_f64(),
        caught_up.as_secs_f64(),
        got.iter().min().unwrap_or(&0),
        got.iter().max().unwrap_or(&0),
        ends.join(","),
        rss_peak.saturating_sub(rss_before),
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    assert_eq!(complete, n_good, "a reading subscriber missed events");
    assert!(
        stalled_gone.is_some(),
        "stalled subscribers were still connected after 600 s"
    );
    // Otherwise the run was too small to fill their sockets and proves nothing.
    assert!(
        got.iter().all(|&n| n < events),
        "a stalled subscriber received everything: {got:?}"
    );
}
