//! Scheduled backups inside `perch serve`: every `backup_interval_hours`,
//! the same snapshot as `perch backup` (on a blocking thread), then the
//! oldest backups beyond `backup_keep` are deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::snapshot::{self, Options};
use crate::config::Config;

/// The first backup after a start with no recent one waits this long, so
/// starting the server is not slowed by it.
const FIRST_DELAY: Duration = Duration::from_secs(60);
/// After a failure (often: the USB disk is not mounted) try again sooner
/// than a full interval, but not in a tight loop.
const RETRY_DELAY: Duration = Duration::from_secs(60 * 60);

/// What to back up, where to, how often, and how many to keep.
pub struct Plan {
    data_dir: PathBuf,
    /// `None` when backups are off (no `backup_dir`, or an interval of 0).
    root: Option<PathBuf>,
    interval: Duration,
    keep: usize,
}

impl Plan {
    pub fn from_config(config: &Config) -> Plan {
        Plan {
            data_dir: config.data_dir.clone(),
            root: config
                .backup_dir
                .clone()
                .filter(|_| config.backup_interval_hours > 0),
            interval: Duration::from_secs(config.backup_interval_hours.saturating_mul(3600)),
            keep: usize::try_from(config.backup_keep).unwrap_or(usize::MAX),
        }
    }
}

/// Runs for the life of the server; returns at once when backups are off.
pub async fn run(plan: Plan) {
    let Plan {
        data_dir,
        root,
        interval,
        keep,
    } = plan;
    let Some(root) = root else {
        return;
    };
    warn_if_same_disk(&data_dir, &root);
    let mut delay = next_delay(newest_backup_millis(&root), now_millis(), interval);
    loop {
        tracing::debug!("next scheduled backup in {} s", delay.as_secs());
        tokio::time::sleep(delay).await;
        let (d, r) = (data_dir.clone(), root.clone());
        let result = tokio::task::spawn_blocking(move || {
            snapshot::take(
                &d,
                &r,
                &Options { keep: Some(keep) },
                &crate::progress::Quiet,
            )
        })
        .await;
        delay = match result {
            Ok(Ok(out)) => {
                tracing::info!(
                    "backup {} written: {}, seq {}, {:.2} s{}",
                    out.dir.display(),
                    super::human_bytes(out.manifest.total_bytes()),
                    out.manifest.seq,
                    out.elapsed.as_secs_f64(),
                    if out.pruned.is_empty() {
                        String::new()
                    } else {
                        format!("; removed old backups {}", out.pruned.join(", "))
                    }
                );
                interval
            }
            Ok(Err(e)) => {
                tracing::warn!("scheduled backup into {} failed: {e}", root.display());
                RETRY_DELAY.min(interval)
            }
            Err(e) => {
                tracing::warn!("scheduled backup task failed: {e}");
                RETRY_DELAY.min(interval)
            }
        };
    }
}

/// How long until the next backup is due, given when the newest one was
/// taken: one interval after it, but never sooner than `FIRST_DELAY`.
pub fn next_delay(newest: Option<i64>, now: i64, interval: Duration) -> Duration {
    let Some(last) = newest else {
        return FIRST_DELAY;
    };
    let due = last.saturating_add(interval.as_millis() as i64);
    let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
    // A clock that jumped back must not postpone backups for years.
    wait.clamp(FIRST_DELAY, interval.max(FIRST_DELAY))
}

/// When the newest complete backup under `root` was taken (from its name).
fn newest_backup_millis(root: &Path) -> Option<i64> {
    let newest = super::list_complete(root).ok()?.pop()?;
    name_millis(&newest.file_name()?.to_string_lossy())
}

/// `YYYYMMDDTHHMMSSZ[-N]` → unix milliseconds.
pub fn name_millis(name: &str) -> Option<i64> {
    if !super::is_backup_name(name) {
        return None;
    }
    let b = name.get(..16)?;
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &b[0..4],
        &b[4..6],
        &b[6..8],
        &b[9..11],
        &b[11..13],
        &b[13..15]
    );
    crate::syntax::parse_datetime_micros(&iso)
        .ok()
        .map(|us| us / 1000)
}

/// How `perch doctor` sees the backups.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    Ok(String),
    Warn(String),
}

