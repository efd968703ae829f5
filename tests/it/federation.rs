//! Federation that heals itself, against relay stand-ins on loopback: a relay that is idle
//! or trails the repo is asked to crawl, less often each time, until it reports active and
//! current; one that throttles this host is left alone with advice. Checks run every second
//! here (`relay_check_secs`), so the grace period is two seconds and back-off steps are 1, 2,
//! 4 s.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::client::raw_get;
use crate::support::in_process::InProcess;
use crate::support::relay::FakeRelay;

async fn start(relays: Vec<String>) -> InProcess {
    let s = InProcess::start_with(|c| {
        c.relays = relays;
        c.allow_loopback = true;
        c.relay_check_secs = 1;
        c.metrics = true;
    })
    .await;
    tokio::spawn(perch::federation::run(
        s.app.federation.clone(),
        s.app.writer.seq_watch(),
    ));
    s
}

async fn head_rev(s: &InProcess) -> String {
    s.app
        .store
        .read(perch::store::repo::get_root)
        .await
        .unwrap()
        .unwrap()
        .rev
}

async fn relays(s: &InProcess) -> Vec<Value> {
    let (st, body) = raw_get(s.addr, "/readyz").await;
    assert_eq!(st, 200, "{body}");
    body["relays"].as_array().unwrap().clone()
}

