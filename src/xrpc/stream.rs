//! Long responses read from the database (CAR exports) without holding on to
//! it while the client reads: the response is made in batches of about
//! [`BATCH`] bytes, each by one short read on a pooled connection, which goes
//! back to the pool (and its thread to the blocking pool) before the batch is
//! handed to the client. Every hand-over waits at most [`SEND_DEADLINE`]; a
//! client that reads nothing for that long loses the response.
//!
//! At most one batch waits in the channel and one is being made, so an
//! export holds about two batches of memory besides what hyper buffers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;

use crate::store::Store;

/// Bytes a batch aims at (one block more at most).
pub const BATCH: usize = 128 * 1024;
/// A client that takes no batch for this long is dropped (the firehose's
/// send timeout too).
pub const SEND_DEADLINE: Duration = Duration::from_secs(30);

/// A response made a batch at a time.
pub trait Batches: Send + 'static {
    /// The next bytes of the response (about [`BATCH`] of them), or None when it is
    /// complete. Runs on a pooled read connection; must not wait on anything else.
    fn next(&mut self, conn: &crate::store::Db) -> Result<Option<Vec<u8>>, String>;
}

enum Msg {
    Data(Bytes),
    End,
}

/// The response body: the batches, then the end; a producer that stopped before the end
/// (an error, a block gone, the deadline) makes the body end with an error, so the client
/// sees a truncated response rather than a silently short one.
pub struct ChannelBody {
    rx: mpsc::Receiver<Msg>,
    ended: bool,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Msg::Data(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Some(Msg::End) => {
                self.ended = true;
                Poll::Ready(None)
            }
            None => {
                self.ended = true;
                Poll::Ready(Some(Err(io::Error::other("the response ended early"))))
            }
        }
    }
}

/// Produce `batches` on a task of its own; `hold` (e.g. a concurrency slot) is kept until
/// the producer ends.
pub fn batched<B: Batches>(
    store: Arc<Store>,
    batches: B,
    hold: impl Send + 'static,
) -> ChannelBody {
    batched_within(store, batches, hold, SEND_DEADLINE)
}

fn batched_within<B: Batches>(
    store: Arc<Store>,
    batches: B,
    hold: impl Send + 'static,
    deadline: Duration,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _hold = hold;
        let mut next = Some(batches);
        while let Some(mut state) = next.take() {
            let r = store
                .read(move |c| {
                    let out = state.next(c);
                    Ok((state, out))
                })
                .await;
            let msg = match r {
                Ok((s, Ok(Some(bytes)))) => {
                    next = Some(s);
                    Msg::Data(bytes.into())
                }
                Ok((_, Ok(None))) => Msg::End,
                Ok((_, Err(e))) => {
                    tracing::warn!("streamed response failed: {e}");
                    return;
                }
                Err(e) => {
                    tracing::warn!("streamed response failed: {e}");
                    return;
                }
            };
            let end = matches!(msg, Msg::End);
            match tokio::time::timeout(deadline, tx.send(msg)).await {
                Ok(Ok(())) if !end => {}
                // Done, or the client went away.
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!(
                        "client took nothing for {deadline:?}; streamed response dropped"
                    );
                    return;
                }
            }
        }
    });
    ChannelBody { rx, ended: false }
}

/// A response written by blocking code (`write` runs on the blocking pool): what it writes
/// goes out in chunks of about [`BATCH`] bytes, one waiting at most; a client that takes
/// nothing for [`SEND_DEADLINE`] makes the writer's next write fail, which ends it. The
/// body ends cleanly only if `write` returns `Ok`.
pub fn written(
    write: impl FnOnce(&mut dyn io::Write) -> Result<(), String> + Send + 'static,
    hold: impl Send + 'static,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let _hold = hold;
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(BATCH),
        };
        let outcome = write(&mut w).and_then(|()| w.flush_buf().map_err(|e| e.to_string()));
        match outcome {
            Ok(()) => {
                let _ = w.send(Msg::End);
            }
            Err(e) => tracing::warn!("streamed response failed: {e}"),
        }
    });
    ChannelBody { rx, ended: false }
}

struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Hands `msg` over, waiting for the client at most [`SEND_DEADLINE`].
    fn send(&self, mut msg: Msg) -> io::Result<()> {
        let started = std::time::Instant::now();
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the client went away",
                    ));
                }
                Err(mpsc::error::TrySendError::Full(m)) => {
                    if started.elapsed() > SEND_DEADLINE {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client took nothing for too long",
                        ));
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        self.send(Msg::Data(chunk.into()))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BATCH {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Count {
        left: u32,
        fail_at: Option<u32>,
    }

    impl Batches for Count {
        fn next(&mut self, conn: &crate::store::Db) -> Result<Option<Vec<u8>>, String> {
            // Really on a pooled connection.
            conn.ping().map_err(|e| e.to_string())?;
            if Some(self.left) == self.fail_at {
                return Err("block gone".into());
            }
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            Ok(Some(vec![b'x'; 10]))
        }
    }

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn a_written_body_arrives_whole_or_ends_with_an_error() {
        let body = written(
            |w| {
                for _ in 0..300 {
                    w.write_all(&[7u8; 1000]).map_err(|e| e.to_string())?;
                }
                Ok(())
            },
            (),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 300_000);
        assert!(bytes.iter().all(|&b| b == 7));
        let failing = written(
            |w| {
                w.write_all(&[1u8; 10]).map_err(|e| e.to_string())?;
                Err("disk gone".into())
            },
            (),
        );
        assert!(
            failing.collect().await.is_err(),
            "a failed writer is no clean end"
        );
    }

    #[tokio::test]
    async fn batches_then_a_clean_end_or_an_error() {
        let (_d, s) = store();
        let body = batched(
            Arc::clone(&s),
            Count {
                left: 5,
                fail_at: None,
            },
            (),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 50);
        let mut body = batched(
            s,
            Count {
                left: 5,
                fail_at: Some(2),
            },
            (),
        );
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(f)) => got += f.into_data().unwrap().len(),
                Some(Err(e)) => break e,
                None => panic!("a failed response must not end cleanly"),
            }
        };
        assert_eq!(got, 30);
        assert!(err.to_string().contains("early"), "{err}");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_loses_the_response_and_its_slot() {
        let (_d, s) = store();
        let slot = Arc::new(());
        let deadline = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let mut body = batched_within(
            s,
            Count {
                left: 1000,
                fail_at: None,
            },
            Arc::clone(&slot),
            deadline,
        );
        // Nobody reads: the producer gives up after the deadline and lets go.
        while Arc::strong_count(&slot) > 1 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the producer still holds its slot"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.elapsed() >= deadline);
        // What was made is there, then the body ends in an error, not cleanly.
        let mut frames = 0;
        loop {
            match body.frame().await {
                Some(Ok(_)) => frames += 1,
                Some(Err(_)) => break,
                None => panic!("a dropped response must not end cleanly"),
            }
        }
        assert!(frames >= 1);
    }
}