/// Whether a recent complete backup exists in `backup_dir`: missing
/// configuration, a missing directory (disk not mounted), no backup, or
/// one older than the schedule allows are warnings with the fix.
pub fn health(backup_dir: Option<&Path>, interval_hours: u64, now: i64) -> Health {
    let Some(dir) = backup_dir else {
        return Health::Warn(
            "no backup_dir set; an SD card can die: set backup_dir and backup_interval_hours \
             = 24 (README: Back up and restore)"
                .into(),
        );
    };
    if !dir.is_dir() {
        return Health::Warn(format!(
            "backup_dir {} does not exist (is the disk mounted?)",
            dir.display()
        ));
    }
    let Some(newest) = super::list_complete(dir).ok().and_then(|mut v| v.pop()) else {
        return Health::Warn(format!(
            "no backup in {} yet; run perch backup",
            dir.display()
        ));
    };
    let name = newest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let age_h = name_millis(&name).map_or(0, |t| (now - t).max(0) / 3_600_000);
    let allowed_h = if interval_hours == 0 {
        7 * 24
    } else {
        2 * interval_hours as i64 + 1
    };
    if age_h > allowed_h {
        let fix = if interval_hours == 0 {
            "run perch backup, or set backup_interval_hours"
        } else {
            "scheduled backups are failing: see journalctl -u perch"
        };
        return Health::Warn(format!(
            "the newest backup, {}, is {age_h} h old; {fix}",
            newest.display()
        ));
    }
    let schedule = if interval_hours == 0 {
        "no schedule".to_owned()
    } else {
        format!("every {interval_hours} h")
    };
    Health::Ok(format!(
        "newest {} is {age_h} h old ({schedule})",
        newest.display()
    ))
}

fn now_millis() -> i64 {
    super::unix_millis_now()
}

/// A backup on the data dir's own disk does not survive that disk.
fn warn_if_same_disk(data_dir: &Path, root: &Path) {
    if super::on_same_disk(data_dir, root) {
        tracing::warn!(
            "backup_dir {} is on the same disk as data_dir {}: it protects against \
             mistakes, not against that disk failing",
            root.display(),
            data_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_one_interval_after_the_newest_backup() {
        let day = Duration::from_secs(24 * 3600);
        let t0 = 1_700_000_000_000;
        assert_eq!(next_delay(None, t0, day), FIRST_DELAY);
        assert_eq!(
            next_delay(Some(t0), t0 + 3_600_000, day),
            Duration::from_secs(23 * 3600)
        );
        // Overdue: soon, but not during start-up.
        assert_eq!(next_delay(Some(t0 - 2 * 86_400_000), t0, day), FIRST_DELAY);
        // A backup "from the future" (clock went back): at most one interval.
        assert_eq!(next_delay(Some(t0 + 30 * 86_400_000), t0, day), day);
    }

    #[test]
    fn doctor_sees_missing_and_stale_backups() {
        let root = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let warn = |h: Health| match h {
            Health::Warn(m) => m,
            Health::Ok(m) => panic!("expected a warning, got {m}"),
        };
        assert!(warn(health(None, 24, t0)).contains("no backup_dir"));
        let gone = root.path().join("usb");
        assert!(warn(health(Some(&gone), 24, t0)).contains("is the disk mounted"));
        assert!(warn(health(Some(root.path()), 24, t0)).contains("no backup"));
        let b = root.path().join(super::super::backup_name(t0));
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join(super::super::MANIFEST), "{}").unwrap();
        let hour = 3_600_000;
        assert!(matches!(
            health(Some(root.path()), 24, t0 + 30 * hour),
            Health::Ok(_)
        ));
        assert!(warn(health(Some(root.path()), 24, t0 + 50 * hour)).contains("failing"));
        assert!(matches!(
            health(Some(root.path()), 0, t0 + 50 * hour),
            Health::Ok(_)
        ));
        assert!(warn(health(Some(root.path()), 0, t0 + 200 * hour)).contains("run perch backup"));
    }

    #[test]
    fn names_give_their_time() {
        let ms = 1_700_000_000_000;
        assert_eq!(name_millis(&super::super::backup_name(ms)), Some(ms));
        assert_eq!(name_millis("20231114T221320Z-3"), Some(ms));
        assert_eq!(name_millis("photos"), None);
    }
}