/// Polls `/readyz` until every relay has `health`; panics after `within`.
async fn until_all(s: &InProcess, health: &str, within: Duration) -> Vec<Value> {
    let end = Instant::now() + within;
    loop {
        let r = relays(s).await;
        if r.iter().all(|v| v["health"] == health) {
            return r;
        }
        assert!(Instant::now() < end, "relays never all {health}: {r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gaps(crawls: &[(Instant, String)]) -> Vec<f64> {
    crawls
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect()
}

#[tokio::test]
async fn idle_and_trailing_relays_are_asked_to_crawl_with_back_off_until_current() {
    let idle = FakeRelay::default();
    let a = idle.start(Some("idle"), None).await;
    let trailing = FakeRelay::default();
    let b = trailing.start(Some("active"), Some("2222222222222")).await;
    let t0 = Instant::now();
    let s = start(vec![a.clone(), b.clone()]).await;

    // Both stay unhealthy for nine seconds.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let a_crawls = idle.crawls();
    let b_crawls = trailing.crawls();
    // Without back-off, a check a second would have asked about nine times; with it, at
    // about 0, 1, 3 and 7 s.
    assert!(
        (3..=5).contains(&a_crawls.len()),
        "idle relay asked {} times: {:?}",
        a_crawls.len(),
        gaps(&a_crawls)
    );
    assert!(a_crawls.iter().all(|(_, m)| m == "POST"));
    assert!(
        a_crawls[0].0 - t0 < Duration::from_secs(3),
        "the idle relay is asked at the first check"
    );
    let g = gaps(&a_crawls);
    assert!(g.last().unwrap() > &(g[0] + 1.0), "the waits grow: {g:?}");
    // The trailing relay is given its grace first (two seconds here).
    assert!(
        b_crawls[0].0 - t0 >= Duration::from_secs(1),
        "asked before its grace ran out"
    );
    assert!((2..=5).contains(&b_crawls.len()), "{:?}", gaps(&b_crawls));

    let view = relays(&s).await;
    assert_eq!(view[0]["relay"], a);
    assert_eq!(view[0]["health"], "healing");
    assert_eq!(view[0]["host"], "idle");
    assert_eq!(view[0]["repoFound"], false);
    assert_eq!(view[1]["health"], "healing");
    assert_eq!(view[1]["rev"], "2222222222222");
    assert!(view[1]["localRev"].as_str().unwrap() > "2222222222222");

    // The relays pick us up and catch up: the asking stops.
    let rev = head_rev(&s).await;
    idle.set(Some("active"), Some(&rev));
    trailing.set(Some("active"), Some(&rev));
    let view = until_all(&s, "healthy", Duration::from_secs(5)).await;
    assert!(view[0]["matchedAt"].as_i64().unwrap() > 0);
    let (na, nb) = (idle.crawls().len(), trailing.crawls().len());
    let asked_before = idle.questions();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((idle.crawls().len(), trailing.crawls().len()), (na, nb));
    assert!(idle.questions() > asked_before, "checks go on");

    let (st, body) = s.fetch("GET", "/metrics", &[], vec![]).await;
    assert_eq!(st, 200);
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        metrics.contains(&format!("perch_relay_healthy{{relay=\"{a}\"}} 1\n")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "perch_relay_crawl_requests_total{{relay=\"{a}\"}} {na}\n"
    )));

    // A write the relays never see: once the grace has run out, they are asked again.
    let (st, out) = s
        .post(
            "com.atproto.repo.createRecord",
            &json!({
                "repo": s.did,
                "collection": "app.bsky.feed.post",
                "record": {"$type": "app.bsky.feed.post", "text": "unseen", "createdAt": "2026-12-04T00:00:00Z"}
            }),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    let end = Instant::now() + Duration::from_secs(8);
    while idle.crawls().len() == na || trailing.crawls().len() == nb {
        assert!(
            Instant::now() < end,
            "a relay that missed a write was not asked to crawl"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_throttled_relay_is_not_asked_to_crawl_and_the_view_says_why() {
    let throttled = FakeRelay::default();
    let a = throttled
        .start(Some("throttled"), Some("2222222222222"))
        .await;
    let s = start(vec![a]).await;
    let view = until_all(&s, "attention", Duration::from_secs(5)).await;
    assert!(view[0]["host"] == "throttled", "{view:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        throttled.crawls().is_empty(),
        "a crawl request does not lift throttling"
    );
    let v: perch::federation::RelayView = serde_json::from_value(view[0].clone()).unwrap();
    assert!(v.advice().unwrap().contains("limiting"), "{:?}", v.advice());
}

#[tokio::test]
async fn perch_request_crawl_asks_every_relay_at_once() {
    let one = FakeRelay::default();
    let a = one.start(Some("active"), None).await;
    let s = InProcess::start_with(|c| {
        c.relays = vec![a.clone()];
        c.allow_loopback = true;
    })
    .await;
    let answers = s.app.federation.request_all().await;
    assert_eq!(answers, vec![(a, "ok".to_owned())]);
    assert_eq!(one.crawls().len(), 1);
    let view = s.app.federation.views();
    assert_eq!(
        (view[0].crawls_total, view[0].crawl_result.as_deref()),
        (1, Some("ok"))
    );
    // No relays: nothing to check, and the loop ends at once.
    let quiet = InProcess::start().await;
    assert!(!quiet.app.federation.has_relays());
    tokio::time::timeout(
        Duration::from_secs(1),
        perch::federation::run(quiet.app.federation.clone(), quiet.app.writer.seq_watch()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn perch_status_prints_each_relays_view_and_what_to_do() {
    let idle = FakeRelay::default();
    let relay = idle.start(Some("idle"), Some("2222222222222")).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            crate::support::process::perch_cmd()
                .args(args)
                .args(["--dev", "--data-dir", &d])
                .env("PERCH_RELAYS", &relay)
                .env("PERCH_ALLOW_LOOPBACK", "1")
                // Nothing answers here, so status checks the relays itself.
                .env("PERCH_LISTEN", "127.0.0.1:9")
                .output()
                .unwrap()
        };
        let made = run(&[
            "account",
            "create",
            "--handle",
            "bob.test",
            "--password",
            "pw pw pw pw",
        ]);
        assert!(
            made.status.success(),
            "{}",
            crate::support::process::text(&made)
        );
        run(&["status"])
    })
    .await
    .unwrap();
    let text = crate::support::process::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("server    not answering"), "{text}");
    assert!(
        text.contains("not following: healing; host idle at seq 3")
            && text.contains("repo at rev 2222222222222, ours "),
        "{text}"
    );
    assert!(text.contains("perch asks it to crawl"), "{text}");
    assert!(idle.questions() >= 1);
    assert!(idle.crawls().is_empty(), "status only looks");
}
