//! The owner's page session over plain HTTP (the browser side is `tests/oauth/owner.test.mjs`):
//! which cookies open the page, the login limiter in front of its sign-in, and a box with no
//! account yet.

use std::net::{IpAddr, Ipv4Addr};

use crate::support::client::{raw_bytes_from, request_bytes, response_parts};
use crate::support::in_process::{Boot, InProcess, PASSWORD};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Status, head (as sent: cookie values are case-sensitive) and body of one request from
/// `from`.
async fn send(
    s: &InProcess,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let buf = raw_bytes_from(
        from,
        s.addr,
        &request_bytes(method, path, headers, body.as_bytes()),
    )
    .await;
    let (st, _, body) = response_parts(&buf);
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    (st, head, String::from_utf8_lossy(&body).into_owned())
}

/// Signs in from `from`: the cookie's `name=value`.
async fn sign_in(s: &InProcess, from: IpAddr) -> String {
    let body = format!("password={}", PASSWORD.replace(' ', "+"));
    let (st, head, _) = send(s, from, "POST", "/account/sign-in", &[FORM], &body).await;
    assert_eq!(st, 303, "{head}");
    let line = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: perch_owner=")
        })
        .unwrap_or_else(|| panic!("no cookie in {head}"));
    line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn page(s: &InProcess, cookie: &str) -> String {
    let (st, _, body) = send(s, ip(1), "GET", "/account", &[("cookie", cookie)], "").await;
    assert_eq!(st, 200);
    body
}

fn signed_in(html: &str, did: &str) -> bool {
    html.contains(did) && html.contains("action=\"/account/sign-out\"")
}

