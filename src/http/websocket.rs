//! `com.atproto.sync.subscribeRepos` on the wire: the WebSocket upgrade, the subscriber's
//! place among the subscriber caps, and the pump from a firehose subscription to the
//! socket. A subscriber that cannot take a frame for [`SEND_TIMEOUT`] is dropped; anything
//! it sends is ignored (as the spec says) except a close.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role, WebSocketConfig};

use crate::app::App;
use crate::firehose::{Start, frames};
use crate::xrpc::{self, Body, XrpcError};

/// A subscriber that cannot take a frame for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Answers the upgrade request; the subscription runs on its own task. `client` is the
/// subscriber's address (for the subscriber caps).
pub async fn subscribe_repos(
    app: Arc<App>,
    req: Request<Incoming>,
    client: IpAddr,
) -> Response<Body> {
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
    let slot = app.subscriber_slots.admit(client);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut cfg = WebSocketConfig::default();
                cfg.max_message_size = Some(64 * 1024);
                cfg.max_frame_size = Some(64 * 1024);
                let mut ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                tokio::select! {
                    r = pump(&app, &mut ws, cursor) => if let Err(e) = r {
                        tracing::debug!("firehose subscriber gone: {e}");
                    },
                    () = slot.evicted() => {
                        tracing::debug!("firehose subscriber {client} closed to make room");
                        let close = CloseFrame {
                            code: CloseCode::Again,
                            reason: "too many subscribers; reconnect with your cursor".into(),
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(close)))
                            .await;
                    }
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

async fn send(ws: &mut Ws, frame: impl Into<bytes::Bytes>) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Binary(frame.into()))).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            // Best effort: the socket is stuck, so this may not arrive either.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                ws.send(Message::Binary(
                    frames::error("ConsumerTooSlow", "stream consumer too slow").into(),
                )),
            )
            .await;
            Err("consumer too slow".into())
        }
    }
}

/// Counts a subscriber (for `/metrics`) for as long as it is connected.
struct Counted(Arc<App>);

impl Counted {
    fn new(app: &Arc<App>) -> Self {
        app.subscribers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(Arc::clone(app))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0
            .subscribers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn pump(app: &Arc<App>, ws: &mut Ws, cursor: Option<i64>) -> Result<(), String> {
    let _counted = Counted::new(app);
    let (first, mut subscription) = match app
        .firehose()
        .subscribe(cursor)
        .await
        .map_err(|e| e.to_string())?
    {
        Start::FutureCursor => {
            let _ = send(ws, frames::error("FutureCursor", "Cursor in the future.")).await;
            let _ = ws.close(None).await;
            return Ok(());
        }
        Start::Stream(first, subscription) => (first, subscription),
    };
    for f in first {
        send(ws, f).await?;
    }
    loop {
        tokio::select! {
            frames = subscription.next() => {
                for f in frames.map_err(|e| e.to_string())? {
                    send(ws, f).await?;
                }
            }
            msg = ws.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}
