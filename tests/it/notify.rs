//! The systemd notify protocol without systemd: this test plays the service manager on a unix
//! datagram socket and checks READY=1 comes only once the listener answers, WATCHDOG=1 pings
//! keep within the interval, and STOPPING=1 follows SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::{perch_cmd, terminate};
use crate::support::serial;

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_watchdog_and_stopping() {
    let _turn = serial::one_at_a_time_blocking();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = perch_cmd()
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Everything up to READY=1 (STATUS lines may come first).
    let ready = loop {
        let m = recv(&sock).expect("READY=1 within 20 s");
        if m.lines().any(|l| l == "READY=1") {
            break m;
        }
    };
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("a STATUS line with READY");
    // "serving localhost on http://127.0.0.1:PORT": the listener is bound already.
    let addr = status.rsplit("http://").next().unwrap();
    std::net::TcpStream::connect(addr).expect("listener bound before READY=1");

    // Pings at about half of WATCHDOG_USEC, never a gap near the limit.
    let mut pings = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let m = recv(&sock).expect("watchdog pings");
        if m.lines().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
    }
    assert!(pings.len() >= 8, "{} pings in 1.5 s", pings.len());
    let max_gap = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(max_gap < Duration::from_millis(200), "gap {max_gap:?}");

    // `systemctl reload` sends SIGHUP in every TLS mode; it must not end the process.
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended perch");
    terminate(&child);
    let stopping = loop {
        match recv(&sock) {
            Some(m) if m.lines().any(|l| l == "STOPPING=1") => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(stopping, "STOPPING=1 after SIGTERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
