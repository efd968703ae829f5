//! Firehose subscribers, which hold no connection slot (an upgraded socket leaves its
//! connection behind) and are capped here instead, in total and per client address: a
//! newcomer always gets in, and an older subscriber makes room (see
//! [`SubscriberSlots::admit`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::addr::bucket;

/// Firehose subscribers, which hold no connection slot (an upgraded socket leaves its
/// connection behind) and count here instead.
pub struct SubscriberSlots {
    total: usize,
    per_address: usize,
    state: Mutex<Subscribers>,
}

#[derive(Default)]
struct Subscribers {
    /// Every subscriber, oldest first (ids rise): its address and how to tell it to go.
    all: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    /// Each address's subscribers, oldest first.
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
    next_id: u64,
}

impl Subscribers {
    fn remove(&mut self, id: u64) -> Option<Arc<Notify>> {
        let (key, evict) = self.all.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&key);
            }
        }
        Some(evict)
    }

    /// The oldest subscriber of the address holding the most (of those, the one whose
    /// oldest is oldest).
    fn crowded_oldest(&self) -> Option<u64> {
        self.by_address
            .values()
            .filter_map(|ids| Some((ids.len(), *ids.first()?)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, id)| id)
    }
}

/// A subscriber's place; dropping it frees the place.
pub struct SubscriberSlot {
    slots: Arc<SubscriberSlots>,
    id: u64,
    evict: Arc<Notify>,
}

impl SubscriberSlots {
    pub fn new(total: usize, per_address: usize) -> Arc<SubscriberSlots> {
        Arc::new(SubscriberSlots {
            total: total.max(1),
            per_address: per_address.max(1),
            state: Mutex::new(Subscribers::default()),
        })
    }

    /// A place for a new subscriber from `ip`, always: when its address has its share, its
    /// own oldest subscriber is told to go (a relay reconnecting replaces its stale
    /// socket); when everyone together has the total, the oldest subscriber of the
    /// address holding the most goes. Idle sockets from many addresses thus cannot lock a
    /// relay out, and whoever floods mostly pushes out their own.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> SubscriberSlot {
        let key = bucket(ip);
        let evict = Arc::new(Notify::new());
        let mut id = 0;
        if let Ok(mut st) = self.state.lock() {
            let mine = st.by_address.get(&key).map_or(0, BTreeSet::len);
            let victim = if mine >= self.per_address {
                st.by_address.get(&key).and_then(|ids| ids.first().copied())
            } else if st.all.len() >= self.total {
                st.crowded_oldest()
            } else {
                None
            };
            if let Some(gone) = victim.and_then(|v| st.remove(v)) {
                gone.notify_one();
            }
            id = st.next_id;
            st.next_id += 1;
            st.all.insert(id, (key, Arc::clone(&evict)));
            st.by_address.entry(key).or_default().insert(id);
        }
        SubscriberSlot {
            slots: Arc::clone(self),
            id,
            evict,
        }
    }

    pub fn count(&self) -> usize {
        self.state.lock().map_or(0, |s| s.all.len())
    }
}

impl SubscriberSlot {
    /// Resolves when a newcomer has taken this subscriber's place; it must close.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        if let Ok(mut st) = self.slots.state.lock() {
            st.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn gone(s: &SubscriberSlot) -> bool {
        let f = s.evicted();
        tokio::pin!(f);
        let waker = std::task::Waker::noop();
        f.as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }

    #[test]
    fn a_full_address_makes_room_from_its_own_oldest() {
        let s = SubscriberSlots::new(100, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a1 = s.admit(a);
        let a2 = s.admit(a);
        let b1 = s.admit("192.0.2.2".parse().unwrap());
        let a3 = s.admit(a);
        assert!(gone(&a1), "the address's oldest goes");
        assert!(!gone(&a2) && !gone(&b1) && !gone(&a3));
        assert_eq!(s.count(), 3);
        drop(a1);
        assert_eq!(
            s.count(),
            3,
            "an evicted subscriber's end frees nothing more"
        );
        let v6 = s.admit("2001:db8::1".parse().unwrap());
        let _v6b = s.admit("2001:db8::2".parse().unwrap());
        let _v6c = s.admit("2001:db8::3".parse().unwrap());
        assert!(gone(&v6), "one /64 is one address");
    }

    #[test]
    fn at_the_total_the_most_crowded_address_makes_room() {
        let s = SubscriberSlots::new(6, 4);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let relay = s.admit(ip(1));
        let flood: Vec<_> = (0..3).map(|_| s.admit(ip(2))).collect();
        let other: Vec<_> = (0..2).map(|_| s.admit(ip(3))).collect();
        assert_eq!(s.count(), 6);
        let newcomer = s.admit(ip(4));
        assert!(gone(&flood[0]), "the oldest of the address with the most");
        assert!(!gone(&relay), "the oldest of all is not the one to go");
        assert!(other.iter().chain(&flood[1..]).all(|x| !gone(x)));
        assert_eq!(s.count(), 6);
        // Now ip(2) and ip(3) hold two each: of those, ip(2)'s oldest is older.
        let _next = s.admit(ip(5));
        assert!(gone(&flood[1]));
        assert!(!gone(&newcomer) && !gone(&relay));
    }
}
