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
