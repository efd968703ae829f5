//! The effective configuration.
//!
//! Layers, later ones winning key by key:
//!
//! 1. built-in defaults;
//! 2. `--dev` defaults (plain HTTP on 127.0.0.1:2583, hostname `localhost`, data in
//!    `./perch-dev`, no PLC directory, no relays);
//! 3. the TOML file: `--config FILE` (must exist), else `/etc/perch/perch.toml` if it exists
//!    (never read under `--dev` without `--config`);
//! 4. `PERCH_<KEY>` environment variables (`PERCH_RELAYS` and `PERCH_TRUSTED_PROXIES` are
//!    comma-separated);
//! 5. command-line flags (`--data-dir`, `--listen`).
//!
//! A few defaults depend on other keys and are worked out after merging: `tls` is `acme` when
//! the hostname is a public DNS name and `--dev` is off, else `off`; `listen` is `0.0.0.0:443`
//! with TLS and `0.0.0.0:80` without; `http_listen` is port 80 on the `listen` address when
//! `tls = "acme"` (HTTP-01 challenges and redirects), else unset.
//!
//! Every error names the key, where its value came from, and how to fix it. Loading never
//! reads the process environment or the file system directly: [`Config::load_from`] takes both
//! as functions so tests can run it hermetically; [`Config::load`] passes the real ones.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::cli::GlobalArgs;
use crate::syntax::{is_disallowed_tld, validate_did, validate_handle};

/// Read when neither `--config` nor `--dev` is given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/perch/perch.toml";
/// `data_dir` outside dev mode (systemd `StateDirectory=perch`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/perch";
/// Let's Encrypt production.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging (untrusted certificates, generous rate limits): `acme_directory = "staging"`.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Connections served at once; more are accepted and closed at once.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// Connections one address may hold; a home NAT puts a household behind one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u64 = 64;
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";
pub const DEFAULT_APPVIEW_URL: &str = "https://api.bsky.app";
pub const DEFAULT_APPVIEW_DID: &str = "did:web:api.bsky.app";
pub const DEFAULT_CHAT_URL: &str = "https://api.bsky.chat";
pub const DEFAULT_CHAT_DID: &str = "did:web:api.bsky.chat";
pub const DEFAULT_RELAY: &str = "https://bsky.network";
/// 100 MiB.
pub const DEFAULT_BLOB_LIMIT: u64 = 100 * 1024 * 1024;
/// Firehose backfill window (the reference keeps 24 h; relays that were down
/// over a weekend need more).
pub const DEFAULT_BACKFILL_HOURS: u64 = 72;
pub const DEFAULT_LOG: &str = "info";
/// Scheduled backups are off unless `backup_interval_hours` is set.
pub const DEFAULT_BACKUP_INTERVAL_HOURS: u64 = 0;
/// Backups kept by the scheduled task (a week of daily ones).
pub const DEFAULT_BACKUP_KEEP: u64 = 7;
/// `listen` under `--dev`.
pub const DEV_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2583);
pub const DEV_HOSTNAME: &str = "localhost";
pub const DEV_DATA_DIR: &str = "./perch-dev";

/// What `redacted_toml` prints instead of a secret.
const REDACTED: &str = "********";

/// How the HTTPS listener gets its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Certificates from an ACME CA (HTTP-01 on `http_listen`).
    Acme,
    /// Certificate and key read from `tls_cert` / `tls_key` (PEM).
    Files,
    /// Plain HTTP (dev, or behind a TLS-terminating reverse proxy).
    Off,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Acme => "acme",
            TlsMode::Files => "files",
            TlsMode::Off => "off",
        }
    }

    fn parse(s: &str) -> Option<TlsMode> {
        match s.to_ascii_lowercase().as_str() {
            "acme" => Some(TlsMode::Acme),
            "files" => Some(TlsMode::Files),
            "off" => Some(TlsMode::Off),
            _ => None,
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective configuration. `Debug` hides `admin_password`.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The PDS's DNS name (lower-case), e.g. `pds.example.com`; `localhost` in dev.
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Main listener (HTTPS unless `tls` is off).
    pub listen: SocketAddr,
    /// Plain-HTTP listener for ACME HTTP-01 and redirects to HTTPS.
    pub http_listen: Option<SocketAddr>,
    pub tls: TlsMode,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub acme_directory: String,
    pub acme_email: Option<String>,
    /// Extra trusted root (PEM) for the ACME server's own HTTPS, for test CAs like pebble.
    pub acme_ca_root: Option<PathBuf>,
    /// Serve Prometheus `/metrics` (to loopback, or with the admin password).
    pub metrics: bool,
    pub max_connections: u64,
    pub max_connections_per_ip: u64,
    /// PLC directory base URL without a trailing '/'; empty means "no PLC" (dev).
    pub plc_url: String,
    pub appview_url: String,
    pub appview_did: String,
    pub chat_url: String,
    pub chat_did: String,
    /// Relays asked to crawl us on start and after writes.
    pub relays: Vec<String>,
    /// Largest accepted blob, in bytes.
    pub blob_limit: u64,
    /// How far back a firehose cursor may reach; older events are trimmed.
    pub backfill_hours: u64,
    /// Where `perch backup` (without DIR) and scheduled backups go.
    pub backup_dir: Option<PathBuf>,
    /// Hours between scheduled backups; 0 = none.
    pub backup_interval_hours: u64,
    /// How many backups the scheduled task keeps.
    pub backup_keep: u64,
    /// `tracing` filter directive, e.g. `info` or `perch=debug,info`.
    pub log: String,
    /// Secret.
    pub admin_password: Option<String>,
    /// `--dev` was given.
    pub dev: bool,
    /// `PERCH_ALLOW_LOOPBACK=1`: outbound requests may reach loopback addresses (dev/test).
    pub allow_loopback: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

/// A configuration problem: which key (or file / flag), where its value came from, and the
/// fix. Displays as `key: message (from ORIGIN)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key to fix, e.g. `listen`; or `--config`, or a file path for TOML syntax errors.
    pub key: String,
    /// Where the offending value came from: `--dev`, a file path, `PERCH_LISTEN`, `--listen`.
    pub origin: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            origin: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One settable key: its name and an example of a correct TOML line's right-hand side.
struct KeyInfo {
    name: &'static str,
    example: &'static str,
    list: bool,
}

const fn key(name: &'static str, example: &'static str) -> KeyInfo {
    KeyInfo {
        name,
        example,
        list: false,
    }
}

const KEYS: &[KeyInfo] = &[
    key("hostname", "\"pds.example.com\""),
    key("data_dir", "\"/var/lib/perch\""),
    key("listen", "\"0.0.0.0:443\""),
    key("http_listen", "\"0.0.0.0:80\""),
    key("tls", "\"acme\""),
    key("tls_cert", "\"/etc/perch/cert.pem\""),
    key("tls_key", "\"/etc/perch/key.pem\""),
    key(
        "acme_directory",
        "\"https://acme-v02.api.letsencrypt.org/directory\"",
    ),
    key("acme_email", "\"you@example.com\""),
    key("acme_ca_root", "\"/etc/perch/test-ca.pem\""),
    key("metrics", "true"),
    key("max_connections", "1024"),
    key("max_connections_per_ip", "64"),
    key("plc_url", "\"https://plc.directory\""),
    key("appview_url", "\"https://api.bsky.app\""),
    key("appview_did", "\"did:web:api.bsky.app\""),
    key("chat_url", "\"https://api.bsky.chat\""),
    key("chat_did", "\"did:web:api.bsky.chat\""),
    KeyInfo {
        name: "relays",
        example: "[\"https://bsky.network\"]",
        list: true,
    },
    key("blob_limit", "\"100MiB\""),
    key("backfill_hours", "72"),
    key("backup_dir", "\"/mnt/usb/perch-backups\""),
    key("backup_interval_hours", "24"),
    key("backup_keep", "7"),
    key("log", "\"info\""),
    key("admin_password", "\"a long random string\""),
    KeyInfo {
        name: "trusted_proxies",
        example: "[\"127.0.0.1\"]",
        list: true,
    },
];

fn key_info(name: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.name == name)
}

fn key_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The environment variable that overrides `key`.
pub fn env_var_name(key: &str) -> String {
    format!("PERCH_{}", key.to_ascii_uppercase())
}

/// Where a value came from.
#[derive(Clone, Debug)]
enum Origin {
    Dev,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Dev => f.write_str("--dev"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => f.write_str(v),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A value before it is parsed for its key.
#[derive(Clone, Debug)]
enum Raw {
    Str(String),
    Path(PathBuf),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    /// A TOML value of a type no key takes; holds the type's name.
    Other(&'static str),
}

impl Raw {
    fn type_name(&self) -> &'static str {
        match self {
            Raw::Str(_) | Raw::Path(_) => "a string",
            Raw::Int(_) => "an integer",
            Raw::Bool(_) => "a boolean",
            Raw::List(_) => "a list",
            Raw::Other(t) => t,
        }
    }

    fn from_toml(v: toml::Value) -> Raw {
        match v {
            toml::Value::String(s) => Raw::Str(s),
            toml::Value::Integer(i) => Raw::Int(i),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Float(_) => Raw::Other("a float"),
            toml::Value::Datetime(_) => Raw::Other("a date-time"),
            toml::Value::Table(_) => Raw::Other("a table"),
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s),
                        _ => return Raw::Other("a list with non-string items"),
                    }
                }
                Raw::List(out)
            }
        }
    }
}

