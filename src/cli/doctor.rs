//! `perch doctor`: the checks a self-hoster would otherwise do by hand, one line each, OK /
//! WARN / FAIL with the fix in one sentence. It reads and asks; it never changes anything.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::CliError;
use crate::config::{Config, TlsMode};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    worst: Level,
}

impl Report {
    fn line(&mut self, level: Level, topic: &str, what: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{tag} {topic:<12} {}", what.as_ref());
        self.worst = self.worst.max(level);
    }
}

pub fn run(config: &Config) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start the runtime: {e}")))?;
    let mut r = Report { worst: Level::Ok };
    rt.block_on(checks(config, &mut r));
    match r.worst {
        Level::Fail => Err(CliError::Message(
            "some checks failed; see the FAIL lines above".into(),
        )),
        _ => Ok(()),
    }
}

async fn checks(c: &Config, r: &mut Report) {
    let resolved = dns(c, r).await;
    listeners(c, r, &resolved);
    certificate(c, r);
    clock(c, r).await;
    let account = database(c, r);
    disk(c, r);
    backups(c, r);
    if let Some((did, handle)) = account {
        identity(c, r, &did, &handle).await;
    }
}

/// Whether `ip` is one of this machine's addresses (binding to it works only then).
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The hostname's addresses, each reported.
async fn dns(c: &Config, r: &mut Report) -> Vec<IpAddr> {
    if c.dev || c.hostname == "localhost" {
        r.line(Level::Ok, "dns", "development hostname; no DNS needed");
        return Vec::new();
    }
    let lookup = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((c.hostname.as_str(), 443)),
    )
    .await;
    let addrs: Vec<IpAddr> = match lookup {
        Ok(Ok(it)) => {
            let mut v: Vec<IpAddr> = it.map(|a| a.ip()).collect();
            v.sort();
            v.dedup();
            v
        }
        _ => Vec::new(),
    };
    if addrs.is_empty() {
        r.line(
            Level::Fail,
            "dns",
            format!(
                "{} does not resolve; add an A record (and AAAA for IPv6) pointing to your \
                 router's public address",
                c.hostname
            ),
        );
        return addrs;
    }
    for &ip in &addrs {
        if is_local_address(ip) && !crate::net::is_private(ip) {
            r.line(
                Level::Ok,
                "dns",
                format!("{} → {ip}, an address of this machine", c.hostname),
            );
        } else if crate::net::is_private(ip) {
            r.line(
                Level::Warn,
                "dns",
                format!(
                    "{} → {ip} is a private address the rest of the network cannot reach; \
                     point the record at your router's public address",
                    c.hostname
                ),
            );
        } else {
            r.line(
                Level::Ok,
                "dns",
                format!(
                    "{} → {ip} (not on this machine: make sure your router forwards ports 80 \
                     and 443 from it to this box)",
                    c.hostname
                ),
            );
        }
    }
    addrs
}

/// Something accepts on `addr` (unspecified addresses are tried on loopback: `[::]` on both
/// families, as perch's dual-stack listener takes both).
fn accepts(addr: SocketAddr) -> bool {
    let lo4 = SocketAddr::new([127, 0, 0, 1].into(), addr.port());
    let lo6 = SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port());
    let targets = match addr {
        a if !a.ip().is_unspecified() => vec![a],
        a if a.is_ipv4() => vec![lo4],
        // IPv6 turned off on the host: perch falls back to IPv4 alone.
        _ if std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_err() => {
            vec![lo4]
        }
        _ => vec![lo6, lo4],
    };
    targets
        .iter()
        .all(|t| TcpStream::connect_timeout(t, Duration::from_secs(2)).is_ok())
}

fn listeners(c: &Config, r: &mut Report, resolved: &[IpAddr]) {
    let has_aaaa = resolved.iter().any(IpAddr::is_ipv6);
    if has_aaaa && c.listen.is_ipv4() {
        r.line(
            Level::Warn,
            "listener",
            format!(
                "{} has an AAAA (IPv6) record but listen = \"{}\" takes IPv4 only, so IPv6 \
                 clients fail; set listen = \"[::]:{}\" (both families) or remove the AAAA \
                 record",
                c.hostname,
                c.listen,
                c.listen.port()
            ),
        );
    }
    let mut ports = vec![("listen", c.listen)];
    if c.tls != TlsMode::Off
        && let Some(a) = c.http_listen
    {
        ports.push(("http_listen", a));
    }
    for (key, addr) in ports {
        if accepts(addr) {
            r.line(
                Level::Ok,
                "listener",
                format!("{addr} ({key}) is accepting connections"),
            );
        } else {
            r.line(
                Level::Fail,
                "listener",
                format!(
                    "nothing accepts on {addr} ({key}); start perch (systemctl start perch) and \
                     check its log (journalctl -u perch)"
                ),
            );
        }
    }
}

