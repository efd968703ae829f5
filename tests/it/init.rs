//! `perch init` through the built binary, offline: the account is a did:web (no PLC
//! directory), config and data live in a temp dir.

use std::path::Path;
use std::process::Output;

use crate::support::process::{perch_cmd, run_with_stdin};

/// `perch ARGS` in `dir` with `stdin` piped in and `env` on top of the scrubbed environment.
fn perch(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = perch_cmd();
    cmd.args(args).current_dir(dir).envs(env.iter().copied());
    run_with_stdin(&mut cmd, stdin)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No PLC directory, so no network: the account becomes did:web:<hostname>.
const OFFLINE: &[(&str, &str)] = &[("PERCH_PLC_URL", ""), ("PERCH_RELAYS", "")];

#[test]
fn non_interactive_init_writes_config_creates_account_and_refuses_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "init",
        "--non-interactive",
        "--config",
        "etc/perch.toml",
        "--data-dir",
        "data",
        "--hostname",
        "pds.example.com",
        "--acme-email",
        "me@example.com",
        "--password-stdin",
    ];
    let o = perch(d, &args, OFFLINE, "correct horse battery\n");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(&o));
    let text = out(&o);
    for want in [
        "created account pds.example.com (did:web:pds.example.com)",
        "pds.example.com.  A",
        "443  ->",
        "80   ->",
        "perch serve --config etc/perch.toml",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The handle is the hostname, so no TXT record is needed.
    assert!(!text.contains("_atproto"), "{text}");

    let config = std::fs::read_to_string(d.join("etc/perch.toml")).unwrap();
    assert!(
        config.contains("\nhostname = \"pds.example.com\"\n"),
        "{config}"
    );
    assert!(
        config.contains("\nacme_email = \"me@example.com\"\n"),
        "{config}"
    );
    let data_dir = d.join("data");
    assert!(
        config.contains(&format!("data_dir = \"{}\"", data_dir.display())),
        "{config}"
    );
    assert!(
        config.contains("#relays = "),
        "the rest stays commented:\n{config}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("etc/perch.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);

    // The written file is what the server and the other commands load.
    let o = perch(d, &["status", "--config", "etc/perch.toml"], OFFLINE, "");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(&o));
    assert!(
        out(&o).contains("pds.example.com (did:web:pds.example.com)"),
        "{}",
        out(&o)
    );

    // Running it again changes nothing and says how to start over.
    let before = std::fs::read_to_string(d.join("etc/perch.toml")).unwrap();
    let o = perch(d, &args, OFFLINE, "another password\n");
    assert_eq!(o.status.code(), Some(1), "stdout: {}", out(&o));
    assert!(err(&o).contains("an account already exists"), "{}", err(&o));
    assert!(err(&o).contains("move"), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("etc/perch.toml")).unwrap(),
        before
    );
}

#[test]
fn interactive_answers_from_stdin_and_a_separate_handle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Hostname (first a bad one), handle, no email, password twice (first a short one).
    let answers =
        "not a host\npds.example.net\nalice.example.net\n\nshort\npassword one\npassword one\n";
    let o = perch(
        d,
        &["init", "--config", "perch.toml", "--data-dir", "data"],
        OFFLINE,
        answers,
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(&o));
    let text = out(&o);
    assert!(text.contains("is not a DNS name"), "{text}");
    assert!(text.contains("at least 8 characters"), "{text}");
    assert!(
        text.contains("created account alice.example.net (did:web:pds.example.net)"),
        "{text}"
    );
    assert!(
        text.contains("_atproto.alice.example.net.  TXT  \"did=did:web:pds.example.net\""),
        "{text}"
    );
    let config = std::fs::read_to_string(d.join("perch.toml")).unwrap();
    assert!(config.contains("#acme_email = "), "{config}");
}

#[test]
fn refusals_and_missing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = perch(
        d,
        &["init", "--non-interactive", "--config", "c.toml"],
        OFFLINE,
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--hostname"), "{}", err(&o));

    let base = [
        "init",
        "--non-interactive",
        "--config",
        "c.toml",
        "--data-dir",
        "data",
        "--hostname",
        "pds.example.org",
    ];
    let o = perch(d, &base, OFFLINE, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("PERCH_PASSWORD"), "{}", err(&o));

    // A hand-written config is not replaced without --force.
    std::fs::write(d.join("c.toml"), "hostname = \"other.example.org\"\n").unwrap();
    let env = [OFFLINE, &[("PERCH_PASSWORD", "from the environment")]].concat();
    let o = perch(d, &base, &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--force"), "{}", err(&o));
    assert!(!d.join("data").exists(), "nothing is created when refusing");

    let forced = [&base[..], &["--force"]].concat();
    let o = perch(d, &forced, &env, "");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("c.toml.old")).unwrap(),
        "hostname = \"other.example.org\"\n"
    );

    // Interactive mode with no answers left stops instead of looping.
    let o = perch(d, &["init", "--config", "x.toml"], OFFLINE, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("--non-interactive"), "{}", err(&o));
}

/// A config path that cannot be written is found before anything is created, and the error
/// names it.
#[test]
fn an_unwritable_config_path_is_named_and_leaves_no_data_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A file where the config's directory should be: not writable, even for root.
    std::fs::write(d.join("not-a-dir"), "").unwrap();
    let config = d.join("not-a-dir/perch.toml");
    let data = d.join("data");
    let o = perch(
        d,
        &[
            "init",
            "--non-interactive",
            "--hostname",
            "pds.example.com",
            "--password-stdin",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        OFFLINE,
        "long enough\n",
    );
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        err(&o).contains(&d.join("not-a-dir").display().to_string()),
        "{}",
        err(&o)
    );
    assert!(!data.exists(), "nothing was created");
    // A directory this user may not write in (root runs the test as nobody for that).
    use std::os::unix::fs::PermissionsExt;
    if !crate::support::process::running_as_root() {
        return;
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let locked = d.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let mut as_nobody = crate::support::process::perch_as_nobody();
    as_nobody
        .args([
            "init",
            "--non-interactive",
            "--hostname",
            "pds.example.com",
            "--password-stdin",
        ])
        .arg("--config")
        .arg(locked.join("perch.toml"))
        .arg("--data-dir")
        .arg(&data)
        .envs(OFFLINE.iter().copied());
    let o = run_with_stdin(&mut as_nobody, "long enough\n");
    assert_ne!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        err(&o).contains(&format!("cannot write in {}", locked.display())),
        "{}",
        err(&o)
    );
    assert!(!data.exists(), "nothing was created");
}
