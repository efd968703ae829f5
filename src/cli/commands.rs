//! Server and account commands.

use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

use super::{CliError, DidMethod};
use crate::account::{self, AccountError};
use crate::app::App;
use crate::config::Config;
use crate::store::account as account_rows;

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        // A Pi has 1–4 cores; the writer and blocking pool add their own.
        .worker_threads(2)
        // Store reads run on blocking threads; tokio's default of 512 lets
        // a burst of reads spawn dozens of threads, each with its own
        // allocator arena, stack and SQLite connection. Reads take tens of
        // microseconds, so four keep two cores busy; idle ones go after 3 s
        // (tokio's default is 10) so a burst's memory goes with them.
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(3))
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start the runtime: {e}")))
}

pub(super) fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Message(e.to_string())
}

/// Opens the data directory of a server that exists. Only `serve`, `init` and `account
/// create` make one: any other command given a mistyped `--data-dir` (or run before `perch
/// init`) must say so, not leave a fresh database and keys behind and carry on.
pub(super) async fn open(config: Config) -> Result<Arc<App>, CliError> {
    let dir = &config.data_dir;
    let db = dir.join("perch.sqlite");
    match db.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            return Err(msg(format!(
                "no perch data in {}: run `sudo perch init` first, or give the right --data-dir",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(msg(format!(
                "cannot look into {} ({e}): run perch as the user that owns it \
                 (`sudo -u perch perch …`) or with sudo",
                dir.display()
            )));
        }
    }
    open_or_create(config).await
}

/// Opens the data directory, creating it (database, keys) when there is none.
async fn open_or_create(config: Config) -> Result<Arc<App>, CliError> {
    App::open(config).await.map_err(msg)
}

fn method(m: DidMethod) -> account::DidMethod {
    match m {
        DidMethod::Plc => account::DidMethod::Plc,
        DidMethod::Web => account::DidMethod::Web,
    }
}

/// A readable random password for the development account.
fn dev_password() -> String {
    let mut b = [0u8; 12];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `config_file`: the file the config was read from, if any (for the start-up line).
pub fn serve(config: Config, config_file: Option<std::path::PathBuf>) -> Result<(), CliError> {
    let _data_dir = crate::backup::restore::serve_guard(&config.data_dir).map_err(msg)?;
    if config.dev && std::env::var_os("PERCH_UNSAFE_SYNC_NORMAL").is_some() {
        crate::store::use_unsafe_synchronous_normal();
        tracing::warn!(
            "PERCH_UNSAFE_SYNC_NORMAL: committing with synchronous=NORMAL; a power cut loses \
             acknowledged writes (a test setting, honoured only with --dev)"
        );
    }
    runtime()?.block_on(async move {
        let listen = config.listen;
        let app = open_or_create(config).await?;
        if app.config.dev
            && app.config.plc_url.is_empty()
            && app.account().await.map_err(msg)?.is_none()
        {
            let password = dev_password();
            let acct = app
                .accounts()
                .create("alice.test", &password, None, account::DidMethod::Web)
                .await
                .map_err(msg)?;
            tracing::info!(
                "created development account {} ({}) with password: {password}",
                acct.handle,
                acct.did
            );
            println!(
                "dev account: handle {} did {} password: {password}",
                acct.handle, acct.did
            );
        }
        let account = match app.account().await.map_err(msg)? {
            Some(a) => format!("{} ({})", a.handle, a.did),
            None => "none yet".to_owned(),
        };
        tracing::info!(
            "starting perch {} for {}: account {account}, config {}, data in {}",
            env!("CARGO_PKG_VERSION"),
            app.config.hostname,
            config_file.map_or_else(
                || "built-in and environment only".to_owned(),
                |p| p.display().to_string()
            ),
            app.config.data_dir.display()
        );
        front_door(app, listen).await
    })
}

/// Binds the listeners, starts the certificate and background tasks, tells systemd we are
/// ready, and serves until SIGTERM/SIGINT.
async fn front_door(app: Arc<App>, listen: std::net::SocketAddr) -> Result<(), CliError> {
    use crate::config::TlsMode;
    use crate::http::{ConnLimiter, Role};
    let config = app.config.clone();
    let bind =
        |addr: std::net::SocketAddr| async move { crate::http::bind(addr).await.map_err(msg) };
    let role = match config.tls {
        TlsMode::Off => {
            tokio::spawn(crate::tls::files::ignore_sighup("tls = \"off\""));
            Role::Plain
        }
        TlsMode::Files => {
            let cert = crate::tls::files::load(&config).map_err(msg)?;
            app.tls.install(cert, false);
            app.tls.warn_if_expiring(false);
            tokio::spawn(crate::tls::files::reload_on_sighup(
                config.clone(),
                Arc::clone(&app.tls),
            ));
            tls_role(&app)?
        }
        TlsMode::Acme => {
            tokio::spawn(crate::tls::files::ignore_sighup(
                "tls = \"acme\" renews by itself",
            ));
            tls_role(&app)?
        }
    };
    let listener = bind(listen).await?;
    let local = listener.local_addr().map_err(msg)?;
    let redirect = match (config.tls, config.http_listen) {
        (TlsMode::Off, _) | (_, None) => None,
        (_, Some(addr)) => Some(bind(addr).await?),
    };
    let scheme = if config.tls == TlsMode::Off {
        "http"
    } else {
        "https"
    };
    tracing::info!(
        "perch {} listening on {scheme}://{local}{}",
        env!("CARGO_PKG_VERSION"),
        redirect
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| format!(" and http://{a} (challenges, redirects)"))
            .unwrap_or_default()
    );
    if config.tls == TlsMode::Acme {
        tokio::spawn(crate::tls::acme::run(config.clone(), Arc::clone(&app.tls)));
    }
    if config.tls != TlsMode::Off {
        tokio::spawn(Arc::clone(&app.tls).watch_expiry(config.tls == TlsMode::Acme));
    }
    tokio::spawn(blob_gc(Arc::clone(&app)));
    tokio::spawn(Arc::clone(&app).sample_stats());
    tokio::spawn(crate::federation::run(
        Arc::clone(&app.federation),
        app.writer.seq_watch(),
    ));
    let probed = Arc::clone(&app);
    tokio::spawn(async move {
        crate::notify::watchdog(|within| {
            let app = Arc::clone(&probed);
            async move { app.storage_healthy(within).await }
        })
        .await
    });
    tokio::spawn(Arc::clone(&app).watch_storage());
    tokio::spawn(crate::backup::schedule::run(
        crate::backup::schedule::Plan::from_config(&config),
    ));

    let status = app.tls.status();
    let ready_line = if config.tls == TlsMode::Off || status.serving || status.message.is_empty() {
        format!("serving {} on {scheme}://{local}", config.hostname)
    } else {
        status.message
    };
    crate::notify::ready(&ready_line);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        crate::notify::stopping();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let limiter = ConnLimiter::new(
        usize::try_from(config.max_connections).unwrap_or(usize::MAX),
        usize::try_from(config.max_connections_per_ip).unwrap_or(usize::MAX),
    );
    let port80 = redirect.map(|l| {
        tokio::spawn(crate::http::serve(
            Arc::clone(&app),
            l,
            Role::Redirect,
            Arc::clone(&limiter),
            stopped(stop_rx.clone()),
        ))
    });
    crate::http::serve(app, listener, role, limiter, stopped(stop_rx))
        .await
        .map_err(msg)?;
    if let Some(task) = port80 {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn tls_role(app: &App) -> Result<crate::http::Role, CliError> {
    let cfg = crate::tls::server_config(Arc::clone(&app.tls.resolver))
        .map_err(|e| msg(format!("TLS setup: {e}")))?;
    Ok(crate::http::Role::Tls(tokio_rustls::TlsAcceptor::from(cfg)))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Hourly: uploads no record picked up (after a grace period) and events older than the
/// firehose backfill window are deleted.
async fn blob_gc(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        match app
            .uploads()
            .collect_garbage(crate::blobs::DEFAULT_TEMP_GRACE)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} unreferenced blobs"),
            Err(e) => tracing::warn!("could not remove unreferenced blobs: {e}"),
        }
        trim_events(&app).await;
    }
}

/// Events older than the firehose backfill window are no use to anyone.
async fn trim_events(app: &App) {
    if let Err(e) = app
        .writer
        .trim_events_before(app.firehose().window_start())
        .await
    {
        tracing::warn!("could not trim old firehose events: {e}");
    }
}

pub fn account_create(
    config: Config,
    handle: String,
    password: String,
    email: Option<String>,
    did_method: DidMethod,
) -> Result<(), CliError> {
    let dir = config.data_dir.clone();
    let before = Fresh::note(&dir);
    let result = runtime()?.block_on(async move {
        let app = open_or_create(config).await?;
        match app
            .accounts()
            .create(&handle, &password, email, method(did_method))
            .await
        {
            Ok(a) => {
                println!("created account {} ({})", a.handle, a.did);
                Ok(())
            }
            Err(AccountError::Exists(did)) => Err(msg(format!(
                "an account already exists on this server: {did}"
            ))),
            Err(e) => Err(msg(e)),
        }
    });
    // A create that failed (the PLC directory unreachable, say) leaves no half-made server.
    if result.is_err() {
        before.undo(&dir);
    }
    result
}

/// What a data dir held before a command that may create it, so a failure can take back
/// exactly what it made: the directory itself, or the entries that were not there.
enum Fresh {
    NoDir,
    Had(Vec<std::ffi::OsString>),
    /// Perch data was there already: nothing is ever removed.
    Existing,
}

impl Fresh {
    fn note(dir: &std::path::Path) -> Fresh {
        if dir.join("perch.sqlite").exists() {
            return Fresh::Existing;
        }
        match std::fs::read_dir(dir) {
            Ok(entries) => Fresh::Had(entries.flatten().map(|e| e.file_name()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fresh::NoDir,
            Err(_) => Fresh::Existing,
        }
    }

    fn undo(&self, dir: &std::path::Path) {
        match self {
            Fresh::Existing => {}
            Fresh::NoDir => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Fresh::Had(names) => {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if names.contains(&e.file_name()) {
                        continue;
                    }
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
    }
}

pub fn account_set_password(
    config: Config,
    password: String,
    revoke_app_passwords: bool,
) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        if app.account().await.map_err(msg)?.is_none() {
            return Err(msg("no account yet: run `perch account create` first"));
        }
        app.accounts()
            .set_password(&password, revoke_app_passwords)
            .await
            .map_err(msg)?;
        if revoke_app_passwords {
            println!("password changed; every session was signed out and app passwords deleted");
        } else {
            println!("password changed; every session was signed out");
        }
        Ok(())
    })
}

pub fn app_password_create(config: Config, name: String, privileged: bool) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let name = crate::auth::validate_app_password_name(&name)
            .map_err(msg)?
            .to_owned();
        let password = crate::auth::app_password::generate(&mut OsRng);
        let hash = crate::auth::hash_password(&password, &mut OsRng).map_err(msg)?;
        let row = account_rows::AppPassword {
            name: name.clone(),
            password_hash: hash,
            privileged,
            created_at: crate::syntax::format_datetime_millis(crate::clock::unix_secs() * 1000),
        };
        let inserted = app
            .writer
            .exec(move |c, _| account_rows::insert_app_password(c, &row))
            .await
            .map_err(msg)?;
        if !inserted {
            return Err(msg(format!(
                "an app password named {name:?} already exists"
            )));
        }
        println!("app password {name:?}: {password}");
        Ok(())
    })
}

