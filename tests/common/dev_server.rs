//! A real `perch serve --dev` process on a temp data dir, for tests that
//! measure the server from outside (memory, file descriptors, sockets).
//! `PERCH_BIN` picks another binary (scripts/abuse.sh passes the release
//! build); by default it is the one cargo built for this test run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DevServer {
    child: Child,
    pub addr: std::net::SocketAddr,
    pub password: String,
    pub log: PathBuf,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevServer {
    /// Starts perch with `env` added (e.g. `PERCH_MAX_CONNECTIONS`); every
    /// other `PERCH_*` variable of the caller is removed so the run is the
    /// same wherever it happens.
    pub fn start(data: &Path, log: &Path, env: &[(&str, &str)]) -> DevServer {
        let bin = std::env::var_os("PERCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_perch")));
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if (name.starts_with("PERCH_") && name != "PERCH_BIN") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.env_remove("PERCH_BIN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let addr = text
                .lines()
                .find_map(|l| l.split("listening on http://").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            let password = text
                .lines()
                .find_map(|l| l.strip_prefix("dev account: "))
                .and_then(|l| l.rsplit("password: ").next())
                .map(|p| p.trim().to_owned());
            if let (Some(addr), Some(password)) = (addr, password) {
                return DevServer {
                    child,
                    addr,
                    password,
                    log: log.to_owned(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("perch exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "perch did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Resets VmHWM to the current RSS, so a later VmHWM is the peak of what
    /// followed. False where the kernel does not allow it.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }
}
