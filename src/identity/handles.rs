//! Other people's handles for `resolveHandle`: `@atproto/api` turns an
//! @mention into a link by asking the user's PDS, so anyone may make perch
//! resolve any handle. Results are kept a few minutes in a bounded cache
//! (failures a shorter while), and only a few resolutions run at once, so a
//! stranger asking for many names costs a bounded amount of outbound traffic
//! and memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::net::Net;

/// How long a handle that resolved is believed.
pub const FOUND_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a handle that did not resolve stays unresolved (it may be
/// being set up right now).
pub const MISSING_TTL: Duration = Duration::from_secs(60);
/// Cached handles at most (each well under 1 KiB).
pub const CACHE_MAX: usize = 1024;
/// Resolutions in flight at once; each is a DNS query and up to two HTTPS
/// fetches.
const CONCURRENT: usize = 8;
/// How long a request waits for a turn before giving up unanswered.
const QUEUE_WAIT: Duration = Duration::from_secs(30);

struct Entry {
    at: Instant,
    did: Option<String>,
}

/// A bounded cache of handle → DID (or "does not resolve") with expiry.
pub struct HandleCache {
    entries: Mutex<HashMap<String, Entry>>,
    max: usize,
}

impl HandleCache {
    pub fn new(max: usize) -> HandleCache {
        HandleCache {
            entries: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// `Some(Some(did))`: resolved; `Some(None)`: known not to resolve;
    /// `None`: not known (or expired) at `now`.
    pub fn get(&self, handle: &str, now: Instant) -> Option<Option<String>> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(handle)?;
        let ttl = if e.did.is_some() {
            FOUND_TTL
        } else {
            MISSING_TTL
        };
        (now.saturating_duration_since(e.at) < ttl).then(|| e.did.clone())
    }

    /// Remember the outcome for `handle`. At the bound, expired entries go
    /// first, then the oldest one.
    pub fn put(&self, handle: &str, did: Option<String>, now: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.max && !entries.contains_key(handle) {
            entries.retain(|_, e| {
                let ttl = if e.did.is_some() {
                    FOUND_TTL
                } else {
                    MISSING_TTL
                };
                now.saturating_duration_since(e.at) < ttl
            });
            if entries.len() >= self.max
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(handle.to_owned(), Entry { at: now, did });
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolution of other handles: the cache, the limit on concurrent
/// lookups, and which DNS server to ask.
pub struct HandleResolver {
    cache: HandleCache,
    permits: Semaphore,
    dns_override: Option<SocketAddr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    Found(String),
    NotFound,
    /// Too many lookups queued; nothing was learned or cached.
    Busy,
}

impl HandleResolver {
    /// `dns_override`: a DNS server to ask instead of the system's (tests,
    /// with `PERCH_ALLOW_LOOPBACK`).
    pub fn new(dns_override: Option<SocketAddr>) -> HandleResolver {
        HandleResolver {
            cache: HandleCache::new(CACHE_MAX),
            permits: Semaphore::new(CONCURRENT),
            dns_override,
        }
    }

    /// The DNS server handle lookups ask: the override, else the first
    /// `nameserver` of /etc/resolv.conf, read each time (DHCP may change it).
    pub fn dns(&self) -> Option<SocketAddr> {
        self.dns_override
            .or_else(|| super::dns::system_resolver().ok())
    }

    /// The DID `handle` (valid, lower-case) names, confirmed both ways
    /// ([`super::resolve::handle_to_did_via`]), from the cache when fresh.
    pub async fn resolve(&self, net: &Net, plc_url: &str, handle: &str) -> Resolution {
        if let Some(known) = self.cache.get(handle, Instant::now()) {
            return known.map_or(Resolution::NotFound, Resolution::Found);
        }
        let Ok(Ok(_permit)) = tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await else {
            return Resolution::Busy;
        };
        // Another request may have resolved it while this one waited.
        if let Some(known) = self.cache.get(handle, Instant::now()) {
            return known.map_or(Resolution::NotFound, Resolution::Found);
        }
        let did = super::resolve::handle_to_did_via(net, plc_url, self.dns(), handle)
            .await
            .map_err(|e| tracing::debug!("resolveHandle {handle}: {e}"))
            .ok();
        self.cache.put(handle, did.clone(), Instant::now());
        did.map_or(Resolution::NotFound, Resolution::Found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_found_later_than_missing() {
        let c = HandleCache::new(8);
        let t0 = Instant::now();
        c.put("a.example.com", Some("did:plc:a".into()), t0);
        c.put("b.example.com", None, t0);
        assert_eq!(
            c.get("a.example.com", t0),
            Some(Some("did:plc:a".to_owned()))
        );
        assert_eq!(c.get("b.example.com", t0), Some(None));
        assert_eq!(c.get("c.example.com", t0), None);
        let later = t0 + MISSING_TTL + Duration::from_secs(1);
        assert_eq!(c.get("b.example.com", later), None, "missing expires first");
        assert!(c.get("a.example.com", later).is_some());
        let much_later = t0 + FOUND_TTL + Duration::from_secs(1);
        assert_eq!(c.get("a.example.com", much_later), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = HandleCache::new(100);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            c.put(
                &format!("h{i}.example.com"),
                Some(format!("did:plc:{i}")),
                t0 + Duration::from_millis(i),
            );
            assert!(c.len() <= 100);
        }
        // The newest are kept, the oldest went.
        let now = t0 + Duration::from_secs(10);
        assert!(c.get("h9999.example.com", now).is_some());
        assert!(c.get("h0.example.com", now).is_none());
        // Expired entries make room before live ones are evicted.
        let c = HandleCache::new(2);
        c.put("old.example.com", None, t0);
        c.put(
            "live.example.com",
            Some("did:plc:x".into()),
            t0 + MISSING_TTL,
        );
        let now = t0 + MISSING_TTL + Duration::from_secs(1);
        c.put("new.example.com", None, now);
        assert!(c.get("live.example.com", now).is_some());
        assert!(c.get("new.example.com", now).is_some());
        assert_eq!(c.len(), 2);
    }

    #[tokio::test]
    async fn an_unresolvable_handle_is_remembered_as_missing() {
        // No DNS server listens on this port and https to a .invalid name
        // fails: NotFound, and the second ask does not look again.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let r = HandleResolver::new(Some(closed));
        let net = Net::new(false);
        let h = "nobody.perch.invalid";
        assert_eq!(r.resolve(&net, "", h).await, Resolution::NotFound);
        assert_eq!(r.cache.get(h, Instant::now()), Some(None));
        assert_eq!(r.resolve(&net, "", h).await, Resolution::NotFound);
    }
}
