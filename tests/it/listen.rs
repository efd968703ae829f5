//! The listeners: the default `[::]` takes IPv6 and IPv4 clients alike, and a listener that
//! cannot be opened says why and what to do.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::process::{Launch, perch_cmd, text};

fn health(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /xrpc/_health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_wildcard_listener_answers_over_ipv6_and_ipv4() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        listen: Some("[::]:0".parse().unwrap()),
        ..Launch::default()
    };
    let p = launch.start(&dir.path().join("data"));
    assert!(
        p.addr.is_ipv6() && p.addr.ip().is_unspecified(),
        "{}",
        p.addr
    );
    for ip in ["::1", "127.0.0.1"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), p.addr.port());
        let answer = health(addr);
        assert!(answer.starts_with("HTTP/1.1 200"), "{addr}: {answer}");
    }
}

#[test]
fn a_port_in_use_is_named_with_what_to_check() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = perch_cmd()
        .args([
            "serve",
            "--dev",
            "--listen",
            &addr.to_string(),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}"))
            && err.contains(&format!("ss -ltnp 'sport = :{}'", addr.port())),
        "{err}"
    );
}
