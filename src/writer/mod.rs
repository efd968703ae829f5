//! The single repository writer.
//!
//! One thread owns the read-write SQLite connection. Every change to the
//! database goes through it, so writes are serialised without locks in the
//! request handlers. A repo write applies its ops to the MST, signs a new
//! commit and stores blocks, index rows, blob references, the new root and
//! the firehose event in ONE transaction; the caller hears back only after
//! that transaction is durable (WAL, `synchronous=FULL`).
//!
//! Group commit: when several jobs are queued, the thread runs them all in
//! one transaction (each repo write still gets its own commit and rev, each
//! inside its own savepoint so one failing write does not undo the others)
//! and pays one fsync for the lot.

mod apply;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::firehose::recent::Recent;

pub use apply::{CommitOutcome, MAX_OPS, OpResult, RepoWrite, WriteOp};

use crate::crypto::Keypair;
use crate::firehose::events::{self, Kind};
use crate::health::StorageHealth;
use crate::store::{Db, Store, StoreError, repo::RepoRoot};
use crate::tid::Tid;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidSwap(String),
    #[error("could not find blob: {0}")]
    BlobNotFound(String),
    /// A record states another type for a blob than the stored one.
    #[error("{0}")]
    InvalidMimeType(String),
    /// A record states another size for a blob than the stored one.
    #[error("{0}")]
    InvalidSize(String),
    #[error("no account on this server")]
    NoAccount,
    /// The account is not active (its status): its repo takes no writes.
    #[error("the account is {0}")]
    AccountInactive(crate::store::account::AccountStatus),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("repository: {0}")]
    Repo(#[from] crate::repo::RepoError),
    #[error("the writer has stopped")]
    Stopped,
}

impl From<crate::repo::build::BuildError> for WriteError {
    fn from(e: crate::repo::build::BuildError) -> Self {
        use crate::repo::build::BuildError as E;
        match e {
            E::Swapped(_) => WriteError::InvalidSwap(e.to_string()),
            E::Repo(r) => WriteError::Repo(r),
            E::Exists(_) | E::RecordTooLarge(_) | E::SliceTooLarge => {
                WriteError::InvalidRequest(e.to_string())
            }
        }
    }
}

/// MST nodes the writer keeps between writes (bytes). Small: a write reads one path of
/// nodes (a few KiB), and each write replaces that path, so a larger cache fills with
/// versions nobody reads again (8 MiB here cost ~15 MiB of RSS in `scripts/bench.sh`).
const BLOCK_CACHE_BYTES: usize = 1024 * 1024;

/// What the writer knows about the repo between jobs.
pub struct RepoState {
    pub did: String,
    pub key: Arc<Keypair>,
    pub root: RepoRoot,
    /// The tree of the last commit this writer made, its new nodes in memory; used while
    /// its root is `root`'s (anything that replaces the repo changes that).
    pub tree: Option<crate::repo::mst::Mst>,
}

type Exec = Box<dyn FnOnce(&Db, &mut Option<RepoState>) -> Result<(), StoreError> + Send>;

enum Job {
    Write(
        RepoWrite,
        oneshot::Sender<Result<CommitOutcome, WriteError>>,
    ),
    /// Any other database change, run inside the group transaction.
    Exec(Exec, oneshot::Sender<Result<(), StoreError>>),
}

/// Cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// The highest durable event `seq`, announced after each commit.
    seq: watch::Receiver<i64>,
    /// Commits acknowledged since start (for `/metrics`).
    commits: Arc<std::sync::atomic::AtomicU64>,
    health: Arc<StorageHealth>,
    /// The frames of the newest events, for live firehose subscribers.
    recent: Arc<Recent>,
}

/// Jobs folded into one transaction at most.
const MAX_GROUP: usize = 64;

impl Writer {
    /// Start the writer thread over `store`. `state` is the repo as loaded
    /// at start-up (None before the account exists).
    /// `on_orphaned_blobs` gets the CIDs of blobs that the last record
    /// using them let go of, after the commit is durable, to delete files.
    pub fn spawn(
        store: &Arc<Store>,
        state: Option<RepoState>,
        on_orphaned_blobs: impl Fn(Vec<String>) + Send + 'static,
    ) -> Result<Writer, StoreError> {
        let conn = store.open_writer()?;
        // The highest seq ever handed out, not the last stored event: after
        // trimming or a `seq bump` (a restore) the events may lie below it,
        // and a relay whose cursor is between them is not in the future.
        let last = crate::store::repo::highest_seq(&conn)?;
        let (seq_tx, seq) = watch::channel(last);
        let (tx, rx) = mpsc::channel(1024);
        let health = Arc::new(StorageHealth::default());
        let sick = Arc::clone(&health);
        let recent = Arc::new(Recent::default());
        let announce = Announce {
            seq: seq_tx,
            recent: Arc::clone(&recent),
            last,
        };
        std::thread::Builder::new()
            .name("perch-writer".into())
            .spawn(move || run(conn, state, rx, &on_orphaned_blobs, announce, &sick))
            .map_err(|_| StoreError::Join)?;
        Ok(Writer {
            tx,
            seq,
            commits: Arc::default(),
            health,
            recent,
        })
    }

