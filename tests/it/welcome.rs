//! The SD image's setup page (`perch welcome`) as a running process: the code it puts on
//! the card, what it refuses, the boot file it writes, and how it follows `perch firstboot`
//! (run for real, as `perch-setup.service` would) to a failure or a set-up box. systemd's
//! part (the path unit, stopping the page, starting perch) is tested in the QEMU image test.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::client::{raw_bytes, request_bytes, response_parts};
use crate::support::pebble::free_port;
use crate::support::process::perch_cmd;

const TEMPLATE: &str = include_str!("../../image/boot/perch.toml");

struct Page {
    child: Child,
    addr: SocketAddr,
    /// What it printed (the console, on the box).
    stdout: mpsc::Receiver<String>,
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(boot: &Path, run: &Path) -> Page {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = perch_cmd()
        .args(["welcome", "--listen", &addr.to_string(), "--boot-dir"])
        .arg(boot)
        .arg("--run-dir")
        .arg(run)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Page {
                child,
                addr,
                stdout: rx,
            };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("perch welcome did not listen on {addr}");
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let (s, head, body) =
        response_parts(&raw_bytes(addr, &request_bytes("GET", path, &[], b"")).await);
    (s, head, String::from_utf8(body).unwrap())
}

async fn post(
    addr: SocketAddr,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (u16, String, String) {
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    let (s, head, body) = response_parts(
        &raw_bytes(
            addr,
            &request_bytes("POST", "/setup", &headers, body.as_bytes()),
        )
        .await,
    );
    (s, head, String::from_utf8(body).unwrap())
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const PASSWORD: &str = "set up from a browser";
const MORE: &str = "tls = \"off\"\nlisten = \"127.0.0.1:0\"\nplc_url = \"\"\nrelays = []";

fn form<'a>(code: &'a str, password_again: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("code", code),
        ("hostname", "pds.example.com"),
        ("handle", ""),
        ("password", PASSWORD),
        ("password_again", password_again),
        ("email", "owner@example.com"),
        (
            "ssh_key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB owner@laptop",
        ),
        ("more", MORE),
    ]
}

fn code_on_card(boot: &Path) -> String {
    let text = std::fs::read_to_string(boot.join("perch-setup.txt")).unwrap();
    perch::firstboot::setup_code::code_in(&text).unwrap_or_else(|| panic!("no code in {text}"))
}

async fn setup_stage(addr: SocketAddr) -> serde_json::Value {
    let (s, _, body) = get(addr, "/readyz").await;
    assert_eq!(s, 503, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_setup_page_needs_the_code_then_hands_over_to_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let (boot, run, root) = (
        dir.path().join("boot"),
        dir.path().join("run"),
        dir.path().join("root"),
    );
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("perch.toml"), TEMPLATE).unwrap();
    std::fs::write(
        boot.join("perch-setup.txt"),
        "2026-12-04T00:00:00.000Z\n\nperch.toml sets nothing yet.\n",
    )
    .unwrap();
    let page = start(&boot, &run);
    let addr = page.addr;

    // The code: on the card after first boot's report, and on the console.
    let code = code_on_card(&boot);
    let printed = page.stdout.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        printed.contains(&format!("setup code: {code}")),
        "{printed}"
    );
    let (s, head, body) = get(addr, "/").await;
    assert_eq!(s, 200);
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(body.contains("Set up your Personal Data Server") && body.contains("sets nothing yet"));
    assert!(!body.contains(&code), "the page shows the code");
    assert_eq!(setup_stage(addr).await["setup"], "waiting");
    let (s, _, _) = get(addr, "/xrpc/_health").await;
    assert_eq!(s, 503);

