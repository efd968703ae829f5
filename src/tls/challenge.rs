//! Challenge responses while an ACME authorization is open. A guard removes its response
//! when the attempt ends, however it ends.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::TlsState;

/// TLS-ALPN-01 (RFC 8737): a self-signed certificate for `name` carrying the SHA-256 of the
/// key authorization in a critical acmeIdentifier extension.
pub fn alpn_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// An installed challenge response; dropping it uninstalls it.
pub enum Installed {
    Alpn { state: Arc<TlsState>, name: String },
    Http { state: Arc<TlsState>, token: String },
}

impl Installed {
    pub fn alpn(state: &Arc<TlsState>, name: &str, cert: Arc<CertifiedKey>) -> Installed {
        state.resolver.set_challenge(name, Some(cert));
        Installed::Alpn {
            state: Arc::clone(state),
            name: name.to_owned(),
        }
    }

    pub fn http(state: &Arc<TlsState>, token: &str, key_authorization: String) -> Installed {
        state.set_http01(token, Some(key_authorization));
        Installed::Http {
            state: Arc::clone(state),
            token: token.to_owned(),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        match self {
            Installed::Alpn { state, name } => state.resolver.set_challenge(name, None),
            Installed::Http { state, token } => state.set_http01(token, None),
        }
    }
}