#[tokio::test]
async fn only_a_live_password_session_opens_the_page() {
    let s = InProcess::start().await;
    let cookie = sign_in(&s, ip(1)).await;
    assert!(signed_in(&page(&s, &cookie).await, &s.did));
    // A cookie nobody issued, and one with its signature changed.
    assert!(!signed_in(
        &page(&s, "perch_owner=abc.def.ghi").await,
        &s.did
    ));
    let last = if cookie.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &cookie[..cookie.len() - 1]);
    assert!(!signed_in(&page(&s, &forged).await, &s.did));

    // Used at refreshSession (it is a refresh token), it is rotated away from the page.
    let token = cookie.trim_start_matches("perch_owner=").to_owned();
    let auth = format!("Bearer {token}");
    let (st, b) = s
        .call(
            "POST",
            "com.atproto.server.refreshSession",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(!signed_in(&page(&s, &cookie).await, &s.did));

    // An app password's session is not the owner's, even though its token has the same shape.
    let (st, b) = s
        .post(
            "com.atproto.server.createAppPassword",
            &serde_json::json!({ "name": "phone" }),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let app = b["password"].as_str().unwrap().to_owned();
    let (st, b) = s
        .post(
            "com.atproto.server.createSession",
            &serde_json::json!({ "identifier": s.handle, "password": app }),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let app_cookie = format!("perch_owner={}", b["refreshJwt"].as_str().unwrap());
    assert!(!signed_in(&page(&s, &app_cookie).await, &s.did));
    // Nor does the page's sign-in take an app password.
    let (st, _, body) = send(
        &s,
        ip(2),
        "POST",
        "/account/sign-in",
        &[FORM],
        &format!("password={app}"),
    )
    .await;
    assert_eq!(st, 401);
    assert!(body.contains("Wrong password."));

    // A new password signs every session out, the page's too.
    let cookie = sign_in(&s, ip(1)).await;
    s.app
        .accounts()
        .set_password("another password", false)
        .await
        .unwrap();
    assert!(!signed_in(&page(&s, &cookie).await, &s.did));
}

#[tokio::test]
async fn guessing_the_password_on_the_page_is_rate_limited_like_a_login() {
    let s = InProcess::start().await;
    let mut limited = None;
    for i in 0..15 {
        let (st, head, body) = send(
            &s,
            ip(20),
            "POST",
            "/account/sign-in",
            &[FORM],
            "password=guess+guess",
        )
        .await;
        assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
        if st == 429 {
            assert!(body.contains("Too many wrong passwords"), "{body}");
            limited = Some(i);
            break;
        }
        assert_eq!(st, 401);
    }
    assert!(limited.is_some(), "page sign-in guesses were never limited");
    // The right password from that address is refused too, for now; elsewhere it works.
    let body = format!("password={}", PASSWORD.replace(' ', "+"));
    let (st, _, _) = send(&s, ip(20), "POST", "/account/sign-in", &[FORM], &body).await;
    assert_eq!(st, 429);
    sign_in(&s, ip(21)).await;
}

#[tokio::test]
async fn a_box_without_an_account_says_how_to_make_one() {
    let s = InProcess::boot(
        Boot {
            data: None,
            account: None,
        },
        |_| {},
    )
    .await;
    let (st, _, body) = send(&s, ip(1), "GET", "/account", &[], "").await;
    assert_eq!(st, 200);
    assert!(
        body.contains("sudo perch init") && !body.contains("<form"),
        "{body}"
    );
    let (st, _, _) = send(
        &s,
        ip(1),
        "POST",
        "/account/sign-in",
        &[FORM],
        "password=whatever+it+is",
    )
    .await;
    assert_eq!(st, 404);
}

/// The page's form token for `cookie`.
async fn form_token(s: &InProcess, cookie: &str) -> String {
    let html = page(s, cookie).await;
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Posts a form of the signed-in page: status, head and body.
async fn submit(
    s: &InProcess,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let csrf = form_token(s, cookie).await;
    let body: Vec<String> = fields
        .iter()
        .chain(&[("csrf", csrf.as_str())])
        .map(|(k, v)| format!("{k}={}", perch::syntax::form::percent_encode(v)))
        .collect();
    send(
        s,
        ip(3),
        "POST",
        path,
        &[FORM, ("cookie", cookie)],
        &body.join("&"),
    )
    .await
}

fn location(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_password_changes_only_with_the_current_one_and_signs_everything_else_out() {
    let s = InProcess::start().await;
    let cookie = sign_in(&s, ip(1)).await;
    let other_browser = sign_in(&s, ip(1)).await;
    let refused = [
        (
            ["wrong wrong", "a new password", "a new password"],
            401,
            "Wrong password: nothing was changed.",
        ),
        (
            [PASSWORD, "a new password", "a new passwort"],
            400,
            "differ",
        ),
        ([PASSWORD, "short", "short"], 400, "at least 8 characters"),
    ];
    for ([current, new, confirm], status, why) in refused {
        let fields = [("current", current), ("new", new), ("confirm", confirm)];
        let (st, _, body) = submit(&s, &cookie, "/account/password", &fields).await;
        assert_eq!(st, status, "{why}");
        assert!(body.contains(why), "{body}");
    }
    // The API session from before still works here; afterwards it does not.
    let (st, _) = s
        .call(
            "GET",
            "com.atproto.server.getSession",
            &[("authorization", &s.bearer())],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);

    let (st, head, _) = submit(
        &s,
        &cookie,
        "/account/password",
        &[
            ("current", PASSWORD),
            ("new", "a new password"),
            ("confirm", "a new password"),
        ],
    )
    .await;
    assert_eq!(st, 303, "{head}");
    assert_eq!(location(&head), "/account?done=password#manage");
    let fresh = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a new cookie")
        .to_owned();
    assert!(signed_in(&page(&s, &fresh).await, &s.did));
    assert!(
        !signed_in(&page(&s, &cookie).await, &s.did),
        "the old page session ended"
    );
    assert!(
        !signed_in(&page(&s, &other_browser).await, &s.did),
        "other browsers too"
    );
    let (st, b) = s
        .call(
            "GET",
            "com.atproto.server.getSession",
            &[("authorization", &s.bearer())],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (st, b["message"].as_str()),
        (400, Some("Token has been revoked")),
        "apps too: {b}"
    );
    let mut again = crate::support::Client::new(s.addr);
    again.sign_in(&s.handle, "a new password").await;
}

#[tokio::test]
async fn handle_and_email_change_from_the_page_and_codes_are_never_shown() {
    let s = InProcess::start().await;
    let cookie = sign_in(&s, ip(1)).await;
    let (st, head, _) = submit(&s, &cookie, "/account/handle", &[("handle", "bob.test")]).await;
    assert_eq!(st, 303, "{head}");
    assert_eq!(s.app.account().await.unwrap().unwrap().handle, "bob.test");
    let (st, _, body) = submit(
        &s,
        &cookie,
        "/account/handle",
        &[("handle", "not a handle")],
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("role=\"alert\""));

    // A first address needs no code; it starts unconfirmed.
    let (st, head, _) = submit(
        &s,
        &cookie,
        "/account/email",
        &[("email", "me@example.com")],
    )
    .await;
    assert_eq!(st, 303, "{head}");
    let (st, _, _) = submit(&s, &cookie, "/account/email/code", &[]).await;
    assert_eq!(st, 303);
    let codes = s.app.accounts().pending_codes().await.unwrap();
    let code = codes
        .iter()
        .find(|c| c.purpose == "confirm_email")
        .expect("a confirmation code")
        .code
        .clone();
    let html = page(&s, &cookie).await;
    assert!(html.contains("For confirming the email address"), "{html}");
    assert!(!html.contains(&code), "the page never shows a code");
    let (st, _, _) = submit(
        &s,
        &cookie,
        "/account/email/confirm",
        &[("code", "WRONG-CODE")],
    )
    .await;
    assert_eq!(st, 400);
    let (st, _, _) = submit(&s, &cookie, "/account/email/confirm", &[("code", &code)]).await;
    assert_eq!(st, 303);
    assert!(
        s.app
            .account()
            .await
            .unwrap()
            .unwrap()
            .email_confirmed_at
            .is_some()
    );
    // A confirmed address changes only with the code sent to it.
    let (st, _, body) = submit(
        &s,
        &cookie,
        "/account/email",
        &[("email", "new@example.com")],
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        s.app.account().await.unwrap().unwrap().email.as_deref(),
        Some("me@example.com")
    );
}

#[tokio::test]
async fn a_backup_runs_from_the_page_and_the_account_is_deleted_only_as_typed() {
    let backups = tempfile::tempdir().unwrap();
    let root = backups.path().to_owned();
    let s = InProcess::start_with(|c| c.backup_dir = Some(root.clone())).await;
    let cookie = sign_in(&s, ip(1)).await;
    let (st, head, _) = submit(&s, &cookie, "/account/backup", &[]).await;
    assert_eq!(
        (st, location(&head).as_str()),
        (303, "/account?done=backup#manage")
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while perch::backup::list_complete(&root).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < end,
            "the backup never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let name = perch::backup::list_complete(&root).unwrap()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(page(&s, &cookie).await.contains(&name));

    let (st, _, body) = submit(
        &s,
        &cookie,
        "/account/delete",
        &[("confirm", "someone.else"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("nothing was deleted"));
    let (st, _, _) = submit(
        &s,
        &cookie,
        "/account/delete",
        &[("confirm", &s.handle), ("password", "wrong wrong")],
    )
    .await;
    assert_eq!(st, 401);
    assert!(s.app.account().await.unwrap().is_some());
    let typed = format!("@{}", s.handle.to_uppercase());
    let (st, head, body) = submit(
        &s,
        &cookie,
        "/account/delete",
        &[("confirm", &typed), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("max-age=0"));
    assert!(body.contains("sudo perch init"));
    assert!(s.app.account().await.unwrap().is_none());
}

#[tokio::test]
async fn every_other_session_can_be_signed_out_from_the_page() {
    let s = InProcess::start().await;
    let cookie = sign_in(&s, ip(1)).await;
    let other = sign_in(&s, ip(1)).await;
    let html = page(&s, &cookie).await;
    // The test client's own login, the other browser: two others.
    assert!(
        html.contains("2 other session(s) signed in with the password, 0 with app passwords"),
        "{html}"
    );
    let (st, head, _) = submit(&s, &cookie, "/account/sessions/sign-out", &[]).await;
    assert_eq!(
        (st, location(&head).as_str()),
        (303, "/account?done=others-signed-out#apps")
    );
    assert!(
        signed_in(&page(&s, &cookie).await, &s.did),
        "this page stays signed in"
    );
    assert!(!signed_in(&page(&s, &other).await, &s.did));
    let (st, b) = s
        .call(
            "GET",
            "com.atproto.server.getSession",
            &[("authorization", &s.bearer())],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert!(page(&s, &cookie).await.contains("0 other session(s)"));
}

#[tokio::test]
async fn the_account_is_deactivated_with_the_password_and_reactivated_from_the_page() {
    let s = InProcess::start().await;
    let cookie = sign_in(&s, ip(1)).await;
    let (st, _, _) = submit(
        &s,
        &cookie,
        "/account/deactivate",
        &[("password", "wrong wrong")],
    )
    .await;
    assert_eq!(st, 401);
    assert!(s.app.account().await.unwrap().unwrap().is_active());
    let (st, head, _) = submit(
        &s,
        &cookie,
        "/account/deactivate",
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        (st, location(&head).as_str()),
        (303, "/account?done=deactivated#manage")
    );
    assert_eq!(
        s.app.account().await.unwrap().unwrap().status,
        perch::store::account::AccountStatus::Deactivated
    );
    // Others get no repo now; the page offers reactivation.
    let (st, b) = s
        .call(
            "GET",
            &format!("com.atproto.sync.getLatestCommit?did={}", s.q_did()),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("RepoDeactivated")),
        "{b}"
    );
    assert!(
        page(&s, &cookie)
            .await
            .contains("action=\"/account/activate\"")
    );
    // This server's own did:web points here by construction: it reactivates.
    let (st, head, _) = submit(&s, &cookie, "/account/activate", &[]).await;
    assert_eq!(
        (st, location(&head).as_str()),
        (303, "/account?done=activated#manage")
    );
    assert!(s.app.account().await.unwrap().unwrap().is_active());
    let (st, _) = s
        .call(
            "GET",
            &format!("com.atproto.sync.getLatestCommit?did={}", s.q_did()),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn everything_downloads_as_one_tar_for_the_signed_in_owner_only() {
    let s = InProcess::start().await;
    let (st, _) = s
        .post(
            "com.atproto.repo.createRecord",
            &serde_json::json!({
                "repo": s.did,
                "collection": "app.bsky.feed.post",
                "record": {"$type": "app.bsky.feed.post", "text": "exported", "createdAt": "2026-12-04T00:00:00Z"}
            }),
        )
        .await;
    assert_eq!(st, 200);
    let (st, head, _) = send(&s, ip(1), "GET", "/account/export", &[], "").await;
    assert_eq!(
        (st, location(&head).as_str()),
        (303, "/account"),
        "no cookie, no export"
    );
    let cookie = sign_in(&s, ip(1)).await;
    let buf = raw_bytes_from(
        ip(1),
        s.addr,
        &request_bytes("GET", "/account/export", &[("cookie", &cookie)], b""),
    )
    .await;
    let (st, head, tar) = response_parts(&buf);
    assert_eq!(st, 200, "{head}");
    assert!(head.contains("content-type: application/x-tar"), "{head}");
    assert!(
        head.contains("attachment; filename=\"perch-export-alice.test-"),
        "{head}"
    );
    // The entries, from the tar headers: name in the first 100 bytes, size in octal at 124.
    let mut names = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let name = String::from_utf8_lossy(&tar[at..at + 100])
            .trim_end_matches('\0')
            .to_owned();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&tar[at + 124..at + 135])
                .trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap();
        if name == "export.json" {
            let info: serde_json::Value =
                serde_json::from_slice(&tar[at + 512..at + 512 + size]).unwrap();
            assert_eq!(info["did"], s.did.as_str());
            assert_eq!(info["records"], 1);
        }
        names.push(name);
        at += 512 + size.div_ceil(512) * 512;
    }
    for want in ["export.json", "repo.car", "preferences.json"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}