    // Refused: no code, a wrong code, another site's form, a bad answer. Nothing changes.
    let (s, _, body) = post(addr, &form("", PASSWORD), &[]).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("not the setup code") && body.contains("value=\"pds.example.com\""));
    assert!(!body.contains(PASSWORD), "a refusal shows the password");
    let (s, _, _) = post(addr, &form("2222-3333-4444", PASSWORD), &[]).await;
    assert_eq!(s, 403);
    let (s, _, _) = post(
        addr,
        &form(&code, PASSWORD),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, body) = post(addr, &form(&code, "another password"), &[]).await;
    assert_eq!(s, 400);
    assert!(body.contains("not the same"), "{body}");
    assert_eq!(
        std::fs::read_to_string(boot.join("perch.toml")).unwrap(),
        TEMPLATE
    );
    assert!(!run.join("apply").exists());
    assert_eq!(setup_stage(addr).await["setup"], "waiting");

    // A first boot that fails: its report comes back on the page, with a fresh copy of the
    // code on the card for the next try.
    let mut bad = form(&code, PASSWORD);
    bad.retain(|(k, _)| *k != "more");
    bad.push((
        "more",
        "tls = \"off\"\nplc_url = \"\"\nrelays = []\ndata_dir = \"/proc/no-such-place\"",
    ));
    let (s, head, _) = post(addr, &bad, &[]).await;
    assert_eq!(s, 303);
    assert!(head.contains("location: /progress"), "{head}");
    assert!(
        run.join("apply").exists(),
        "no request for perch-setup.path"
    );
    let written = std::fs::read_to_string(boot.join("perch.toml")).unwrap();
    let parsed = perch::firstboot::parse(&written).unwrap();
    assert_eq!(parsed.hostname.as_deref(), Some("pds.example.com"));
    assert_eq!(parsed.password.as_deref(), Some(PASSWORD));
    assert_eq!(parsed.ssh_keys.len(), 1);
    assert_eq!(setup_stage(addr).await["setup"], "applying");
    let (s, _, body) = get(addr, "/progress").await;
    assert_eq!(s, 200);
    assert!(body.contains("Setting up pds.example.com") && body.contains("/setup.js"));
    let (s, head, body) = get(addr, "/setup.js").await;
    assert_eq!(s, 200);
    assert!(head.contains("text/javascript") && body.contains("/readyz"));

    // As perch-setup.service runs it (there with --root /, which also starts units).
    let first_boot = |root: &Path, data_dir: Option<&Path>| {
        let mut cmd = perch_cmd();
        if let Some(d) = data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        cmd.args(["firstboot", "--boot-dir"])
            .arg(&boot)
            .arg("--root")
            .arg(root)
            .output()
            .unwrap()
    };
    std::fs::remove_file(run.join("apply")).unwrap();
    let out = first_boot(&root, None);
    assert!(
        !out.status.success(),
        "first boot should fail on the unwritable data_dir"
    );
    let stage = setup_stage(addr).await;
    assert_eq!(stage["setup"], "failed", "{stage}");
    assert!(
        stage["reason"]
            .as_str()
            .unwrap()
            .contains("could not finish"),
        "{stage}"
    );
    assert_eq!(code_on_card(&boot), code);
    let (_, _, body) = get(addr, "/").await;
    assert!(body.contains("could not finish"), "{body}");

    // Fixed and sent again: first boot sets the box up and the page says so.
    let (s, _, _) = post(addr, &form(&code, PASSWORD), &[]).await;
    assert_eq!(s, 303);
    let root = dir.path().join("root2");
    std::fs::remove_file(run.join("apply")).unwrap();
    let out = first_boot(&root, Some(&root.join("data")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setup_stage(addr).await["setup"], "applied");
    assert!(!boot.join("perch.toml").exists());
    let left = std::fs::read_to_string(boot.join("perch-setup.txt")).unwrap();
    assert!(
        left.contains("created on this box") && !left.contains(&code),
        "{left}"
    );
    let applied = std::fs::read_to_string(boot.join("perch-applied.toml")).unwrap();
    assert!(!applied.contains(PASSWORD));
    let check = perch_cmd()
        .args(["config", "check", "--config"])
        .arg(root.join("etc/perch/perch.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn wrong_codes_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (boot, run) = (dir.path().join("boot"), dir.path().join("run"));
    std::fs::create_dir_all(&boot).unwrap();
    let page = start(&boot, &run);
    let code = code_on_card(&boot);
    for _ in 0..5 {
        let (s, _, _) = post(page.addr, &form("ZZZZ-ZZZZ-ZZZZ", PASSWORD), &[]).await;
        assert_eq!(s, 403);
    }
    // Even the right code waits now: guessing gets five tries a minute.
    let (s, _, body) = post(page.addr, &form(&code, PASSWORD), &[]).await;
    assert_eq!(s, 429, "{body}");
    assert!(!boot.join("perch.toml").exists());
    assert!(!run.join("apply").exists());
}
