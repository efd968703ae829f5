//! The wall clock, read in one place. Pure code (layers 0–1) never calls this: it takes
//! the time as a parameter, and these are what the callers above pass in.
//!
//! A clock before 1970 is a broken host; every reading then saturates at 0 rather than
//! failing, and what depends on increasing time (TIDs, revs) has its own guard.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// UNIX seconds.
pub fn unix_secs() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

/// UNIX milliseconds.
pub fn unix_millis() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// UNIX microseconds.
pub fn unix_micros() -> u64 {
    u64::try_from(since_epoch().as_micros()).unwrap_or(u64::MAX)
}

/// The nanoseconds within the current second (a little entropy for ids, not a time).
pub fn subsec_nanos() -> u32 {
    since_epoch().subsec_nanos()
}

/// Now as an atproto datetime with milliseconds (`2026-12-03T12:00:00.000Z`).
pub fn datetime_now() -> String {
    crate::syntax::format_datetime_millis(unix_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_agree() {
        let (s, ms, us) = (unix_secs(), unix_millis(), unix_micros());
        assert!(s > 1_700_000_000, "a clock after 2023");
        assert!((ms / 1000 - s).abs() <= 1);
        assert!((us as i64 / 1000 - ms).abs() <= 1000);
        assert!(crate::syntax::is_valid_datetime(&datetime_now()));
    }
}