/// Comma-separated list, items trimmed, empty items dropped.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The merged raw values, each with the layer that set it last.
#[derive(Default)]
struct Layers {
    values: BTreeMap<&'static str, (Raw, Origin)>,
}

impl Layers {
    fn set(&mut self, key: &'static str, raw: Raw, origin: Origin) {
        self.values.insert(key, (raw, origin));
    }

    fn origin(&self, key: &str) -> Option<String> {
        self.values.get(key).map(|(_, o)| o.to_string())
    }

    /// An error about `key`, tagged with where its value came from.
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    fn attach_origin(&self, mut e: ConfigError) -> ConfigError {
        if e.origin.is_none() {
            e.origin = self.origin(&e.key);
        }
        e
    }

    fn wrong_type(&self, key: &'static str, expected: &str, found: &Raw) -> ConfigError {
        let example = key_info(key).map_or("", |k| k.example);
        self.err(
            key,
            format!(
                "expected {expected}, found {}; write it like {key} = {example}",
                found.type_name()
            ),
        )
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((Raw::Str(s), _)) => Ok(Some(s.clone())),
            Some((Raw::Path(p), _)) => p
                .to_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.err(key, format!("{} is not valid UTF-8", p.display()))),
            Some((other, _)) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A string where the empty string means "not set".
    fn opt_string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(key)?.filter(|s| !s.is_empty()))
    }

    fn path(&self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        match self.values.get(key) {
            Some((Raw::Path(p), _)) => Ok(Some(p.clone())),
            _ => Ok(self.string(key)?.map(PathBuf::from)),
        }
    }

    /// A path where the empty string means "not set".
    fn opt_path(&self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.path(key)?.filter(|p| !p.as_os_str().is_empty()))
    }

    /// A boolean; from the environment, `true`/`false`/`1`/`0`/`yes`/`no`.
    fn flag(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((Raw::Bool(b), _)) => Ok(Some(*b)),
            Some((Raw::Str(s), _)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" | "" => Ok(Some(false)),
                _ => Err(self.err(key, format!("{s:?} is not true or false"))),
            },
            Some((other, _)) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    /// A list; a plain string is taken as a comma-separated list.
    fn list(&self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((Raw::List(items), _)) => Ok(Some(items.clone())),
            Some((Raw::Str(s), _)) => Ok(Some(split_list(s))),
            Some((other, _)) => Err(self.wrong_type(key, "a list of strings", other)),
        }
    }

    fn addr(&self, key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
        s.trim().parse().map_err(|_| {
            self.err(
                key,
                format!(
                    "{s:?} is not an address like 0.0.0.0:443; write IP:PORT, \
                     e.g. \"0.0.0.0:443\", \"127.0.0.1:2583\" or \"[::]:443\""
                ),
            )
        })
    }

    fn size(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let n = match self.values.get(key) {
            None => return Ok(None),
            Some((Raw::Int(i), _)) => u64::try_from(*i).map_err(|_| {
                self.err(key, format!("{i} is negative; use a size like \"100MiB\""))
            })?,
            Some((Raw::Str(s), _)) => parse_size(s).map_err(|m| self.err(key, m))?,
            Some((other, _)) => {
                return Err(self.wrong_type(key, "a size (integer or string)", other));
            }
        };
        Ok(Some(n))
    }

    /// A non-negative whole number (a TOML integer or a string of digits).
    fn count(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((Raw::Int(i), _)) => u64::try_from(*i)
                .map(Some)
                .map_err(|_| self.err(key, format!("{i} is negative; use a whole number"))),
            Some((Raw::Str(s), _)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.err(key, format!("{s:?} is not a whole number"))),
            Some((other, _)) => Err(self.wrong_type(key, "a whole number", other)),
        }
    }

    /// Parses every key into a `Config` (types and formats only; `validate` does the rest).
    fn resolve(&self, dev: bool, allow_loopback: bool) -> Result<Config, ConfigError> {
        let hostname = self
            .string("hostname")?
            .unwrap_or_default()
            .to_ascii_lowercase();
        let data_dir = self
            .path("data_dir")?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(self.err(
                "data_dir",
                format!("is empty; set a directory, e.g. data_dir = \"{DEFAULT_DATA_DIR}\""),
            ));
        }

        let tls = match self.string("tls")? {
            Some(s) => TlsMode::parse(&s).ok_or_else(|| {
                self.err(
                    "tls",
                    format!("{s:?} is not a TLS mode; use \"acme\", \"files\" or \"off\""),
                )
            })?,
            None if !dev && is_public_hostname(&hostname) => TlsMode::Acme,
            None => TlsMode::Off,
        };

        let listen = match self.string("listen")? {
            Some(s) => self.addr("listen", &s)?,
            None => {
                let port = if tls == TlsMode::Off { 80 } else { 443 };
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
            }
        };
        let http_listen = match self.string("http_listen")? {
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(self.addr("http_listen", &s)?),
            None if tls == TlsMode::Acme && listen.port() != 80 => {
                Some(SocketAddr::new(listen.ip(), 80))
            }
            None => None,
        };

        let url = |key: &'static str, default: &str| -> Result<String, ConfigError> {
            Ok(trim_url(
                &self.string(key)?.unwrap_or_else(|| default.to_owned()),
            ))
        };
        let plc_url = url("plc_url", DEFAULT_PLC_URL)?;
        let relays = match self.list("relays")? {
            Some(items) => items.iter().map(|s| trim_url(s)).collect(),
            None => vec![DEFAULT_RELAY.to_owned()],
        };

        let trusted_proxies = match self.list("trusted_proxies")? {
            None => Vec::new(),
            Some(items) => items
                .iter()
                .map(|s| {
                    s.trim().parse::<IpAddr>().map_err(|_| {
                        self.err(
                            "trusted_proxies",
                            format!(
                                "{s:?} is not an IP address; list plain addresses, \
                                 e.g. trusted_proxies = [\"127.0.0.1\", \"::1\"]"
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };

        Ok(Config {
            hostname,
            data_dir,
            listen,
            http_listen,
            tls,
            tls_cert: self.opt_path("tls_cert")?,
            tls_key: self.opt_path("tls_key")?,
            acme_directory: match url("acme_directory", DEFAULT_ACME_DIRECTORY)?.as_str() {
                "production" | "letsencrypt" => DEFAULT_ACME_DIRECTORY.to_owned(),
                "staging" | "letsencrypt-staging" => STAGING_ACME_DIRECTORY.to_owned(),
                other => other.to_owned(),
            },
            acme_email: self.opt_string("acme_email")?,
            acme_ca_root: self.opt_path("acme_ca_root")?,
            metrics: self.flag("metrics")?.unwrap_or(false),
            max_connections: self
                .count("max_connections")?
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_ip: self
                .count("max_connections_per_ip")?
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
            plc_url,
            appview_url: url("appview_url", DEFAULT_APPVIEW_URL)?,
            appview_did: self
                .string("appview_did")?
                .unwrap_or_else(|| DEFAULT_APPVIEW_DID.to_owned()),
            chat_url: url("chat_url", DEFAULT_CHAT_URL)?,
            chat_did: self
                .string("chat_did")?
                .unwrap_or_else(|| DEFAULT_CHAT_DID.to_owned()),
            relays,
            blob_limit: self.size("blob_limit")?.unwrap_or(DEFAULT_BLOB_LIMIT),
            backfill_hours: self
                .count("backfill_hours")?
                .unwrap_or(DEFAULT_BACKFILL_HOURS),
            backup_dir: self.opt_path("backup_dir")?,
            backup_interval_hours: self
                .count("backup_interval_hours")?
                .unwrap_or(DEFAULT_BACKUP_INTERVAL_HOURS),
            backup_keep: self.count("backup_keep")?.unwrap_or(DEFAULT_BACKUP_KEEP),
            log: self
                .string("log")?
                .unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            admin_password: self.opt_string("admin_password")?,
            dev,
            allow_loopback,
            trusted_proxies,
        })
    }

    /// Merges one TOML document; unknown keys are errors.
    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new(
                path.display().to_string(),
                format!(
                    "not valid TOML: {}; fix the file (each line is key = value, strings in quotes)",
                    e.to_string().trim_end()
                ),
            )
        })?;
        for (name, value) in table {
            let origin = Origin::File(path.to_owned());
            let Some(info) = key_info(&name) else {
                return Err(ConfigError {
                    message: unknown_key_message(&name),
                    key: name,
                    origin: Some(origin.to_string()),
                });
            };
            self.set(info.name, Raw::from_toml(value), origin);
        }
        Ok(())
    }
}

fn unknown_key_message(name: &str) -> String {
    let normalized = name.to_ascii_lowercase().replace('-', "_");
    let hint = match normalized.as_str() {
        "dev" => " (dev mode is the --dev flag, not a file key)".to_owned(),
        "allow_loopback" => " (it is set only by PERCH_ALLOW_LOOPBACK=1, for tests)".to_owned(),
        _ => match key_info(&normalized) {
            Some(k) => format!("; did you mean {:?}?", k.name),
            None => String::new(),
        },
    };
    format!(
        "unknown key{hint}; remove it or use one of: {}",
        key_names()
    )
}

/// Drops trailing slashes so callers can append `/xrpc/...`.
fn trim_url(s: &str) -> String {
    s.trim().trim_end_matches('/').to_owned()
}

/// A DNS name that could have a public certificate: handle syntax and no reserved TLD.
fn is_public_hostname(h: &str) -> bool {
    validate_handle(h).is_ok() && !is_disallowed_tld(h)
}

/// `http(s)://host[...]`, no whitespace.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(ConfigError::new(
            key,
            format!(
                "{url:?} is not an http(s) URL; write it like {key} = {}",
                key_info(key).map_or("\"https://example.com\"", |k| k.example)
            ),
        )),
    }
}

