//! Listeners and connections: HTTP/1.1 and HTTP/2 over hyper, plain or behind TLS, with
//! handshake, header and idle deadlines, per-address and total connection caps, and graceful
//! shutdown. Requests are handed to `routes` (or `port80` on the redirect listener).

pub mod limit;
mod port80;
mod routes;
pub mod subscribers;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;
use crate::xrpc::Body;
pub use limit::{ConnLimiter, ConnPermit, OpenRequest, TooMany};

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
/// HTTP/2 flow-control windows for request bodies (see `builder`).
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 128 * 1024;

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
        // Per stream: hyper's default (400 KiB) times 64 streams times every connection
        // is far more than a small box has; one blob chunk is enough to keep a stream busy.
        .max_send_buf_size(crate::blobs::CHUNK_SIZE)
        // What a client may send ahead of what a handler has read: hyper buffers it per
        // stream and connection (its defaults are 1 MiB each). A request waiting for body
        // budget (`xrpc::budget`) reads nothing, so its connection holds at most this
        // much: 128 MiB with every one of 1024 connections full. 64 KiB per stream (the
        // protocol's own default) uploads a blob at ~1.3 MB/s over 50 ms, ~6 MB/s over 10.
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
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
            let permit = Arc::new(permit);
            tokio::select! {
                () = serve_one(Arc::clone(&app), &builder, watcher, stream, peer, role, Arc::clone(&permit)) => {}
                () = permit.evicted() => {
                    tracing::debug!("{peer}: closed to make room; it had sent no request");
                }
            }
            app.metrics.connections_open.fetch_sub(1, Relaxed);
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

/// One accepted connection in its role: the TLS handshake if any, then HTTP.
async fn serve_one(
    app: Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: TcpStream,
    peer: SocketAddr,
    role: Role,
    permit: Arc<ConnPermit>,
) {
    match role {
        Role::Plain => connection(app, builder, watcher, stream, peer, false, permit).await,
        Role::Redirect => {
            let active = Arc::clone(&permit);
            let service = service_fn(move |req| {
                let open = active.begin_request();
                let app = Arc::clone(&app);
                async move {
                    let resp = match open {
                        Ok(open) => until_sent(port80::handle(app, req).await, open),
                        Err(_) => routes::too_many_requests(),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            first_request_within(&permit, peer, async {
                let _ = watcher.watch(conn.into_owned()).await;
            })
            .await;
        }
        Role::Tls(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // A CA's TLS-ALPN-01 check ends with the handshake.
                    let acme = tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN);
                    if !acme {
                        connection(app, builder, watcher, tls, peer, true, permit).await;
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
}

/// hyper's header timeout starts only once the HTTP version is known, and telling HTTP/1
/// from HTTP/2 waits for the client's first bytes with no deadline: a socket that never
/// sends anything would be kept forever. So the first request must arrive within the
/// header timeout; after that hyper's own deadlines apply.
async fn first_request_within(
    permit: &ConnPermit,
    peer: SocketAddr,
    conn: impl Future<Output = ()>,
) {
    let deadline = async {
        tokio::time::sleep(HEADER_READ_TIMEOUT).await;
        if permit.is_active() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = conn => {}
        () = deadline => tracing::debug!("{peer}: no request within {HEADER_READ_TIMEOUT:?}; closed"),
    }
}

/// One API connection (HTTP/1.1 with upgrades for the firehose, or HTTP/2).
async fn connection<S>(
    app: Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: S,
    peer: SocketAddr,
    secure: bool,
    permit: Arc<ConnPermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let active = Arc::clone(&permit);
    // An upgraded socket (the firehose) leaves the connection and its slot behind: it
    // counts against the subscriber caps instead (`http::subscribers`).
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let open = active.begin_request();
        let app = Arc::clone(&app);
        async move {
            let resp = match open {
                Ok(open) => until_sent(handle(app, req, peer, secure).await, open),
                Err(_) => routes::too_many_requests(),
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    first_request_within(&permit, peer, async {
        let _ = watcher.watch(conn.into_owned()).await;
    })
    .await;
}

/// Binds a listener. The IPv6 wildcard (`[::]`, the default) takes IPv4 too (IPv4-mapped
/// addresses), whatever the host's `net.ipv6.bindv6only`; on a host with IPv6 turned off it
/// falls back to the IPv4 wildcard on the same port. Errors say what to do about them.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let listener = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => match dual_stack(addr) {
            Err(e) if e.raw_os_error() == Some(EAFNOSUPPORT) => {
                let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                tracing::warn!("IPv6 is off on this host: listening on {v4} (IPv4 only)");
                TcpListener::bind(v4).await
            }
            other => other,
        },
        _ => TcpListener::bind(addr).await,
    };
    listener.map_err(|e| BindError { addr, source: e })
}

/// Linux's errno for an address family the kernel does not support (IPv6 disabled at boot).
const EAFNOSUPPORT: i32 = 97;

fn dual_stack(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A listener that could not be opened, with the fix for the usual causes.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (addr, port) = (self.addr, self.addr.port());
        write!(f, "cannot listen on {addr}: {}", self.source)?;
        match self.source.kind() {
            std::io::ErrorKind::PermissionDenied if port < 1024 => write!(
                f,
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE: the packaged service has \
                 it, so run `sudo systemctl start perch`; by hand, `sudo perch serve`, or listen \
                 on a port above 1023)"
            ),
            std::io::ErrorKind::AddrInUse => write!(
                f,
                " (another program listens there; `sudo ss -ltnp 'sport = :{port}'` shows which, \
                 often a web server such as nginx, apache or caddy, or perch already running)"
            ),
            std::io::ErrorKind::AddrNotAvailable => write!(
                f,
                " (this machine has no such address; use [::] for every address)"
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `resp`, with its request counted open until the body has been sent or dropped (a
/// connection with a request open is never evicted to make room).
fn until_sent(resp: hyper::Response<Body>, open: OpenRequest) -> hyper::Response<Body> {
    resp.map(|inner| http_body_util::BodyExt::boxed(Tracked { inner, _open: open }))
}

struct Tracked {
    inner: Body,
    _open: OpenRequest,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
