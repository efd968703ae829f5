//! What the owner's page shows, gathered from the services in one pass: the account and
//! where its DID points, the box (certificate, storage, disk, sizes, backups, uptime), the
//! relays' view of it, and what can sign in (app passwords, apps).

use std::time::Duration;

use crate::app::App;
use crate::federation::RelayView;
use crate::oauth::GrantInfo;
use crate::store::account::{Account, AppPassword};

/// How long the DID document lookup may take before the page is shown without it.
const DID_LOOKUP: Duration = Duration::from_secs(3);

pub struct Glance {
    pub account: Account,
    /// Where the DID document says the account's PDS is, or why that is not known.
    pub pds: Result<String, String>,
    /// This server's public origin.
    pub origin: String,
    pub tls: TlsLine,
    /// `None` while healthy; what failed otherwise.
    pub storage_failure: Option<String>,
    pub free_disk: Option<u64>,
    pub database_bytes: u64,
    pub blobs: (u64, u64),
    /// Records by collection, the largest first.
    pub records: Vec<(String, u64)>,
    /// The backup check's verdict: fine, and the line.
    pub backup: (bool, String),
    pub version: &'static str,
    pub uptime: Duration,
    pub firehose_seq: i64,
    pub subscribers: usize,
    pub relays: Vec<RelayView>,
    /// The last 90 days, oldest first: records created by kind (post, like, follow, other).
    pub writes: Vec<(String, [u64; 4])>,
    /// The last 90 days: database and blob bytes where measured.
    pub storage: Vec<(String, Option<(u64, u64)>)>,
    /// The last 24 hours.
    pub hours: Vec<crate::metrics::HourFigures>,
    pub passkeys: Vec<crate::store::passkeys::Passkey>,
    /// Codes waiting: purpose and expiry (never the code).
    pub codes: Vec<(String, i64)>,
    /// Complete backups in `backup_dir` (name, when), newest first, at most five; `None`
    /// without a `backup_dir`.
    pub backups: Option<Vec<(String, i64)>>,
    pub app_passwords: Vec<AppPassword>,
    pub apps: Vec<GrantInfo>,
    /// Live sessions made with the password (this page's among them) and app passwords.
    pub sessions: (u64, u64),
}

