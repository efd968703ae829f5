//! `perch account show | codes | set-handle | reset-password | delete` through the binary,
//! beside a running server: what they print, what they change, and that delete asks first.

use std::process::Output;

use serde_json::json;

use crate::support::live::Perch;
use crate::support::process::{perch_cmd, run_with_stdin, text};

fn account(p: &Perch, args: &[&str]) -> Output {
    let data = p.data_dir();
    let mut cmd = perch_cmd();
    cmd.arg("account")
        .args(args)
        .args(["--dev", "--data-dir", data.to_str().unwrap()]);
    cmd.output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn show_codes_set_handle_and_reset_password() {
    let p = &Perch::start().await;
    let o = account(p, &["show"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = out(&o);
    for want in [
        format!("handle:         @{}", p.handle),
        format!("DID:            {}", p.did),
        "status:         active".to_owned(),
        "email:          none".to_owned(),
    ] {
        assert!(shown.contains(&want), "{want:?} in {shown}");
    }

    let o = account(p, &["codes"]);
    assert_eq!(out(&o).trim(), "no codes are waiting", "{}", text(&o));
    let (st, b) = p
        .post("com.atproto.server.requestAccountDelete", &json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    let code = p
        .code("delete-account")
        .expect("the deletion code is listed");
    assert!(out(&account(p, &["codes"])).contains("valid 15 min more"));
    assert!(!p.log().contains(&code), "codes stay out of the log");
    assert!(
        p.log().contains("perch account codes"),
        "the log says where the code is"
    );

    // A handle that does not point at the account is refused and nothing changes; a
    // development .test handle needs no DNS.
    let o = account(p, &["set-handle", "nobody.example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("_atproto.nobody.example.com"),
        "{}",
        text(&o)
    );
    let o = account(p, &["set-handle", "not a handle"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = account(p, &["set-handle", "Renamed.test"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(out(&o).trim(), "the handle is now @renamed.test");
    let (st, b) = p
        .get("com.atproto.repo.describeRepo?repo=renamed.test")
        .await;
    assert_eq!(
        (st, b["handle"].as_str()),
        (200, Some("renamed.test")),
        "{b}"
    );

    // reset-password: a new password, printed once; the old one and the sessions end.
    let o = account(p, &["reset-password"]);
    assert!(o.status.success(), "{}", text(&o));
    let printed = out(&o);
    let password = printed
        .lines()
        .find_map(|l| l.strip_prefix("new password: "))
        .expect("the new password is printed")
        .to_owned();
    assert!(password.len() >= 20);
    let (st, _) = p.get("com.atproto.server.getSession").await;
    assert_ne!(st, 200, "the old session ended");
    let (st, b) = p
        .post(
            "com.atproto.server.createSession",
            &json!({"identifier": "renamed.test", "password": password}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
}

#[tokio::test]
async fn delete_asks_for_the_handle_and_then_emits_the_account_event() {
    let p = &Perch::start().await;
    p.create("app.bsky.feed.post", None, json!({"$type": "app.bsky.feed.post", "text": "bye", "createdAt": "2026-12-04T00:00:00.000Z"}))
        .await;
    let data = p.data_dir();
    let base = [
        "account",
        "delete",
        "--dev",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    // No terminal and no --confirm: refused.
    let o = run_with_stdin(perch_cmd().args(base), "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--confirm"), "{}", text(&o));
    // The wrong handle: refused, the account stays.
    let o = account(p, &["delete", "--confirm", "someone.else.test"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(out(&account(p, &["show"])).contains("status:         active"));

    let o = account(p, &["delete", "--confirm", &format!("@{}", p.handle)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = account(p, &["show"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let db = crate::support::db::read_only(&p.db_path());
    let (kind, records): (String, i64) = db
        .query_row(
            "SELECT kind, (SELECT count(*) FROM record) FROM event ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), records), ("account", 0));
}