/// Parses `1048576`, `"5MiB"`, `"5 MB"`, `"512KiB"`, `"1GiB"`, `"100B"`. Decimal units (kB,
/// MB, GB) are powers of 1000, binary ones (KiB, MiB, GiB) powers of 1024; units are
/// case-insensitive. The result must be at least 1 byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let fix = "use a whole number of bytes or a size like \"100MiB\", \"5MB\" or \"512KiB\"";
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size; {fix}"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is too large; {fix}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit; {fix}")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large; {fix}"))?;
    if bytes == 0 {
        return Err(format!("{s:?} is zero; {fix}"));
    }
    Ok(bytes)
}

/// `104857600` → `"100MiB"`; falls back to plain bytes when no binary unit divides evenly.
pub fn format_size(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// `PERCH_ALLOW_LOOPBACK`: `1`/`true`/`yes` or `0`/`false`/`no`/empty.
fn parse_bool_env(var: &str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" => Ok(true),
            "" | "0" | "false" | "no" => Ok(false),
            _ => Err(ConfigError::new(
                var,
                format!("{v:?} is not a switch; set {var}=1 to enable it or unset it"),
            )),
        },
    }
}

/// A TOML basic string with the escapes TOML requires.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|i| toml_string(&i.to_string())).collect();
    format!("[{}]", inner.join(", "))
}

