//! perch as a child process: the one way the tests build a `perch` command
//! (none of the caller's `PERCH_*`, `RUST_LOG` or `NOTIFY_SOCKET`, so a
//! developer's shell cannot change what is tested), one-shot CLI runs, and
//! `perch serve --dev` started and watched until it listens.

use std::ffi::OsString;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_perch"))
}

/// `bin` with a scrubbed environment (see the module doc).
pub fn perch_cmd() -> Command {
    command(&bin())
}

fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    scrub(&mut cmd);
    cmd
}

fn scrub(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("PERCH_")
            || matches!(
                name.as_str(),
                "RUST_LOG" | "NOTIFY_SOCKET" | "JOURNAL_STREAM"
            )
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// Whether the tests run as root: then the permission tests run perch as `nobody`.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `perch` as `nobody` (uid and gid 65534, no groups, no inheritable capabilities), through
/// util-linux's `setpriv`; only for a caller that is root.
pub fn perch_as_nobody() -> Command {
    let mut cmd = command(Path::new("setpriv"));
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(bin());
    cmd
}

/// `perch ARGS` run to the end, stdout and stderr collected.
pub fn perch(args: &[&str]) -> Output {
    perch_cmd().args(args).output().expect("run perch")
}

/// `cmd` run to the end with `input` on its stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run perch");
    // perch may exit before reading everything (e.g. on a usage error).
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// Exit status, stdout and stderr, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How to start `perch serve --dev`.
#[derive(Default, Clone)]
pub struct Launch {
    /// A command in front of the binary (`fiu-run …`).
    pub wrapper: Vec<OsString>,
    /// Added to the scrubbed environment.
    pub env: Vec<(String, OsString)>,
    /// Where the output goes; `None` keeps it in memory, read through pipes
    /// (the power-cut file system must not hold perch's log).
    pub log: Option<PathBuf>,
    /// Run `$PERCH_BIN` when set (scripts/abuse.sh passes the release build).
    pub perch_bin_env: bool,
    /// `--listen`; a free port when `None`. (The dev account's did:web names
    /// the configured port, so a test that checks it picks one.)
    pub listen: Option<SocketAddr>,
}

impl Launch {
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Launch {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    pub fn envs(self, vars: &[(&str, &str)]) -> Launch {
        vars.iter().fold(self, |l, (k, v)| l.env(k, v))
    }

    pub fn log(mut self, path: &Path) -> Launch {
        self.log = Some(path.to_owned());
        self
    }

    /// `perch serve --dev` on `data`, on a free loopback port; returns once it
    /// listens.
    pub fn start(&self, data: &Path) -> Process {
        Process::start(data, self)
    }
}

enum Sink {
    File(PathBuf),
    Memory(Arc<Mutex<String>>),
}

/// A running `perch serve --dev`, killed when dropped.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    sink: Sink,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The account `serve --dev` creates on an empty data dir.
pub struct DevAccount {
    pub handle: String,
    pub did: String,
    pub password: String,
}

impl Process {
    fn start(data: &Path, launch: &Launch) -> Process {
        let bin = match std::env::var_os("PERCH_BIN") {
            Some(b) if launch.perch_bin_env => PathBuf::from(b),
            _ => bin(),
        };
        let mut cmd = match launch.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = command(Path::new(first));
                c.args(rest).arg(&bin);
                c
            }
            None => command(&bin),
        };
        let listen = launch
            .listen
            .map_or("127.0.0.1:0".into(), |a| a.to_string());
        cmd.args(["serve", "--dev", "--listen", &listen, "--data-dir"])
            .arg(data)
            .stdin(Stdio::null());
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let sink = match &launch.log {
            Some(path) => {
                let out = std::fs::File::create(path).unwrap();
                cmd.stdout(out.try_clone().unwrap()).stderr(out);
                Sink::File(path.clone())
            }
            None => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                Sink::Memory(Arc::default())
            }
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        if let Sink::Memory(text) = &sink {
            let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
                child.stdout.take().map(|p| Box::new(p) as _),
                child.stderr.take().map(|p| Box::new(p) as _),
            ];
            for pipe in pipes.into_iter().flatten() {
                let text = Arc::clone(text);
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        let mut t = text.lock().unwrap();
                        t.push_str(&line);
                        t.push('\n');
                    }
                });
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = read(&sink);
            if let Some(addr) = listening_on(&text) {
                return Process { child, addr, sink };
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the pipe readers take in the last words.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "perch exited with {status} before listening:\n{}",
                    read(&sink)
                );
            }
            assert!(Instant::now() < deadline, "perch did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything perch printed so far.
    pub fn output(&self) -> String {
        read(&self.sink)
    }

    /// The dev account line, printed (before the listening line) on a first
    /// start without a PLC directory.
    pub fn dev_account(&self) -> Option<DevAccount> {
        let text = self.output();
        let line = text.lines().find_map(|l| l.strip_prefix("dev account: "))?;
        // "handle H did D password: P"
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["handle", h, "did", d, "password:", p] => Some(DevAccount {
                handle: (*h).into(),
                did: (*d).into(),
                password: (*p).into(),
            }),
            _ => None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }

    /// Resets VmHWM to the current RSS, so a later VmHWM is the peak of what
    /// followed. False where the kernel does not allow it.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        terminate(&self.child);
        self.child.wait().expect("wait for perch")
    }
}

/// Sends SIGTERM (std only knows SIGKILL).
pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// A `kB` field of /proc/PID/status; a process that is gone fails the test.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn read(sink: &Sink) -> String {
    match sink {
        Sink::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
        Sink::Memory(text) => text.lock().unwrap().clone(),
    }
}

fn listening_on(text: &str) -> Option<SocketAddr> {
    text.lines()
        .find_map(|l| l.split("listening on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
}
