//! The HTTPS front door: which certificate a handshake gets, where certificates come from
//! (ACME, or PEM files reloaded on SIGHUP), and the state `/readyz`, `/metrics`, `perch doctor`
//! and the systemd status line report.

pub mod acme;
mod challenge;
pub mod files;
pub mod store;
pub mod x509;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use x509::CertInfo;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Picks the certificate for each handshake: the TLS-ALPN-01 challenge certificate for the
/// CA's validation connections, the real one for everybody else. Swapping `current` changes
/// what new handshakes get; open connections keep theirs.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.read().ok()?.get(&name).cloned();
        }
        self.current.read().ok()?.clone()
    }
}

impl CertResolver {
    pub fn set_current(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(key);
        }
    }

    pub fn has_current(&self) -> bool {
        self.current.read().is_ok_and(|c| c.is_some())
    }

    fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        if let Ok(mut m) = self.challenges.write() {
            match key {
                Some(k) => m.insert(name.to_ascii_lowercase(), k),
                None => m.remove(&name.to_ascii_lowercase()),
            };
        }
    }
}

/// Below this many days left, the certificate is reported as expiring (log, doctor,
/// `/readyz`).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// What the front door is doing, for people and monitors.
#[derive(Clone, Debug, Default)]
pub struct TlsStatus {
    /// A certificate is being served.
    pub serving: bool,
    /// One line in words, e.g. "obtaining a certificate for pds.example.com".
    pub message: String,
    /// The served certificate.
    pub cert: Option<CertInfo>,
    /// Certificates obtained since start.
    pub issued: u64,
    pub last_error: Option<String>,
}

/// Shared between the listeners, the certificate tasks and the status reporters.
#[derive(Debug, Default)]
pub struct TlsState {
    pub resolver: Arc<CertResolver>,
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    status: Mutex<TlsStatus>,
    /// When the expiry warning was last logged (at most one every 12 hours).
    warned: Mutex<Option<std::time::Instant>>,
}

impl TlsState {
    pub fn status(&self) -> TlsStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whole days until the served certificate expires (negative once it has), if one is
    /// served.
    pub fn days_left(&self) -> Option<i64> {
        let cert = self.status().cert?;
        Some((cert.not_after - crate::clock::unix_secs()).div_euclid(86_400))
    }

    /// Logs a warning while the served certificate has less than [`EXPIRY_WARNING_DAYS`]
    /// left, at most twice a day: Let's Encrypt no longer mails expiry warnings, and a
    /// certificate that stopped renewing must not go unnoticed. `renews_itself`: ACME.
    pub fn warn_if_expiring(&self, renews_itself: bool) {
        let Some(days) = self.days_left().filter(|d| *d < EXPIRY_WARNING_DAYS) else {
            return;
        };
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        let every = std::time::Duration::from_secs(12 * 3600);
        if warned.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        *warned = Some(std::time::Instant::now());
        let fix = if renews_itself {
            "perch renews it by itself: its log (journalctl -u perch) says why it has not"
        } else {
            "replace the certificate files and run systemctl reload perch"
        };
        tracing::warn!("the TLS certificate expires in {days} day(s); {fix}");
    }

    /// Checks the certificate's age every ten minutes (see [`Self::warn_if_expiring`]).
    pub async fn watch_expiry(self: Arc<Self>, renews_itself: bool) {
        loop {
            self.warn_if_expiring(renews_itself);
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    }

    /// Updates the status line (also sent to systemd).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        crate::notify::status(&message);
        if let Ok(mut s) = self.status.lock() {
            s.message = message;
        }
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.last_error = error;
        }
    }

    /// Starts serving `cert` for new handshakes.
    pub fn install(&self, cert: LoadedCert, newly_issued: bool) {
        self.resolver.set_current(cert.key);
        if let Ok(mut s) = self.status.lock() {
            s.serving = true;
            s.cert = Some(cert.info);
            if newly_issued {
                s.issued += 1;
            }
        }
    }

    /// The key authorization for an HTTP-01 token, while its challenge is open.
    pub fn http01_answer(&self, token: &str) -> Option<String> {
        self.http01.lock().ok()?.get(token).cloned()
    }

    fn set_http01(&self, token: &str, key_authorization: Option<String>) {
        if let Ok(mut m) = self.http01.lock() {
            match key_authorization {
                Some(k) => m.insert(token.to_owned(), k),
                None => m.remove(token),
            };
        }
    }
}

/// A certificate chain and key ready for rustls, with the leaf's facts.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("cannot read the certificate PEM: {0}")]
    CertPem(String),
    #[error("cannot read the private key PEM: {0}")]
    KeyPem(String),
    #[error("unsupported private key: {0}")]
    Key(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("cannot read the certificate's validity dates")]
    Validity,
}

/// Parses a PEM chain (leaf first) and its private key.
pub fn load_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::CertPem(e.to_string()))?;
    let leaf = chain.first().ok_or(CertError::NoCertificate)?;
    let info = x509::cert_info(leaf).ok_or(CertError::Validity)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::KeyPem(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(CertError::Mismatch),
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
    })
}

/// The TLS listener's configuration: TLS 1.2 and 1.3 with ring's AEAD suites in the server's
/// order, HTTP/2 and HTTP/1.1, and the ACME validation protocol.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_pem_and_refuses_a_foreign_key() {
        let (cert, key) = self_signed("pds.test");
        let loaded = load_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(loaded.info.not_after > loaded.info.not_before);
        let (_, other_key) = self_signed("pds.test");
        assert!(matches!(
            load_pem(cert.as_bytes(), other_key.as_bytes()),
            Err(CertError::Mismatch)
        ));
        assert!(matches!(
            load_pem(b"", key.as_bytes()),
            Err(CertError::NoCertificate)
        ));
        assert!(load_pem(cert.as_bytes(), b"-----BEGIN NOTHING-----").is_err());
    }
}
