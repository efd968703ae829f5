//! The SMTP client against a scripted relay on loopback: what it sends, in what order, and
//! how it takes refusals and broken servers.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

/// How the scripted relay behaves.
#[derive(Clone, Copy, PartialEq)]
enum Relay {
    Good,
    RefuseRecipient,
    WrongPassword,
    HangUpAfterEhlo,
    OverlongReply,
}

/// Starts a relay that answers one session; returns its port and what it received (the
/// command lines, then the DATA text).
async fn relay(kind: Relay) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        let mut seen = Vec::new();
        w.write_all(b"220 relay.test ESMTP ready\r\n")
            .await
            .unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return seen;
            }
            let cmd = line.trim_end().to_owned();
            seen.push(cmd.clone());
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                match kind {
                    Relay::HangUpAfterEhlo => return seen,
                    Relay::OverlongReply => {
                        let long = format!("250 {}\r\n", "x".repeat(5000));
                        w.write_all(long.as_bytes()).await.unwrap();
                        continue;
                    }
                    _ => b"250-relay.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000000\r\n",
                }
            } else if upper.starts_with("AUTH PLAIN") {
                if kind == Relay::WrongPassword {
                    b"535 5.7.8 authentication failed\r\n"
                } else {
                    b"235 2.7.0 ok\r\n"
                }
            } else if upper.starts_with("MAIL FROM") {
                b"250 ok\r\n"
            } else if upper.starts_with("RCPT TO") {
                if kind == Relay::RefuseRecipient {
                    b"550 5.1.1 no such user\r\n"
                } else {
                    b"250 ok\r\n"
                }
            } else if upper == "DATA" {
                w.write_all(b"354 go ahead\r\n").await.unwrap();
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).await.unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                seen.push(data);
                b"250 2.0.0 queued\r\n"
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n").await.unwrap();
                return seen;
            } else {
                b"502 unknown\r\n"
            };
            w.write_all(reply).await.unwrap();
        }
    });
    (port, task)
}

fn mailer(port: u16) -> Mailer {
    let url = format!("smtp://me%40example.com:s%3Acret@127.0.0.1:{port}");
    Mailer::new(Some(&url), Some("perch@pds.example.com"), "pds.example.com")
}

#[tokio::test]
async fn a_message_goes_through_auth_envelope_and_dot_stuffed_data() {
    let (port, seen) = relay(Relay::Good).await;
    mailer(port)
        .send(
            "owner@example.com",
            "Your code",
            "Hi\n.dot line\nABCDE-12345\n",
        )
        .await
        .unwrap();
    let seen = seen.await.unwrap();
    assert_eq!(seen[0], "EHLO pds.example.com");
    let auth = seen[1].strip_prefix("AUTH PLAIN ").expect("AUTH PLAIN");
    let decoded = b64_decode(auth);
    assert_eq!(decoded, b"\0me@example.com\0s:cret");
    assert_eq!(seen[2], "MAIL FROM:<perch@pds.example.com>");
    assert_eq!(seen[3], "RCPT TO:<owner@example.com>");
    assert_eq!(seen[4], "DATA");
    assert!(
        seen[5].contains("\r\nSubject: Your code\r\n"),
        "{}",
        seen[5]
    );
    assert!(
        seen[5].contains("\r\n..dot line\r\nABCDE-12345\r\n"),
        "{}",
        seen[5]
    );
    assert_eq!(seen[6], "QUIT");
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn refusals_and_broken_relays_are_errors_that_say_what_happened() {
    let (port, _) = relay(Relay::RefuseRecipient).await;
    let e = mailer(port)
        .send("owner@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, MailError::Refused(m) if m.contains("550")),
        "{e}"
    );

    let (port, _) = relay(Relay::WrongPassword).await;
    let e = mailer(port)
        .send("owner@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, MailError::Refused(m) if m.contains("535") && !m.contains("cret")),
        "{e}"
    );

    let (port, _) = relay(Relay::HangUpAfterEhlo).await;
    let e = mailer(port)
        .send("owner@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::Protocol(_)), "{e}");

    let (port, _) = relay(Relay::OverlongReply).await;
    let e = mailer(port)
        .send("owner@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::Protocol(_)), "{e}");
}

#[tokio::test]
async fn nothing_is_sent_to_a_bad_address_or_without_a_relay() {
    let (port, seen) = relay(Relay::Good).await;
    let m = mailer(port);
    let e = m
        .send("owner@example.com>\r\nRCPT TO:<x@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::BadAddress(_)), "{e}");
    // The relay takes one session: had the bad address reached it, this one could not.
    m.send("owner@example.com", "s", "b").await.unwrap();
    let seen = seen.await.unwrap();
    let recipients: Vec<&String> = seen.iter().filter(|l| l.starts_with("RCPT")).collect();
    assert_eq!(recipients, ["RCPT TO:<owner@example.com>"]);
    let none = Mailer::new(None, None, "pds.example.com");
    assert!(!none.configured());
    assert!(matches!(
        none.send("owner@example.com", "s", "b").await,
        Err(MailError::NotConfigured)
    ));
}

#[tokio::test]
async fn a_remote_relay_without_starttls_is_refused_before_anything_is_sent() {
    // A relay that is not on loopback must offer STARTTLS; simulate one by connecting to the
    // loopback relay under a StartTls URL.
    let (port, seen) = relay(Relay::Good).await;
    let url = SmtpUrl {
        security: Security::StartTls,
        host: "127.0.0.1".into(),
        port,
        user: Some("u".into()),
        password: Some("p".into()),
    };
    let msg = message::compose("a@example.com", "b@example.com", "h.example.com", "s", "b");
    let e = smtp::send(&url, "h.example.com", &msg).await.unwrap_err();
    assert!(
        matches!(&e, MailError::Refused(m) if m.contains("STARTTLS")),
        "{e}"
    );
    // The relay saw the greeting's answer and nothing more: no AUTH, no envelope.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), seen)
        .await
        .expect("the connection was closed")
        .unwrap();
    assert_eq!(seen, ["EHLO h.example.com"]);
}
