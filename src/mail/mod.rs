//! Outbound mail: the one-time codes (email confirmation, email change, password reset,
//! account deletion, PLC operations) sent to the owner through the SMTP relay named by
//! `smtp_url`, when there is one. Without it nothing is sent, and `perch account codes`
//! shows the codes on the box; with it, they are shown there too.
//!
//! A small client of perch's own over the TLS stack it already links (see `smtp.rs`): the
//! usual mail crates pull in URL and IDNA tables worth more than the rest of this feature.

pub mod message;
mod smtp;
pub mod url;

pub use message::is_valid_address;
pub use url::{Security, SmtpUrl};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} took too long")]
    Timeout(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The relay answered with a refusal (its reply is in the text).
    #[error("the mail server refused: {0}")]
    Refused(String),
    #[error("the mail server does not speak SMTP as expected: {0}")]
    Protocol(String),
    #[error("no smtp_url is configured")]
    NotConfigured,
    #[error("{0:?} is not an email address perch can write to")]
    BadAddress(String),
}

/// Where mail goes and who it is from.
#[derive(Clone, Debug)]
pub struct Mailer {
    relay: Option<SmtpUrl>,
    from: String,
    hostname: String,
}

impl Mailer {
    /// From the config's `smtp_url`, `email_from` and `hostname`. `config check` has already
    /// refused a malformed URL, so one here is treated as "no relay".
    pub fn new(smtp_url: Option<&str>, email_from: Option<&str>, hostname: &str) -> Mailer {
        let relay = smtp_url.and_then(|u| SmtpUrl::parse(u).ok());
        let hostname = if hostname.is_empty() {
            "localhost".to_owned()
        } else {
            hostname.to_owned()
        };
        let from = email_from
            .map(str::to_owned)
            .unwrap_or_else(|| format!("perch@{hostname}"));
        Mailer {
            relay,
            from,
            hostname,
        }
    }

    /// Whether mail can be sent at all.
    pub fn configured(&self) -> bool {
        self.relay.is_some()
    }

    /// Sends a plain-text message to `to`, bounded to a minute in all.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let relay = self.relay.as_ref().ok_or(MailError::NotConfigured)?;
        if !is_valid_address(to) {
            return Err(MailError::BadAddress(to.to_owned()));
        }
        let msg = message::compose(&self.from, to, &self.hostname, subject, body);
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            smtp::send(relay, &self.hostname, &msg),
        )
        .await
        .map_err(|_| MailError::Timeout("sending mail".into()))?
    }
}

#[cfg(test)]
mod tests;
