//! The systemd service-manager protocol (`Type=notify`): READY once the database is open and
//! the listeners are bound, STATUS lines in words, WATCHDOG pings that stop when perch stops
//! working, STOPPING on shutdown. Without `NOTIFY_SOCKET` every call does nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::app::App;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Startup finished; `status` says what the server is doing.
pub fn ready(status: &str) {
    send(&[NotifyState::Status(status), NotifyState::Ready]);
}

/// Set once storage fails; every later status line leads with it.
static STORAGE_FAILED: OnceLock<String> = OnceLock::new();

/// A one-line status for `systemctl status`.
pub fn status(status: &str) {
    match STORAGE_FAILED.get() {
        Some(f) => send(&[NotifyState::Status(&format!("{f}; {status}"))]),
        None => send(&[NotifyState::Status(status)]),
    }
}

/// Waits for a storage failure and puts it in the status line, where `systemctl status
/// perch` shows it.
pub async fn watch_storage(app: Arc<App>) {
    let why = app.writer.health().failed().await;
    let _ = STORAGE_FAILED.set(format!("STORAGE FAILED ({why}): read-only until restarted"));
    app.metrics.set_storage_ok(false);
    if let Some(f) = STORAGE_FAILED.get() {
        send(&[NotifyState::Status(f)]);
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval, but only while the runtime that serves requests
/// schedules this task and the database answers a read in time: a wedged server stops pinging
/// and systemd restarts it. The writer is not probed: one large import may legitimately hold
/// it longer than a watchdog interval.
pub async fn watchdog(app: Arc<App>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(10));
    loop {
        let probe = app.store.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(Into::into)
        });
        match tokio::time::timeout(every, probe).await {
            Ok(Ok(_)) => {
                app.metrics
                    .set_storage_ok(app.writer.health().failure().is_none());
                send(&[NotifyState::Watchdog]);
            }
            Ok(Err(e)) => {
                app.metrics.set_storage_ok(false);
                tracing::warn!("watchdog probe: database read failed: {e}");
            }
            Err(_) => {
                app.metrics.set_storage_ok(false);
                tracing::warn!("watchdog probe: database read took longer than {every:?}");
            }
        }
        tokio::time::sleep(every).await;
    }
}
