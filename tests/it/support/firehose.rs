//! subscribeRepos from the client side: connecting (from any loopback
//! address), splitting a frame into its header and body, and a subscriber
//! that keeps every event it gets.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use perch::cbor::{self, Ipld, Limits};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

fn url(addr: SocketAddr, cursor: Option<i64>) -> String {
    let q = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos{q}")
}

/// A subscriber from 127.0.0.1, replaying from `cursor` when given.
pub async fn connect(addr: SocketAddr, cursor: Option<i64>) -> Ws {
    try_connect(addr, cursor).await.expect("subscribe")
}

/// As `connect`; `Err` when the connection or the upgrade fails.
pub async fn try_connect(addr: SocketAddr, cursor: Option<i64>) -> Result<Ws, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    upgrade(tcp, addr, cursor).await
}

/// A subscriber from the loopback address `from`; `rcvbuf` shrinks the
/// socket's receive buffer (a stalled client then fills up sooner).
pub async fn connect_from(
    from: IpAddr,
    addr: SocketAddr,
    cursor: Option<i64>,
    rcvbuf: Option<u32>,
) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(from, 0))
        .map_err(|e| e.to_string())?;
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).map_err(|e| e.to_string())?;
    }
    let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
    upgrade(tcp, addr, cursor).await
}

async fn upgrade(tcp: TcpStream, addr: SocketAddr, cursor: Option<i64>) -> Result<Ws, String> {
    let (ws, _) = tokio_tungstenite::client_async(url(addr, cursor), tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// A frame's two DAG-CBOR items: the header is the one short prefix that
/// decodes; the body may be large (a commit of a whole batch).
pub fn split_frame(bytes: &[u8]) -> Option<(Ipld, Ipld)> {
    let limits = Limits {
        max_size: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let (at, header) =
        (1..bytes.len().min(128)).find_map(|at| Some((at, cbor::decode(&bytes[..at]).ok()?)))?;
    Some((header, cbor::decode_with(&bytes[at..], &limits).ok()?))
}

/// The header's `t` (`#commit`, …), empty for an error frame.
pub fn kind(header: &Ipld) -> &str {
    header.get("t").and_then(Ipld::as_str).unwrap_or("")
}

/// One firehose event as received: type, seq and the decoded body.
#[derive(Clone, Debug)]
pub struct Received {
    pub kind: String,
    pub seq: i64,
    pub body: Ipld,
}

/// Subscribes from `cursor` and pushes every `#commit`, `#identity`,
/// `#account` and `#sync` event into `into` until the connection ends.
pub async fn subscribe(addr: SocketAddr, cursor: Option<i64>, into: Arc<Mutex<Vec<Received>>>) {
    let Ok(mut ws) = try_connect(addr, cursor).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let Some((header, body)) = split_frame(&msg.into_data()) else {
            continue;
        };
        let kind = kind(&header);
        let event = header.get("op") == Some(&Ipld::Integer(1))
            && ["#commit", "#identity", "#account", "#sync"].contains(&kind);
        let Some(seq) = body.get("seq").and_then(Ipld::as_integer) else {
            continue;
        };
        if event {
            let kind = kind.to_owned();
            into.lock().unwrap().push(Received { kind, seq, body });
        }
    }
}
