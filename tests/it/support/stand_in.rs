//! Stand-ins on loopback for the services perch reaches out to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// An HTTP server for `/.well-known/did.json` on IPv4 and IPv6 loopback,
/// serving whatever document is set; returns its port.
pub async fn did_web_server(doc: Arc<Mutex<Value>>) -> u16 {
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = v4.local_addr().unwrap().port();
    let mut listeners = vec![v4];
    if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
        listeners.push(v6);
    }
    for l in listeners {
        let doc = Arc::clone(&doc);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let doc = doc.lock().unwrap().to_string();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..got]);
                    let resp = if head.starts_with("GET /.well-known/did.json ") {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                            doc.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .into()
                    };
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
    }
    port
}

/// A DNS server answering TXT questions from a table (NXDOMAIN otherwise),
/// counting the questions per name.
#[derive(Clone, Default)]
pub struct Dns {
    table: Arc<Mutex<HashMap<String, Vec<String>>>>,
    pub asked: Arc<Mutex<HashMap<String, usize>>>,
}

impl Dns {
    pub async fn start(&self) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let q = &buf[..n];
                let mut i = 12;
                let mut labels = Vec::new();
                while i < n && q[i] != 0 {
                    let l = q[i] as usize;
                    labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + l]).into_owned());
                    i += 1 + l;
                }
                let question_end = i + 5;
                let name = labels.join(".").to_ascii_lowercase();
                *me.asked.lock().unwrap().entry(name.clone()).or_default() += 1;
                let records = me.table.lock().unwrap().get(&name).cloned();
                let mut r = q[..question_end].to_vec();
                r[2] = 0x81;
                r[3] = if records.is_some() { 0x80 } else { 0x83 };
                let records = records.unwrap_or_default();
                r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
                r[8..12].fill(0);
                for t in records {
                    r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
                    r.extend_from_slice(&((t.len() + 1) as u16).to_be_bytes());
                    r.push(t.len() as u8);
                    r.extend_from_slice(t.as_bytes());
                }
                let _ = sock.send_to(&r, peer).await;
            }
        });
        addr
    }

    /// `_atproto.<handle>` names `did`.
    pub fn txt(&self, handle: &str, did: &str) {
        self.set(&format!("_atproto.{handle}"), &[&format!("did={did}")]);
    }

    /// The TXT records of `name`.
    pub fn set(&self, name: &str, records: &[&str]) {
        let records = records.iter().map(|r| r.to_string()).collect();
        self.table.lock().unwrap().insert(name.to_owned(), records);
    }

    /// Questions so far for `_atproto.<handle>`.
    pub fn asked(&self, handle: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .get(&format!("_atproto.{handle}"))
            .copied()
            .unwrap_or(0)
    }
}
