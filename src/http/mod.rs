//! Listeners and connections: HTTP/1.1 and HTTP/2 over hyper, plain or behind TLS, with
//! handshake, header and idle deadlines, per-address and total connection caps, and graceful
//! shutdown. Requests are handed to `routes` (or `port80` on the redirect listener).

pub mod limit;
mod port80;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::app::App;
pub use limit::ConnLimiter;

/// Without a timer hyper has no header deadline at all. hyper restarts this deadline whenever
/// an HTTP/1 connection waits for a request head, so it is also the keep-alive idle limit:
/// 10 s is plenty for a real client and bounds slowloris-style connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake that has not finished by then is abandoned.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings detect dead peers; one unanswered for this long closes the connection.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub use routes::handle;

/// What a listener serves.
#[derive(Clone)]
pub enum Role {
    /// The API over plain HTTP (`tls = "off"`, dev, behind a reverse proxy).
    Plain,
    /// The API over HTTPS; TLS-ALPN-01 validation connections are answered in the handshake.
    Tls(tokio_rustls::TlsAcceptor),
    /// Port 80 beside HTTPS: ACME HTTP-01 and redirects.
    Redirect,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(32 * 1024)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(64)
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    builder
}

/// Serve `listener` in `role` until `shutdown` resolves, then let in-flight requests finish
/// (up to a grace period).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    role: Role,
    limiter: Arc<ConnLimiter>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(permit) = limiter.try_acquire(peer.ip()) else {
            app.metrics.connections_rejected.fetch_add(1, Relaxed);
            tracing::debug!("connection limit reached; dropping {peer}");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let role = role.clone();
        tokio::spawn(async move {
            app.metrics.connections_open.fetch_add(1, Relaxed);
            match role {
                Role::Plain => {
                    connection(app.clone(), &builder, watcher, stream, peer, false).await
                }
                Role::Redirect => {
                    let app = Arc::clone(&app);
                    let service = service_fn(move |req| {
                        let app = Arc::clone(&app);
                        async move { Ok::<_, std::convert::Infallible>(port80::handle(app, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Role::Tls(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            // A CA's TLS-ALPN-01 check ends with the handshake.
                            let acme =
                                tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN);
                            if !acme {
                                connection(app.clone(), &builder, watcher, tls, peer, true).await;
                            }
                        }
                        Ok(Err(e)) => {
                            app.metrics.tls_handshake_failures.fetch_add(1, Relaxed);
                            tracing::debug!("TLS handshake with {peer} failed: {e}");
                        }
                        Err(_) => {
                            app.metrics.tls_handshake_failures.fetch_add(1, Relaxed);
                            tracing::debug!("TLS handshake with {peer} timed out");
                        }
                    }
                }
            }
            app.metrics.connections_open.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing");
        }
    }
    Ok(())
}

/// One API connection (HTTP/1.1 with upgrades for the firehose, or HTTP/2).
async fn connection<S>(
    app: Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: S,
    peer: SocketAddr,
    secure: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(handle(app, req, peer, secure).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let _ = watcher.watch(conn.into_owned()).await;
}

/// Bind a listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
