//! The HTTPS front door against a real ACME CA (Debian's pebble on loopback, real
//! validation): issuance by TLS-ALPN-01 and by HTTP-01, HTTPS verified against the CA's root,
//! the certificate kept across a restart, renewal of short-lived certificates without a
//! restart or a failed request, and port 80's redirects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::pebble::{self, Pebble, Proc, free_port, http_get, https_get};
use crate::support::process::perch_cmd;

const HOST: &str = "pds.test";

struct Perch {
    proc: Option<Proc>,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    tls: SocketAddr,
    http: Option<SocketAddr>,
}

impl Perch {
    fn start(dir: &Path, pebble: &Pebble, tls_port: u16, http_port: Option<u16>) -> Perch {
        let tls: SocketAddr = ([127, 0, 0, 1], tls_port).into();
        let http = http_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let config = dir.join("perch.toml");
        let data = dir.join("data");
        std::fs::write(
            &config,
            format!(
                "hostname = \"{HOST}\"\n\
                 data_dir = \"{}\"\n\
                 tls = \"acme\"\n\
                 listen = \"{tls}\"\n\
                 http_listen = \"{}\"\n\
                 acme_directory = \"{}\"\n\
                 acme_ca_root = \"{}\"\n\
                 acme_email = \"admin@example.com\"\n\
                 plc_url = \"\"\n\
                 relays = []\n\
                 log = \"perch=debug,info\"\n",
                data.display(),
                http.map(|a| a.to_string()).unwrap_or_default(),
                pebble.directory,
                pebble.api_ca.display(),
            ),
        )
        .unwrap();
        let mut p = Perch {
            proc: None,
            data,
            config,
            log: dir.join("perch.log"),
            tls,
            http,
        };
        p.restart();
        p
    }

