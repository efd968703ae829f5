//! Certificates from an ACME CA (Let's Encrypt by default): the account is created once and
//! kept, a certificate is ordered by TLS-ALPN-01 on the HTTPS listener and, if the CA cannot
//! validate that, by HTTP-01 on port 80; it is renewed when a third of its lifetime is left,
//! written to disk before it is served, and swapped in without touching open connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rand_core::{OsRng, RngCore};

use super::challenge::{Installed, alpn_cert};
use super::store::{AcmeStore, StoredCert};
use super::{CertInfo, LoadedCert, TlsState, load_pem};
use crate::clock::unix_secs as now_secs;
use crate::config::Config;

/// First retry after a failed attempt; doubles up to `MAX_BACKOFF`. Let's Encrypt allows
/// five failed validations per hostname per hour, so attempts start two minutes apart...
const FIRST_BACKOFF: Duration = Duration::from_secs(120);
/// ...except the very first retry on a box with no certificate at all: the usual cause is a
/// DNS record or port forward set up a moment ago, and HTTPS is down until it works.
const NO_CERT_FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// After a `rateLimited` answer, wait at least this long.
const RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(3600);
/// How long one order may take (validation and issuance).
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// Long sleeps are cut into pieces so a suspended or clock-jumped box notices the time.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// An HTTP client for the CA: Mozilla's roots plus the configured extra root, with no
/// private-address guard (the CA is chosen by the operator, not by a request).
struct CaClient(Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl CaClient {
    fn new(extra_root: Option<&std::path::Path>) -> Result<CaClient, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra_root {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("acme_ca_root {}: {e}", path.display()))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("acme_ca_root {}: {e}", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(15)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(CaClient(Client::builder(TokioExecutor::new()).build(https)))
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        let fut = self.0.request(req);
        Box::pin(async move {
            match tokio::time::timeout(Duration::from_secs(30), fut).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Str(
                    "the ACME server did not answer in 30 s",
                )),
            }
        })
    }
}

/// Why an attempt failed, and whether the CA asked us to slow down.
struct Failure {
    message: String,
    rate_limited: bool,
}

impl From<instant_acme::Error> for Failure {
    fn from(e: instant_acme::Error) -> Failure {
        let rate_limited = matches!(&e, instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited"));
        Failure {
            message: crate::net::error_chain(&e),
            rate_limited,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            rate_limited: false,
        }
    }
}

/// When to renew: once a third of the lifetime is left, a little earlier by a random
/// amount (up to 1/30 of the lifetime, at most an hour) so many boxes do not renew at once.
pub fn renew_at(info: &CertInfo, jitter_unit: f64) -> i64 {
    let lifetime = info.lifetime_secs();
    let max_jitter = (lifetime / 30).min(3600);
    let jitter = (max_jitter as f64 * jitter_unit.clamp(0.0, 1.0)) as i64;
    info.not_after - lifetime / 3 - jitter
}

/// Back-off after `failures` failed attempts in a row.
pub fn backoff(failures: u32, rate_limited: bool) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let d = FIRST_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    if rate_limited {
        d.max(RATE_LIMITED_BACKOFF)
    } else {
        d
    }
}

fn random_unit() -> f64 {
    f64::from(OsRng.next_u32()) / f64::from(u32::MAX)
}

async fn sleep_until_unix(at: i64) {
    loop {
        let left = at - now_secs();
        if left <= 0 {
            return;
        }
        let d = Duration::from_secs(u64::try_from(left).unwrap_or(0)).min(MAX_SLEEP);
        tokio::time::sleep(d).await;
    }
}