pub fn app_password_list(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let list = app
            .store
            .read(account_rows::list_app_passwords)
            .await
            .map_err(msg)?;
        if list.is_empty() {
            println!("no app passwords");
        }
        for p in list {
            let kind = if p.privileged { " (privileged)" } else { "" };
            println!("{}  created {}{kind}", p.name, p.created_at);
        }
        Ok(())
    })
}

pub fn app_password_revoke(config: Config, name: String) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let deleted = app
            .writer
            .exec(move |c, _| account_rows::delete_app_password(c, &name))
            .await
            .map_err(msg)?;
        if deleted {
            println!("revoked");
            Ok(())
        } else {
            Err(msg("no app password by that name"))
        }
    })
}

pub fn request_crawl(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        if app.config.relays.is_empty() {
            return Err(msg("no relays configured (relays = [...] in the config)"));
        }
        let mut failed = false;
        for (relay, result) in app.federation.request_all().await {
            println!("{relay}: {result}");
            failed |= result != "ok";
        }
        if failed {
            Err(msg("some relays did not accept the request"))
        } else {
            Ok(())
        }
    })
}

pub fn seq_bump(config: Config, to: i64) -> Result<(), CliError> {
    if to < 1 {
        return Err(msg("--to must be a positive sequence number"));
    }
    let data_dir = config.data_dir.clone();
    let restored = crate::backup::restore::check_bump(&data_dir, to).map_err(msg)?;
    let floor_rev = restored.as_ref().and_then(|m| m.replaced_rev.clone());
    let announce = restored.is_some();
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let key = Arc::clone(&app.repo_key);
        app.writer
            .exec(move |c, state| {
                crate::store::repo::bump_seq(c, to)?;
                // The restored repo may be older than what relays hold:
                // a fresh commit and #identity + #sync, above the bump.
                if announce
                    && let Some(root) =
                        crate::writer::announce_restored(c, &key, floor_rev.as_deref())?
                    && let Some(s) = state.as_mut()
                {
                    s.root = root;
                }
                Ok(())
            })
            .await
            .map_err(msg)
    })?;
    println!("the next firehose event will have seq >= {to}");
    if announce {
        println!("announced the restored repo to relays with #identity and #sync events");
    }
    if restored.is_some() {
        crate::backup::restore::clear_marker(&data_dir).map_err(msg)?;
        println!("the restore is complete: perch serve will start now");
    }
    Ok(())
}

