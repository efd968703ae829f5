//! A real ACME CA on loopback: Debian's `pebble` with `pebble-challtestsrv` as its DNS
//! (every name resolves to 127.0.0.1), doing real TLS-ALPN-01 and HTTP-01 validation, and a
//! TLS client that trusts pebble's issuing root, for tests of the HTTPS front door.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A port free on 127.0.0.1 for both TCP and UDP (challtestsrv's DNS uses both).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Kills the child on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// Trust anchor for pebble's own HTTPS API (give it to perch as `acme_ca_root`).
    pub api_ca: PathBuf,
    /// pebble's issuing root, which a client must trust to verify perch.
    pub issuing_root: CertificateDer<'static>,
    _procs: Vec<Proc>,
}

/// Whether pebble is installed; under CI its absence is a failure, elsewhere a skip.
pub fn available() -> bool {
    let found = Command::new("pebble")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "pebble is not installed (apt-get install pebble)"
        );
        eprintln!("pebble is not installed: skipping (apt-get install pebble)");
    }
    found
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::write(path, data).unwrap();
}

impl Pebble {
    /// Starts pebble validating TLS-ALPN-01 on `tls_port` and HTTP-01 on `http_port` of
    /// 127.0.0.1; `validity` in seconds (pebble's default is five years).
    pub async fn start(tls_port: u16, http_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // pebble's API is HTTPS-only and Debian ships no certificate for it.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "perch test pebble API CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let api_ca = d.join("api-ca.pem");
        write(&api_ca, ca_cert.pem());
        write(&d.join("api.pem"), cert.pem());
        write(&d.join("api.key"), key.serialize_pem());

        let (api, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": d.join("api.pem"),
            "privateKey": d.join("api.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity.unwrap_or(157_766_400),
        }});
        write(&d.join("pebble.json"), config.to_string());
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let dns_proc = Proc(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err"))
                .spawn()
                .unwrap(),
        );
        let pebble_proc = Proc(
            Command::new("pebble")
                .arg("-config")
                .arg(d.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}"), "-strict=false"])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err"))
                .spawn()
                .unwrap(),
        );
        let api_roots = roots_from_pem(&std::fs::read(&api_ca).unwrap());
        let mgmt_addr: SocketAddr = ([127, 0, 0, 1], mgmt).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        let root_pem = loop {
            match https_get(mgmt_addr, "localhost", &api_roots, "/roots/0").await {
                Ok(r) if r.status == 200 => break r.body,
                _ if Instant::now() > deadline => {
                    panic!(
                        "pebble did not start: {}",
                        std::fs::read_to_string(d.join("pebble.log")).unwrap_or_default()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let issuing_root = CertificateDer::pem_slice_iter(root_pem.as_bytes())
            .next()
            .expect("a root certificate")
            .unwrap()
            .into_owned();
        Pebble {
            directory: format!("https://localhost:{api}/dir"),
            api_ca,
            issuing_root,
            dir,
            _procs: vec![pebble_proc, dns_proc],
        }
    }

    /// Trust store holding pebble's issuing root only.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut r = rustls::RootCertStore::empty();
        r.add(self.issuing_root.clone()).unwrap();
        Arc::new(r)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

pub fn roots_from_pem(pem: &[u8]) -> Arc<rustls::RootCertStore> {
    let mut r = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        r.add(c.unwrap()).unwrap();
    }
    Arc::new(r)
}

pub struct HttpsResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
    /// Serial of the certificate the server presented, hex.
    pub serial: String,
}

/// One GET over a fresh, verified TLS connection to `addr`, as `name`.
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    path: &str,
) -> Result<HttpsResponse, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(Arc::clone(roots))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS: {e}"))?;
    let serial = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| perch::tls::x509::cert_info(leaf))
        .map(|i| i.serial)
        .unwrap_or_default();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", name)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .map_err(|_| "request timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpsResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        serial,
    })
}

/// A plain HTTP/1.1 GET; returns status and headers.
pub async fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, hyper::HeaderMap), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), resp.headers().clone()))
}