pub enum TlsLine {
    /// `tls = "off"`: HTTPS is a proxy's job.
    Off,
    /// Days left on the served certificate.
    Serving(i64),
    /// No certificate yet: what the front door says.
    Waiting(String),
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

async fn pds_endpoint(app: &App, did: &str) -> Result<String, String> {
    if did == app.service_did {
        return Ok(app.config.public_url().trim_end_matches('/').to_owned());
    }
    match tokio::time::timeout(DID_LOOKUP, app.did_document(did)).await {
        Ok(Ok(doc)) => crate::identity::resolve::service_endpoint(&doc, "atproto_pds")
            .ok_or_else(|| "the DID document names no PDS".to_owned()),
        Ok(Err(e)) => Err(format!("could not read the DID document: {e}")),
        Err(_) => Err("the DID document did not arrive in time".to_owned()),
    }
}

/// The days of the plots' window, oldest first (`YYYY-MM-DD`).
fn window() -> Vec<String> {
    let now = crate::clock::unix_millis();
    (0..crate::store::stats::KEEP_DAYS)
        .rev()
        .map(|i| crate::syntax::format_datetime_millis(now - i * 86_400_000)[..10].to_owned())
        .collect()
}

type Rollups = (Vec<(String, String, u64)>, Vec<(String, u64, u64)>);

fn by_day(days: &[String], (writes, storage): Rollups) -> PlotDays {
    let mut w: Vec<(String, [u64; 4])> = days.iter().map(|d| (d.clone(), [0; 4])).collect();
    for (day, kind, n) in writes {
        if let Some((_, counts)) = w.iter_mut().find(|(d, _)| *d == day) {
            let k = match kind.as_str() {
                "post" => 0,
                "like" => 1,
                "follow" => 2,
                _ => 3,
            };
            counts[k] += n;
        }
    }
    let s = days
        .iter()
        .map(|d| {
            let sample = storage
                .iter()
                .find(|(day, _, _)| day == d)
                .map(|(_, db, b)| (*db, *b));
            (d.clone(), sample)
        })
        .collect();
    (w, s)
}

type PlotDays = (Vec<(String, [u64; 4])>, Vec<(String, Option<(u64, u64)>)>);

pub async fn gather(app: &App, account: Account) -> Glance {
    let pds = pds_endpoint(app, &account.did).await;
    let tls = match (app.config.tls, app.tls.days_left()) {
        (crate::config::TlsMode::Off, _) => TlsLine::Off,
        (_, Some(days)) => TlsLine::Serving(days),
        (_, None) => TlsLine::Waiting(app.tls.status().message),
    };
    let data = app.config.data_dir.clone();
    let (free_disk, database_bytes) = tokio::task::spawn_blocking(move || {
        let db = data.join("perch.sqlite");
        let wal = data.join("perch.sqlite-wal");
        (
            crate::fsutil::free_bytes(&data),
            file_len(&db) + file_len(&wal),
        )
    })
    .await
    .unwrap_or((None, 0));
    let (blobs, records) = app
        .store
        .read(|c| {
            Ok((
                crate::store::blobs::totals(c)?,
                crate::store::repo::record_counts(c)?,
            ))
        })
        .await
        .unwrap_or_default();
    let backup = match crate::backup::schedule::health(
        app.config.backup_dir.as_deref(),
        app.config.backup_interval_hours,
        crate::clock::unix_millis(),
    ) {
        crate::backup::schedule::Health::Ok(m) => (true, m),
        crate::backup::schedule::Health::Warn(m) => (false, m),
    };
    let days = window();
    let since = days.first().cloned().unwrap_or_default();
    let rollups = app
        .store
        .read(move |c| {
            Ok((
                crate::store::stats::writes_since(c, &since)?,
                crate::store::stats::storage_since(c, &since)?,
            ))
        })
        .await
        .unwrap_or_default();
    let (writes, storage) = by_day(&days, rollups);
    let codes = app
        .accounts()
        .pending_codes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.purpose, c.expires_at))
        .collect();
    let backups = match app.config.backup_dir.clone() {
        None => None,
        Some(dir) => Some(
            tokio::task::spawn_blocking(move || {
                let mut all = crate::backup::list_complete(&dir).unwrap_or_default();
                all.reverse();
                all.into_iter()
                    .take(5)
                    .filter_map(|p| {
                        let name = p.file_name()?.to_string_lossy().into_owned();
                        let at = crate::backup::schedule::name_millis(&name)? / 1000;
                        Some((name, at))
                    })
                    .collect()
            })
            .await
            .unwrap_or_default(),
        ),
    };
    let firehose_seq = *app.writer.seq_watch().borrow();
    let app_passwords = app.accounts().app_passwords().await.unwrap_or_default();
    let passkeys = app.accounts().passkeys().await.unwrap_or_default();
    let apps = app.oauth().grants().await.unwrap_or_default();
    let sessions = app.accounts().session_counts().await.unwrap_or_default();
    Glance {
        account,
        pds,
        origin: app.config.public_url().trim_end_matches('/').to_owned(),
        tls,
        storage_failure: app.writer.health().failure().map(str::to_owned),
        free_disk,
        database_bytes,
        blobs,
        records,
        backup,
        version: env!("CARGO_PKG_VERSION"),
        uptime: app.metrics.uptime(),
        firehose_seq,
        subscribers: app.subscribers.load(std::sync::atomic::Ordering::Relaxed),
        relays: app.federation.views(),
        writes,
        storage,
        hours: app.metrics.last_day(),
        passkeys,
        codes,
        backups,
        app_passwords,
        apps,
        sessions,
    }
}
