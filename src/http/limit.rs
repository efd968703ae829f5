//! Connection caps: a total, and one per client address so a single host (or a single IPv6
//! /64, which one subscriber usually holds whole) cannot take every slot.
//!
//! Many addresses together can still fill the total with sockets that never send a request
//! (idle or slowloris). So when the total is reached, a new connection takes the slot of the
//! oldest connection that has not yet sent a request, rather than being turned away: a real
//! client sends its request within milliseconds of connecting and so is never the oldest,
//! while an attacker's own sockets are the ones that make way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that have not sent a request yet, oldest first (ids rise).
    fresh: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    /// Connections whose slot was handed on but whose task has not ended yet.
    evicted: HashSet<u64>,
    next_id: u64,
}

impl State {
    fn release(&mut self, key: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
    }
}

/// A held connection slot; dropping it frees the slot.
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
    id: u64,
    evict: Arc<Notify>,
    active: AtomicBool,
}

/// A connection's slot, carried in its requests' extensions so that whatever takes the
/// socket over (a WebSocket upgrade) keeps the slot until the socket closes.
#[derive(Clone)]
pub struct ConnSlot(pub Arc<ConnPermit>);

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
            state: Mutex::new(State::default()),
        })
    }

    /// A slot for a connection from `ip`, or None when its address has its share or every
    /// slot is held by a connection that has sent a request.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let key = bucket(ip);
        let mut st = self.state.lock().ok()?;
        if st.per_ip.get(&key).copied().unwrap_or(0) >= self.max_per_ip {
            return None;
        }
        if st.total >= self.max_total {
            let (victim, (victim_key, evict)) = st.fresh.pop_first()?;
            st.release(victim_key);
            st.evicted.insert(victim);
            evict.notify_one();
        }
        st.total += 1;
        *st.per_ip.entry(key).or_insert(0) += 1;
        let id = st.next_id;
        st.next_id += 1;
        let evict = Arc::new(Notify::new());
        st.fresh.insert(id, (key, Arc::clone(&evict)));
        Some(ConnPermit {
            limiter: Arc::clone(self),
            key,
            id,
            evict,
            active: AtomicBool::new(false),
        })
    }

    pub fn open(&self) -> usize {
        self.state.lock().map_or(0, |s| s.total)
    }
}

impl ConnPermit {
    /// The connection has sent a request: it keeps its slot from now on.
    pub fn mark_active(&self) {
        if !self.active.swap(true, Relaxed)
            && let Ok(mut st) = self.limiter.state.lock()
        {
            st.fresh.remove(&self.id);
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Resolves when a newer connection has taken this one's slot; the connection must close.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Ok(mut st) = self.limiter.state.lock() {
            if st.evicted.remove(&self.id) {
                return;
            }
            st.fresh.remove(&self.id);
            st.release(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_per_address_and_in_total() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none(), "per-address cap");
        let p3 = l.try_acquire(b).unwrap();
        for p in [&p1, &p2, &p3] {
            p.mark_active();
        }
        assert!(
            l.try_acquire("192.0.2.3".parse().unwrap()).is_none(),
            "total cap, with every connection busy"
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

    #[tokio::test]
    async fn a_full_house_hands_the_oldest_idle_slot_to_a_newcomer() {
        let l = ConnLimiter::new(3, 10);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let busy = l.try_acquire(ip(1)).unwrap();
        busy.mark_active();
        let oldest_idle = l.try_acquire(ip(2)).unwrap();
        let newer_idle = l.try_acquire(ip(3)).unwrap();
        let newcomer = l.try_acquire(ip(4)).expect("an idle slot is handed on");
        assert_eq!(l.open(), 3, "the total stays at the cap");
        tokio::time::timeout(Duration::from_secs(1), oldest_idle.evicted())
            .await
            .expect("the oldest idle connection is told to go");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), newer_idle.evicted())
                .await
                .is_err(),
            "only one connection makes way"
        );
        // Its task ends later: that must not free the slot a second time.
        drop(oldest_idle);
        assert_eq!(l.open(), 3);
        newer_idle.mark_active();
        newcomer.mark_active();
        assert!(
            l.try_acquire(ip(5)).is_none(),
            "busy connections are never pushed out"
        );
        drop(busy);
        assert_eq!(l.open(), 2);
        assert!(l.try_acquire(ip(5)).is_some());
    }

    #[test]
    fn an_address_at_its_share_does_not_push_others_out() {
        let l = ConnLimiter::new(2, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _idle_a = l.try_acquire(a).unwrap();
        let _idle_b = l.try_acquire("192.0.2.2".parse().unwrap()).unwrap();
        assert!(l.try_acquire(a).is_none());
        assert_eq!(l.open(), 2);
    }
}
