//! Passwords and sessions under attack (issue 14, items 1, 2, 6, 8, 9, 13), against a
//! running `perch serve --dev`: the deletion oracle, the hashing flood, identifier timing
//! (counted as hashes, not measured as time), service-auth privileges, the birth date and
//! app passwords, and what a password change ends.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::client::{raw_from, request_bytes};
use crate::support::process::{perch_cmd, run_with_stdin, status_kib};
use crate::support::{Perch, assert_xrpc_error};

/// One request on its own connection from the loopback address `from`.
async fn call_from(
    from: Ipv4Addr,
    p: &Perch,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let req = request_bytes(method, path, headers, body);
    raw_from(IpAddr::V4(from), p.addr, &req).await
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

async fn login_from(p: &Perch, from: Ipv4Addr, identifier: &str, password: &str) -> (u16, Value) {
    let body = json!({"identifier": identifier, "password": password}).to_string();
    call_from(
        from,
        p,
        "POST",
        "/xrpc/com.atproto.server.createSession",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}

/// `perch_password_hashes_total` from `/metrics` (loopback needs no password).
async fn hashes(p: &Perch) -> u64 {
    let (st, body) = p.fetch("GET", "/metrics", &[], vec![]).await;
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("perch_password_hashes_total "))
        .unwrap_or_else(|| panic!("no password counter in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn app_password(p: &Perch, name: &str, privileged: bool) -> String {
    let (st, b) = p
        .post(
            "com.atproto.server.createAppPassword",
            &json!({"name": name, "privileged": privileged}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    b["password"].as_str().unwrap().to_owned()
}

/// A session token for `identifier`/`password` from a fresh address.
async fn token(p: &Perch, from: Ipv4Addr, password: &str) -> String {
    let (st, b) = login_from(p, from, &p.handle, password).await;
    assert_eq!(st, 200, "{b}");
    b["accessJwt"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn delete_account_is_no_password_oracle_and_shares_the_login_limit() {
    let p = &Perch::start_with(&[("PERCH_METRICS", "true")]).await;
    let (st, b) = p
        .post("com.atproto.server.requestAccountDelete", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let code = p
        .code("delete-account")
        .expect("`perch account codes` shows the code");
    assert!(!p.log().contains(&code), "the code never reaches the log");
    let delete = |from: Ipv4Addr, password: &str, token: &str| {
        let body = json!({"did": p.did, "password": password, "token": token}).to_string();
        async move {
            call_from(
                from,
                p,
                "POST",
                "/xrpc/com.atproto.server.deleteAccount",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await
        }
    };

    // A wrong code answers the same whatever the password, and hashes nothing.
    let before = hashes(p).await;
    let (st, wrong_pw) = delete(ip(7), "not the password", "AAAAA-BBBBB").await;
    assert_xrpc_error(st, &wrong_pw, 400, "InvalidToken");
    let (st, right_pw) = delete(ip(7), &p.password, "AAAAA-BBBBB").await;
    assert_xrpc_error(st, &right_pw, 400, "InvalidToken");
    assert_eq!(
        wrong_pw, right_pw,
        "the answer tells nothing about the password"
    );
    assert_eq!(
        hashes(p).await,
        before,
        "no password was hashed for a wrong code"
    );

    // With the right code a wrong password is refused, and guessing is limited: the
    // limiter that guards createSession stops it, and createSession from that address too.
    let (st, b) = delete(ip(7), "still not it", &code).await;
    assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
    let mut limited = false;
    for _ in 0..12 {
        let (st, b) = delete(ip(7), "guess", &code).await;
        if st == 429 {
            assert_xrpc_error(st, &b, 429, "RateLimitExceeded");
            limited = true;
            break;
        }
        assert!(st == 401, "{st} {b}");
    }
    assert!(limited, "deleteAccount guesses were never rate-limited");
    let (st, b) = login_from(p, ip(7), &p.handle, &p.password).await;
    assert_xrpc_error(st, &b, 429, "RateLimitExceeded");
    assert!(
        p.log().contains("account deletion from 127.0.0.7 failed"),
        "failed attempts are logged with the address"
    );
    // Failed and refused logins are WARN lines with the client's address (for fail2ban).
    let (st, _) = login_from(p, ip(11), &p.handle, "not the password").await;
    assert_eq!(st, 401);
    let log = p.log();
    let warned = |needle: &str| {
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(needle))
    };
    assert!(
        warned("login from 127.0.0.11 failed: wrong credentials"),
        "{log}"
    );
    assert!(
        warned("login from 127.0.0.7 refused: too many failed attempts"),
        "{log}"
    );

    // The owner, from elsewhere, still gets in and can delete.
    let (st, b) = login_from(p, ip(8), &p.handle, &p.password).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = delete(ip(9), &p.password, &code).await;
    assert_eq!(st, 200, "{b}");
    let (st, _) = login_from(p, ip(10), &p.handle, &p.password).await;
    assert_eq!(st, 401, "the account is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guessing_flood_from_32_addresses_keeps_memory_flat_and_reads_answered() {
    let p = Arc::new(Perch::start_with(&[("PERCH_METRICS", "true")]).await);
    let pid = p.pid();
    let rss_before = status_kib(pid, "VmRSS");
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let hashes_before = hashes(&p).await;
    // 32 addresses, 4 guesses at once each.
    let mut guesses = vec![];
    for a in 0..32u8 {
        for _ in 0..4 {
            let p = Arc::clone(&p);
            guesses.push(tokio::spawn(async move {
                login_from(&p, ip(100 + a), &p.handle, "wrong password")
                    .await
                    .0
            }));
        }
    }
    // Reads from an address of their own are answered while the guesses are checked.
    let mut reads = 0;
    let q = format!("com.atproto.repo.describeRepo?repo={}", p.q_did());
    while guesses.iter().any(|g| !g.is_finished()) {
        let (st, b) = tokio::time::timeout(
            Duration::from_secs(10),
            call_from(ip(250), &p, "GET", &format!("/xrpc/{q}"), &[], b""),
        )
        .await
        .expect("describeRepo answered during the flood");
        assert_eq!(st, 200, "{b}");
        reads += 1;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for g in guesses {
        *statuses.entry(g.await.unwrap()).or_insert(0) += 1;
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let hwm = status_kib(pid, "VmHWM");
    let worked = hashes(&p).await - hashes_before;
    eprintln!(
        "flood: statuses {statuses:?}, {worked} hashes, {reads} reads answered meanwhile, \
         RSS {} KiB before, peak sampled {} KiB, VmHWM {hwm} KiB",
        rss_before,
        peak.load(Ordering::Relaxed)
    );
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(worked >= 2, "the flood did reach the password check");
    assert!(reads >= 1);
    assert!(
        hwm < 96 * 1024,
        "peak RSS {hwm} KiB under the flood (bound: 96 MiB)"
    );
    // The owner, from the address they last signed in from, is not locked out by it
    // (a new address waits for the account-wide budget to refill: see auth::limiter).
    let (st, b) = login_from(&p, ip(1), &p.handle, &p.password).await;
    assert_eq!(st, 200, "{b}");
}

#[tokio::test]
async fn an_unknown_identifier_costs_the_same_hashing_as_a_known_one() {
    let p = Perch::start_with(&[("PERCH_METRICS", "true")]).await;
    app_password(&p, "one", false).await;
    app_password(&p, "two", false).await;
    let mut work = vec![];
    for (n, (id, pw)) in [
        (p.handle.as_str(), "wrong password"),
        ("nobody.example.com", "wrong password"),
        (p.handle.as_str(), "aaaa-bbbb-cccc-dddd"),
        ("nobody.example.com", "aaaa-bbbb-cccc-dddd"),
    ]
    .into_iter()
    .enumerate()
    {
        let before = hashes(&p).await;
        let (st, b) = login_from(&p, ip(20 + n as u8), id, pw).await;
        assert_xrpc_error(st, &b, 401, "AuthenticationRequired");
        work.push(hashes(&p).await - before);
    }
    assert_eq!(work[0], 1, "one hash for a plain password");
    assert_eq!(work[0], work[1], "unknown identifier: same work ({work:?})");
    assert_eq!(work[2], 3, "main password and both app passwords");
    assert_eq!(work[2], work[3], "unknown identifier: same work ({work:?})");
}

#[tokio::test]
async fn service_auth_respects_privileges_and_protected_methods() {
    let p = &Perch::start().await;
    let plain = app_password(p, "plain", false).await;
    let privileged = app_password(p, "privileged", true).await;
    let plain = token(p, ip(30), &plain).await;
    let privileged = token(p, ip(31), &privileged).await;
    let full = p.token.clone();
    let ask = |tok: String, lxm: &str, exp: Option<i64>| {
        let mut q =
            format!("com.atproto.server.getServiceAuth?aud=did:web:api.bsky.chat&lxm={lxm}");
        if let Some(e) = exp {
            q.push_str(&format!("&exp={e}"));
        }
        async move {
            p.call(
                "GET",
                &q,
                &[("authorization", &format!("Bearer {tok}"))],
                vec![],
            )
            .await
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for lxm in [
        "chat.bsky.convo.getMessages",
        "chat.bsky.convo.sendMessage",
        "com.atproto.server.createAccount",
    ] {
        let (st, b) = ask(plain.clone(), lxm, None).await;
        assert_xrpc_error(st, &b, 400, "InvalidRequest");
        assert!(b["message"].as_str().unwrap().contains(lxm), "{b}");
        for tok in [&privileged, &full] {
            let (st, b) = ask(tok.clone(), lxm, Some(now + 3000)).await;
            assert_eq!(st, 200, "{lxm}: {b}");
            let c = claims(b["token"].as_str().unwrap());
            assert_eq!(c["lxm"], lxm);
            assert!(c["exp"].as_i64().unwrap() <= now + 3600 + 5);
        }
    }
    // Account management is never handed out, not even to the full session.
    for lxm in [
        "com.atproto.server.getSession",
        "com.atproto.identity.signPlcOperation",
        "com.atproto.server.createAppPassword",
    ] {
        for tok in [&plain, &full] {
            let (st, b) = ask(tok.clone(), lxm, None).await;
            assert_xrpc_error(st, &b, 400, "InvalidRequest");
        }
    }
    // Ordinary methods stay open to app passwords; lifetimes stay bounded.
    let (st, b) = ask(plain.clone(), "app.bsky.feed.getTimeline", None).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = ask(full.clone(), "app.bsky.feed.getTimeline", Some(now + 7200)).await;
    assert_xrpc_error(st, &b, 400, "BadExpiration");
}

#[tokio::test]
async fn the_birth_date_is_for_full_sessions_only() {
    let p = &Perch::start().await;
    let prefs = json!({"preferences": [
        {"$type": "app.bsky.actor.defs#personalDetailsPref", "birthDate": "2000-01-01T00:00:00.000Z"},
        {"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false},
    ]});
    let (st, b) = p.post("app.bsky.actor.putPreferences", &prefs).await;
    assert_eq!(st, 200, "{b}");
    let pw = app_password(p, "reader", true).await;
    let app_tok = format!("Bearer {}", token(p, ip(40), &pw).await);
    let get = |auth: String| async move {
        let (st, b) = p
            .call(
                "GET",
                "app.bsky.actor.getPreferences",
                &[("authorization", &auth)],
                vec![],
            )
            .await;
        assert_eq!(st, 200, "{b}");
        b["preferences"].as_array().unwrap().clone()
    };
    let types = |prefs: &[Value]| -> Vec<String> {
        prefs
            .iter()
            .map(|p| p["$type"].as_str().unwrap().to_owned())
            .collect()
    };
    let full = get(p.bearer()).await;
    assert!(types(&full).contains(&"app.bsky.actor.defs#personalDetailsPref".to_owned()));
    let seen = get(app_tok.clone()).await;
    assert!(
        !types(&seen).contains(&"app.bsky.actor.defs#personalDetailsPref".to_owned()),
        "{seen:?}"
    );
    let age = seen
        .iter()
        .find(|p| p["$type"] == "app.bsky.actor.defs#declaredAgePref")
        .expect("the age bracket is derived for app passwords");
    assert_eq!(age["isOverAge13"], true);
    assert_eq!(age["isOverAge18"], true);

    // An app password cannot set it, and what it may set leaves it alone.
    let put = |body: Value| {
        let auth = app_tok.clone();
        async move {
            p.call(
                "POST",
                "app.bsky.actor.putPreferences",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let (st, b) = put(json!({"preferences": [
        {"$type": "app.bsky.actor.defs#personalDetailsPref", "birthDate": "2020-01-01T00:00:00.000Z"},
    ]}))
    .await;
    assert_xrpc_error(st, &b, 400, "InvalidRequest");
    let (st, b) = put(json!({"preferences": [
        {"$type": "app.bsky.actor.defs#adultContentPref", "enabled": true},
        {"$type": "app.bsky.actor.defs#declaredAgePref", "isOverAge18": false},
    ]}))
    .await;
    assert_eq!(st, 200, "{b}");
    let full = get(p.bearer()).await;
    let details = full
        .iter()
        .find(|p| p["$type"] == "app.bsky.actor.defs#personalDetailsPref")
        .expect("the birth date survives an app password's putPreferences");
    assert_eq!(details["birthDate"], "2000-01-01T00:00:00.000Z");
    assert!(full.iter().any(|p| p["enabled"] == true));
    let ages: Vec<_> = full
        .iter()
        .filter(|p| p["$type"] == "app.bsky.actor.defs#declaredAgePref")
        .collect();
    assert_eq!(
        ages.len(),
        1,
        "declaredAgePref is derived, never stored: {full:?}"
    );
    assert_eq!(ages[0]["isOverAge18"], true);
}

fn set_password(p: &Perch, new: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = perch_cmd();
    cmd.args([
        "account",
        "set-password",
        "--dev",
        "--password-stdin",
        "--data-dir",
    ])
    .arg(p.data_dir())
    .args(extra);
    run_with_stdin(&mut cmd, &format!("{new}\n"))
}

#[tokio::test]
async fn a_password_change_ends_every_session_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let p = &Perch::start().await;
    for f in ["perch.sqlite", "perch.sqlite-wal"] {
        let mode = std::fs::metadata(p.data_dir().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is {mode:o}");
    }
    let dir_mode = std::fs::metadata(p.data_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "data dir is {dir_mode:o}");

    let app_pw = app_password(p, "phone", false).await;
    let (st, session) = login_from(p, ip(50), &p.handle, &p.password).await;
    assert_eq!(st, 200);
    let access = session["accessJwt"].as_str().unwrap().to_owned();
    let refresh = session["refreshJwt"].as_str().unwrap().to_owned();
    let app_access = token(p, ip(51), &app_pw).await;
    let session_ok = |tok: String| async move {
        p.call(
            "GET",
            "com.atproto.server.getSession",
            &[("authorization", &format!("Bearer {tok}"))],
            vec![],
        )
        .await
    };
    assert_eq!(session_ok(access.clone()).await.0, 200);

    // Too short: refused, nothing changed.
    let out = set_password(p, "short", &[]);
    assert!(!out.status.success());
    assert_eq!(session_ok(access.clone()).await.0, 200);

    let out = set_password(p, "a brand new password", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Access tokens of every session end at once, not when they expire.
    for tok in [&access, &app_access] {
        let (st, b) = session_ok(tok.clone()).await;
        assert_xrpc_error(st, &b, 400, "ExpiredToken");
    }
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.server.refreshSession",
            &[("authorization", &format!("Bearer {refresh}"))],
            vec![],
        )
        .await;
    assert_xrpc_error(st, &b, 400, "ExpiredToken");
    let (st, _) = login_from(p, ip(52), &p.handle, &p.password).await;
    assert_eq!(st, 401, "the old password is gone");
    let fresh = token(p, ip(53), "a brand new password").await;
    assert_eq!(session_ok(fresh.clone()).await.0, 200);
    // The app password itself stays unless asked.
    token(p, ip(54), &app_pw).await;
    let out = set_password(p, "another new password", &["--revoke-app-passwords"]);
    assert!(out.status.success());
    let (st, _) = login_from(p, ip(55), &p.handle, &app_pw).await;
    assert_eq!(st, 401, "app passwords revoked on request");

    // Signing out ends the access token too.
    let (st, s2) = login_from(p, ip(56), &p.handle, "another new password").await;
    assert_eq!(st, 200);
    let a2 = s2["accessJwt"].as_str().unwrap().to_owned();
    let r2 = s2["refreshJwt"].as_str().unwrap().to_owned();
    let (st, b) = p
        .call(
            "POST",
            "com.atproto.server.deleteSession",
            &[("authorization", &format!("Bearer {r2}"))],
            vec![],
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = session_ok(a2).await;
    assert_xrpc_error(st, &b, 400, "ExpiredToken");
}
