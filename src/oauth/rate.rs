//! Request budgets for the OAuth endpoints anyone can call: a token bucket per client
//! address (an IPv6 /64 counts as one) and endpoint kind. PAR makes perch fetch a URL the
//! caller names, and the pages and token endpoint do database work, so none of them may be
//! called without bound. The password itself is guarded separately, by the login limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// What is being asked for; each has its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pushed authorization requests (each may fetch a client metadata document).
    Par,
    /// Token requests (code exchange, refresh, revocation).
    Token,
    /// The sign-in and consent pages.
    Page,
}

impl Kind {
    /// (burst, refill per minute)
    fn budget(self) -> (f64, f64) {
        match self {
            Kind::Par => (30.0, 60.0),
            Kind::Token => (60.0, 120.0),
            Kind::Page => (60.0, 120.0),
        }
    }
}

/// Addresses tracked at most; beyond it the oldest-filled buckets are dropped (a dropped
/// bucket is full again, so this bounds memory, not strictness, under a flood of addresses).
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct Budgets {
    buckets: Mutex<HashMap<(IpAddr, Kind), (f64, i64)>>,
}

impl Budgets {
    /// Takes one request from the budget of `ip` for `kind` at `now_ms`; Err(seconds to
    /// wait) when it is spent.
    pub fn take(&self, ip: IpAddr, kind: Kind, now_ms: i64) -> Result<(), u64> {
        let (burst, per_min) = kind.budget();
        let key = (crate::addr::bucket(ip), kind);
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            // Full buckets carry no information; drop them first, then anything.
            map.retain(|(_, k), (tokens, at)| {
                let (b, r) = k.budget();
                *tokens + (now_ms - *at).max(0) as f64 * r / 60_000.0 < b
            });
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(key).or_insert((burst, now_ms));
        let refilled = (*tokens + (now_ms - *at).max(0) as f64 * per_min / 60_000.0).min(burst);
        *at = now_ms;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = ((1.0 - refilled) * 60.0 / per_min).ceil() as u64;
            Err(wait.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_address() {
        let b = Budgets::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..30 {
            b.take(a, Kind::Par, 0).unwrap();
        }
        let wait = b.take(a, Kind::Par, 0).unwrap_err();
        assert_eq!(wait, 1, "60 per minute: one a second");
        // Other addresses and other kinds have their own budgets.
        b.take(other, Kind::Par, 0).unwrap();
        b.take(a, Kind::Token, 0).unwrap();
        // A second later one more request is allowed, and only one.
        b.take(a, Kind::Par, 1_000).unwrap();
        assert!(b.take(a, Kind::Par, 1_000).is_err());
    }

    #[test]
    fn one_ipv6_64_is_one_budget() {
        let b = Budgets::default();
        for i in 0..30u16 {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            b.take(ip, Kind::Par, 0).unwrap();
        }
        assert!(
            b.take("2001:db8::ffff".parse().unwrap(), Kind::Par, 0)
                .is_err()
        );
        assert!(
            b.take("2001:db8:0:1::1".parse().unwrap(), Kind::Par, 0)
                .is_ok()
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let b = Budgets::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            b.take(ip, Kind::Page, 0).unwrap();
        }
        assert!(b.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }
}
