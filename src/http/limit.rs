//! Connection caps: a total, and one per client address so a single host (or a single IPv6
//! /64, which one subscriber usually holds whole) cannot take every slot.
//!
//! Many addresses together can still fill the total with connections that do nothing:
//! sockets that never send a request (idle or slowloris), and keep-alive HTTP/1 or HTTP/2
//! connections with no request open. So when the total is reached, a new connection takes
//! the slot of the connection that has been idle longest, rather than being turned away:
//! a connection is idle while it has no request open, from when it was accepted or its
//! last response ended (a request is open until its response body is finished). Busy
//! connections are never pushed out. A client whose idle keep-alive connection goes just
//! opens another; an attacker's idle sockets are the ones that make way.
//!
//! Requests open at once are capped too, per address and in total: each HTTP/2 stream
//! costs memory (the request, its handler, what flow control lets the client send ahead)
//! whether or not its body ever arrives, and 64 streams on each of 1024 connections would
//! be far more than a small box has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    max_requests: usize,
    max_requests_per_ip: usize,
    state: Mutex<State>,
}

/// Requests (HTTP/2 streams) open at once from one address, for each connection it may
/// hold: 256 with the default 64, far above what a household's apps send together, far
/// below 64 connections' worth of streams (4096).
pub const REQUESTS_PER_CONNECTION_PER_IP: usize = 4;
/// Requests open at once in all, for each connection slot: 4096 with the default 1024 (at
/// ~10 KB each, 40 MB), so that sixteen addresses at their own caps are needed to fill it.
pub const REQUESTS_PER_CONNECTION: usize = 4;

/// Why a request was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum TooMany {
    /// Its address has as many requests open as it may.
    Address,
    /// Everyone together has.
    Total,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    requests: usize,
    requests_per_ip: HashMap<IpAddr, usize>,
    /// Every connection holding a slot, by id.
    conns: HashMap<u64, Conn>,
    /// Connections with no request open, longest idle first: idle ticket → connection id.
    idle: BTreeMap<u64, u64>,
    /// Connections whose slot was handed on but whose task has not ended yet.
    evicted: HashSet<u64>,
    next_id: u64,
    next_ticket: u64,
}

struct Conn {
    key: IpAddr,
    evict: Arc<Notify>,
    /// Requests (HTTP/2 streams) whose responses have not finished.
    open: usize,
    /// Its place in `idle` while it has no request open.
    idle_ticket: Option<u64>,
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