impl Config {
    /// Loads from the real environment and file system. See the module docs for the layers.
    pub fn load(args: &GlobalArgs) -> Result<Config, ConfigError> {
        Config::load_from(args, &|name| std::env::var(name).ok(), &|path| {
            std::fs::read_to_string(path)
        })
    }

    /// Loads with the environment and file reading supplied by the caller (`env` gets a
    /// variable name such as `PERCH_LISTEN`). The result has passed [`Config::validate`].
    pub fn load_from(
        args: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();

        if args.dev {
            let dev_values = [
                ("listen", DEV_LISTEN.to_string()),
                ("hostname", DEV_HOSTNAME.to_owned()),
                ("data_dir", DEV_DATA_DIR.to_owned()),
                ("tls", "off".to_owned()),
                ("plc_url", String::new()),
            ];
            for (key, value) in dev_values {
                layers.set(key, Raw::Str(value), Origin::Dev);
            }
            layers.set("relays", Raw::List(Vec::new()), Origin::Dev);
        }

        if let Some((path, required)) = config_file_choice(args) {
            match read_file(&path) {
                Ok(text) => layers.apply_file(&path, &text)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ConfigError::new(
                        "--config",
                        format!(
                            "{} does not exist; create it or point --config at an existing file",
                            path.display()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::new(
                        path.display().to_string(),
                        format!("cannot read the config file: {e}; check that it is readable"),
                    ));
                }
            }
        }

        for info in KEYS {
            let var = env_var_name(info.name);
            if let Some(value) = env(&var) {
                let raw = if info.list {
                    Raw::List(split_list(&value))
                } else {
                    Raw::Str(value)
                };
                layers.set(info.name, raw, Origin::Env(var));
            }
        }
        let allow_loopback = parse_bool_env("PERCH_ALLOW_LOOPBACK", env("PERCH_ALLOW_LOOPBACK"))?;

        if let Some(dir) = &args.data_dir {
            layers.set(
                "data_dir",
                Raw::Path(dir.clone()),
                Origin::Flag("--data-dir"),
            );
        }
        if let Some(listen) = &args.listen {
            layers.set("listen", Raw::Str(listen.clone()), Origin::Flag("--listen"));
        }

        let config = layers.resolve(args.dev, allow_loopback)?;
        config.validate().map_err(|e| layers.attach_origin(e))?;
        Ok(config)
    }

    /// Dev defaults with the given data directory, no file and no environment: handy in tests.
    pub fn dev(data_dir: impl Into<PathBuf>) -> Config {
        let args = GlobalArgs {
            dev: true,
            data_dir: Some(data_dir.into()),
            ..GlobalArgs::default()
        };
        Config::load_from(&args, &|_| None, &|_| {
            Err(io::Error::from(io::ErrorKind::NotFound))
        })
        .expect("dev defaults are a valid config")
    }

    /// Checks the rules that span keys or go beyond types: hostname syntax, TLS mode needs,
    /// URL and DID formats, listener clash, blob limit, log filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.hostname;
        if h.is_empty() {
            return Err(ConfigError::new(
                "hostname",
                "is not set; set hostname = \"pds.example.com\" in /etc/perch/perch.toml \
                 or PERCH_HOSTNAME (or run with --dev for a local test server)",
            ));
        }
        if h != DEV_HOSTNAME
            && let Err(e) = validate_handle(h)
        {
            let hint = if h.contains(':') {
                "the hostname is a name only; put the port in listen"
            } else {
                "use a DNS name like pds.example.com (or localhost)"
            };
            return Err(ConfigError::new(
                "hostname",
                format!("{h:?} is not a valid host name ({}); {hint}", e.message),
            ));
        }

