//! A budget for request-body bytes held in memory, in total and per client address (IPv6
//! per /64): thousands of HTTP/2 streams whose bodies stop just short of the limit would
//! otherwise each keep their bytes (150 KB for JSON) until the body deadline.
//!
//! A request is charged before it reads: its whole `Content-Length` up front when it has
//! one, else a little ahead of each read. When the bytes do not fit it waits (no data is
//! read meanwhile, so HTTP/2 flow control and TCP hold the client back), within the body
//! deadline; the charge goes when the request does. One request is never charged more
//! than an address's share: the only bodies that large (records, applyWrites,
//! importRepo) are read after the account's own credentials are checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::addr::bucket;

/// Request-body bytes held at once by everyone: small next to a Pi's memory.
pub const TOTAL: usize = 16 * 1024 * 1024;
/// By one address: a record (1 MiB) with room to spare; sixteen addresses fill the total.
pub const PER_ADDRESS: usize = 2 * 1024 * 1024;

pub struct BodyBudget {
    total: usize,
    per_address: usize,
    state: Mutex<Used>,
    freed: Notify,
}

#[derive(Default)]
struct Used {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// What one request holds of the budget; dropping it gives the bytes back.
pub struct BodyCharge {
    budget: Arc<BodyBudget>,
    key: IpAddr,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(total: usize, per_address: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            total,
            per_address: per_address.min(total),
            state: Mutex::new(Used::default()),
            freed: Notify::new(),
        })
    }

    /// An empty charge for a request from `ip`.
    pub fn charge(self: &Arc<Self>, ip: IpAddr) -> BodyCharge {
        BodyCharge {
            budget: Arc::clone(self),
            key: bucket(ip),
            bytes: 0,
        }
    }

    /// Bytes charged now, in total and to `ip`.
    pub fn used(&self, ip: IpAddr) -> (usize, usize) {
        self.state.lock().map_or((0, 0), |s| {
            (
                s.total,
                s.per_address.get(&bucket(ip)).copied().unwrap_or(0),
            )
        })
    }

    fn try_add(&self, key: IpAddr, n: usize) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return true;
        };
        let mine = st.per_address.get(&key).copied().unwrap_or(0);
        if st.total + n > self.total || mine + n > self.per_address {
            return false;
        }
        st.total += n;
        *st.per_address.entry(key).or_insert(0) += n;
        true
    }
}

impl BodyCharge {
    /// Wait until this request holds at least `bytes` (capped at an address's share).
    pub async fn hold(&mut self, bytes: usize) {
        let want = bytes.min(self.budget.per_address);
        if want <= self.bytes {
            return;
        }
        let more = want - self.bytes;
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.budget.try_add(self.key, more) {
                self.bytes = want;
                return;
            }
            freed.await;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BodyCharge {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        if let Ok(mut st) = self.budget.state.lock() {
            st.total = st.total.saturating_sub(self.bytes);
            if let Some(n) = st.per_address.get_mut(&self.key) {
                *n = n.saturating_sub(self.bytes);
                if *n == 0 {
                    st.per_address.remove(&self.key);
                }
            }
        }
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    async fn holds_within(c: &mut BodyCharge, n: usize, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), c.hold(n))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn bytes_wait_for_room_per_address_and_in_total() {
        let b = BodyBudget::new(100, 40);
        let mut a1 = b.charge(ip(1));
        assert!(holds_within(&mut a1, 30, 50).await);
        let mut a2 = b.charge(ip(1));
        assert!(
            !holds_within(&mut a2, 20, 50).await,
            "the address is at its share"
        );
        let mut others: Vec<_> = (2..=4).map(|n| b.charge(ip(n))).collect();
        for c in &mut others {
            assert!(holds_within(c, 20, 50).await);
        }
        assert_eq!(b.used(ip(1)), (90, 30));
        let mut late = b.charge(ip(9));
        assert!(!holds_within(&mut late, 20, 50).await, "the total is full");
        // A request that ends gives its bytes back, and a waiter goes on.
        let waiter = tokio::spawn(async move {
            a2.hold(20).await;
            a2
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a1);
        let a2 = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap();
        assert_eq!(a2.bytes(), 20);
        assert_eq!(b.used(ip(1)), (80, 20));
        drop(a2);
        drop(others);
        assert_eq!(b.used(ip(1)), (0, 0));
    }

    #[tokio::test]
    async fn one_request_is_charged_at_most_a_share() {
        let b = BodyBudget::new(100, 40);
        let mut big = b.charge(ip(1));
        assert!(holds_within(&mut big, 10_000, 50).await);
        assert_eq!(big.bytes(), 40);
        let mut v6 = b.charge("2001:db8::1".parse().unwrap());
        assert!(holds_within(&mut v6, 40, 50).await);
        let mut same64 = b.charge("2001:db8::2".parse().unwrap());
        assert!(
            !holds_within(&mut same64, 1, 50).await,
            "one /64, one share"
        );
    }
}
