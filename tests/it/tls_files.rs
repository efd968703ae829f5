//! `tls = "files"`: the certificate is read at start and again on SIGHUP, a bad reload keeps
//! the old certificate, and `/metrics` reports it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::pebble::{self, Proc, free_port, https_get};
use crate::support::process::perch_cmd;

struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        issuer: rcgen::Issuer::new(params, key),
        pem: cert.pem(),
    }
}

/// A leaf for pds.test: (chain PEM, key PEM).
fn leaf(ca: &Ca) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pds.test".to_owned()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_reload_on_sighup_and_metrics_report_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca();
    let roots = pebble::roots_from_pem(ca.pem.as_bytes());
    let (cert1, key1) = leaf(&ca);
    std::fs::write(d.join("cert.pem"), &cert1).unwrap();
    std::fs::write(d.join("key.pem"), &key1).unwrap();
    let port = free_port();
    std::fs::write(
        d.join("perch.toml"),
        format!(
            "hostname = \"pds.test\"\ndata_dir = \"{0}/data\"\ntls = \"files\"\n\
             tls_cert = \"{0}/cert.pem\"\ntls_key = \"{0}/key.pem\"\n\
             listen = \"127.0.0.1:{port}\"\nhttp_listen = \"\"\nplc_url = \"\"\nrelays = []\n\
             metrics = true\n",
            d.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("perch.log")).unwrap();
    let child = perch_cmd()
        .arg("--config")
        .arg(d.join("perch.toml"))
        .arg("serve")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let perch = Proc(child);
    let addr = ([127, 0, 0, 1], port).into();
    let serial_now = || async { https_get(addr, "pds.test", &roots, "/xrpc/_health").await };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match serial_now().await {
            Ok(r) => break r.serial,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no HTTPS: {e}"),
        }
    };
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &perch.0.id().to_string()])
            .status()
            .unwrap();
    };

    // New files, SIGHUP: the new certificate is served without a restart.
    let (cert2, key2) = leaf(&ca);
    std::fs::write(d.join("cert.pem"), &cert2).unwrap();
    std::fs::write(d.join("key.pem"), &key2).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let s = serial_now().await.unwrap().serial;
        if s != first {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A key that does not match: the reload is refused and the good certificate stays.
    let (_, foreign_key) = leaf(&ca);
    std::fs::write(d.join("key.pem"), &foreign_key).unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(serial_now().await.unwrap().serial, second);
    let logged = std::fs::read_to_string(d.join("perch.log")).unwrap();
    assert!(logged.contains("certificate reload failed"), "{logged}");

    // The firehose upgrades to a WebSocket over TLS (relays connect with wss://).
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(std::sync::Arc::clone(&roots))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("pds.test").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (_ws, resp) =
        tokio_tungstenite::client_async("wss://pds.test/xrpc/com.atproto.sync.subscribeRepos", tls)
            .await
            .expect("WebSocket upgrade over TLS");
    assert_eq!(resp.status(), 101);

    // Metrics (loopback may read them).
    let m = https_get(addr, "pds.test", &roots, "/metrics")
        .await
        .unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("perch_tls_certificate_expiry_timestamp_seconds "),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("perch_http_requests_total{class=\"2xx\"}"),
        "{}",
        m.body
    );
    let ok: u64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("perch_http_requests_total{class=\"2xx\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok >= 3, "{ok} successful requests counted");
}