    fn make_idle(&mut self, id: u64) {
        let ticket = self.next_ticket;
        if let Some(c) = self.conns.get_mut(&id) {
            self.next_ticket += 1;
            c.idle_ticket = Some(ticket);
            self.idle.insert(ticket, id);
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

/// An open request on a connection: while one lives, the connection is busy and keeps its
/// slot. It must live until the response body has been sent (or dropped).
pub struct OpenRequest {
    permit: Arc<ConnPermit>,
}

use crate::addr::bucket;

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Self::with_request_caps(
            max_total,
            max_per_ip,
            max_total.saturating_mul(REQUESTS_PER_CONNECTION),
            max_per_ip.saturating_mul(REQUESTS_PER_CONNECTION_PER_IP),
        )
    }

    pub fn with_request_caps(
        max_total: usize,
        max_per_ip: usize,
        max_requests: usize,
        max_requests_per_ip: usize,
    ) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            max_requests,
            max_requests_per_ip,
            state: Mutex::new(State::default()),
        })
    }

    /// A slot for a connection from `ip`, or None when its address has its share or every
    /// slot is held by a connection with a request open.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let key = bucket(ip);
        let mut st = self.state.lock().ok()?;
        if st.per_ip.get(&key).copied().unwrap_or(0) >= self.max_per_ip {
            return None;
        }
        if st.total >= self.max_total {
            let (_, victim) = st.idle.pop_first()?;
            if let Some(v) = st.conns.remove(&victim) {
                st.release(v.key);
                st.evicted.insert(victim);
                v.evict.notify_one();
            }
        }
        st.total += 1;
        *st.per_ip.entry(key).or_insert(0) += 1;
        let id = st.next_id;
        st.next_id += 1;
        let evict = Arc::new(Notify::new());
        st.conns.insert(
            id,
            Conn {
                key,
                evict: Arc::clone(&evict),
                open: 0,
                idle_ticket: None,
            },
        );
        st.make_idle(id);
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
    /// A request has begun on this connection: it is busy until the returned guard goes.
    /// Refused when its address, or everyone together, has as many requests open as allowed
    /// (the connection stays as it was).
    pub fn begin_request(self: &Arc<Self>) -> Result<OpenRequest, TooMany> {
        self.active.store(true, Relaxed);
        let l = &self.limiter;
        if let Ok(mut st) = l.state.lock() {
            let mine = st.requests_per_ip.get(&self.key).copied().unwrap_or(0);
            if mine >= l.max_requests_per_ip {
                return Err(TooMany::Address);
            }
            if st.requests >= l.max_requests {
                return Err(TooMany::Total);
            }
            st.requests += 1;
            *st.requests_per_ip.entry(self.key).or_insert(0) += 1;
            if let Some(c) = st.conns.get_mut(&self.id) {
                c.open += 1;
                if let Some(t) = c.idle_ticket.take() {
                    st.idle.remove(&t);
                }
            }
        }
        Ok(OpenRequest {
            permit: Arc::clone(self),
        })
    }

    /// Whether the connection has ever sent a request.
    pub fn is_active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Resolves when a newer connection has taken this one's slot; the connection must close.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let p = &self.permit;
        if let Ok(mut st) = p.limiter.state.lock() {
            st.requests = st.requests.saturating_sub(1);
            if let Some(n) = st.requests_per_ip.get_mut(&p.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.requests_per_ip.remove(&p.key);
                }
            }
            if let Some(c) = st.conns.get_mut(&p.id) {
                c.open = c.open.saturating_sub(1);
                if c.open == 0 {
                    st.make_idle(p.id);
                }
            }
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Ok(mut st) = self.limiter.state.lock() {
            if st.evicted.remove(&self.id) {
                return;
            }
            if let Some(c) = st.conns.remove(&self.id)
                && let Some(t) = c.idle_ticket
            {
                st.idle.remove(&t);
            }
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
        let p1 = Arc::new(l.try_acquire(a).unwrap());
        let p2 = Arc::new(l.try_acquire(a).unwrap());
        assert!(l.try_acquire(a).is_none(), "per-address cap");
        let p3 = Arc::new(l.try_acquire(b).unwrap());
        let _busy: Vec<_> = [&p1, &p2, &p3].map(|p| p.begin_request().unwrap()).into();
        assert!(
            l.try_acquire("192.0.2.3".parse().unwrap()).is_none(),
            "total cap, with every connection busy"
        );
        drop(_busy);
        drop((p1, p2, p3));
        assert_eq!(l.open(), 0);
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
        let busy = Arc::new(l.try_acquire(ip(1)).unwrap());
        let busy_request = busy.begin_request().unwrap();
        let oldest_idle = l.try_acquire(ip(2)).unwrap();
        let newer_idle = Arc::new(l.try_acquire(ip(3)).unwrap());
        let newcomer = Arc::new(l.try_acquire(ip(4)).expect("an idle slot is handed on"));
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
        let r1 = newer_idle.begin_request().unwrap();
        let r2 = newcomer.begin_request().unwrap();
        assert!(
            l.try_acquire(ip(5)).is_none(),
            "busy connections are never pushed out"
        );
        drop(busy_request);
        // Idle again after its request (HTTP/2 or keep-alive): the longest idle goes first.
        drop(r2);
        drop(r1);
        let fifth = l
            .try_acquire(ip(5))
            .expect("an idle keep-alive slot is handed on");
        tokio::time::timeout(Duration::from_secs(1), busy.evicted())
            .await
            .expect("idle longest: its request ended first");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), newcomer.evicted())
                .await
                .is_err()
        );
        drop(fifth);
        assert_eq!(l.open(), 2);
        drop(busy);
        assert_eq!(
            l.open(),
            2,
            "an evicted connection's end frees nothing more"
        );
    }

    #[tokio::test]
    async fn a_connection_with_any_stream_open_keeps_its_slot() {
        let l = ConnLimiter::new(1, 10);
        let h2 = Arc::new(l.try_acquire(IpAddr::from([192, 0, 2, 1])).unwrap());
        let s1 = h2.begin_request().unwrap();
        let s2 = h2.begin_request().unwrap();
        drop(s1);
        assert!(l.try_acquire(IpAddr::from([192, 0, 2, 2])).is_none());
        drop(s2);
        assert!(l.try_acquire(IpAddr::from([192, 0, 2, 2])).is_some());
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

    #[test]
    fn requests_open_at_once_are_capped_per_address_and_in_total() {
        let l = ConnLimiter::with_request_caps(10, 10, 5, 3);
        let a = Arc::new(l.try_acquire(IpAddr::from([192, 0, 2, 1])).unwrap());
        let a2 = Arc::new(l.try_acquire(IpAddr::from([192, 0, 2, 1])).unwrap());
        let mut open: Vec<_> = (0..2).map(|_| a.begin_request().unwrap()).collect();
        open.push(a2.begin_request().unwrap());
        assert_eq!(
            a2.begin_request().err(),
            Some(TooMany::Address),
            "across connections"
        );
        let b = Arc::new(l.try_acquire(IpAddr::from([192, 0, 2, 2])).unwrap());
        open.extend((0..2).map(|_| b.begin_request().unwrap()));
        assert_eq!(b.begin_request().err(), Some(TooMany::Total));
        open.pop();
        assert!(b.begin_request().is_ok(), "an ended request makes room");
        // A refused request leaves the connection idle: it can still make way.
        let c = l.try_acquire(IpAddr::from([192, 0, 2, 3])).unwrap();
        drop(open);
        assert!(Arc::new(c).begin_request().is_ok());
    }
}
