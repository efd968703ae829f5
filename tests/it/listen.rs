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

/// A port below 1024 without the capability names it (the check runs as `nobody`, so only
/// where the tests run as root).
#[test]
fn a_privileged_port_without_the_capability_says_what_grants_it() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::support::process::running_as_root() {
        eprintln!("not root: skipping");
        return;
    }
    let unprivileged_from: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_from <= 81 {
        eprintln!("every port is unprivileged on this host: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = crate::support::process::perch_as_nobody()
        .args(["serve", "--dev", "--listen", "127.0.0.1:81", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot listen on 127.0.0.1:81") && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}

/// With no config file at all, the first thing said is that perch is not set up.
#[test]
fn no_config_at_all_points_to_init() {
    if std::path::Path::new("/etc/perch/perch.toml").exists() {
        eprintln!("this machine has a perch config: skipping");
        return;
    }
    let o = crate::support::process::perch(&["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("perch is not set up yet") && err.contains("sudo perch init"),
        "{err}"
    );
}
