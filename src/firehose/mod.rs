//! The firehose (`com.atproto.sync.subscribeRepos`), as a service: events are durable rows
//! before anyone sees them (appended by the writer in the transaction of the change they
//! announce, see [`events`]), and a [`Subscription`] replays the rows after a cursor and
//! then follows new ones as the writer announces them. Reading is pull-based from the
//! database, so a slow subscriber only falls behind: it never holds memory for others or
//! slows the writer. The WebSocket itself is `http::websocket`'s.

pub mod events;
pub mod frames;
pub mod recent;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{Store, StoreError, repo};
use recent::{After, Recent};

/// Events read from the database per batch.
const BATCH: u32 = 100;

/// Where the firehose reads from.
#[derive(Clone)]
pub struct Firehose {
    store: Arc<Store>,
    seqs: watch::Receiver<i64>,
    recent: Arc<Recent>,
    backfill: Duration,
}

/// How a subscription starts.
pub enum Start {
    /// The cursor is ahead of every event: an error frame, then the end.
    FutureCursor,
    /// Frames to send first (an `OutdatedCursor` notice), then the subscription.
    Stream(Vec<Bytes>, Subscription),
}

pub struct Subscription {
    store: Arc<Store>,
    seqs: watch::Receiver<i64>,
    recent: Arc<Recent>,
    /// The last seq handed out.
    pos: i64,
}

impl Firehose {
    /// `seqs` is the writer's announcement of the latest seq, `recent` the frames it
    /// keeps in memory; `backfill` how far back a cursor may reach.
    pub fn new(
        store: Arc<Store>,
        seqs: watch::Receiver<i64>,
        recent: Arc<Recent>,
        backfill: Duration,
    ) -> Firehose {
        Firehose {
            store,
            seqs,
            recent,
            backfill,
        }
    }

    pub fn backfill(&self) -> Duration {
        self.backfill
    }

    /// A subscription from `cursor` (exclusive), or from now when there is none. A cursor
    /// older than the backfill window starts at the window with an `OutdatedCursor` notice.
    pub async fn subscribe(&self, cursor: Option<i64>) -> Result<Start, StoreError> {
        let mut seqs = self.seqs.clone();
        let head = *seqs.borrow_and_update();
        let mut first = vec![];
        let pos = match cursor {
            None => head,
            Some(c) if c > head => return Ok(Start::FutureCursor),
            Some(c) => {
                let window_start = window_start(self.backfill);
                let oldest = self
                    .store
                    .read(move |db| repo::first_seq_since(db, &window_start))
                    .await?;
                match oldest {
                    Some(oldest) if c + 1 < oldest => {
                        first.push(Bytes::from(frames::info(
                            "OutdatedCursor",
                            "Requested cursor exceeded limit. Possibly missing events",
                        )));
                        oldest - 1
                    }
                    _ => c,
                }
            }
        };
        Ok(Start::Stream(
            first,
            Subscription {
                store: Arc::clone(&self.store),
                seqs,
                recent: Arc::clone(&self.recent),
                pos,
            },
        ))
    }

    /// The time of the oldest event a cursor may still reach: older ones are no use to
    /// anyone and may be trimmed.
    pub fn window_start(&self) -> String {
        window_start(self.backfill)
    }
}

/// The oldest event time a cursor may still reach.
fn window_start(backfill: Duration) -> String {
    crate::syntax::format_datetime_millis(
        crate::clock::unix_millis() - i64::try_from(backfill.as_millis()).unwrap_or(i64::MAX),
    )
}

/// Why a subscription ended on the server's side.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl Subscription {
    /// The next frames, in seq order; waits for the writer when caught up. Cancel-safe:
    /// dropped before it returns, it hands out nothing and the next call starts over.
    pub async fn next(&mut self) -> Result<Vec<Bytes>, Ended> {
        loop {
            let from = self.pos;
            let frames = match self.recent.after(from, BATCH as usize) {
                After::Frames(held) => held,
                After::Older => self
                    .store
                    .read(move |db| repo::events_after(db, from, BATCH))
                    .await?
                    .into_iter()
                    .map(|e| (e.seq, Bytes::from(frames::event(&e.kind, &e.body))))
                    .collect(),
            };
            if let Some((last, _)) = frames.last() {
                self.pos = *last;
                return Ok(frames.into_iter().map(|(_, f)| f).collect());
            }
            // Caught up: wait for the writer to announce more.
            loop {
                self.seqs.changed().await.map_err(|_| Ended::ShuttingDown)?;
                if *self.seqs.borrow_and_update() > self.pos {
                    break;
                }
            }
        }
    }
}
