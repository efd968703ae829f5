//! Runs the built `perch` binary: global flags in any position, `config show` / `config check`
//! output and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::process::{Launch, perch_cmd};

/// `perch ARGS` in `dir`, with `env` on top of the scrubbed environment.
fn perch_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = perch_cmd();
    cmd.args(args).current_dir(dir).envs(env.iter().copied());
    cmd.output().expect("run perch")
}

fn perch(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    perch_in(dir.path(), args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_show_dev_with_data_dir() {
    let o = perch(&["config", "show", "--dev", "--data-dir", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "data_dir = \"/tmp/x\"",
        "hostname = \"localhost\"",
        "listen = \"127.0.0.1:2583\"",
        "tls = \"off\"",
        "plc_url = \"\"",
        "blob_limit = 104857600",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{out}"
        );
    }
}

#[test]
fn global_flags_before_and_after_the_subcommand() {
    let after = perch(&["config", "show", "--dev"]);
    let before = perch(&["--dev", "config", "show"]);
    let middle = perch(&["config", "--dev", "show"]);
    for o in [&after, &before, &middle] {
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    }
    assert_eq!(stdout(&after), stdout(&before));
    assert_eq!(stdout(&after), stdout(&middle));
    assert!(stdout(&before).contains("data_dir = \"./perch-dev\""));
}

#[test]
fn config_check_dev() {
    let o = perch(&["config", "check", "--dev"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("config ok\n"), "{out}");
    assert!(out.contains("http://localhost:2583"), "{out}");
    assert!(out.contains("dev"), "{out}");
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let o = perch(&["config", "show", "--dev", "--listen", "foo"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("listen: \"foo\" is not an address"), "{err}");
    assert!(err.contains("--listen"), "{err}");

    let o = perch(&["config", "check", "--config", "/nonexistent/perch.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));
}

#[test]
fn file_env_and_flag_layers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("perch.toml");
    std::fs::write(
        &file,
        "hostname = \"pds.example.com\"\ntls = \"off\"\nlisten = \"127.0.0.1:1\"\nlog = \"warn\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let o = perch_in(
        dir.path(),
        &[
            "config",
            "show",
            "--config",
            file,
            "--listen",
            "127.0.0.1:3",
        ],
        &[
            ("PERCH_LISTEN", "127.0.0.1:2"),
            ("PERCH_LOG", "debug"),
            ("PERCH_ADMIN_PASSWORD", "very-secret-pw"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("hostname = \"pds.example.com\""), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:3\""), "{out}");
    assert!(out.contains("log = \"debug\""), "{out}");
    assert!(out.contains("admin_password = \"********\""), "{out}");
    assert!(!out.contains("very-secret-pw"), "{out}");

    std::fs::write(dir.path().join("bad.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let o = perch_in(
        dir.path(),
        &["config", "check", "--config", "bad.toml"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("listn: unknown key"), "{}", stderr(&o));
}

#[test]
fn usage_errors_and_help() {
    let o = perch(&["--dev"]);
    assert_eq!(o.status.code(), Some(2), "no subcommand is a usage error");
    let o = perch(&["config", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = perch(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("account"), "{}", stdout(&o));
    let o = perch(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("perch "), "{}", stdout(&o));
}

#[test]
fn account_lifecycle_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Commands that only read or maintain a server create nothing where there is none: a
    // mistyped --data-dir is an error, and the directory stays as it was.
    let missing = dir.path().join("typo");
    for args in [
        &["status"][..],
        &["account", "apps"],
        &["account", "app-password", "list"],
        &["request-crawl"],
    ] {
        let mut a = args.to_vec();
        a.extend(["--dev", "--data-dir", missing.to_str().unwrap()]);
        let o = perch_in(dir.path(), &a, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("no perch data in") && stderr(&o).contains("perch init"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    let o = perch_in(dir.path(), &["status", "--dev", "--data-dir", d], &[]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(!dir.path().join("perch.sqlite").exists());
    // The password rule of `perch init` holds here too, and a refused create leaves nothing.
    let short = [
        "account",
        "create",
        "--dev",
        "--did-method",
        "web",
        "--data-dir",
        missing.to_str().unwrap(),
        "--handle",
        "bob.test",
        "--password",
        "short",
    ];
    let o = perch_in(dir.path(), &short, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("at least 8 characters"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
    let create = [
        "account",
        "create",
        "--dev",
        "--did-method",
        "web",
        "--data-dir",
        d,
        "--handle",
        "bob.test",
        "--password",
        "pw pw pw",
    ];
    let o = perch_in(dir.path(), &create, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("did:web:localhost"), "{}", stdout(&o));
    // A second account is refused.
    let o = perch_in(dir.path(), &create, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"));
    let o = perch_in(dir.path(), &["status", "--dev", "--data-dir", d], &[]);
    assert!(
        stdout(&o).contains("bob.test") && stdout(&o).contains("rev "),
        "{}",
        stdout(&o)
    );
    let o = perch_in(
        dir.path(),
        &[
            "account",
            "app-password",
            "create",
            "--name",
            "phone",
            "--dev",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let o = perch_in(
        dir.path(),
        &["account", "app-password", "list", "--dev", "--data-dir", d],
        &[],
    );
    assert!(stdout(&o).contains("phone"));
    let o = perch_in(
        dir.path(),
        &[
            "account",
            "app-password",
            "revoke",
            "--name",
            "phone",
            "--dev",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    let o = perch_in(
        dir.path(),
        &["seq", "bump", "--to", "100", "--dev", "--data-dir", d],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    // Without a PLC directory a did:plc account cannot be made.
    let other = tempfile::tempdir().unwrap();
    let od = other.path().to_str().unwrap();
    let o = perch_in(
        other.path(),
        &[
            "account",
            "create",
            "--dev",
            "--did-method",
            "plc",
            "--data-dir",
            od,
            "--handle",
            "c.test",
            "--password",
            "long enough",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("plc_url"), "{}", stderr(&o));
    assert!(
        std::fs::read_dir(other.path()).unwrap().next().is_none(),
        "a failed create leaves nothing behind"
    );
    let fresh = other.path().join("fresh");
    let mut again = vec![
        "account",
        "create",
        "--dev",
        "--did-method",
        "plc",
        "--handle",
        "c.test",
        "--password",
        "long enough",
        "--data-dir",
    ];
    again.push(fresh.to_str().unwrap());
    let o = perch_in(other.path(), &again, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!fresh.exists(), "a failed create leaves no data dir");
    // `migrate in` needs the server it moves the account into: it creates nothing either.
    let o = perch_in(
        other.path(),
        &[
            "migrate",
            "in",
            "--from",
            "alice.example.com",
            "--dev",
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
        &[("PERCH_OLD_PASSWORD", "whatever")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no perch data in"), "{}", stderr(&o));
    assert!(!fresh.exists(), "a failed migrate in leaves no data dir");
    // Without a terminal, a password comes only from stdin or the environment, never
    // from a prompt nobody can answer.
    let mut cmd = perch_cmd();
    cmd.args([
        "migrate",
        "in",
        "--from",
        "alice.example.com",
        "--dev",
        "--data-dir",
    ])
    .arg(&fresh)
    .stdin(std::process::Stdio::null());
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--password-stdin"), "{}", stderr(&o));
}

#[test]
fn doctor_reports_a_running_dev_server_and_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Launch {
        listen: Some(listen.parse().unwrap()),
        ..Launch::default()
    }
    .start(&data);
    let args = ["doctor", "--dev", "--listen", &listen, "--data-dir", data_s];
    let o = perch_in(dir.path(), &args, &[]);
    let out = stdout(&o);
    server.stop();
    for line in [
        "OK   listener",
        "OK   certificate  tls = \"off\"",
        "OK   database     quick_check ok",
        "OK   account      alice.test (did:web:localhost%3A",
        "OK   signing key",
        &format!("OK   did          did:web:localhost%3A{port} points to http://localhost:{port}"),
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    // The dev handle alice.test cannot resolve: a FAIL with the fix, and exit status 1.
    assert!(
        out.contains("FAIL handle       alice.test does not resolve"),
        "{out}"
    );
    assert!(
        out.contains("add a TXT record _atproto.alice.test"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(1), "{out}");

    // Nothing listens any more, and a damaged page fails quick_check.
    let db = data.join("perch.sqlite");
    // Everything into the main file first, then scribble over the b-tree page headers.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page);
    for start in (page..bytes.len()).step_by(page) {
        for b in &mut bytes[start..start + 12] {
            *b = 0x5a;
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    let o = perch_in(dir.path(), &args, &[]);
    let out = stdout(&o);
    assert!(out.contains("FAIL listener"), "{out}");
    assert!(out.contains("FAIL database"), "{out}");
    assert!(out.contains("restore the latest backup"), "{out}");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn root_is_stopped_from_touching_the_service_users_data_dir() {
    if !crate::support::process::running_as_root() {
        eprintln!("not root: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let st = Command::new("chown")
        .args(["65534:65534"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    let o = perch_in(
        dir.path(),
        &[
            "account",
            "invite",
            "--dev",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("sudo -u perch"), "{}", stderr(&o));
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "nothing was created"
    );
    // Reading the config is allowed: the SD image's units check it as root.
    let o = perch_in(
        dir.path(),
        &[
            "config",
            "check",
            "--dev",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// What `perch serve --dev` logs up to its "listening" line, with `JOURNAL_STREAM` naming
/// its stdout (as systemd does) or not.
fn serve_start_lines(journal: bool) -> Vec<String> {
    use std::io::BufRead as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd())).unwrap();
    let mut cmd = perch_cmd();
    cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::null());
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let mut child = cmd.spawn().expect("start perch serve");
    drop(cmd); // the parent's copy of the write end, so EOF comes when the child ends
    let mut lines = vec![];
    for line in std::io::BufReader::new(reader).lines() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.last().is_some_and(|l| l.contains("listening on")),
        "no listening line: {lines:?}"
    );
    lines
}

#[test]
fn under_the_journal_lines_carry_a_priority_and_no_timestamp() {
    let journal = serve_start_lines(true);
    let line = journal.last().unwrap();
    assert!(
        line.starts_with("<6>perch::cli::commands: perch "),
        "{line}"
    );
    // The start-up line says what is being served, from where.
    assert!(
        journal.iter().any(|l| l.starts_with("<6>")
            && l.contains("starting perch")
            && l.contains("for localhost: account alice.test (did:web:localhost")
            && l.contains("config built-in and environment only, data in ./perch-dev")),
        "{journal:?}"
    );
    let plain = serve_start_lines(false);
    let line = plain.last().unwrap();
    assert!(!line.starts_with('<'), "{line}");
    // The usual format starts with the time: 2026-…T…Z
    assert!(
        line.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{line}"
    );
}

/// `perch doctor` run by a user who may not read the data dir says whom to run it as, and
/// never advises `perch init` or a restore for what is only a permission problem.
#[test]
fn doctor_as_the_wrong_user_says_who_to_run_as() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !crate::support::process::running_as_root() {
        eprintln!("not root: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let mut create = perch_cmd();
    create.args([
        "account",
        "create",
        "--dev",
        "--did-method",
        "web",
        "--data-dir",
        d,
        "--handle",
        "a.test",
        "--password-stdin",
    ]);
    let o = crate::support::process::run_with_stdin(&mut create, "long enough\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let doctor_as_nobody = || {
        let o = crate::support::process::perch_as_nobody()
            .args(["doctor", "--dev", "--data-dir", d])
            .output()
            .unwrap();
        stdout(&o) + &stderr(&o)
    };
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The temporary directory is 0700: nobody cannot even look in.
    let said = doctor_as_nobody();
    assert!(said.contains("run it as root: sudo perch doctor"), "{said}");
    for harmful in ["perch init", "restore"] {
        assert!(!said.contains(harmful), "{harmful:?} in {said}");
    }
    // Readable, but not writable beside the database (which SQLite's WAL mode needs).
    open(dir.path(), 0o755);
    open(&data, 0o755);
    open(&data.join("perch.sqlite"), 0o644);
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 0);
    let said = doctor_as_nobody();
    assert!(said.contains("sudo perch doctor"), "{said}");
    for harmful in ["perch init", "restore"] {
        assert!(!said.contains(harmful), "{harmful:?} in {said}");
    }
}
