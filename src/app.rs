//! Everything a request handler can reach: config, store, writer, blobs,
//! keys and limits, shared behind one `Arc<App>`.

use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex};

use crate::auth::limiter::LoginLimiter;
use crate::blobs::BlobStore;
use crate::config::Config;
use crate::crypto::Keypair;
use crate::keys::{self, KeyDir};
use crate::store::{Store, StoreError, account, repo};
use crate::writer::{RepoState, Writer};

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub writer: Writer,
    pub blobs: BlobStore,
    pub repo_key: Arc<Keypair>,
    pub jwt_secret: [u8; 32],
    /// This server's own DID (`did:web:<hostname>`), the `aud` of sessions.
    pub service_did: String,
    pub login_limiter: Mutex<LoginLimiter>,
    /// Password hashing, on its own bounded threads.
    pub hasher: crate::hasher::Hasher,
    /// Outbound HTTP(S), with the private-address guard.
    pub net: crate::net::Net,
    /// How each relay sees this server, and the crawl requests that heal it.
    pub federation: Arc<crate::federation::Federation>,
    /// The HTTPS front door's certificate state.
    pub tls: Arc<crate::tls::TlsState>,
    pub metrics: crate::metrics::Metrics,
    /// Open firehose connections.
    pub subscribers: std::sync::atomic::AtomicUsize,
    /// Other people's handles (`resolveHandle`): cache and lookup limits.
    pub handles: crate::identity::handles::HandleResolver,
    /// Request-body bytes held in memory (`xrpc::budget`).
    pub body_budget: Arc<crate::xrpc::budget::BodyBudget>,
    /// Firehose subscribers' places (`max_subscribers`, `max_subscribers_per_ip`).
    pub subscriber_slots: Arc<crate::http::subscribers::SubscriberSlots>,
    /// Whole-repo exports running (getRepo, getCheckout, getBlocks).
    pub exports: Arc<crate::api::exports::ExportSlots>,
    /// Where the owner's codes are mailed (`smtp_url`).
    pub mailer: crate::mail::Mailer,
    /// OAuth's in-memory state (nonces, proof replay cache, client metadata, rate budgets).
    pub oauth_state: crate::oauth::OAuthState,
    /// Other identities' DID documents, kept a few minutes.
    did_cache: Mutex<std::collections::HashMap<String, (std::time::Instant, serde_json::Value)>>,
}