pub fn status(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let Some(acct) = app.account().await.map_err(msg)? else {
            println!("no account yet: run `perch account create`");
            return Ok(());
        };
        let root = app
            .store
            .read(crate::store::repo::get_root)
            .await
            .map_err(msg)?;
        let seq = *app.writer.seq_watch().borrow();
        println!("account   {} ({}), {}", acct.handle, acct.did, acct.status);
        if let Some(r) = &root {
            println!("repo      rev {} commit {}", r.rev, r.commit_cid);
        }
        println!("firehose  last seq {seq}");
        // The running server's own view (subscribers, relays), over the plain-HTTP port it
        // answers `/readyz` on; checked here when it is not running.
        let port = match (app.config.tls, app.config.http_listen) {
            (crate::config::TlsMode::Off, _) => Some(app.config.listen.port()),
            (_, Some(h)) => Some(h.port()),
            (_, None) => None,
        };
        let mut relays: Vec<crate::federation::RelayView> = Vec::new();
        let local = crate::net::Net::new(true);
        let answer = match port {
            Some(port) => {
                let url = format!("http://127.0.0.1:{port}/readyz");
                local.json(hyper::Method::GET, &url, None).await.ok()
            }
            None => None,
        };
        match answer {
            Some((_, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                println!(
                    "server    running; {} firehose subscriber(s)",
                    v.get("firehoseSubscribers")
                        .and_then(|x| x.as_u64())
                        .unwrap_or(0)
                );
                relays = serde_json::from_value(v["relays"].clone()).unwrap_or_default();
            }
            None => println!("server    not answering on this machine"),
        }
        if relays.is_empty() || relays.iter().any(|v| v.checked_at == 0) {
            relays = app.federation.check().await;
        }
        if relays.is_empty() {
            println!("relays    none configured: nobody is asked to carry your posts");
        }
        let now = crate::clock::unix_secs();
        for v in &relays {
            println!("relay     {}", v.describe(now));
            if let Some(advice) = v.advice() {
                println!("          {advice}");
            }
        }
        Ok(())
    })
}

pub fn plc_token(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        if app.account().await.map_err(msg)?.is_none() {
            return Err(msg("no account yet"));
        }
        let token = app.accounts().new_plc_code().await.map_err(msg)?;
        println!("{token}");
        Ok(())
    })
}
