//! Whether storage can still be trusted with writes.
//!
//! An I/O error the writer cannot retry (SQLite's `IOERR`/`FULL`/`CANTOPEN`
//! on a commit, a failed fsync or write of a blob file) makes the server
//! read-only until it is restarted: writes answer 503, reads keep working,
//! `/readyz` and the systemd status line say why. It does not clear by
//! itself: after a failed fsync the kernel may have dropped the dirty pages
//! and marked them clean, so a later fsync that succeeds proves nothing about
//! the data written before it ("fsyncgate"). A restart reopens the database,
//! whose recovery reads what is really on the disk.

use std::sync::OnceLock;

/// The sticky storage failure, shared by the writer and the request paths.
#[derive(Debug, Default)]
pub struct StorageHealth {
    failure: OnceLock<String>,
    changed: tokio::sync::Notify,
}

impl StorageHealth {
    /// Record a failure; the first one is kept (later ones follow from it).
    pub fn fail(&self, what: impl std::fmt::Display) {
        if self.failure.set(what.to_string()).is_ok() {
            tracing::error!(
                "storage failed: {what}; perch now refuses writes until it is restarted \
                 (check the disk: dmesg, free space)"
            );
            self.changed.notify_waiters();
        }
    }

    /// What failed, if anything did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Waits until storage fails, then says how.
    pub async fn failed(&self) -> &str {
        loop {
            let changed = self.changed.notified();
            if let Some(f) = self.failure() {
                return f;
            }
            changed.await;
        }
    }
}

// Linux errno values: the ones that mean the medium failed or is full, as
// opposed to a limit of this process (EMFILE) or a race (ENOENT).
const EIO: i32 = 5;
const EFBIG: i32 = 27;
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;
const EDQUOT: i32 = 122;

/// An I/O error on perch's own files that no retry can be trusted to fix.
pub fn io_failure(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(EIO | EFBIG | ENOSPC | EROFS | EDQUOT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_failure_sticks_and_wakes_waiters() {
        let h = std::sync::Arc::new(StorageHealth::default());
        assert_eq!(h.failure(), None);
        let waiter = {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { h.failed().await.to_owned() })
        };
        tokio::task::yield_now().await;
        h.fail("fsync of the WAL: EIO");
        h.fail("a later error");
        assert_eq!(h.failure(), Some("fsync of the WAL: EIO"));
        assert_eq!(waiter.await.unwrap(), "fsync of the WAL: EIO");
        // A waiter that comes after the failure returns at once.
        assert_eq!(h.failed().await, "fsync of the WAL: EIO");
    }

    #[test]
    fn classifies_errors() {
        assert!(io_failure(&std::io::Error::from_raw_os_error(EIO)));
        assert!(io_failure(&std::io::Error::from_raw_os_error(ENOSPC)));
        assert!(!io_failure(&std::io::Error::from_raw_os_error(24))); // EMFILE
        assert!(!io_failure(&std::io::ErrorKind::NotFound.into()));
    }
}
