//! Login rate limiting: slow down password guessing without locking the owner out.
//!
//! Three layers, all in memory (a restart forgets them, which only ever helps the
//! owner; an attacker gains one fresh budget per restart, which is small):
//!
//! 1. **Per-IP token bucket** (default 10 attempts, refilled 10 per 15 min). IPv6 is
//!    grouped by /64, since one host usually owns a whole /64.
//! 2. **Per-IP exponential delay**: after `free_failures` consecutive failures, each
//!    further failure blocks that IP for base·2ⁿ (1 s, 2 s, 4 s, …) capped at 10 min.
//!    A success from the IP clears its state at once; a day without failures forgets
//!    the streak.
//! 3. **Account-wide buckets** across all IPs (reference values: 30 per 5 min and 300
//!    per day), refilled continuously, so an attacker with many addresses still gets
//!    at most ~300 guesses a day.
//!
//! Only failures consume tokens in the end. `check` *reserves* a token so that many
//! parallel requests from one address cannot all pass before the first (slow, argon2)
//! verification fails; `record_success` gives the reservation back.
//!
//! # How the owner still gets in
//!
//! - **One hammering address** can never drain the account budgets: its bucket holds
//!   10, below the 30/5 min budget, and the capped delay limits it to roughly 150
//!   failures a day, below the 300/day budget. The owner, from any other address,
//!   logs in normally.
//! - **Many addresses** (botnet, or IPv6 prefixes beyond one /64) can drain the
//!   account budgets. The budget gates only *untrusted* addresses: an address (or /64)
//!   where a login succeeded within `trust_ttl_ms` (30 days) skips the account-wide
//!   buckets and is limited only by its own per-IP layers. An attacker cannot become
//!   trusted without a correct password, and the trusted set is separate from the IP
//!   table (successes only), so attacker traffic cannot evict it. The owner's home
//!   network and phone apps that refresh their sessions stay usable throughout.
//! - An owner on a *new* address during a distributed attack waits for the account
//!   buckets: they refill continuously (one token every 10 s / 288 s), so Retry-After
//!   is minutes, never a fixed lockout; the operator can also restart the server.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// A refill-continuously token bucket's shape: `capacity` tokens, refilled at
/// `capacity` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    pub capacity: u32,
    pub window_ms: u64,
}

/// Limiter settings; [`Default`] gives the values described in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterConfig {
    pub per_ip: BucketConfig,
    /// Account-wide buckets; all must have a token for an untrusted address.
    pub per_account: Vec<BucketConfig>,
    /// Consecutive failures from one address before delays start.
    pub free_failures: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A failure streak is forgotten after this long without failures.
    pub failure_memory_ms: u64,
    /// Bound on addresses tracked; the least recently active is evicted.
    pub max_tracked_ips: usize,
    /// Bound on trusted addresses; the oldest success is evicted.
    pub max_trusted_ips: usize,
    pub trust_ttl_ms: u64,
}

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 60 * MINUTE_MS;

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            per_ip: BucketConfig {
                capacity: 10,
                window_ms: 15 * MINUTE_MS,
            },
            per_account: vec![
                BucketConfig {
                    capacity: 30,
                    window_ms: 5 * MINUTE_MS,
                },
                BucketConfig {
                    capacity: 300,
                    window_ms: DAY_MS,
                },
            ],
            free_failures: 3,
            base_delay_ms: 1000,
            max_delay_ms: 10 * MINUTE_MS,
            failure_memory_ms: DAY_MS,
            max_tracked_ips: 4096,
            max_trusted_ips: 32,
            trust_ttl_ms: 30 * DAY_MS,
        }
    }
}

/// Refusal from [`LoginLimiter::check`]: seconds until a retry can succeed (≥ 1), for
/// the `Retry-After` header of a 429 `RateLimitExceeded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Addresses as tracked: IPv4 whole, IPv6 by /64 (IPv4-mapped IPv6 counts as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct IpKey(IpAddr);

