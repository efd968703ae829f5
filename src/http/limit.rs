//! Connection caps: a total, and one per client address so a single host (or a single IPv6
//! /64, which one subscriber usually holds whole) cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A held connection slot; dropping it frees the slot.
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

/// IPv4-mapped addresses count as IPv4; IPv6 addresses count per /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a connection from `ip`, or None when a cap is reached.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let key = bucket(ip);
        let mut guard = self.open.lock().ok()?;
        let (total, per_ip) = &mut *guard;
        let mine = per_ip.get(&key).copied().unwrap_or(0);
        if *total >= self.max_total || mine >= self.max_per_ip {
            return None;
        }
        *total += 1;
        per_ip.insert(key, mine + 1);
        Some(ConnPermit {
            limiter: Arc::clone(self),
            key,
        })
    }

    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |g| g.0)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.limiter.open.lock() {
            let (total, per_ip) = &mut *guard;
            *total = total.saturating_sub(1);
            if let Some(n) = per_ip.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none(), "per-address cap");
        let _p3 = l.try_acquire(b).unwrap();
        assert!(
            l.try_acquire("192.0.2.3".parse().unwrap()).is_none(),
            "total cap"
        );
        drop(p1);
        assert_eq!(l.open(), 2);
        assert!(l.try_acquire(a).is_some(), "a freed slot is reusable");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = ConnLimiter::new(100, 1);
        let _x = l.try_acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(l.try_acquire("2001:db8::ffff:2".parse().unwrap()).is_none());
        assert!(l.try_acquire("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _y = l.try_acquire("198.51.100.7".parse().unwrap()).unwrap();
        assert!(
            l.try_acquire("::ffff:198.51.100.7".parse().unwrap())
                .is_none()
        );
    }
}
