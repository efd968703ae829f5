//! Password work (argon2id, ~19 MiB and tens of milliseconds per call) on a few threads of
//! its own, with a bounded queue.
//!
//! Run on the runtime's blocking pool, every guess an attacker sends would take one of the
//! pool's threads (the same ones that serve database reads) and 19 MiB each: a parallel
//! guessing flood froze reads and pushed a small board towards the OOM killer. Here at most
//! `threads` hashes run at once (so memory is bounded by `threads` × the hash's memory
//! cost), at most `max_queued` wait, and anything beyond is refused at once
//! ([`HashError::Busy`]) instead of piling up. Threads start on first use, so a box that
//! nobody logs in to carries none.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use rand_core::OsRng;

use crate::auth::{self, AuthError};

/// A PHC string with the production costs whose password nobody knows. Checking a guess
/// against it costs what checking against the real hash costs, so an unknown identifier
/// answers in the same time as a known one with a wrong password.
pub const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$cGVyY2gtZHVtbXktc2FsdA$\
                             9u1Ww2sJ/gf8DwdINv/rFbC0tMv0pNQDBb3AQ+Zp9Zk";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full.
    #[error("too many password checks at once")]
    Busy,
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// A worker panicked or the pool was shut down.
    #[error("password worker stopped")]
    Gone,
}

type Job = Box<dyn FnOnce(&mut auth::password::Memory) + Send>;

/// A worker with nothing to do for this long gives its working memory back.
const IDLE_FREE: std::time::Duration = std::time::Duration::from_millis(500);

struct State {
    queue: VecDeque<Job>,
    spawned: usize,
    idle: usize,
    /// Workers running a job right now.
    busy: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Hashes computed so far (for `/metrics`, and for tests that count work).
    hashes: std::sync::atomic::AtomicU64,
    wake: Condvar,
    threads: usize,
    max_queued: usize,
}

/// The password pool. Dropping it lets its threads finish what is queued and exit.
pub struct Hasher {
    shared: Arc<Shared>,
}

impl Hasher {
    pub fn new(threads: usize, max_queued: usize) -> Hasher {
        Hasher {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    spawned: 0,
                    idle: 0,
                    busy: 0,
                    closed: false,
                }),
                wake: Condvar::new(),
                hashes: std::sync::atomic::AtomicU64::new(0),
                threads: threads.max(1),
                max_queued,
            }),
        }
    }

    /// Sized for a small board: two hashes at once (one on a single core), 32 waiting.
    /// Logins are also limited per address and account-wide before they get here, so
    /// the queue only fills under a distributed flood.
    pub fn for_this_machine() -> Hasher {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher::new(cores.clamp(1, 2), 32)
    }

    /// Whether `password` matches `phc` (false for anything unusable, see
    /// [`auth::verify_password`]).
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, HashError> {
        self.verify_any(password, vec![phc])
            .await
            .map(|found| found.is_some())
    }

    /// The index of the first of `phcs` that `password` matches. Every hash is checked,
    /// whatever matches first, so the time taken says nothing about which one matched.
    pub async fn verify_any(
        &self,
        password: String,
        phcs: Vec<String>,
    ) -> Result<Option<usize>, HashError> {
        let shared = Arc::clone(&self.shared);
        self.run(move |memory| {
            let mut found = None;
            for (i, phc) in phcs.iter().enumerate() {
                if auth::password::verify_password_in(&password, phc, memory) && found.is_none() {
                    found = Some(i);
                }
                shared
                    .hashes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            found
        })
        .await
    }

    /// A new PHC string for `password` with the production costs.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let shared = Arc::clone(&self.shared);
        Ok(self
            .run(move |memory| {
                shared
                    .hashes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                auth::password::hash_password_in(&password, &mut OsRng, memory)
            })
            .await??)
    }

    /// Hashes computed since start.
    pub fn hashes(&self) -> u64 {
        self.shared
            .hashes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Jobs waiting for a worker (for `/metrics`).
    pub fn queued(&self) -> usize {
        self.shared.state.lock().map_or(0, |st| st.queue.len())
    }

    /// Runs `f` on a password thread with that thread's argon2 memory, or refuses when the
    /// queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut auth::password::Memory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
        });
        {
            let mut st = self.shared.state.lock().map_err(|_| HashError::Gone)?;
            if st.closed {
                return Err(HashError::Gone);
            }
            // Queued jobs beyond those a free worker is about to take.
            let free = self.shared.threads.saturating_sub(st.busy);
            if st.queue.len().saturating_sub(free) >= self.shared.max_queued {
                return Err(HashError::Busy);
            }
            st.queue.push_back(job);
            if st.idle < st.queue.len() && st.spawned < self.shared.threads {
                st.spawned += 1;
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("perch-password".into())
                    // argon2 keeps its working memory on the heap; the stack stays small.
                    .stack_size(256 * 1024)
                    .spawn(move || worker(&shared));
                if spawned.is_err() {
                    st.spawned -= 1;
                    if st.spawned == 0 {
                        st.queue.pop_back();
                        return Err(HashError::Gone);
                    }
                }
            }
        }
        self.shared.wake.notify_one();
        rx.await.map_err(|_| HashError::Gone)
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.closed = true;
        }
        self.shared.wake.notify_all();
    }
}

