//! `com.atproto.sync.subscribeRepos`: the firehose over WebSocket.
//!
//! Events are durable rows before anyone sees them; a subscriber replays
//! rows after its cursor and then follows new ones as the writer announces
//! them. Reading is pull-based from the database, so a slow subscriber only
//! falls behind: it never holds memory for others or slows the writer. One
//! that stops reading entirely is cut off when a send times out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

use crate::app::App;
use crate::cbor::{self, Ipld};
use crate::ipld_map;
use crate::store::repo::{self, Event};
use crate::xrpc::{self, Body, XrpcError};

/// How far back a cursor may reach (`backfill_hours` in the config).
pub fn backfill(app: &App) -> Duration {
    Duration::from_secs(app.config.backfill_hours * 3600)
}
/// A subscriber that cannot take a frame for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events read from the database per batch.
const BATCH: u32 = 100;

fn error_frame(error: &str, message: &str) -> Vec<u8> {
    let mut f = cbor::encode(&ipld_map! { "op" => Ipld::Integer(-1) });
    f.extend(cbor::encode(&ipld_map! {
        "error" => Ipld::String(error.into()),
        "message" => Ipld::String(message.into()),
    }));
    f
}

fn message_frame(t: &str, body: &Ipld) -> Vec<u8> {
    let mut f = cbor::encode(&ipld_map! {
        "t" => Ipld::String(t.into()),
        "op" => Ipld::Integer(1),
    });
    f.extend(cbor::encode(body));
    f
}

/// A stored event as a frame: its body with `seq` added.
fn event_frame(e: &Event) -> Option<Vec<u8>> {
    let mut body = cbor::decode(&e.body).ok()?;
    if let Ipld::Map(m) = &mut body {
        m.insert("seq".into(), Ipld::Integer(e.seq));
    }
    Some(message_frame(&format!("#{}", e.kind), &body))
}

pub async fn subscribe(app: Arc<App>, mut req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "subscriptions use GET",
        )
        .into_response();
    }
    let cursor = match cursor_param(req.uri().query()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(accept), true) = (key, upgrade) else {
        return XrpcError::new(
            StatusCode::UPGRADE_REQUIRED,
            "InvalidRequest",
            "expected a WebSocket upgrade",
        )
        .into_response();
    };
    let slot = req.extensions_mut().remove::<crate::http::ConnSlot>();
    tokio::spawn(async move {
        let _slot = slot;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut cfg = WebSocketConfig::default();
                cfg.max_message_size = Some(64 * 1024);
                cfg.max_frame_size = Some(64 * 1024);
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                if let Err(e) = stream(app, ws, cursor).await {
                    tracing::debug!("firehose subscriber gone: {e}");
                }
            }
            Err(e) => tracing::debug!("firehose upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(xrpc::full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

fn cursor_param(query: Option<&str>) -> Result<Option<i64>, XrpcError> {
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("cursor=") {
            return v
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .map(Some)
                .ok_or_else(|| {
                    XrpcError::invalid_request("cursor must be a non-negative integer")
                });
        }
    }
    Ok(None)
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn send(ws: &mut Ws, frame: Vec<u8>) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Binary(frame.into()))).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            // Best effort: the socket is stuck, so this may not arrive either.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                ws.send(Message::Binary(
                    error_frame("ConsumerTooSlow", "stream consumer too slow").into(),
                )),
            )
            .await;
            Err("consumer too slow".into())
        }
    }
}

/// Counts a subscriber for as long as it is connected.
struct Subscribed(Arc<App>);

impl Subscribed {
    fn new(app: &Arc<App>) -> Self {
        app.subscribers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Subscribed(Arc::clone(app))
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0
            .subscribers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn stream(app: Arc<App>, mut ws: Ws, cursor: Option<i64>) -> Result<(), String> {
    let _counted = Subscribed::new(&app);
    let mut seqs = app.writer.seq_watch();
    let head = *seqs.borrow_and_update();
    let mut pos = match cursor {
        None => head,
        Some(c) if c > head => {
            let _ = send(
                &mut ws,
                error_frame("FutureCursor", "Cursor in the future."),
            )
            .await;
            let _ = ws.close(None).await;
            return Ok(());
        }
        Some(c) => {
            let window_start = crate::syntax::format_datetime_millis(
                crate::api::repo::unix_now() * 1000 - backfill(&app).as_millis() as i64,
            );
            let first = app
                .store
                .read(move |c| repo::first_seq_since(c, &window_start))
                .await
                .map_err(|e| e.to_string())?;
            match first {
                Some(first) if c + 1 < first => {
                    let info = ipld_map! {
                        "name" => Ipld::String("OutdatedCursor".into()),
                        "message" => Ipld::String("Requested cursor exceeded limit. Possibly missing events".into()),
                    };
                    send(&mut ws, message_frame("#info", &info)).await?;
                    first - 1
                }
                _ => c,
            }
        }
    };
    loop {
        let from = pos;
        let events = app
            .store
            .read(move |c| repo::events_after(c, from, BATCH))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(last) = events.last() {
            pos = last.seq;
        }
        let caught_up = events.len() < BATCH as usize;
        for e in &events {
            match event_frame(e) {
                Some(f) => send(&mut ws, f).await?,
                None => tracing::error!("event {} is not valid CBOR; skipped", e.seq),
            }
        }
        if !caught_up {
            continue;
        }
        // Wait for the writer to announce more, watching for the client
        // going away (anything it sends is ignored, as the spec says).
        loop {
            tokio::select! {
                changed = seqs.changed() => {
                    changed.map_err(|_| "server shutting down".to_string())?;
                    if *seqs.borrow_and_update() > pos {
                        break;
                    }
                }
                msg = ws.next() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}
