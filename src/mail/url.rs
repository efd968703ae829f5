//! `smtp_url`: where mail is handed over, and how.
//!
//! `smtps://[user:password@]host[:465]` speaks TLS from the first byte;
//! `smtp://[user:password@]host[:587]` must upgrade with STARTTLS before anything is sent,
//! except to a relay on this machine (`localhost`, `127.0.0.1`, `::1`), which is spoken to
//! in the clear as local mail servers expect. The user name and password are
//! percent-decoded (a password with `@` or `:` is written `%40`, `%3A`).

use crate::syntax::form::percent_decode_strict;

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS from the start (`smtps`, usually port 465).
    Implicit,
    /// STARTTLS, required (`smtp`, usually port 587).
    StartTls,
    /// A relay on loopback: no TLS.
    Loopback,
}

/// A parsed `smtp_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl SmtpUrl {
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("an SMTP URL starts with smtps:// or smtp://")?;
        let (implicit, default_port) = match scheme {
            "smtps" => (true, 465),
            "smtp" => (false, 587),
            _ => {
                return Err(format!(
                    "unknown scheme {scheme:?}: use smtps:// or smtp://"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err("an SMTP URL has no path or query".into());
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let decode = |s: &str, what: &str| {
            percent_decode_strict(s)
                .filter(|v| !v.is_empty() && !v.contains(['\r', '\n', '\0']))
                .ok_or(format!("the {what} is not valid percent-encoded text"))
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((name, pass)) => (
                    Some(decode(name, "user name")?),
                    Some(decode(pass, "password")?),
                ),
                None => (Some(decode(u, "user name")?), None),
            },
        };
        if user.is_some() && password.is_none() {
            return Err("a user name needs a password (user:password@host)".into());
        }
        let (host, port) = split_host_port(hostport)?;
        let host = host.to_ascii_lowercase();
        let valid_host = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !valid_host {
            return Err(format!("{host:?} is not a host name"));
        }
        let security = match (implicit, is_loopback_host(&host)) {
            (true, _) => Security::Implicit,
            (false, true) => Security::Loopback,
            (false, false) => Security::StartTls,
        };
        Ok(SmtpUrl {
            security,
            host,
            port: port.unwrap_or(default_port),
            user,
            password,
        })
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = || format!("{s:?}: the port is not a number from 1 to 65535");
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad_port)
    };
    if let Some(v6) = s.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or("an IPv6 address needs its ]")?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or_else(bad_port)?)?),
        };
        return Ok((ip.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), Some(parse_port(p)?))),
        None => Ok((s.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_ports_and_security() {
        let u = SmtpUrl::parse("smtps://me%40example.com:p%3Ass@smtp.example.com").unwrap();
        assert_eq!(u.security, Security::Implicit);
        assert_eq!((u.host.as_str(), u.port), ("smtp.example.com", 465));
        assert_eq!(u.user.as_deref(), Some("me@example.com"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert!(!format!("{u:?}").contains("p:ss"));

        let u = SmtpUrl::parse("smtp://user:pw@Mail.Example.com:2525/").unwrap();
        assert_eq!(u.security, Security::StartTls);
        assert_eq!((u.host.as_str(), u.port), ("mail.example.com", 2525));

        for local in [
            "smtp://localhost:25",
            "smtp://127.0.0.1:2525",
            "smtp://[::1]:25",
        ] {
            assert_eq!(
                SmtpUrl::parse(local).unwrap().security,
                Security::Loopback,
                "{local}"
            );
        }
        assert_eq!(
            SmtpUrl::parse("smtps://127.0.0.1").unwrap().security,
            Security::Implicit
        );
        assert_eq!(SmtpUrl::parse("smtp://[::1]").unwrap().port, 587);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for bad in [
            "http://smtp.example.com",
            "smtp.example.com",
            "smtp://",
            "smtp://host:0",
            "smtp://host:99999",
            "smtp://host:x",
            "smtp://user@host",
            "smtp://us%0Aer:pw@host",
            "smtp://host/path",
            "smtp://host?x=1",
            "smtp://bad host",
            "smtp://[::1",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
