//! The config keys: each declared once, here. A key's entry gives its field type, its kind
//! (how it is parsed and shown, in `kinds.rs`), its default, an example right-hand side for
//! error messages, and optionally its `--dev` value, what its "off" value means, its check
//! (in `check.rs`) and flags. From the entry come the `Config` field, the file key, the
//! `PERCH_<KEY>` variable, its `config show` line and its place in `Debug`; a new key is one
//! entry here plus the code that uses it (and a commented line in `packaging/perch.toml`,
//! which a test asks for).
//!
//! Order is `config show` order. Rules that span keys live in `check.rs`, and three defaults
//! that depend on other keys in [`derive_defaults`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::check;
use super::kinds::{
    AcmeUrl, Addr, Count, Dir, EnvSwitch, Hostname, Ips, OptAddr, OptPath, OptText, Size, Switch,
    Text, Tls, Url, Urls,
};
use super::layers::Layers;
use super::table::{Check, KeySpec, SECRET, TEST_ONLY, Visit, config_keys, spec};
use super::{ConfigError, DEFAULT_ACME_DIRECTORY, TlsMode};

config_keys! {
    /// The PDS's DNS name (lower-case), e.g. `pds.example.com`; `localhost` in dev.
    hostname: String as Hostname = String::new(), example "\"pds.example.com\"",
        dev "localhost", check check::hostname;
    /// Database, blob files and keys (systemd `StateDirectory=perch`).
    data_dir: PathBuf as Dir = PathBuf::from("/var/lib/perch"), example "\"/var/lib/perch\"",
        dev "./perch-dev";
    /// Main listener (HTTPS unless `tls` is off); `[::]` is every IPv6 and IPv4 address.
    /// Default: port 443 with TLS, 80 without ([`derive_defaults`]).
    listen: SocketAddr as Addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 80)),
        example "\"[::]:443\"", dev "127.0.0.1:2583";
    /// Plain-HTTP listener for ACME HTTP-01 and redirects to HTTPS.
    /// Default: port 80 on the `listen` address when `tls = "acme"` ([`derive_defaults`]).
    http_listen: Option<SocketAddr> as OptAddr = None, example "\"[::]:80\"", off "off";
    /// How the HTTPS listener gets its certificate.
    /// Default: `acme` for a public hostname outside `--dev` ([`derive_defaults`]).
    tls: TlsMode as Tls = TlsMode::Off, example "\"acme\"", dev "off";
    /// Certificate (PEM) for `tls = "files"`.
    tls_cert: Option<PathBuf> as OptPath = None, example "\"/etc/perch/cert.pem\"";
    /// Private key (PEM) for `tls = "files"`.
    tls_key: Option<PathBuf> as OptPath = None, example "\"/etc/perch/key.pem\"";
    /// The ACME server's directory URL; `"staging"` is Let's Encrypt's staging one.
    acme_directory: String as AcmeUrl = DEFAULT_ACME_DIRECTORY.to_owned(),
        example "\"https://acme-v02.api.letsencrypt.org/directory\"";
    /// Contact address given to the ACME CA (account recovery; Let's Encrypt no longer mails
    /// expiry warnings: perch warns itself, in doctor, `/readyz`, the log and `/metrics`).
    acme_email: Option<String> as OptText = None, example "\"you@example.com\"",
        check check::email;
    /// Extra trusted root (PEM) for the ACME server's own HTTPS, for test CAs like pebble.
    acme_ca_root: Option<PathBuf> as OptPath = None, example "\"/etc/perch/test-ca.pem\"";
    /// Serve Prometheus `/metrics` (to loopback, or with the admin password).
    metrics: bool as Switch = false, example "true";
    /// Connections served at once; more are accepted and closed at once.
    max_connections: u64 as Count = 1024, example "1024";
    /// Connections one address may hold; a home NAT puts a household behind one address.
    max_connections_per_ip: u64 as Count = 64, example "64";
    /// Firehose subscribers at once (they hold no connection slot).
    /// Beyond, the oldest of the address with the most makes way. A PDS has a handful: the
    /// relays.
    max_subscribers: u64 as Count = 256, example "256";
    /// Firehose subscribers of one address (IPv6: one /64).
    /// Beyond, its own oldest makes way.
    max_subscribers_per_ip: u64 as Count = 16, example "16";
    /// PLC directory base URL without a trailing '/'; empty means "no PLC" (dev).
    plc_url: String as Url = "https://plc.directory".to_owned(),
        example "\"https://plc.directory\"", dev "", off "no PLC directory", check check::url;
    /// Where `app.bsky.*` requests from the owner's apps are forwarded.
    appview_url: String as Url = "https://api.bsky.app".to_owned(),
        example "\"https://api.bsky.app\"", check check::url;
    /// The AppView's DID, the audience of the service tokens sent to it.
    appview_did: String as Text = "did:web:api.bsky.app".to_owned(),
        example "\"did:web:api.bsky.app\"", check check::did;
    /// Where `chat.bsky.*` requests are forwarded.
    chat_url: String as Url = "https://api.bsky.chat".to_owned(),
        example "\"https://api.bsky.chat\"", check check::url;
    /// The chat service's DID.
    chat_did: String as Text = "did:web:api.bsky.chat".to_owned(),
        example "\"did:web:api.bsky.chat\"", check check::did;
    /// Relays this server watches and asks to crawl it when they stop following it.
    relays: Vec<String> as Urls = vec!["https://bsky.network".to_owned()],
        example "[\"https://bsky.network\"]", dev "", check check::urls;
    /// Largest accepted blob, in bytes (default 100 MiB).
    blob_limit: u64 as Size = 100 * 1024 * 1024, example "\"100MiB\"", check check::size;
    /// How far back a firehose cursor may reach; older events are trimmed.
    /// The reference keeps 24 h; relays that were down over a weekend need more.
    backfill_hours: u64 as Count = 72, example "72", check check::between::<1, 8760>;
    /// Where `perch backup` (without DIR) and scheduled backups go.
    backup_dir: Option<PathBuf> as OptPath = None, example "\"/mnt/usb/perch-backups\"";
    /// Hours between scheduled backups; 0 = none.
    backup_interval_hours: u64 as Count = 0, example "24", off "no scheduled backups",
        check check::between::<0, 8760>;
    /// How many backups the scheduled task keeps (a week of daily ones).
    backup_keep: u64 as Count = 7, example "7", check check::between::<1, 10_000>;
    /// `tracing` filter directive, e.g. `info` or `perch=debug,info`.
    log: String as Text = "info".to_owned(), example "\"info\"", check check::log_filter;
    /// Password for admin requests (HTTP basic auth).
    admin_password: Option<String> as OptText = None, example "\"a long random string\"",
        flags SECRET;
    /// Mail relay for the owner's codes (email confirmation, password reset, deletion).
    /// `smtps://user:password@host:465` (TLS) or `smtp://user:password@host:587` (STARTTLS
    /// required, except to a relay on this machine). Unset: no mail; `perch account codes`
    /// shows the codes.
    smtp_url: Option<String> as OptText = None,
        example "\"smtps://you%40example.com:app-password@smtp.example.com\"",
        check check::smtp_url, flags SECRET;
    /// The From address of perch's mail (default: perch@ and the hostname).
    email_from: Option<String> as OptText = None, example "\"perch@example.com\"",
        check check::email;
    /// outbound requests may reach loopback
    /// (dev and tests only: set by its environment variable, never by the file).
    allow_loopback: bool as EnvSwitch = false, example "1", flags TEST_ONLY;
    /// seconds between checks of the relays' view of this server; 0 = every 30 minutes
    /// (tests only: set by its environment variable, never by the file).
    relay_check_secs: u64 as Count = 0, example "2", flags TEST_ONLY;
    /// Peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<IpAddr> as Ips = Vec::new(), example "[\"127.0.0.1\"]";
}

/// The defaults that depend on other keys, for those keys left unset: `tls` is `acme` when
/// the hostname is a public DNS name and `--dev` is off; `listen` is port 443 with TLS;
/// `http_listen` is port 80 on the `listen` address under ACME (HTTP-01 challenges and
/// redirects).
pub(super) fn derive_defaults(c: &mut Config, is_set: impl Fn(&str) -> bool) {
    if !is_set("tls") && !c.dev && check::is_public_hostname(&c.hostname) {
        c.tls = TlsMode::Acme;
    }
    if !is_set("listen") && c.tls != TlsMode::Off {
        c.listen.set_port(443);
    }
    if !is_set("http_listen") && c.tls == TlsMode::Acme && c.listen.port() != 80 {
        c.http_listen = Some(SocketAddr::new(c.listen.ip(), 80));
    }
}