/// Keeps a valid certificate installed in `state` for as long as the process runs.
pub async fn run(config: Config, state: Arc<TlsState>) {
    let store = AcmeStore::new(&config.data_dir);
    let host = config.hostname.clone();
    let mut current = match store.cert(&host, &config.acme_directory) {
        Ok(Some(stored)) => {
            match load_pem(stored.chain_pem.as_bytes(), stored.key_pem.as_bytes()) {
                Ok(cert) => {
                    tracing::info!(
                        "serving the stored certificate for {host} (valid until {})",
                        cert.info.not_after
                    );
                    let info = cert.info.clone();
                    state.install(cert, false);
                    state.warn_if_expiring(true);
                    Some(info)
                }
                Err(e) => {
                    tracing::warn!(
                        "stored certificate for {host} is unusable ({e}); ordering a new one"
                    );
                    None
                }
            }
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot read the stored certificate for {host}: {e}");
            None
        }
    };
    if let Some(info) = &current {
        state.set_message(serving_message(&host, info));
    }
    let client = match CaClient::new(config.acme_ca_root.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            state.set_message(format!("cannot set up the ACME client: {e}"));
            state.set_error(Some(e));
            return;
        }
    };
    let mut failures = 0u32;
    let mut account: Option<Account> = None;
    loop {
        if let Some(info) = &current {
            sleep_until_unix(renew_at(info, random_unit())).await;
            state.set_message(format!("renewing the certificate for {host}"));
        } else {
            state.set_message(format!(
                "obtaining a certificate for {host} from {}",
                config.acme_directory
            ));
        }
        let started = std::time::Instant::now();
        let result = attempt(&config, &state, &store, &client, &mut account).await;
        match result {
            Ok((cert, how)) => {
                tracing::info!(
                    "certificate for {host} obtained by {how} in {:.2} s (serial {}, valid until {})",
                    started.elapsed().as_secs_f64(),
                    cert.info.serial,
                    cert.info.not_after
                );
                let info = cert.info.clone();
                state.install(cert, true);
                state.warn_if_expiring(true);
                state.set_error(None);
                state.set_message(serving_message(&host, &info));
                current = Some(info);
                failures = 0;
            }
            Err(f) => {
                failures += 1;
                let mut wait = backoff(failures, f.rate_limited);
                if current.is_none() && failures == 1 && !f.rate_limited {
                    wait = NO_CERT_FIRST_RETRY;
                }
                // A short-lived certificate must not expire while we back off.
                if let Some(info) = &current {
                    let left = u64::try_from(info.not_after - now_secs()).unwrap_or(0);
                    wait = wait.min(Duration::from_secs((left / 4).max(1)));
                }
                let wait = wait.mul_f64(0.9 + 0.2 * random_unit());
                tracing::warn!(
                    "certificate for {host} failed (attempt {failures}): {}; retrying in {} s",
                    f.message,
                    wait.as_secs()
                );
                let serving = if current.is_some() {
                    "still serving the old certificate; "
                } else {
                    "HTTPS is not available yet; "
                };
                state.set_message(format!(
                    "certificate for {host} failed: {}; {serving}retrying in {} s",
                    f.message,
                    wait.as_secs()
                ));
                state.set_error(Some(f.message));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn serving_message(host: &str, info: &CertInfo) -> String {
    let days = (info.not_after - now_secs()) / 86_400;
    format!("serving HTTPS for {host}; certificate valid for {days} more day(s)")
}

/// One issuance: account, then an order by TLS-ALPN-01, then by HTTP-01 if that failed.
async fn attempt(
    config: &Config,
    state: &Arc<TlsState>,
    store: &AcmeStore,
    client: &Arc<CaClient>,
    account: &mut Option<Account>,
) -> Result<(LoadedCert, &'static str), Failure> {
    let acct = match account {
        Some(a) => a.clone(),
        None => {
            let a = open_account(config, store, client).await?;
            *account = Some(a.clone());
            a
        }
    };
    let mut kinds = vec![ChallengeType::TlsAlpn01];
    if config.http_listen.is_some() {
        kinds.push(ChallengeType::Http01);
    }
    let mut errors = Vec::new();
    for kind in kinds {
        match order(config, state, &acct, kind.clone()).await {
            Ok(issued) => {
                // On disk first: a certificate we served but lost would cost an order
                // (and rate limit) after the next restart.
                store
                    .save_cert(&issued)
                    .map_err(|e| format!("cannot store the certificate: {e}"))?;
                let how = if kind == ChallengeType::TlsAlpn01 {
                    "tls-alpn-01"
                } else {
                    "http-01"
                };
                return load_pem(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
                    .map(|c| (c, how))
                    .map_err(|e| {
                        Failure::from(format!("the CA sent an unusable certificate: {e}"))
                    });
            }
            Err(f) if f.rate_limited => return Err(f),
            Err(f) => {
                tracing::info!("{kind:?} did not work: {}", f.message);
                errors.push(format!("{kind:?}: {}", f.message));
            }
        }
    }
    Err(Failure::from(errors.join("; ")))
}

async fn open_account(
    config: &Config,
    store: &AcmeStore,
    client: &Arc<CaClient>,
) -> Result<Account, Failure> {
    let builder = || Account::builder_with_http(Box::new(SharedClient(Arc::clone(client))));
    let dir = &config.acme_directory;
    if let Some(json) = store
        .account(dir)
        .map_err(|e| format!("cannot read the ACME account: {e}"))?
    {
        let creds: AccountCredentials = serde_json::from_value(json)
            .map_err(|e| format!("stored ACME account is unreadable: {e}"))?;
        return Ok(builder().from_credentials(creds).await?);
    }
    let contact = config.acme_email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            dir.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_value(&creds).map_err(|e| e.to_string())?;
    store
        .save_account(dir, json)
        .map_err(|e| format!("cannot store the ACME account: {e}"))?;
    tracing::info!("created an ACME account at {dir}");
    Ok(account)
}

/// `Account` wants to own its client; the client is shared between account re-creations.
struct SharedClient(Arc<CaClient>);

impl HttpClient for SharedClient {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        self.0.request(req)
    }
}

async fn order(
    config: &Config,
    state: &Arc<TlsState>,
    account: &Account,
    kind: ChallengeType,
) -> Result<StoredCert, Failure> {
    let host = &config.hostname;
    let ids = [Identifier::Dns(host.clone())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut installed = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(format!("authorization is {other:?}").into()),
        }
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA does not offer {kind:?}"))?;
        let key_auth = challenge.key_authorization();
        installed.push(match kind {
            ChallengeType::TlsAlpn01 => {
                let cert = alpn_cert(host, key_auth.digest().as_ref())?;
                Installed::alpn(state, host, cert)
            }
            _ => Installed::http(state, &challenge.token, key_auth.as_str().to_owned()),
        });
        challenge.set_ready().await?;
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        let mut reasons = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(mut a)) = authzs.next().await {
            if let Ok(s) = a.refresh().await {
                for c in &s.challenges {
                    if let Some(p) = &c.error {
                        reasons.push(p.to_string());
                    }
                }
            }
        }
        return Err(format!("order is {status:?}: {}", reasons.join("; ")).into());
    }
    drop(installed);
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&retry).await?;
    Ok(StoredCert {
        directory: config.acme_directory.clone(),
        hostname: host.clone(),
        chain_pem,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_with_a_third_of_the_lifetime_left() {
        let info = CertInfo {
            serial: "01".into(),
            not_before: 0,
            not_after: 90 * 86_400,
        };
        assert_eq!(renew_at(&info, 0.0), 60 * 86_400);
        // Jitter is at most an hour for long certificates...
        assert_eq!(renew_at(&info, 1.0), 60 * 86_400 - 3600);
        // ...and 1/30 of the lifetime for short ones.
        let short = CertInfo {
            serial: "02".into(),
            not_before: 1000,
            not_after: 1030,
        };
        assert_eq!(renew_at(&short, 0.0), 1020);
        assert_eq!(renew_at(&short, 1.0), 1019);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_respects_rate_limits() {
        assert_eq!(backoff(1, false), Duration::from_secs(120));
        assert_eq!(backoff(2, false), Duration::from_secs(240));
        assert_eq!(backoff(30, false), MAX_BACKOFF);
        assert_eq!(backoff(1, true), RATE_LIMITED_BACKOFF);
    }
}
