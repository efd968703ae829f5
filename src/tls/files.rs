//! `tls = "files"`: a certificate and key maintained by something else (certbot, a company
//! CA), read at start and again on SIGHUP. A bad reload keeps the old certificate.

use std::sync::Arc;

use super::{LoadedCert, TlsState, load_pem};
use crate::config::Config;

/// Reads `tls_cert` and `tls_key`.
pub fn load(config: &Config) -> Result<LoadedCert, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err("tls_cert and tls_key must be set".into());
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    load_pem(&read(cert)?, &read(key)?)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

/// Reloads the files on every SIGHUP until the process ends.
pub async fn reload_on_sighup(config: Config, state: Arc<TlsState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificate files will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match load(&config) {
            Ok(cert) => {
                tracing::info!(
                    "reloaded certificate (serial {}, valid until {})",
                    cert.info.serial,
                    cert.info.not_after
                );
                state.install(cert, false);
                state.warn_if_expiring(false);
                state.set_error(None);
            }
            Err(e) => {
                tracing::warn!("certificate reload failed, still serving the old one: {e}");
                state.set_error(Some(e));
            }
        }
    }
}

/// `systemctl reload` sends SIGHUP whatever the mode; its default action would end the
/// process. Without certificate files there is nothing to reload, so say so and carry on.
pub async fn ignore_sighup(why: &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: nothing to reload ({why})");
    }
}