impl IpKey {
    fn of(ip: IpAddr) -> IpKey {
        IpKey(crate::addr::bucket(ip))
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    fn full(cfg: BucketConfig, now_ms: u64) -> Bucket {
        Bucket {
            tokens: f64::from(cfg.capacity),
            last_ms: now_ms,
        }
    }

    fn rate_per_ms(cfg: BucketConfig) -> f64 {
        f64::from(cfg.capacity.max(1)) / cfg.window_ms.max(1) as f64
    }

    /// A clock that steps backwards adds nothing (saturating), never removes tokens.
    fn refill(&mut self, cfg: BucketConfig, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.tokens = (self.tokens + elapsed * Self::rate_per_ms(cfg)).min(f64::from(cfg.capacity));
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Milliseconds until one whole token is available (0 if one is now).
    fn wait_ms(&self, cfg: BucketConfig) -> u64 {
        if self.tokens >= 1.0 {
            0
        } else {
            ((1.0 - self.tokens) / Self::rate_per_ms(cfg)).ceil() as u64
        }
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn give_back(&mut self, cfg: BucketConfig, n: u32) {
        self.tokens = (self.tokens + f64::from(n)).min(f64::from(cfg.capacity));
    }
}

#[derive(Clone, Debug)]
struct IpState {
    bucket: Bucket,
    /// Consecutive failures (the streak behind the exponential delay).
    failures: u32,
    last_failure_ms: u64,
    blocked_until_ms: u64,
    /// Reservations made by `check` and not yet settled.
    pending: u32,
    /// How many of those also took an account-wide token.
    account_pending: u32,
    /// Position in the LRU order.
    seq: u64,
}

/// The login limiter for the single account. Not thread-safe by itself: keep it in a
/// `Mutex` (every call is O(log n) and allocation-light).
#[derive(Debug)]
pub struct LoginLimiter {
    cfg: LimiterConfig,
    ips: HashMap<IpKey, IpState>,
    /// (seq, key) in order of last activity: the first entry is evicted first.
    lru: BTreeSet<(u64, IpKey)>,
    next_seq: u64,
    account: Vec<Bucket>,
    /// Address → time of its last successful login.
    trusted: HashMap<IpKey, u64>,
}

impl LoginLimiter {
    pub fn new(cfg: LimiterConfig) -> LoginLimiter {
        let account = cfg
            .per_account
            .iter()
            .map(|&b| Bucket::full(b, 0))
            .collect();
        LoginLimiter {
            cfg,
            ips: HashMap::new(),
            lru: BTreeSet::new(),
            next_seq: 0,
            account,
            trusted: HashMap::new(),
        }
    }

    /// Call before verifying a password. `Ok` reserves an attempt, which must be settled
    /// by [`record_failure`](Self::record_failure) or
    /// [`record_success`](Self::record_success); an unsettled reservation simply stays
    /// spent (fails safe).
    pub fn check(&mut self, ip: IpAddr, now_ms: u64) -> Result<(), RetryAfter> {
        let key = IpKey::of(ip);
        let trusted = self.is_trusted(key, now_ms);
        let mut wait_ms = 0;
        if let Some(st) = self.ips.get_mut(&key) {
            forget_stale_streak(st, &self.cfg, now_ms);
            wait_ms = st.blocked_until_ms.saturating_sub(now_ms);
            st.bucket.refill(self.cfg.per_ip, now_ms);
            wait_ms = wait_ms.max(st.bucket.wait_ms(self.cfg.per_ip));
        }
        if !trusted {
            for (bucket, &cfg) in self.account.iter_mut().zip(&self.cfg.per_account) {
                bucket.refill(cfg, now_ms);
                wait_ms = wait_ms.max(bucket.wait_ms(cfg));
            }
        }
        if wait_ms > 0 {
            return Err(RetryAfter(wait_ms.div_ceil(1000).max(1)));
        }

        let per_ip = self.cfg.per_ip;
        let st = self.entry(key, now_ms);
        st.bucket.refill(per_ip, now_ms);
        st.bucket.take();
        st.pending = st.pending.saturating_add(1);
        if !trusted {
            st.account_pending = st.account_pending.saturating_add(1);
            self.account.iter_mut().for_each(Bucket::take);
        }
        Ok(())
    }

    /// Records a wrong password (or unknown identifier) from `ip`.
    pub fn record_failure(&mut self, ip: IpAddr, now_ms: u64) {
        let key = IpKey::of(ip);
        let trusted = self.is_trusted(key, now_ms);
        let cfg = self.cfg.clone();
        let st = self.entry(key, now_ms);
        forget_stale_streak(st, &cfg, now_ms);
        let mut debit_account = false;
        if st.pending > 0 {
            // Settles a reservation: the tokens were already taken by `check`.
            st.pending -= 1;
            st.account_pending = st.account_pending.min(st.pending);
        } else {
            // Failure reported without a check: charge it now.
            st.bucket.refill(cfg.per_ip, now_ms);
            st.bucket.take();
            debit_account = !trusted;
        }
        st.failures = st.failures.saturating_add(1);
        st.last_failure_ms = now_ms;
        if st.failures > cfg.free_failures {
            let doublings = (st.failures - cfg.free_failures - 1).min(32);
            let delay = cfg
                .base_delay_ms
                .saturating_mul(1u64 << doublings)
                .min(cfg.max_delay_ms);
            st.blocked_until_ms = now_ms.saturating_add(delay);
        }
        if debit_account {
            for (bucket, &bcfg) in self.account.iter_mut().zip(&cfg.per_account) {
                bucket.refill(bcfg, now_ms);
                bucket.take();
            }
        }
    }

    /// Records a successful login from `ip`: its state is cleared, account tokens its
    /// reservations took are returned, and the address becomes trusted.
    pub fn record_success(&mut self, ip: IpAddr, now_ms: u64) {
        let key = IpKey::of(ip);
        if let Some(st) = self.ips.remove(&key) {
            self.lru.remove(&(st.seq, key));
            if st.account_pending > 0 {
                for (bucket, &cfg) in self.account.iter_mut().zip(&self.cfg.per_account) {
                    bucket.give_back(cfg, st.account_pending);
                }
            }
        }
        let ttl = self.cfg.trust_ttl_ms;
        self.trusted
            .retain(|_, &mut at| now_ms.saturating_sub(at) < ttl);
        if !self.trusted.contains_key(&key) && self.trusted.len() >= self.cfg.max_trusted_ips {
            // At most a few dozen entries: a scan is cheaper than an index.
            if let Some(oldest) = self
                .trusted
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| *k)
            {
                self.trusted.remove(&oldest);
            }
        }
        if self.cfg.max_trusted_ips > 0 {
            self.trusted.insert(key, now_ms);
        }
    }

    /// Number of addresses currently tracked (bounded by `max_tracked_ips`).
    pub fn tracked_ips(&self) -> usize {
        self.ips.len()
    }

    /// Number of trusted addresses (bounded by `max_trusted_ips`).
    pub fn trusted_ips(&self) -> usize {
        self.trusted.len()
    }

    fn is_trusted(&self, key: IpKey, now_ms: u64) -> bool {
        self.trusted
            .get(&key)
            .is_some_and(|&at| now_ms.saturating_sub(at) < self.cfg.trust_ttl_ms)
    }

    /// The state for `key`, created if needed (evicting the least recently active
    /// address when full) and moved to the back of the LRU order.
    fn entry(&mut self, key: IpKey, now_ms: u64) -> &mut IpState {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(st) = self.ips.get(&key) {
            self.lru.remove(&(st.seq, key));
        } else {
            while self.ips.len() >= self.cfg.max_tracked_ips.max(1) {
                let Some((_, victim)) = self.lru.pop_first() else {
                    break;
                };
                self.ips.remove(&victim);
            }
        }
        self.lru.insert((seq, key));
        let per_ip = self.cfg.per_ip;
        let st = self.ips.entry(key).or_insert_with(|| IpState {
            bucket: Bucket::full(per_ip, now_ms),
            failures: 0,
            last_failure_ms: now_ms,
            blocked_until_ms: 0,
            pending: 0,
            account_pending: 0,
            seq,
        });
        st.seq = seq;
        st
    }
}

fn forget_stale_streak(st: &mut IpState, cfg: &LimiterConfig, now_ms: u64) {
    if st.failures > 0 && now_ms.saturating_sub(st.last_failure_ms) >= cfg.failure_memory_ms {
        st.failures = 0;
    }
}
