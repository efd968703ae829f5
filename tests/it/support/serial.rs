//! Turns for the tests that measure the machine: the kill -9 and power-cut
//! loops, fault injection, the fan-out figures and the watchdog's timing.
//! Each used to be a binary of its own, with the machine to itself; in one
//! binary they take turns here (lighter tests still run beside them, as
//! tests of one binary always did).

use tokio::sync::{Mutex, MutexGuard};

static TURN: Mutex<()> = Mutex::const_new(());

/// Held for the whole test.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    TURN.lock().await
}

/// As `one_at_a_time`, for a test without a runtime.
pub fn one_at_a_time_blocking() -> MutexGuard<'static, ()> {
    TURN.blocking_lock()
}