    /// Whether storage failed; shared with the blob paths, `/readyz` and
    /// the systemd status.
    pub fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }

    /// The frames of the newest events (for firehose subscribers).
    pub fn recent(&self) -> Arc<Recent> {
        Arc::clone(&self.recent)
    }

    /// Watch the highest durable event `seq` (for firehose subscribers).
    pub fn seq_watch(&self) -> watch::Receiver<i64> {
        self.seq.clone()
    }

    /// Apply a repo write; resolves once it is durable.
    pub async fn write(&self, w: RepoWrite) -> Result<CommitOutcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Write(w, tx))
            .await
            .map_err(|_| WriteError::Stopped)?;
        let outcome = rx.await.map_err(|_| WriteError::Stopped)??;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(outcome)
    }

    /// Commits acknowledged since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run `f` on the writer's connection inside a transaction; its value once the
    /// transaction has committed.
    pub async fn exec<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Option<RepoState>) -> Result<T, StoreError> + Send + 'static,
    {
        let (value_tx, value_rx) = oneshot::channel();
        let job: Exec = Box::new(move |conn, state| {
            let value = f(conn, state)?;
            let _ = value_tx.send(value);
            Ok(())
        });
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Exec(job, tx))
            .await
            .map_err(|_| StoreError::Join)?;
        rx.await.map_err(|_| StoreError::Join)??;
        value_rx.await.map_err(|_| StoreError::Join)
    }
}