/// How long a fetched DID document is trusted before it is fetched again.
const DID_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);
const DID_CACHE_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Keys(#[from] keys::KeyError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl App {
    /// Open the data directory: database, keys, blob files, writer.
    pub async fn open(config: Config) -> Result<Arc<App>, AppError> {
        let dir = &config.data_dir;
        // A new data directory is the service's alone; an existing one keeps its mode.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AppError::Io(dir.display().to_string(), e))?;
        let new_allowed = !dir.join("keys").join(keys::REPO_KEY).exists();
        let store = Store::open_with(&dir.join("perch.sqlite"), new_allowed)?;
        let keydir = KeyDir::open(dir)?;
        let repo_key = Arc::new(keydir.keypair_or_create(keys::REPO_KEY)?);
        let jwt_secret = keydir.jwt_secret()?;
        let blobs = BlobStore::open(&dir.join("blobs"))
            .await
            .map_err(|e| AppError::Io("blobs directory".into(), e))?;
        let state = store.read_blocking(|c| {
            let acct = account::get_account(c)?;
            let root = repo::get_root(c)?;
            Ok(acct.zip(root))
        })?;
        let state = state.map(|(a, root)| RepoState {
            did: a.did,
            key: Arc::clone(&repo_key),
            root,
            tree: None,
        });
        let blob_files = blobs.clone();
        let writer = Writer::spawn(&store, state, move |cids| {
            blob_files.delete_many_blocking(&cids)
        })?;
        let service_did = format!("did:web:{}", config.hostname);
        let net = crate::net::Net::new(config.allow_loopback);
        // Tests answer handle lookups from a DNS server on loopback; only
        // together with PERCH_ALLOW_LOOPBACK, never from the config file.
        let dns_override = config
            .allow_loopback
            .then(|| std::env::var("PERCH_DNS_RESOLVER").ok()?.parse().ok())
            .flatten();
        Ok(Arc::new(App {
            federation: Arc::new(crate::federation::Federation::new(
                config.relays.clone(),
                config.hostname.clone(),
                net.clone(),
                Arc::clone(&store),
                match config.relay_check_secs {
                    0 => crate::federation::CHECK_INTERVAL,
                    n => std::time::Duration::from_secs(n),
                },
            )),
            tls: Arc::default(),
            metrics: crate::metrics::Metrics::default(),
            subscribers: std::sync::atomic::AtomicUsize::new(0),
            body_budget: crate::xrpc::budget::BodyBudget::new(
                crate::xrpc::budget::TOTAL,
                crate::xrpc::budget::PER_ADDRESS,
            ),
            subscriber_slots: crate::http::subscribers::SubscriberSlots::new(
                usize::try_from(config.max_subscribers).unwrap_or(usize::MAX),
                usize::try_from(config.max_subscribers_per_ip).unwrap_or(usize::MAX),
            ),
            exports: crate::api::exports::ExportSlots::new(
                crate::api::exports::EXPORTS_TOTAL,
                crate::api::exports::EXPORTS_PER_ADDRESS,
            ),
            did_cache: Mutex::new(std::collections::HashMap::new()),
            oauth_state: crate::oauth::OAuthState::new(&jwt_secret),
            mailer: crate::mail::Mailer::new(
                config.smtp_url.as_deref(),
                config.email_from.as_deref(),
                &config.hostname,
            ),
            handles: crate::identity::handles::HandleResolver::new(dns_override),
            net,
            config,
            store,
            writer,
            blobs,
            repo_key,
            jwt_secret,
            service_did,
            login_limiter: Mutex::new(LoginLimiter::new(crate::auth::LimiterConfig::default())),
            hasher: crate::hasher::Hasher::for_this_machine(),
        }))
    }

    /// Whether storage answers a read within `within` and the writer has not failed; the
    /// answer goes to `/metrics` too. The systemd watchdog pings only while this holds. The
    /// writer is not probed: one large import may legitimately hold it longer than that.
    pub async fn storage_healthy(&self, within: std::time::Duration) -> bool {
        let ok = match tokio::time::timeout(within, self.store.read(|c| c.ping())).await {
            Ok(Ok(_)) => self.writer.health().failure().is_none(),
            Ok(Err(e)) => {
                tracing::warn!("watchdog probe: database read failed: {e}");
                false
            }
            Err(_) => {
                tracing::warn!("watchdog probe: database read took longer than {within:?}");
                false
            }
        };
        self.metrics.set_storage_ok(ok);
        ok
    }

    /// Waits for a storage failure, then says so in `/metrics` and the systemd status line.
    pub async fn watch_storage(self: Arc<Self>) {
        let why = self.writer.health().failed().await;
        self.metrics.set_storage_ok(false);
        crate::notify::storage_failed(why);
    }

    /// Samples what the owner's page plots: firehose subscribers every five minutes, and
    /// storage once an hour into the day's rollup (trimming rollups older than 90 days).
    pub async fn sample_stats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5 * 60));
        let mut last_storage = None;
        loop {
            tick.tick().await;
            self.metrics
                .note_subscribers(self.subscribers.load(std::sync::atomic::Ordering::Relaxed));
            let hour = crate::clock::unix_secs() / 3600;
            if last_storage == Some(hour) {
                continue;
            }
            last_storage = Some(hour);
            if let Err(e) = self.sample_storage().await {
                tracing::debug!("storage sample: {e}");
            }
        }
    }

    async fn sample_storage(&self) -> Result<(), StoreError> {
        let day_of = |ms: i64| crate::syntax::format_datetime_millis(ms)[..10].to_owned();
        let now = crate::clock::unix_millis();
        let (today, oldest) = (
            day_of(now),
            day_of(now - crate::store::stats::KEEP_DAYS * 86_400_000),
        );
        let dir = self.config.data_dir.clone();
        let database = tokio::task::spawn_blocking(move || {
            ["perch.sqlite", "perch.sqlite-wal"]
                .iter()
                .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
                .sum::<u64>()
        })
        .await
        .unwrap_or(0);
        let (_, blobs) = self.store.read(crate::store::blobs::totals).await?;
        self.writer
            .exec(move |c, _| {
                crate::store::stats::set_storage(c, &today, database, blobs)?;
                crate::store::stats::trim_before(c, &oldest)
            })
            .await?;
        Ok(())
    }

    /// Another identity's DID document, from the cache when fresh.
    pub async fn did_document(
        &self,
        did: &str,
    ) -> Result<serde_json::Value, crate::identity::resolve::ResolveError> {
        if let Ok(cache) = self.did_cache.lock()
            && let Some((at, doc)) = cache.get(did)
            && at.elapsed() < DID_CACHE_TTL
        {
            return Ok(doc.clone());
        }
        let doc =
            crate::identity::resolve::did_document(&self.net, &self.config.plc_url, did).await?;
        if let Ok(mut cache) = self.did_cache.lock() {
            if cache.len() >= DID_CACHE_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < DID_CACHE_TTL);
                if cache.len() >= DID_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(did.to_owned(), (std::time::Instant::now(), doc.clone()));
        }
        Ok(doc)
    }

    /// A DID document fetched now (and cached), for decisions that must not rest on a
    /// document from before a recent change, like activating a migrated account.
    pub async fn did_document_fresh(
        &self,
        did: &str,
    ) -> Result<serde_json::Value, crate::identity::resolve::ResolveError> {
        if let Ok(mut cache) = self.did_cache.lock() {
            cache.remove(did);
        }
        self.did_document(did).await
    }

    /// The firehose service.
    pub fn firehose(&self) -> crate::firehose::Firehose {
        crate::firehose::Firehose::new(
            Arc::clone(&self.store),
            self.writer.seq_watch(),
            self.writer.recent(),
            std::time::Duration::from_secs(self.config.backfill_hours * 3600),
        )
    }

    /// The account service, over this server's parts.
    pub fn accounts(&self) -> crate::account::Accounts<'_> {
        crate::account::Accounts {
            config: &self.config,
            store: &self.store,
            writer: &self.writer,
            hasher: &self.hasher,
            limiter: &self.login_limiter,
            net: &self.net,
            repo_key: &self.repo_key,
            jwt_secret: &self.jwt_secret,
            service_did: &self.service_did,
            mailer: &self.mailer,
            handles: &self.handles,
        }
    }

    /// The OAuth service, over this server's parts.
    pub fn oauth(&self) -> crate::oauth::OAuth<'_> {
        crate::oauth::OAuth {
            config: &self.config,
            store: &self.store,
            writer: &self.writer,
            net: &self.net,
            state: &self.oauth_state,
            accounts: self.accounts(),
            service_did: &self.service_did,
            dns: self.handles.dns(),
        }
    }

    pub fn uploads(&self) -> crate::uploads::Uploads<'_> {
        crate::uploads::Uploads {
            blobs: &self.blobs,
            writer: &self.writer,
            limit: self.config.blob_limit,
        }
    }

    /// The account, if one exists.
    pub async fn account(&self) -> Result<Option<account::Account>, StoreError> {
        self.store.read(account::get_account).await
    }
}
