//! Server and account commands.

use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

use super::{CliError, DidMethod};
use crate::account::{self, AccountError};
use crate::app::App;
use crate::config::Config;
use crate::store::{account as account_rows, blobs as blob_rows};

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        // A Pi has 1–4 cores; the writer and blocking pool add their own.
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start the runtime: {e}")))
}

fn msg(e: impl std::fmt::Display) -> CliError {
    CliError::Message(e.to_string())
}

async fn open(config: Config) -> Result<Arc<App>, CliError> {
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

pub fn serve(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let listen = config.listen;
        let app = open(config).await?;
        if app.config.dev
            && app.config.plc_url.is_empty()
            && app.account().await.map_err(msg)?.is_none()
        {
            let password = dev_password();
            let acct =
                account::create(&app, "alice.test", &password, None, account::DidMethod::Web)
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
        let listener = crate::http::bind(listen)
            .await
            .map_err(|e| msg(format!("cannot listen on {listen}: {e}")))?;
        let local = listener.local_addr().map_err(msg)?;
        tracing::info!(
            "perch {} listening on http://{local}",
            env!("CARGO_PKG_VERSION")
        );
        tokio::spawn(blob_gc(Arc::clone(&app)));
        tokio::spawn(crate::crawl::run(Arc::clone(&app)));
        crate::http::serve(app, listener, shutdown_signal())
            .await
            .map_err(msg)?;
        tracing::info!("stopped");
        Ok(())
    })
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

/// Uploaded blobs no record picked up are deleted after a grace period.
async fn blob_gc(app: Arc<App>) {
    let grace = crate::blobs::DEFAULT_TEMP_GRACE;
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let before = crate::api::repo::unix_now() - grace.as_secs() as i64;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = app
            .writer
            .exec(move |c, _| {
                let cids = blob_rows::unreferenced_before(c, before)?;
                for cid in &cids {
                    blob_rows::delete_blob(c, cid)?;
                }
                let _ = tx.send(cids);
                Ok(())
            })
            .await;
        if let (Ok(()), Ok(cids)) = (r, rx.await) {
            if !cids.is_empty() {
                tracing::info!("removing {} unreferenced blobs", cids.len());
            }
            let blobs = app.blobs.clone();
            let _ = tokio::task::spawn_blocking(move || blobs.delete_many_blocking(&cids)).await;
        }
        let _ = app.blobs.gc_temps(grace).await;
    }
}

pub fn account_create(
    config: Config,
    handle: String,
    password: String,
    email: Option<String>,
    did_method: DidMethod,
) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        match account::create(&app, &handle, &password, email, method(did_method)).await {
            Ok(a) => {
                println!("created account {} ({})", a.handle, a.did);
                Ok(())
            }
            Err(AccountError::Exists(did)) => Err(msg(format!(
                "an account already exists on this server: {did}"
            ))),
            Err(e) => Err(msg(e)),
        }
    })
}

pub fn account_set_password(config: Config, password: String) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        if app.account().await.map_err(msg)?.is_none() {
            return Err(msg("no account yet: run `perch account create` first"));
        }
        account::set_password(&app, &password).await.map_err(msg)?;
        println!("password changed; all sessions were signed out");
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
            created_at: crate::syntax::format_datetime_millis(crate::api::repo::unix_now() * 1000),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        app.writer
            .exec(move |c, _| {
                let _ = tx.send(account_rows::insert_app_password(c, &row)?);
                Ok(())
            })
            .await
            .map_err(msg)?;
        if !rx.await.unwrap_or(false) {
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        app.writer
            .exec(move |c, _| {
                let _ = tx.send(account_rows::delete_app_password(c, &name)?);
                Ok(())
            })
            .await
            .map_err(msg)?;
        if rx.await.unwrap_or(false) {
            println!("revoked");
            Ok(())
        } else {
            Err(msg("no app password by that name"))
        }
    })
}
