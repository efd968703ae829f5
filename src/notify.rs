//! The systemd service-manager protocol (`Type=notify`): READY once the database is open and
//! the listeners are bound, STATUS lines in words, WATCHDOG pings that stop when perch stops
//! working, STOPPING on shutdown. Without `NOTIFY_SOCKET` every call does nothing.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

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

/// Storage failed: from now on every status line, where `systemctl status perch` shows it,
/// leads with why.
pub fn storage_failed(why: &str) {
    let _ = STORAGE_FAILED.set(format!("STORAGE FAILED ({why}): read-only until restarted"));
    if let Some(f) = STORAGE_FAILED.get() {
        send(&[NotifyState::Status(f)]);
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval while `healthy(within)` says so in time: `healthy`
/// is run by the runtime that serves requests, so a wedged runtime or a database that does not
/// answer stops the pings and systemd restarts perch.
pub async fn watchdog<F, P>(healthy: F)
where
    F: Fn(Duration) -> P,
    P: Future<Output = bool>,
{
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(10));
    loop {
        if healthy(every).await {
            send(&[NotifyState::Watchdog]);
        }
        tokio::time::sleep(every).await;
    }
}