        match self.tls {
            TlsMode::Files => {
                for (key, value) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
                    if value.is_none() {
                        return Err(ConfigError::new(
                            key,
                            format!(
                                "is required when tls = \"files\"; set {key} = {} or use \
                                 tls = \"acme\"",
                                key_info(key).map_or("", |k| k.example)
                            ),
                        ));
                    }
                }
            }
            TlsMode::Acme => {
                if !is_public_hostname(h) {
                    return Err(ConfigError::new(
                        "tls",
                        format!(
                            "\"acme\" needs a public DNS name, but hostname is {h:?}; set a \
                             public hostname, or tls = \"off\" / \"files\""
                        ),
                    ));
                }
                check_url("acme_directory", &self.acme_directory)?;
            }
            TlsMode::Off => {}
        }
        if let Some(email) = &self.acme_email {
            let ok = email
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
                && !email.chars().any(char::is_whitespace);
            if !ok {
                return Err(ConfigError::new(
                    "acme_email",
                    format!(
                        "{email:?} is not an email address; write it like \
                         acme_email = \"you@example.com\" or leave it out"
                    ),
                ));
            }
        }

        if self.http_listen == Some(self.listen) {
            return Err(ConfigError::new(
                "http_listen",
                format!(
                    "is the same address as listen ({}); use another port (usually 80) or \
                     http_listen = \"\" to turn it off",
                    self.listen
                ),
            ));
        }

        if !self.plc_url.is_empty() {
            check_url("plc_url", &self.plc_url)?;
        }
        check_url("appview_url", &self.appview_url)?;
        check_url("chat_url", &self.chat_url)?;
        for relay in &self.relays {
            check_url("relays", relay)?;
        }
        for (key, did) in [
            ("appview_did", &self.appview_did),
            ("chat_did", &self.chat_did),
        ] {
            validate_did(did).map_err(|e| {
                ConfigError::new(
                    key,
                    format!(
                        "{did:?} is not a DID ({}); write it like {key} = {}",
                        e.message,
                        key_info(key).map_or("", |k| k.example)
                    ),
                )
            })?;
        }

        if self.backfill_hours == 0 || self.backfill_hours > 24 * 365 {
            return Err(ConfigError::new(
                "backfill_hours",
                "must be between 1 and 8760; e.g. backfill_hours = 72",
            ));
        }
        if self.backup_interval_hours > 24 * 365 {
            return Err(ConfigError::new(
                "backup_interval_hours",
                "must be at most 8760 (or 0 for no scheduled backups); e.g. \
                 backup_interval_hours = 24",
            ));
        }
        if self.backup_interval_hours > 0 && self.backup_dir.is_none() {
            return Err(ConfigError::new(
                "backup_dir",
                "is required for scheduled backups (backup_interval_hours is set); set \
                 backup_dir = \"/mnt/usb/perch-backups\" (ideally another disk)",
            ));
        }
        if let Some(dir) = &self.backup_dir
            && dir.starts_with(&self.data_dir)
        {
            return Err(ConfigError::new(
                "backup_dir",
                format!(
                    "{} is inside data_dir; choose a directory elsewhere (ideally another disk)",
                    dir.display()
                ),
            ));
        }
        if self.backup_keep == 0 || self.backup_keep > 10_000 {
            return Err(ConfigError::new(
                "backup_keep",
                "must be between 1 and 10000; e.g. backup_keep = 7",
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(ConfigError::new(
                "max_connections",
                "and max_connections_per_ip must be at least 1; e.g. max_connections = 1024",
            ));
        }
        if self.blob_limit == 0 {
            return Err(ConfigError::new(
                "blob_limit",
                "is zero; set a size like blob_limit = \"100MiB\"",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::new(
                "log",
                format!(
                    "{:?} is not a log filter ({e}); use a level such as \"info\" or \
                     \"debug\", or directives like \"perch=debug,info\"",
                    self.log
                ),
            ));
        }
        Ok(())
    }

    /// The URL clients and the network reach this PDS at, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.dev || self.tls == TlsMode::Off {
            match self.listen.port() {
                80 => format!("http://{}", self.hostname),
                port => format!("http://{}:{port}", self.hostname),
            }
        } else {
            format!("https://{}", self.hostname)
        }
    }

    /// The effective configuration as TOML (loadable again as a config file) with secrets
    /// replaced by `********`.
    pub fn redacted_toml(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let path = |p: &Path| toml_string(&p.to_string_lossy());
        line("# perch effective configuration (secrets hidden)".to_owned());
        if self.dev {
            line("# dev mode (--dev)".to_owned());
        }
        if self.allow_loopback {
            line("# PERCH_ALLOW_LOOPBACK=1: outbound requests may reach loopback".to_owned());
        }
        line(format!("hostname = {}", toml_string(&self.hostname)));
        line(format!("data_dir = {}", path(&self.data_dir)));
        line(format!(
            "listen = {}",
            toml_string(&self.listen.to_string())
        ));
        match self.http_listen {
            Some(a) => line(format!("http_listen = {}", toml_string(&a.to_string()))),
            None => line("http_listen = \"\" # off".to_owned()),
        }
        line(format!("tls = {}", toml_string(self.tls.as_str())));
        match &self.tls_cert {
            Some(p) => line(format!("tls_cert = {}", path(p))),
            None => line("# tls_cert is not set".to_owned()),
        }
        match &self.tls_key {
            Some(p) => line(format!("tls_key = {}", path(p))),
            None => line("# tls_key is not set".to_owned()),
        }
        line(format!(
            "acme_directory = {}",
            toml_string(&self.acme_directory)
        ));
        match &self.acme_email {
            Some(e) => line(format!("acme_email = {}", toml_string(e))),
            None => line("# acme_email is not set".to_owned()),
        }
        match &self.acme_ca_root {
            Some(p) => line(format!("acme_ca_root = {}", path(p))),
            None => line("# acme_ca_root is not set".to_owned()),
        }
        line(format!("metrics = {}", self.metrics));
        line(format!("max_connections = {}", self.max_connections));
        line(format!(
            "max_connections_per_ip = {}",
            self.max_connections_per_ip
        ));
        let plc_note = if self.plc_url.is_empty() {
            " # no PLC directory"
        } else {
            ""
        };
        line(format!(
            "plc_url = {}{plc_note}",
            toml_string(&self.plc_url)
        ));
        line(format!("appview_url = {}", toml_string(&self.appview_url)));
        line(format!("appview_did = {}", toml_string(&self.appview_did)));
        line(format!("chat_url = {}", toml_string(&self.chat_url)));
        line(format!("chat_did = {}", toml_string(&self.chat_did)));
        line(format!("relays = {}", toml_list(&self.relays)));
        line(format!(
            "blob_limit = {} # {}",
            self.blob_limit,
            format_size(self.blob_limit)
        ));
        line(format!("backfill_hours = {}", self.backfill_hours));
        match &self.backup_dir {
            Some(p) => line(format!("backup_dir = {}", path(p))),
            None => line("# backup_dir is not set".to_owned()),
        }
        let off = if self.backup_interval_hours == 0 {
            " # no scheduled backups"
        } else {
            ""
        };
        line(format!(
            "backup_interval_hours = {}{off}",
            self.backup_interval_hours
        ));
        line(format!("backup_keep = {}", self.backup_keep));
        line(format!("log = {}", toml_string(&self.log)));
        match &self.admin_password {
            Some(_) => line(format!("admin_password = {}", toml_string(REDACTED))),
            None => line("# admin_password is not set".to_owned()),
        }
        line(format!(
            "trusted_proxies = {}",
            toml_list(&self.trusted_proxies)
        ));
        out
    }
}

/// Which file to read, and whether it must exist.
fn config_file_choice(args: &GlobalArgs) -> Option<(PathBuf, bool)> {
    match (&args.config, args.dev) {
        (Some(p), _) => Some((p.clone(), true)),
        (None, true) => None,
        (None, false) => Some((PathBuf::from(DEFAULT_CONFIG_PATH), false)),
    }
}