fn certificate(c: &Config, r: &mut Report) {
    let loaded = match c.tls {
        TlsMode::Off => {
            r.line(
                Level::Ok,
                "certificate",
                "tls = \"off\": HTTPS is expected from a reverse proxy in front of perch",
            );
            return;
        }
        TlsMode::Files => crate::tls::files::load(c),
        TlsMode::Acme => {
            let store = crate::tls::store::AcmeStore::new(&c.data_dir);
            match store.cert(&c.hostname, &c.acme_directory) {
                Ok(Some(s)) => crate::tls::load_pem(s.chain_pem.as_bytes(), s.key_pem.as_bytes())
                    .map_err(|e| e.to_string()),
                Ok(None) => {
                    r.line(
                        Level::Warn,
                        "certificate",
                        format!(
                            "none obtained yet for {}; perch keeps trying while it runs: see \
                             /readyz on port 80 or journalctl -u perch for the CA's answer",
                            c.hostname
                        ),
                    );
                    return;
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match loaded {
        Ok(cert) => {
            let days = (cert.info.not_after - crate::clock::unix_secs()) / 86_400;
            let level = if days < 0 {
                Level::Fail
            } else if days < crate::tls::EXPIRY_WARNING_DAYS {
                Level::Warn
            } else {
                Level::Ok
            };
            let fix = match (level, c.tls) {
                (Level::Ok, _) => String::new(),
                (_, TlsMode::Acme) => "; perch renews it by itself when running: check journalctl -u perch for renewal errors".into(),
                _ => "; replace the files and run systemctl reload perch".into(),
            };
            r.line(
                level,
                "certificate",
                format!("serial {}, {days} day(s) left{fix}", cert.info.serial),
            );
        }
        Err(e) => r.line(
            Level::Fail,
            "certificate",
            format!("{e}; fix the certificate files or use tls = \"acme\""),
        ),
    }
}

/// Compares our clock with the `Date` header of a well-known server.
async fn clock(c: &Config, r: &mut Report) {
    let url = if c.plc_url.is_empty() {
        c.appview_url.clone()
    } else {
        c.plc_url.clone()
    };
    let net = crate::net::Net::new(true);
    let req =
        hyper::Request::head(url.as_str()).body(http_body_util::Full::new(bytes::Bytes::new()));
    let date = match req {
        Ok(req) => net.send(req).await.ok().and_then(|resp| {
            resp.headers()
                .get(hyper::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date)
        }),
        Err(_) => None,
    };
    let Some(remote) = date else {
        r.line(
            Level::Warn,
            "clock",
            format!(
                "could not compare with {url}; make sure the box has network and NTP (timedatectl)"
            ),
        );
        return;
    };
    let skew = crate::clock::unix_secs() - remote;
    if skew.abs() > 300 {
        r.line(
            Level::Fail,
            "clock",
            format!("{skew} s off from {url}; turn on NTP (timedatectl set-ntp true): tokens and certificates depend on it"),
        );
    } else {
        r.line(
            Level::Ok,
            "clock",
            format!("within {} s of {url}", skew.abs().max(1)),
        );
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    let t: Vec<&str> = time.split(':').collect();
    let [h, m, sec] = t.as_slice() else {
        return None;
    };
    // Reuse the certificate time parser: GeneralizedTime is YYYYMMDDHHMMSSZ.
    let generalized = format!("{year:0>4}{month:02}{day:0>2}{h:0>2}{m:0>2}{sec:0>2}Z");
    crate::tls::x509::generalized_time(&generalized)
}

/// The user name of `uid` from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2)? == &uid.to_string().as_str()).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Who to run doctor as, for a data dir this user cannot use.
fn run_as_hint(data_dir: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(data_dir).map(|m| m.uid()) {
        Ok(0) | Err(_) => "run it as root: sudo perch doctor".to_owned(),
        Ok(owner) => {
            let name = user_name(owner);
            format!("it belongs to {name}: run sudo perch doctor (or sudo -u {name} perch doctor)")
        }
    }
}

/// Why this user cannot read the database (or write beside it, which SQLite needs to read a
/// database in WAL mode), if that is the case.
fn access_problem(data_dir: &std::path::Path, db: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if let Err(e) = std::fs::File::open(db) {
        return (e.kind() == std::io::ErrorKind::PermissionDenied)
            .then(|| format!("{}: {e}", db.display()));
    }
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    let owner = std::fs::metadata(data_dir).ok()?.uid();
    (me != 0 && me != owner)
        .then(|| format!("{} belongs to {}", data_dir.display(), user_name(owner)))
}

/// Opens the database read-only: integrity and the account.
fn database(c: &Config, r: &mut Report) -> Option<(String, String)> {
    let path = c.data_dir.join("perch.sqlite");
    match path.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            r.line(
                Level::Fail,
                "database",
                format!(
                    "{} does not exist; run perch init (or perch account create)",
                    path.display()
                ),
            );
            return None;
        }
        Err(e) => {
            r.line(
                Level::Warn,
                "database",
                format!(
                    "cannot look into {} ({e}); {}",
                    c.data_dir.display(),
                    run_as_hint(&c.data_dir)
                ),
            );
            return None;
        }
    }
    // Permission problems are this user's, not the database's: never advise a restore then.
    let blocked = access_problem(&c.data_dir, &path);
    let conn = match crate::store::snapshot::open_read_only(&path) {
        Ok(c) => c,
        Err(e) => {
            match &blocked {
                Some(why) => r.line(
                    Level::Warn,
                    "database",
                    format!(
                        "cannot open {} as this user ({why}); {}",
                        path.display(),
                        run_as_hint(&c.data_dir)
                    ),
                ),
                None => r.line(
                    Level::Fail,
                    "database",
                    format!(
                        "cannot open {}: {e}; check its owner (perch) and permissions",
                        path.display()
                    ),
                ),
            }
            return None;
        }
    };
    match crate::store::snapshot::quick_check(&conn) {
        Ok(s) if s == "ok" => r.line(Level::Ok, "database", "quick_check ok"),
        Ok(s) => r.line(
            Level::Fail,
            "database",
            format!(
                "quick_check: {s}; stop perch and restore the latest backup (perch restore \
                 BACKUP --force)"
            ),
        ),
        Err(e) if blocked.is_some() => r.line(
            Level::Warn,
            "database",
            format!(
                "cannot check {} as this user ({e}; {}); {}",
                path.display(),
                blocked.as_deref().unwrap_or_default(),
                run_as_hint(&c.data_dir)
            ),
        ),
        Err(e) => r.line(
            Level::Fail,
            "database",
            format!(
                "quick_check failed: {e}; stop perch and restore the latest backup (perch \
                 restore BACKUP --force)"
            ),
        ),
    }
    match crate::store::account::get_account(&conn) {
        Ok(Some(a)) => {
            r.line(
                Level::Ok,
                "account",
                format!("{} ({}), {}", a.handle, a.did, a.status),
            );
            Some((a.did, a.handle))
        }
        Ok(None) => {
            r.line(
                Level::Fail,
                "account",
                "no account yet; run perch init or perch account create",
            );
            None
        }
        Err(e) => {
            r.line(
                Level::Fail,
                "account",
                format!("cannot read the account: {e}"),
            );
            None
        }
    }
}

fn disk(c: &Config, r: &mut Report) {
    let avail_kib = crate::fsutil::free_bytes(&c.data_dir).map(|b| b / 1024);
    match avail_kib {
        Some(k) if k < 512 * 1024 => r.line(
            Level::Fail,
            "disk",
            format!(
                "only {} MiB free under {}; free space or move data_dir to a bigger disk",
                k / 1024,
                c.data_dir.display()
            ),
        ),
        Some(k) if k < 2 * 1024 * 1024 => r.line(
            Level::Warn,
            "disk",
            format!(
                "{} MiB free under {}; blobs will fill it soon",
                k / 1024,
                c.data_dir.display()
            ),
        ),
        Some(k) => r.line(
            Level::Ok,
            "disk",
            format!(
                "{:.1} GiB free under {}",
                k as f64 / 1_048_576.0,
                c.data_dir.display()
            ),
        ),
        None => r.line(
            Level::Warn,
            "disk",
            "could not measure free space (df failed)",
        ),
    }
}

fn backups(c: &Config, r: &mut Report) {
    use crate::backup::schedule::{Health, health};
    if c.dev {
        r.line(
            Level::Ok,
            "backup",
            "development server; no backups expected",
        );
        return;
    }
    let now = crate::clock::unix_millis();
    match health(c.backup_dir.as_deref(), c.backup_interval_hours, now) {
        Health::Ok(m) => r.line(Level::Ok, "backup", m),
        Health::Warn(m) => r.line(Level::Warn, "backup", m),
    }
}

async fn identity(c: &Config, r: &mut Report, did: &str, handle: &str) {
    let net = crate::net::Net::new(true);
    let doc = match crate::identity::resolve::did_document(&net, &c.plc_url, did).await {
        Ok(d) => d,
        Err(e) => {
            r.line(
                Level::Fail,
                "did",
                format!("{e}; the network cannot find your account until this resolves"),
            );
            return;
        }
    };
    let endpoint = crate::identity::resolve::service_endpoint(&doc, "atproto_pds");
    let ours = c.public_url();
    if endpoint.as_deref().map(|e| e.trim_end_matches('/')) == Some(ours.as_str()) {
        r.line(Level::Ok, "did", format!("{did} points to {ours}"));
    } else {
        r.line(
            Level::Fail,
            "did",
            format!(
                "{did} names PDS {} but this server is {ours}; update the DID document \
                 (perch account plc-token, then the PLC operation) or fix hostname",
                endpoint.unwrap_or_else(|| "none".into())
            ),
        );
    }
    let key = crate::identity::resolve::signing_key(&doc);
    let our_key = crate::keys::KeyDir::open(&c.data_dir)
        .ok()
        .and_then(|k| k.keypair(crate::keys::REPO_KEY).ok().flatten())
        .map(|k| k.did_key());
    match (key, our_key) {
        (Some(k), Some(ours)) if k == ours => r.line(
            Level::Ok,
            "signing key",
            "the DID document lists this server's repo key",
        ),
        (k, _) => r.line(
            Level::Fail,
            "signing key",
            format!(
                "the DID document's key ({}) is not this server's repo key; relays will reject \
                 our commits until the DID document is updated",
                k.unwrap_or_else(|| "none".into())
            ),
        ),
    }
    match crate::identity::resolve::handle_to_did(&net, &c.plc_url, handle).await {
        Ok(d) if d == did => r.line(
            Level::Ok,
            "handle",
            format!("{handle} → {did} → {handle} (both ways)"),
        ),
        Ok(d) => r.line(
            Level::Fail,
            "handle",
            format!("{handle} resolves to {d}, not {did}; fix the _atproto TXT record"),
        ),
        Err(e) => r.line(
            Level::Fail,
            "handle",
            format!(
                "{handle} does not resolve to {did} ({e}); add a TXT record _atproto.{handle} \
                 with did={did}, or serve it from this host"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Fri, 27 Nov 2026 19:00:00 GMT"),
            Some(1_795_806_000)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn loopback_is_local_and_documentation_addresses_are_not() {
        assert!(is_local_address([127, 0, 0, 1].into()));
        assert!(!is_local_address([192, 0, 2, 1].into()));
    }

    #[test]
    fn an_aaaa_record_wants_a_listener_that_takes_ipv6() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        // Dual-stack wildcard (Linux's default for [::] unless bindv6only is set).
        let Ok(dual) = std::net::TcpListener::bind("[::]:0") else {
            return; // no IPv6 on this host
        };
        let mut c = Config::dev("/nonexistent");
        c.listen = dual.local_addr().unwrap();
        let mut r = Report { worst: Level::Ok };
        listeners(&c, &mut r, &[v6]);
        assert!(r.worst == Level::Ok, "[::] takes both families");

        let v4only = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        c.listen = v4only.local_addr().unwrap();
        let mut r = Report { worst: Level::Ok };
        listeners(&c, &mut r, &[[192, 0, 2, 1].into()]);
        assert!(r.worst == Level::Ok, "no AAAA record: IPv4 alone is fine");
        let mut r = Report { worst: Level::Ok };
        listeners(&c, &mut r, &[v6]);
        assert!(r.worst == Level::Warn, "AAAA record, IPv4-only listener");
    }
}