fn worker(shared: &Shared) {
    let mut memory = auth::password::Memory::new();
    loop {
        let job = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            loop {
                if let Some(job) = st.queue.pop_front() {
                    st.busy += 1;
                    break job;
                }
                if st.closed {
                    st.spawned -= 1;
                    return;
                }
                // Nothing queued: wait, and give the working memory back after a short lull.
                // A flood keeps the queue busy, so the buffer is reused where reuse matters
                // (a fresh 19 MiB per guess fragments glibc's heaps: the test's flood peaked
                // at 80 MiB that way, 60 MiB with reuse); one login an hour ago leaves
                // nothing resident.
                st.idle += 1;
                st = if memory.capacity() > 0 {
                    let Ok((guard, waited)) = shared.wake.wait_timeout(st, IDLE_FREE) else {
                        return;
                    };
                    if waited.timed_out() && guard.queue.is_empty() {
                        memory = auth::password::Memory::new();
                    }
                    guard
                } else {
                    let Ok(guard) = shared.wake.wait(st) else {
                        return;
                    };
                    guard
                };
                st.idle -= 1;
            }
        };
        // A panic inside a job drops its sender (the caller sees `Gone`), not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
        if let Ok(mut st) = shared.state.lock() {
            st.busy -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn dummy_hash_has_the_production_costs() {
        auth::check_password_hash(DUMMY_PHC).expect("usable PHC string");
        let params = DUMMY_PHC.split('$').nth(3).unwrap();
        assert_eq!(
            params,
            format!(
                "m={},t={},p={}",
                auth::password::ARGON2_M_COST_KIB,
                auth::password::ARGON2_T_COST,
                auth::password::ARGON2_P_COST
            )
        );
    }

    #[tokio::test]
    async fn verifies_and_hashes() {
        let h = Hasher::new(1, 4);
        let phc = h.hash("a fine password".into()).await.unwrap();
        assert!(
            h.verify("a fine password".into(), phc.clone())
                .await
                .unwrap()
        );
        assert!(
            !h.verify("a fine passwore".into(), phc.clone())
                .await
                .unwrap()
        );
        let any = h
            .verify_any("a fine password".into(), vec![DUMMY_PHC.into(), phc])
            .await
            .unwrap();
        assert_eq!(any, Some(1));
        assert!(matches!(
            h.hash(String::new()).await,
            Err(HashError::Auth(AuthError::EmptyPassword))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_threads_run_and_the_queue_is_bounded() {
        let h = Arc::new(Hasher::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut tasks = vec![];
        for _ in 0..5 {
            let (h, running, peak, rx) = (
                Arc::clone(&h),
                Arc::clone(&running),
                Arc::clone(&peak),
                Arc::clone(&release_rx),
            );
            tasks.push(tokio::spawn(async move {
                h.run(move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _ = rx.lock().unwrap().recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Two run, three wait: the queue is full now.
        for _ in 0..400 {
            if running.load(Ordering::SeqCst) == 2 && h.queued() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(h.queued(), 3);
        assert_eq!(running.load(Ordering::SeqCst), 2);
        assert!(matches!(h.run(|_| ()).await, Err(HashError::Busy)));
        for _ in 0..5 {
            release_tx.send(()).unwrap();
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
        // With the queue drained, work is taken again.
        assert!(h.run(|_| 7).await.is_ok());
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_pool() {
        let h = Hasher::new(1, 4);
        let r: Result<(), _> = h.run(|_| panic!("boom")).await;
        assert!(matches!(r, Err(HashError::Gone)));
        assert_eq!(h.run(|_| 5).await.unwrap(), 5);
    }
}