/// The config file `load` would read for these arguments, if it exists (for `config check`).
pub fn config_file_in_use(args: &GlobalArgs) -> Option<PathBuf> {
    config_file_choice(args).and_then(|(p, required)| (required || p.exists()).then_some(p))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("hostname", &self.hostname)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("tls", &self.tls)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("acme_directory", &self.acme_directory)
            .field("acme_email", &self.acme_email)
            .field("acme_ca_root", &self.acme_ca_root)
            .field("metrics", &self.metrics)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("plc_url", &self.plc_url)
            .field("appview_url", &self.appview_url)
            .field("appview_did", &self.appview_did)
            .field("chat_url", &self.chat_url)
            .field("chat_did", &self.chat_did)
            .field("relays", &self.relays)
            .field("blob_limit", &self.blob_limit)
            .field("backfill_hours", &self.backfill_hours)
            .field("backup_dir", &self.backup_dir)
            .field("backup_interval_hours", &self.backup_interval_hours)
            .field("backup_keep", &self.backup_keep)
            .field("log", &self.log)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| REDACTED),
            )
            .field("dev", &self.dev)
            .field("allow_loopback", &self.allow_loopback)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn env_of<'a>(pairs: Pairs<'a>) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn files_of<'a>(pairs: Pairs<'a>) -> impl Fn(&Path) -> io::Result<String> + 'a {
        move |path| {
            pairs
                .iter()
                .find(|(k, _)| Path::new(k) == path)
                .map(|(_, v)| (*v).to_owned())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    fn load(args: &GlobalArgs, env: Pairs, files: Pairs) -> Result<Config, ConfigError> {
        Config::load_from(args, &env_of(env), &files_of(files))
    }

    fn with_file(path: &str) -> GlobalArgs {
        GlobalArgs {
            config: Some(PathBuf::from(path)),
            ..GlobalArgs::default()
        }
    }

    fn dev() -> GlobalArgs {
        GlobalArgs {
            dev: true,
            ..GlobalArgs::default()
        }
    }

    /// Loads `toml` as the given config file with no environment.
    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        load(&with_file("/c.toml"), &[], &[("/c.toml", toml)])
    }

    #[test]
    fn defaults() {
        let read = RefCell::new(Vec::new());
        let reader = |p: &Path| -> io::Result<String> {
            read.borrow_mut().push(p.to_owned());
            Err(io::Error::from(io::ErrorKind::NotFound))
        };
        let c = Config::load_from(
            &GlobalArgs::default(),
            &env_of(&[("PERCH_HOSTNAME", "PDS.Example.com")]),
            &reader,
        )
        .unwrap();
        assert_eq!(read.into_inner(), vec![PathBuf::from(DEFAULT_CONFIG_PATH)]);
        assert_eq!(c.hostname, "pds.example.com");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/perch"));
        assert_eq!(c.listen, "0.0.0.0:443".parse().unwrap());
        assert_eq!(c.http_listen, Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(c.tls, TlsMode::Acme);
        assert_eq!(c.tls_cert, None);
        assert_eq!(c.tls_key, None);
        assert_eq!(c.acme_directory, DEFAULT_ACME_DIRECTORY);
        assert_eq!(c.acme_email, None);
        assert_eq!(c.plc_url, "https://plc.directory");
        assert_eq!(c.appview_url, "https://api.bsky.app");
        assert_eq!(c.appview_did, "did:web:api.bsky.app");
        assert_eq!(c.chat_url, "https://api.bsky.chat");
        assert_eq!(c.chat_did, "did:web:api.bsky.chat");
        assert_eq!(c.relays, vec!["https://bsky.network".to_owned()]);
        assert_eq!(c.blob_limit, 100 * 1024 * 1024);
        assert_eq!(c.log, "info");
        assert_eq!(c.admin_password, None);
        assert!(!c.dev);
        assert!(!c.allow_loopback);
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.public_url(), "https://pds.example.com");
    }

    #[test]
    fn hostname_is_required_outside_dev() {
        let e = load(&GlobalArgs::default(), &[], &[]).unwrap_err();
        assert_eq!(e.key, "hostname");
        assert!(e.to_string().starts_with("hostname: is not set"), "{e}");
        assert!(e.message.contains("PERCH_HOSTNAME"), "{e}");
    }

    #[test]
    fn dev_defaults_and_no_system_file() {
        let reader = |p: &Path| -> io::Result<String> { panic!("read {}", p.display()) };
        let c = Config::load_from(&dev(), &|_| None, &reader).unwrap();
        assert!(c.dev);
        assert_eq!(c.hostname, "localhost");
        assert_eq!(c.listen, "127.0.0.1:2583".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./perch-dev"));
        assert_eq!(c.tls, TlsMode::Off);
        assert_eq!(c.http_listen, None);
        assert_eq!(c.plc_url, "");
        assert!(c.relays.is_empty());
        assert_eq!(c.appview_url, DEFAULT_APPVIEW_URL);
        assert_eq!(c.public_url(), "http://localhost:2583");
        assert_eq!(Config::dev("/tmp/d").data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn dev_values_can_be_overridden() {
        let args = GlobalArgs {
            dev: true,
            config: Some("/c.toml".into()),
            ..GlobalArgs::default()
        };
        let c = load(
            &args,
            &[("PERCH_PLC_URL", "http://127.0.0.1:2582/")],
            &[(
                "/c.toml",
                "hostname = \"dev.example.com\"\nlisten = \"127.0.0.1:8080\"",
            )],
        )
        .unwrap();
        assert_eq!(c.hostname, "dev.example.com");
        assert_eq!(
            c.tls,
            TlsMode::Off,
            "dev stays plain HTTP unless tls is set"
        );
        assert_eq!(c.plc_url, "http://127.0.0.1:2582");
        assert_eq!(c.public_url(), "http://dev.example.com:8080");
    }

    #[test]
    fn precedence_flag_over_env_over_file_over_default() {
        let file = "hostname = \"file.example.com\"\n\
                    log = \"warn\"\n\
                    listen = \"10.0.0.1:1000\"\n\
                    data_dir = \"/from/file\"\n\
                    blob_limit = \"1MiB\"\n\
                    relays = [\"https://relay.file.example\"]\n";
        let env = [
            ("PERCH_LOG", "debug"),
            ("PERCH_LISTEN", "10.0.0.2:2000"),
            ("PERCH_DATA_DIR", "/from/env"),
            ("PERCH_RELAYS", "https://a.example, https://b.example/,"),
        ];
        let args = GlobalArgs {
            config: Some("/c.toml".into()),
            data_dir: Some("/from/flag".into()),
            listen: Some("10.0.0.3:3000".into()),
            dev: false,
        };
        let c = load(&args, &env, &[("/c.toml", file)]).unwrap();
        assert_eq!(c.hostname, "file.example.com"); // file only
        assert_eq!(c.blob_limit, 1 << 20); // file only
        assert_eq!(c.log, "debug"); // env over file
        assert_eq!(
            c.relays,
            vec![
                "https://a.example".to_owned(),
                "https://b.example".to_owned()
            ]
        );
        assert_eq!(c.listen, "10.0.0.3:3000".parse().unwrap()); // flag over env and file
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.chat_url, DEFAULT_CHAT_URL); // default
        assert_eq!(c.http_listen, Some("10.0.0.3:80".parse().unwrap()));

        // Without the flags, env wins; without env, the file.
        let no_flags = with_file("/c.toml");
        let c = load(&no_flags, &env, &[("/c.toml", file)]).unwrap();
        assert_eq!(c.listen, "10.0.0.2:2000".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/from/env"));
        let c = load(&no_flags, &[], &[("/c.toml", file)]).unwrap();
        assert_eq!(c.listen, "10.0.0.1:1000".parse().unwrap());
        assert_eq!(c.log, "warn");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load_toml("hostname = \"a.example.com\"\nfrobnicate = 1\n").unwrap_err();
        assert_eq!(e.key, "frobnicate");
        assert_eq!(e.origin.as_deref(), Some("/c.toml"));
        let text = e.to_string();
        assert!(text.starts_with("frobnicate: unknown key"), "{text}");
        assert!(text.contains("data_dir"), "lists the valid keys: {text}");

        let e = load_toml("data-dir = \"/x\"").unwrap_err();
        assert_eq!(e.key, "data-dir");
        assert!(e.message.contains("did you mean \"data_dir\""), "{e}");
        let e = load_toml("dev = true").unwrap_err();
        assert!(e.message.contains("--dev"), "{e}");
        // Tables are not keys perch knows either.
        let e = load_toml("[server]\nlisten = \"0.0.0.0:443\"").unwrap_err();
        assert_eq!(e.key, "server");
    }

    #[test]
    fn bad_listen_is_named_with_its_origin() {
        let e = load_toml("hostname = \"a.example.com\"\nlisten = \"foo\"").unwrap_err();
        assert_eq!(e.key, "listen");
        assert_eq!(
            e.to_string(),
            "listen: \"foo\" is not an address like 0.0.0.0:443; write IP:PORT, e.g. \
             \"0.0.0.0:443\", \"127.0.0.1:2583\" or \"[::]:443\" (from /c.toml)"
        );

        let e = load(&dev(), &[("PERCH_LISTEN", "localhost:80")], &[]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.origin.as_deref()),
            ("listen", Some("PERCH_LISTEN"))
        );

        let args = GlobalArgs {
            listen: Some("1.2.3.4".into()),
            ..dev()
        };
        let e = load(&args, &[], &[]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.origin.as_deref()),
            ("listen", Some("--listen"))
        );

        let e = load_toml("hostname = \"a.example.com\"\nlisten = 443").unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(
            e.message.contains("expected a string, found an integer"),
            "{e}"
        );
        assert!(e.message.contains("listen = \"0.0.0.0:443\""), "{e}");
    }

    #[test]
    fn backfill_hours_key() {
        let base = "hostname = \"pds.example.com\"\n";
        assert_eq!(
            load_toml(base).unwrap().backfill_hours,
            DEFAULT_BACKFILL_HOURS
        );
        assert_eq!(
            load_toml(&format!("{base}backfill_hours = 24"))
                .unwrap()
                .backfill_hours,
            24
        );
        for bad in [
            "backfill_hours = 0",
            "backfill_hours = -3",
            "backfill_hours = \"soon\"",
            "backfill_hours = 99999",
        ] {
            let e = load_toml(&format!("{base}{bad}")).unwrap_err();
            assert_eq!(e.key, "backfill_hours", "{bad}: {e}");
        }
    }

    #[test]
    fn backup_keys() {
        let base = "hostname = \"pds.example.com\"\ndata_dir = \"/var/lib/perch\"\n";
        let c = load_toml(base).unwrap();
        assert_eq!(c.backup_dir, None);
        assert_eq!(c.backup_interval_hours, 0);
        assert_eq!(c.backup_keep, DEFAULT_BACKUP_KEEP);
        let c = load_toml(&format!(
            "{base}backup_dir = \"/mnt/usb/b\"\nbackup_interval_hours = 24\nbackup_keep = 3\n"
        ))
        .unwrap();
        assert_eq!(c.backup_dir, Some(PathBuf::from("/mnt/usb/b")));
        assert_eq!(c.backup_interval_hours, 24);
        assert_eq!(c.backup_keep, 3);
        assert_eq!(load_toml(&c.redacted_toml()).unwrap(), c);
        let c = load(
            &with_file("/c.toml"),
            &[
                ("PERCH_BACKUP_DIR", "/b"),
                ("PERCH_BACKUP_INTERVAL_HOURS", "6"),
            ],
            &[("/c.toml", base)],
        )
        .unwrap();
        assert_eq!(
            (c.backup_dir, c.backup_interval_hours),
            (Some(PathBuf::from("/b")), 6)
        );
        for (bad, key) in [
            ("backup_interval_hours = 24", "backup_dir"),
            ("backup_dir = \"/var/lib/perch/backups\"", "backup_dir"),
            ("backup_interval_hours = -1", "backup_interval_hours"),
            ("backup_interval_hours = 99999", "backup_interval_hours"),
            ("backup_keep = 0", "backup_keep"),
            ("backup_keep = \"many\"", "backup_keep"),
        ] {
            let e = load_toml(&format!("{base}{bad}")).unwrap_err();
            assert_eq!(e.key, key, "{bad}: {e}");
        }
    }

    #[test]
    fn blob_limit_sizes() {
        assert_eq!(parse_size("5MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("5 mib"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("100B"), Ok(100));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "5XB",
            "0",
            "0MiB",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }

        let base = "hostname = \"a.example.com\"\n";
        let c = load_toml(&format!("{base}blob_limit = 1048576")).unwrap();
        assert_eq!(c.blob_limit, 1_048_576);
        let c = load_toml(&format!("{base}blob_limit = \"5MiB\"")).unwrap();
        assert_eq!(c.blob_limit, 5 * 1024 * 1024);
        let c = load(&dev(), &[("PERCH_BLOB_LIMIT", "5MB")], &[]).unwrap();
        assert_eq!(c.blob_limit, 5_000_000);

        for bad in [
            "blob_limit = -1",
            "blob_limit = 0",
            "blob_limit = \"lots\"",
            "blob_limit = 1.5",
        ] {
            let e = load_toml(&format!("{base}{bad}")).unwrap_err();
            assert_eq!(e.key, "blob_limit", "{bad}: {e}");
        }

        assert_eq!(format_size(100 * 1024 * 1024), "100MiB");
        assert_eq!(format_size(5_000_000), "5000000B");
        assert_eq!(parse_size(&format_size(3 << 30)), Ok(3 << 30));
    }

    #[test]
    fn tls_files_needs_cert_and_key() {
        let base = "hostname = \"a.example.com\"\ntls = \"files\"\n";
        let e = load_toml(base).unwrap_err();
        assert_eq!(e.key, "tls_cert");
        assert!(e.message.contains("tls = \"files\""), "{e}");
        let e = load_toml(&format!("{base}tls_cert = \"/c.pem\"")).unwrap_err();
        assert_eq!(e.key, "tls_key");
        let c = load_toml(&format!(
            "{base}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\""
        ))
        .unwrap();
        assert_eq!(c.tls, TlsMode::Files);
        assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.http_listen, None);
        assert_eq!(c.public_url(), "https://a.example.com");

        let e = load_toml("hostname = \"a.example.com\"\ntls = \"maybe\"").unwrap_err();
        assert_eq!(e.key, "tls");
    }

    #[test]
    fn tls_default_follows_hostname() {
        let c = load_toml("hostname = \"perch.local\"").unwrap();
        assert_eq!(c.tls, TlsMode::Off);
        assert_eq!(c.listen, "0.0.0.0:80".parse().unwrap());
        assert_eq!(c.public_url(), "http://perch.local");
        let c = load_toml("hostname = \"localhost\"").unwrap();
        assert_eq!(c.tls, TlsMode::Off);

        let e = load_toml("hostname = \"perch.local\"\ntls = \"acme\"").unwrap_err();
        assert_eq!(e.key, "tls");
        assert!(e.message.contains("public DNS name"), "{e}");
    }

    #[test]
    fn hostname_syntax() {
        let e = load_toml("hostname = \"pds.example.com:443\"").unwrap_err();
        assert_eq!(e.key, "hostname");
        assert!(e.message.contains("put the port in listen"), "{e}");
        let e = load_toml("hostname = \"127.0.0.1\"").unwrap_err();
        assert_eq!(e.key, "hostname");
        assert_eq!(e.origin.as_deref(), Some("/c.toml"));
    }

    #[test]
    fn other_value_checks() {
        let base = "hostname = \"a.example.com\"\n";
        let cases = [
            ("http_listen = \"0.0.0.0:443\"", "http_listen"),
            ("appview_did = \"api.bsky.app\"", "appview_did"),
            ("chat_url = \"api.bsky.chat\"", "chat_url"),
            ("relays = [\"bsky.network\"]", "relays"),
            ("relays = [1]", "relays"),
            ("trusted_proxies = [\"10.0.0.0/8\"]", "trusted_proxies"),
            ("acme_email = \"nobody\"", "acme_email"),
            ("log = \"perch=[\"", "log"),
            ("data_dir = \"\"", "data_dir"),
        ];
        for (line, key) in cases {
            let e = load_toml(&format!("{base}{line}")).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
            assert_eq!(e.origin.as_deref(), Some("/c.toml"), "{line}");
        }

        let c = load_toml(&format!(
            "{base}http_listen = \"\"\ntrusted_proxies = \"127.0.0.1, ::1\"\nplc_url = \"\""
        ))
        .unwrap();
        assert_eq!(c.http_listen, None);
        assert_eq!(c.plc_url, "");
        assert_eq!(
            c.trusted_proxies,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );

        let c = load(&dev(), &[("PERCH_ALLOW_LOOPBACK", "1")], &[]).unwrap();
        assert!(c.allow_loopback);
        let e = load(&dev(), &[("PERCH_ALLOW_LOOPBACK", "sure")], &[]).unwrap_err();
        assert_eq!(e.key, "PERCH_ALLOW_LOOPBACK");
    }

    #[test]
    fn redacted_output_hides_admin_password() {
        let c = load(&dev(), &[("PERCH_ADMIN_PASSWORD", "hunter2-secret")], &[]).unwrap();
        assert_eq!(c.admin_password.as_deref(), Some("hunter2-secret"));
        let shown = c.redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("admin_password = \"********\""), "{shown}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn redacted_toml_loads_back_to_the_same_config() {
        let file = "hostname = \"pds.example.com\"\n\
                    data_dir = \"/srv/perch \\\"data\\\"\"\n\
                    listen = \"[::]:8443\"\n\
                    tls = \"files\"\n\
                    tls_cert = \"/c.pem\"\n\
                    tls_key = \"/k.pem\"\n\
                    acme_email = \"me@example.com\"\n\
                    relays = [\"https://a.example\", \"https://b.example\"]\n\
                    blob_limit = \"5MB\"\n\
                    log = \"perch=debug,info\"\n\
                    trusted_proxies = [\"127.0.0.1\"]\n";
        let c = load_toml(file).unwrap();
        let again = load_toml(&c.redacted_toml()).unwrap();
        assert_eq!(c, again, "{}", c.redacted_toml());

        let d = Config::dev("/tmp/x");
        let args = GlobalArgs {
            config: Some("/c.toml".into()),
            ..dev()
        };
        let shown = d.redacted_toml();
        let again = load(&args, &[], &[("/c.toml", shown.as_str())]).unwrap();
        assert_eq!(d, again, "{shown}");
    }

    #[test]
    fn config_file_errors() {
        let e = load(&with_file("/nope/perch.toml"), &[], &[]).unwrap_err();
        assert_eq!(e.key, "--config");
        assert!(e.message.contains("/nope/perch.toml does not exist"), "{e}");

        // Also under --dev: an explicit file must exist.
        let args = GlobalArgs {
            config: Some("/nope/perch.toml".into()),
            ..dev()
        };
        assert_eq!(load(&args, &[], &[]).unwrap_err().key, "--config");

        let denied = |_: &Path| -> io::Result<String> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let e = Config::load_from(&GlobalArgs::default(), &|_| None, &denied).unwrap_err();
        assert_eq!(e.key, DEFAULT_CONFIG_PATH);

        let e = load_toml("hostname = ").unwrap_err();
        assert_eq!(e.key, "/c.toml");
        assert!(e.message.starts_with("not valid TOML"), "{e}");
    }

    #[test]
    fn public_url_forms() {
        let mut c = Config::dev("/tmp/x");
        assert_eq!(c.public_url(), "http://localhost:2583");
        c.listen = "127.0.0.1:80".parse().unwrap();
        assert_eq!(c.public_url(), "http://localhost");
        c.dev = false;
        c.tls = TlsMode::Acme;
        c.hostname = "pds.example.com".into();
        c.listen = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(c.public_url(), "https://pds.example.com");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