    fn restart(&mut self) {
        if let Some(mut old) = self.proc.take() {
            stop(&mut old);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = perch_cmd()
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints perch's certificate lines (issuance times) for the test output.
    fn report(&self, test: &str) {
        for line in self.log().lines().filter(|l| l.contains(" obtained by ")) {
            let what = line.split("perch::tls::acme: ").nth(1).unwrap_or(line);
            eprintln!("{test}: {what}");
        }
    }

    /// Waits until HTTPS verifies against `pebble`'s root; returns the served serial.
    async fn wait_for_https(&self, pebble: &Pebble) -> String {
        let roots = pebble.roots();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match https_get(self.tls, HOST, &roots, "/xrpc/_health").await {
                Ok(r) if r.status == 200 => return r.serial,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "no verified HTTPS after 120 s ({:?})\nperch log:\n{}\npebble log:\n{}",
                        other.err(),
                        self.log(),
                        pebble.log()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn stop(p: &mut Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issuance_https_and_restart_keeps_the_certificate() {
    if !pebble::available() {
        return;
    }
    let tls_port = free_port();
    // No port 80 listener: only TLS-ALPN-01 can succeed.
    let pebble = Pebble::start(tls_port, free_port(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut perch = Perch::start(dir.path(), &pebble, tls_port, None);
    let started = Instant::now();
    let serial = perch.wait_for_https(&pebble).await;
    eprintln!(
        "TLS-ALPN-01: first verified HTTPS response {:.2} s after start",
        started.elapsed().as_secs_f64()
    );
    perch.report("tls-alpn-01");
    let log = perch.log();
    assert_eq!(
        count(&log, "certificate for pds.test obtained by tls-alpn-01"),
        1,
        "{log}"
    );

    let roots = pebble.roots();
    let r = https_get(
        perch.tls,
        HOST,
        &roots,
        "/xrpc/com.atproto.server.describeServer",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("did:web:pds.test"), "{}", r.body);
    assert_eq!(
        r.headers.get("strict-transport-security").unwrap(),
        "max-age=63072000"
    );
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    assert!(
        r.headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );

    let r = https_get(perch.tls, HOST, &roots, "/readyz").await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(ready["tls"]["certificateExpiring"], false, "{ready}");
    assert!(
        ready["tls"]["certificateDaysLeft"].as_i64().unwrap() > 14,
        "{ready}"
    );
    assert!(!perch.log().contains("certificate expires in"));

    // Files under data_dir/acme are private.
    use std::os::unix::fs::PermissionsExt;
    let acme = perch.data.join("acme");
    for entry in std::fs::read_dir(&acme).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A restart serves the stored certificate and orders nothing.
    perch.restart();
    let again = perch.wait_for_https(&pebble).await;
    assert_eq!(again, serial, "same certificate after restart");
    let log = perch.log();
    assert_eq!(count(&log, "certificate for pds.test obtained"), 1, "{log}");
    assert!(
        log.contains("serving the stored certificate for pds.test"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_when_tls_alpn_01_cannot_be_validated_and_port_80_redirects() {
    if !pebble::available() {
        return;
    }
    let (tls_port, http_port) = (free_port(), free_port());
    // pebble dials a closed port for TLS-ALPN-01, so that validation fails for real and perch
    // has to fall back to HTTP-01 on its port-80 listener.
    let pebble = Pebble::start(free_port(), http_port, None).await;
    let dir = tempfile::tempdir().unwrap();
    let perch = Perch::start(dir.path(), &pebble, tls_port, Some(http_port));
    let started = Instant::now();
    perch.wait_for_https(&pebble).await;
    eprintln!(
        "HTTP-01 after a failed TLS-ALPN-01: first verified HTTPS response {:.2} s after start",
        started.elapsed().as_secs_f64()
    );
    perch.report("http-01 fallback");
    let log = perch.log();
    assert!(log.contains("TlsAlpn01 did not work"), "{log}");
    assert_eq!(
        count(&log, "certificate for pds.test obtained by http-01"),
        1,
        "{log}"
    );

    // Port 80: XRPC is redirected to HTTPS on the configured name, never served in the clear.
    let http = perch.http.unwrap();
    let (status, headers) = http_get(
        http,
        "evil.example",
        "/xrpc/com.atproto.server.describeServer?x=1",
    )
    .await
    .unwrap();
    assert_eq!(status, 308);
    assert_eq!(
        headers.get("location").unwrap(),
        "https://pds.test/xrpc/com.atproto.server.describeServer?x=1"
    );
    let (status, _) = http_get(http, HOST, "/.well-known/acme-challenge/unknown")
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = http_get(http, HOST, "/livez").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_renew_without_restart_or_failed_requests() {
    if !pebble::available() {
        return;
    }
    let tls_port = free_port();
    // 12-second certificates: renewal is due 4 s before expiry.
    let pebble = Pebble::start(tls_port, free_port(), Some(12)).await;
    let dir = tempfile::tempdir().unwrap();
    let perch = Perch::start(dir.path(), &pebble, tls_port, None);
    let first = perch.wait_for_https(&pebble).await;
    let roots = pebble.roots();
    let mut serials = vec![first];
    let mut requests = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    // A client keeps making fresh, verified connections the whole time.
    while serials.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "saw {} certificate(s) in 60 s\n{}",
            serials.len(),
            perch.log()
        );
        let r = https_get(perch.tls, HOST, &roots, "/xrpc/_health")
            .await
            .unwrap_or_else(|e| panic!("request {requests} failed: {e}\n{}", perch.log()));
        assert_eq!(r.status, 200);
        requests += 1;
        if serials.last() != Some(&r.serial) {
            serials.push(r.serial);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "renewal: {} certificates served, {requests} verified requests, none failed",
        serials.len()
    );
    perch.report("renewal");
    let log = perch.log();
    assert!(
        count(&log, "certificate for pds.test obtained") >= 3,
        "{log}"
    );
    // Certificates this short are always about to expire: said once, not at every renewal.
    assert_eq!(
        count(&log, "the TLS certificate expires in 0 day(s)"),
        1,
        "{log}"
    );
    let r = https_get(perch.tls, HOST, &roots, "/readyz").await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(ready["tls"]["certificateExpiring"], true, "{ready}");
    assert_eq!(ready["tls"]["certificateDaysLeft"], 0, "{ready}");
}
