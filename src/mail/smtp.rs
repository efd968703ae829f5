//! The SMTP submission client (RFC 5321, STARTTLS per RFC 3207, AUTH PLAIN per RFC 4954): one message per connection, which is all a PDS sends (a few codes a month).
//! Every reply is bounded in size and time; the server's certificate is checked against the
//! Mozilla roots, as for every other outbound TLS connection.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::MailError;
use super::message::{Message, dot_stuffed};
use super::url::{Security, SmtpUrl};

/// How long one reply may take (RFC 5321 suggests minutes for some; relays answer in seconds).
const STEP: Duration = Duration::from_secs(30);
/// A reply line longer than this is not SMTP.
const MAX_LINE: usize = 2048;
/// Lines in one (multi-line) reply.
const MAX_LINES: usize = 64;

/// Hands `msg` to the relay at `url`, introducing this host as `helo`.
pub async fn send(url: &SmtpUrl, helo: &str, msg: &Message) -> Result<(), MailError> {
    let tcp = step("connect", TcpStream::connect((url.host.as_str(), url.port)))
        .await?
        .map_err(|e| MailError::Io(format!("connect to {}:{}", url.host, url.port), e))?;
    let _ = tcp.set_nodelay(true);
    match url.security {
        Security::Implicit => {
            let tls = tls_connect(url, tcp).await?;
            let mut s = Session::new(tls);
            s.expect("greeting", &[220]).await?;
            s.ehlo(helo).await?;
            s.deliver(url, msg).await
        }
        Security::Loopback => {
            let mut s = Session::new(tcp);
            s.expect("greeting", &[220]).await?;
            s.ehlo(helo).await?;
            s.deliver(url, msg).await
        }
        Security::StartTls => {
            let mut s = Session::new(tcp);
            s.expect("greeting", &[220]).await?;
            let ext = s.ehlo(helo).await?;
            if !ext.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err(MailError::Refused(format!(
                    "{} does not offer STARTTLS; use smtps:// or a relay that does",
                    url.host
                )));
            }
            s.command("STARTTLS", &[220]).await?;
            let tcp = s.into_inner()?;
            let mut s = Session::new(tls_connect(url, tcp).await?);
            s.ehlo(helo).await?;
            s.deliver(url, msg).await
        }
    }
}

async fn step<T>(what: &str, f: impl Future<Output = T>) -> Result<T, MailError> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| MailError::Timeout(what.to_owned()))
}

async fn tls_connect(
    url: &SmtpUrl,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, MailError> {
    let config = crate::net::tls_client_config().map_err(|e| MailError::Tls(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| MailError::Tls(format!("{}: {e}", url.host)))?;
    step(
        "TLS handshake",
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await?
    .map_err(|e| MailError::Tls(format!("{}: {e}", url.host)))
}

struct Session<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: S) -> Self {
        Session {
            io: BufReader::new(stream),
        }
    }

    /// The plain stream back, for STARTTLS; bytes already buffered would be a server
    /// speaking before the handshake (a known injection), so they are refused.
    fn into_inner(self) -> Result<S, MailError> {
        if !self.io.buffer().is_empty() {
            return Err(MailError::Protocol(
                "the server sent data before the TLS handshake".into(),
            ));
        }
        Ok(self.io.into_inner())
    }

    /// Reads one reply: its code and the text of each line.
    async fn reply(&mut self, what: &str) -> Result<(u16, Vec<String>), MailError> {
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let mut limited = (&mut self.io).take(MAX_LINE as u64);
            let n = step(what, limited.read_until(b'\n', &mut buf))
                .await?
                .map_err(|e| MailError::Io(what.to_owned(), e))?;
            if n == 0 {
                return Err(MailError::Protocol(format!(
                    "the server closed the connection during {what}"
                )));
            }
            if !buf.ends_with(b"\n") {
                return Err(MailError::Protocol(format!("an over-long reply to {what}")));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| MailError::Protocol(format!("not an SMTP reply: {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if !more {
                return Ok((code, lines));
            }
            if lines.len() >= MAX_LINES {
                return Err(MailError::Protocol(format!("an endless reply to {what}")));
            }
        }
    }

    async fn expect(&mut self, what: &str, ok: &[u16]) -> Result<Vec<String>, MailError> {
        let (code, text) = self.reply(what).await?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(MailError::Refused(format!(
                "{what}: {code} {}",
                text.join(" ")
            )))
        }
    }

    async fn write(&mut self, what: &str, bytes: &[u8]) -> Result<(), MailError> {
        let io = self.io.get_mut();
        step(what, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await?
        .map_err(|e| MailError::Io(what.to_owned(), e))
    }

    /// Sends one command line and checks its reply. `what` names it in errors, so a
    /// password never appears in a message.
    async fn send_line(
        &mut self,
        what: &str,
        line: &str,
        ok: &[u16],
    ) -> Result<Vec<String>, MailError> {
        self.write(what, format!("{line}\r\n").as_bytes()).await?;
        self.expect(what, ok).await
    }

    async fn command(&mut self, line: &str, ok: &[u16]) -> Result<Vec<String>, MailError> {
        let what = line.split(':').next().unwrap_or(line).to_owned();
        self.send_line(&what, line, ok).await
    }

    /// EHLO; the extension lines of the reply, keywords upper-cased.
    async fn ehlo(&mut self, helo: &str) -> Result<Vec<String>, MailError> {
        let text = self.command(&format!("EHLO {helo}"), &[250]).await?;
        Ok(text
            .iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect())
    }

    async fn deliver(&mut self, url: &SmtpUrl, msg: &Message) -> Result<(), MailError> {
        if let (Some(user), Some(password)) = (&url.user, &url.password) {
            self.auth(user, password).await?;
        }
        self.command(&format!("MAIL FROM:<{}>", msg.from), &[250])
            .await?;
        self.command(&format!("RCPT TO:<{}>", msg.to), &[250, 251])
            .await?;
        self.command("DATA", &[354]).await?;
        self.write("message", &dot_stuffed(&msg.data)).await?;
        self.expect("message", &[250]).await?;
        // The message is accepted; a relay that drops the line before QUIT's reply has still
        // taken it.
        let _ = self.command("QUIT", &[221]).await;
        Ok(())
    }

    /// AUTH PLAIN (one round), the mechanism every submission server offers.
    async fn auth(&mut self, user: &str, password: &str) -> Result<(), MailError> {
        let token = STANDARD.encode(format!("\0{user}\0{password}"));
        self.send_line("AUTH PLAIN", &format!("AUTH PLAIN {token}"), &[235])
            .await
            .map(|_| ())
    }
}