enum Reply {
    Write(
        oneshot::Sender<Result<CommitOutcome, WriteError>>,
        Result<CommitOutcome, WriteError>,
    ),
    Exec(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

fn run(
    conn: Db,
    mut state: Option<RepoState>,
    mut rx: mpsc::Receiver<Job>,
    on_orphaned_blobs: &dyn Fn(Vec<String>),
    mut announce: Announce,
    health: &StorageHealth,
) {
    let mut clock = crate::tid::TidClock::new(clock_id());
    let cache = crate::repo::cache::BlockCache::new(BLOCK_CACHE_BYTES);
    if let Some(s) = &state
        && let Ok(t) = Tid::parse(&s.root.rev)
    {
        clock.observe(t);
    }
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Some(why) = health.failure() {
            for j in jobs {
                refuse(j, StoreError::Unhealthy(why.to_owned()));
            }
            continue;
        }
        let orphaned = run_group(&conn, &mut state, &mut clock, &cache, jobs, health);
        // An imported repo may carry a rev from a clock ahead of ours.
        if let Some(s) = &state
            && let Ok(t) = Tid::parse(&s.root.rev)
        {
            clock.observe(t);
        }
        announce.new_events(&conn);
        if !orphaned.is_empty() {
            on_orphaned_blobs(orphaned);
        }
    }
}

/// How the writer tells subscribers about committed events.
struct Announce {
    seq: watch::Sender<i64>,
    recent: Arc<Recent>,
    /// The last seq announced.
    last: i64,
}

impl Announce {
    /// Reads the events committed since the last announcement, once for every subscriber,
    /// keeps their frames in `recent`, then announces the new highest seq.
    fn new_events(&mut self, conn: &Db) {
        const PAGE: u32 = 256;
        loop {
            let Ok(events) = crate::store::repo::events_after(conn, self.last, PAGE) else {
                // Subscribers read the rows themselves (`recent` no longer reaches them).
                break;
            };
            for e in &events {
                let frame = crate::firehose::frames::event(&e.kind, &e.body);
                self.recent.push(e.seq, frame.into());
                self.last = e.seq;
            }
            if events.len() < PAGE as usize {
                break;
            }
        }
        let last = self.last;
        self.seq.send_if_modified(|v| {
            let changed = *v != last;
            *v = last;
            changed
        });
    }
}

fn clock_id() -> u16 {
    // Any stable-per-process value; TID uniqueness comes from monotonicity.
    (std::process::id() & 0x3ff) as u16
}

/// A storage error that the writer must not retry: recorded in `health`.
fn storage_failed(health: &StorageHealth, e: &StoreError) -> bool {
    if e.is_storage_failure() {
        health.fail(format!("database write failed: {e}"));
        return true;
    }
    false
}

fn job_storage_failed(health: &StorageHealth, r: &Result<impl Sized, WriteError>) -> bool {
    matches!(r, Err(WriteError::Store(e)) if storage_failed(health, e))
}

fn run_group(
    conn: &Db,
    state: &mut Option<RepoState>,
    clock: &mut crate::tid::TidClock,
    cache: &crate::repo::cache::BlockCache,
    jobs: Vec<Job>,
    health: &StorageHealth,
) -> Vec<String> {
    let saved_root = state.as_ref().map(|s| s.root.clone());
    match conn.begin_write() {
        Ok(()) => {}
        Err(e) => {
            storage_failed(health, &e);
            let err = unhealthy_or(health, || StoreError::Corrupt(e.to_string()));
            for j in jobs {
                refuse(j, again(&err));
            }
            return Vec::new();
        }
    }
    let mut replies = Vec::with_capacity(jobs.len());
    let mut deleted_blobs = Vec::new();
    for job in jobs {
        if let Some(why) = health.failure() {
            // The transaction is abandoned below; nothing more goes into it.
            refuse(job, StoreError::Unhealthy(why.to_owned()));
            continue;
        }
        match job {
            Job::Write(w, reply) => {
                let r = conn.savepoint(|sp| {
                    apply::apply(sp, state.as_mut(), clock, cache, w, &mut deleted_blobs)
                });
                job_storage_failed(health, &r);
                replies.push(Reply::Write(reply, r));
            }
            Job::Exec(f, reply) => {
                let r = conn.savepoint(|sp| f(sp, state).map_err(WriteError::from));
                job_storage_failed(health, &r);
                let r = r.map_err(|e| match e {
                    WriteError::Store(s) => s,
                    other => StoreError::Corrupt(other.to_string()),
                });
                replies.push(Reply::Exec(reply, r));
            }
        }
    }
    let committed = match health.failure() {
        // Roll back: SQLite may already have, and what the failed write
        // left behind must not be committed with the rest.
        Some(why) => Err(StoreError::Unhealthy(why.to_owned())),
        None => conn.commit().map_err(|e| {
            storage_failed(health, &e);
            unhealthy_or(health, || StoreError::Corrupt(e.to_string()))
        }),
    };
    if let Err(err) = committed {
        conn.rollback();
        // Nothing was acknowledged; restore the in-memory view.
        if let (Some(s), Some(root)) = (state.as_mut(), saved_root) {
            s.root = root;
        }
        for r in replies {
            match r {
                Reply::Write(tx, _) => {
                    let _ = tx.send(Err(WriteError::Store(again(&err))));
                }
                Reply::Exec(tx, _) => {
                    let _ = tx.send(Err(again(&err)));
                }
            }
        }
        return Vec::new();
    }
    for r in replies {
        match r {
            Reply::Write(tx, v) => {
                let _ = tx.send(v);
            }
            Reply::Exec(tx, v) => {
                let _ = tx.send(v);
            }
        }
    }
    deleted_blobs
}

/// `Unhealthy` once storage has failed, else `other`.
fn unhealthy_or(health: &StorageHealth, other: impl FnOnce() -> StoreError) -> StoreError {
    match health.failure() {
        Some(why) => StoreError::Unhealthy(why.to_owned()),
        None => other(),
    }
}

/// The same failure for each job of a group (the error types are not Clone).
fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unhealthy(m) => StoreError::Unhealthy(m.clone()),
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn refuse(job: Job, err: StoreError) {
    match job {
        Job::Write(_, tx) => {
            let _ = tx.send(Err(WriteError::Store(err)));
        }
        Job::Exec(_, tx) => {
            let _ = tx.send(Err(err));
        }
    }
}

impl Writer {
    /// Create the repo for a new account (empty MST, first commit, events).
    pub async fn create_repo(
        &self,
        did: String,
        handle: String,
        key: Arc<Keypair>,
    ) -> Result<(), StoreError> {
        self.exec(move |conn, state| {
            let mut clock = crate::tid::TidClock::new(clock_id());
            let s =
                apply::create_repo(conn, &did, &handle, key, &mut clock).map_err(|e| match e {
                    WriteError::Store(s) => s,
                    other => StoreError::Corrupt(other.to_string()),
                })?;
            *state = Some(s);
            Ok(())
        })
        .await
    }
}

impl Writer {
    /// Change the account's handle and announce it with an `#identity`
    /// event, in one transaction.
    pub async fn set_handle(&self, did: String, handle: String) -> Result<(), StoreError> {
        self.exec(move |c, _| {
            crate::store::account::set_handle(c, &handle)?;
            let time = crate::syntax::format_datetime_millis(crate::clock::unix_secs() * 1000);
            let body = events::identity_body(&did, Some(&handle), &time);
            events::append(c, Kind::Identity, &time, body)?;
            Ok(())
        })
        .await
    }

    /// Drops events stored before `time` (an RFC 3339 string in the stored format); the
    /// seq counter keeps counting up.
    pub async fn trim_events_before(&self, time: String) -> Result<usize, StoreError> {
        self.exec(move |db, _| crate::store::repo::trim_events_before(db, &time))
            .await
    }
}

mod migrate;
pub use migrate::announce_restored;

#[cfg(test)]
mod tests;
