//! Validation: each key's own check (named in the table), then the rules that span keys.

use super::kinds::Kind;
use super::table::{Check, KeySpec, Visit, spec};
use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, TlsMode};
use crate::syntax::{is_disallowed_tld, validate_did, validate_handle};

impl Config {
    /// Checks what types alone do not: each key's own check in table order (hostname
    /// syntax, URL and DID formats, ranges, the log filter), then the rules that span keys
    /// (what each TLS mode needs, listener clash, backups, connection caps).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut each = EachKey(Ok(()));
        self.visit(&mut each);
        each.0?;
        self.check_across_keys()
    }

    fn check_across_keys(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| Err(ConfigError::new(key, message));
        match self.tls {
            TlsMode::Files => {
                for (key, value) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
                    if value.is_none() {
                        let example = spec(key).example;
                        return fail(
                            key,
                            format!(
                                "is required when tls = \"files\"; set {key} = {example} or use \
                                 tls = \"acme\""
                            ),
                        );
                    }
                }
            }
            TlsMode::Acme => {
                if !is_public_hostname(&self.hostname) {
                    return fail(
                        "tls",
                        format!(
                            "\"acme\" needs a public DNS name, but hostname is {:?}; set a \
                             public hostname, or tls = \"off\" / \"files\"",
                            self.hostname
                        ),
                    );
                }
                let key = spec("acme_directory");
                url(key, &self.acme_directory).map_err(|m| ConfigError::new(key.name, m))?;
            }
            TlsMode::Off => {}
        }

        if let Some(h) = self.http_listen
            && overlap(h, self.listen)
        {
            return fail(
                "http_listen",
                format!(
                    "takes the same address and port as listen ({}); use another port \
                     (usually 80) or http_listen = \"\" to turn it off",
                    self.listen
                ),
            );
        }

        if self.backup_interval_hours > 0 && self.backup_dir.is_none() {
            return fail(
                "backup_dir",
                "is required for scheduled backups (backup_interval_hours is set); set \
                 backup_dir = \"/mnt/usb/perch-backups\" (ideally another disk)"
                    .to_owned(),
            );
        }
        if let Some(dir) = &self.backup_dir
            && dir.starts_with(&self.data_dir)
        {
            return fail(
                "backup_dir",
                format!(
                    "{} is inside data_dir; choose a directory elsewhere (ideally another disk)",
                    dir.display()
                ),
            );
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return fail(
                "max_connections",
                "and max_connections_per_ip must be at least 1; e.g. max_connections = 1024"
                    .to_owned(),
            );
        }
        if self.max_subscribers == 0 || self.max_subscribers_per_ip == 0 {
            return fail(
                "max_subscribers",
                "and max_subscribers_per_ip must be at least 1; e.g. max_subscribers = 256"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Whether two listeners would want the same socket: the same port, and the same address
/// or a wildcard covering the other (`[::]` takes IPv4 too).
fn overlap(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    let covers = |x: std::net::SocketAddr, y: std::net::SocketAddr| {
        x.ip() == y.ip() || (x.ip().is_unspecified() && (x.is_ipv6() || y.is_ipv4()))
    };
    a.port() == b.port() && (covers(a, b) || covers(b, a))
}

/// Runs each key's check until one fails. A key whose "off" value means something (`plc_url
/// = ""`) is not checked at that value.
struct EachKey(Result<(), ConfigError>);

impl Visit for EachKey {
    fn key<K: Kind>(&mut self, spec: &'static KeySpec, value: &K::Value, check: Option<Check<K>>) {
        let Some(check) = check else { return };
        if self.0.is_err() || (spec.off.is_some() && K::is_off(value)) {
            return;
        }
        self.0 = check(spec, value).map_err(|m| ConfigError::new(spec.name, m));
    }
}

/// A DNS name that could have a public certificate: handle syntax and no reserved TLD.
pub(super) fn is_public_hostname(h: &str) -> bool {
    validate_handle(h).is_ok() && !is_disallowed_tld(h)
}

/// Set, and a DNS name (or `localhost`, the `--dev` one).
pub(super) fn hostname(key: &KeySpec, h: &String) -> Result<(), String> {
    if h.is_empty() {
        return Err(format!(
            "is not set; set {} = {} in {DEFAULT_CONFIG_PATH} or {} (or run with --dev for a \
             local test server)",
            key.name,
            key.example,
            key.env_var()
        ));
    }
    if h != "localhost"
        && let Err(e) = validate_handle(h)
    {
        let hint = if h.contains(':') {
            "the hostname is a name only; put the port in listen"
        } else {
            "use a DNS name like pds.example.com (or localhost)"
        };
        return Err(format!(
            "{h:?} is not a valid host name ({}); {hint}",
            e.message
        ));
    }
    Ok(())
}

/// An address as perch writes them (see `mail::is_valid_address`).
pub(super) fn email(key: &KeySpec, email: &Option<String>) -> Result<(), String> {
    match email {
        Some(e) if !crate::mail::is_valid_address(e) => Err(format!(
            "{e:?} is not an email address; write it like {} = {} or leave it out",
            key.name, key.example
        )),
        _ => Ok(()),
    }
}

/// `smtps://` or `smtp://`, with a host (see `mail::SmtpUrl`). The message never repeats the
/// URL: it may hold a password.
pub(super) fn smtp_url(key: &KeySpec, url: &Option<String>) -> Result<(), String> {
    match url.as_deref().map(crate::mail::SmtpUrl::parse) {
        Some(Err(e)) => Err(format!(
            "is not an SMTP URL ({e}); write it like {} = {}",
            key.name, key.example
        )),
        _ => Ok(()),
    }
}

/// `http(s)://host[...]`, no whitespace.
pub(super) fn url(key: &KeySpec, url: &String) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "{url:?} is not an http(s) URL; write it like {} = {}",
            key.name, key.example
        )),
    }
}

// The table's check column takes the key's own type.
#[allow(clippy::ptr_arg)]
pub(super) fn urls(key: &KeySpec, urls: &Vec<String>) -> Result<(), String> {
    urls.iter().try_for_each(|u| url(key, u))
}

pub(super) fn did(key: &KeySpec, did: &String) -> Result<(), String> {
    validate_did(did).map_err(|e| {
        format!(
            "{did:?} is not a DID ({}); write it like {} = {}",
            e.message, key.name, key.example
        )
    })
}

/// `MIN..=MAX`; with `MIN` 0, 0 is the key's "off".
pub(super) fn between<const MIN: u64, const MAX: u64>(
    key: &KeySpec,
    n: &u64,
) -> Result<(), String> {
    if (MIN..=MAX).contains(n) {
        return Ok(());
    }
    let range = match (MIN, key.off) {
        (0, Some(off)) => format!("at most {MAX} (or 0 for {off})"),
        (0, None) => format!("at most {MAX}"),
        _ => format!("between {MIN} and {MAX}"),
    };
    Err(format!(
        "must be {range}; e.g. {} = {}",
        key.name, key.example
    ))
}

/// At least one byte (a TOML integer 0 gets this far).
pub(super) fn size(key: &KeySpec, n: &u64) -> Result<(), String> {
    if *n == 0 {
        return Err(format!(
            "is zero; set a size like {} = {}",
            key.name, key.example
        ));
    }
    Ok(())
}

pub(super) fn log_filter(_key: &KeySpec, log: &String) -> Result<(), String> {
    super::log_filter::parse(log).map(|_| ()).map_err(|e| {
        format!("{log:?} is not a log filter ({e}); use a level such as \"info\", or directives like \"perch=debug,info\"")
    })
}
