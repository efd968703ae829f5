//! `perch init`: the first run on a new server. Asks for the hostname, the handle, an email
//! for Let's Encrypt and the password (or takes them from flags with `--non-interactive`),
//! writes the config file, creates the account, and prints the DNS records, router
//! port-forwards and start command the owner still has to set up.
//!
//! It never replaces an existing account, and it replaces a config file that already has
//! settings only with `--force` (keeping the old one beside it).

use std::io::{self, IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{DidMethod, GlobalArgs};
use crate::account::{self, AccountError};
use crate::app::App;
use crate::config::{Config, DEFAULT_CONFIG_PATH, Overrides, TlsMode, toml_string};
use crate::firstboot::answers;

/// The commented config the package installs; `init` fills in its first keys.
pub const CONFIG_TEMPLATE: &str = include_str!("../../packaging/perch.toml");

/// The system account the packaged service runs as (`systemd/perch.sysusers`).
const SERVICE_USER: &str = "perch";

#[derive(clap::Args, Debug, Default)]
pub struct InitArgs {
    /// Ask nothing: take the answers from the flags, the password from --password-stdin or
    /// PERCH_PASSWORD
    #[arg(long)]
    pub non_interactive: bool,
    /// The server's DNS name, e.g. pds.example.com
    #[arg(long)]
    pub hostname: Option<String>,
    /// The account's handle [default: the hostname, so one certificate covers both]
    #[arg(long)]
    pub handle: Option<String>,
    /// Your email: the contact given to Let's Encrypt, and the account's email (codes go
    /// there when smtp_url is set)
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// The password (visible to other local users on the command line: prefer
    /// --password-stdin or PERCH_PASSWORD)
    #[arg(long, env = "PERCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// An argon2id hash (PHC string, e.g. from the `argon2` tool) instead of the password
    #[arg(long, value_name = "PHC", conflicts_with_all = ["password", "password_stdin"])]
    pub password_hash: Option<String>,
    /// DID method [default: plc, or web when no PLC directory is configured]
    #[arg(long, value_enum)]
    pub did_method: Option<DidMethod>,
    /// Replace a config file that already has settings (the old one is kept as FILE.old)
    #[arg(long)]
    pub force: bool,
}

/// An `init` failure: printed after `perch: `, exit status 1.
#[derive(Debug)]
struct InitError(String);

impl<T: std::fmt::Display> From<T> for InitError {
    fn from(e: T) -> InitError {
        InitError(e.to_string())
    }
}

pub fn main(args: InitArgs, global: &GlobalArgs) -> ExitCode {
    match run(args, global) {
        Ok(()) => ExitCode::SUCCESS,
        Err(InitError(e)) => {
            eprintln!("perch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the owner told us.
struct Answers {
    hostname: String,
    handle: String,
    email: Option<String>,
    password: account::NewPassword,
}

fn run(args: InitArgs, global: &GlobalArgs) -> Result<(), InitError> {
    print!("{}", run_with(args, global, Vec::new())?);
    Ok(())
}

/// `perch init` as the SD-card image's first boot runs it: `extra` are more config keys
/// with their values already in TOML syntax. Returns the next steps for the owner.
pub(crate) fn run_with_settings(
    args: InitArgs,
    global: &GlobalArgs,
    extra: Vec<(String, String)>,
) -> Result<String, String> {
    run_with(args, global, extra).map_err(|InitError(e)| e)
}

fn run_with(
    args: InitArgs,
    global: &GlobalArgs,
    extra: Vec<(String, String)>,
) -> Result<String, InitError> {
    if global.dev {
        return Err(InitError(
            "--dev needs no init: `perch serve --dev` makes its own test account".into(),
        ));
    }
    let config_path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let mut stdin = io::stdin().lock();
    let answers = if args.non_interactive {
        from_flags(&args, &mut stdin)?
    } else {
        ask(&args, &mut stdin)?
    };

    // Flags that change where things are must end up in the file, or `perch serve` would
    // look elsewhere.
    let mut settings = vec![("hostname".to_owned(), toml_string(&answers.hostname))];
    if let Some(email) = &answers.email {
        settings.push(("acme_email".to_owned(), toml_string(email)));
    }
    if let Some(dir) = &global.data_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        settings.push(("data_dir".to_owned(), toml_string(&dir.to_string_lossy())));
    }
    if let Some(listen) = &global.listen {
        settings.push(("listen".to_owned(), toml_string(listen)));
    }
    settings.extend(extra);
    let text = render_config(CONFIG_TEMPLATE, &settings);
    let config = load_with(&config_path, &text, global)?;

    let replace_old = check_existing_config(&config_path, &text, args.force)?;
    config_dir_writable(&config_path)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let did = rt.block_on(async {
        let app = App::open(config.clone()).await?;
        if let Some(a) = app.account().await? {
            return Err(InitError(format!(
                "an account already exists in {}: {} ({}); nothing was changed.\n\
                 To change settings, edit {} and restart perch.\n\
                 To start over, stop perch, move {} away (it holds the keys and every post: \
                 keep a copy), then run `perch init` again.",
                config.data_dir.display(),
                a.handle,
                a.did,
                config_path.display(),
                config.data_dir.display()
            )));
        }
        write_config(&config_path, &text, replace_old)?;
        println!("wrote {}", config_path.display());
        let method = match args.did_method {
            Some(DidMethod::Web) => account::DidMethod::Web,
            Some(DidMethod::Plc) => account::DidMethod::Plc,
            None if config.plc_url.is_empty() => account::DidMethod::Web,
            None => account::DidMethod::Plc,
        };
        create_account(&app, &answers, method).await
    })?;
    drop(rt);
    give_to_service_user(&config.data_dir);
    Ok(next_steps(&config, &config_path, &answers.handle, &did))
}

async fn create_account(
    app: &Arc<App>,
    a: &Answers,
    method: account::DidMethod,
) -> Result<String, InitError> {
    match app
        .accounts()
        .create_with(&a.handle, a.password.clone(), a.email.clone(), method)
        .await
    {
        Ok(acct) => {
            println!("created account {} ({})", acct.handle, acct.did);
            Ok(acct.did)
        }
        // The keys are kept and PLC registration is deterministic, so a second run
        // registers the same DID.
        Err(e @ AccountError::Plc(_)) => Err(InitError(format!(
            "{e}\nThe config is written; check the network and run `perch init` again."
        ))),
        Err(e) => Err(InitError(e.to_string())),
    }
}

fn from_flags(args: &InitArgs, stdin: &mut impl io::BufRead) -> Result<Answers, InitError> {
    let Some(hostname) = &args.hostname else {
        return Err(InitError(
            "--non-interactive needs --hostname (and the password on stdin with \
             --password-stdin, or in PERCH_PASSWORD)"
                .into(),
        ));
    };
    let hostname = check_hostname(hostname)?;
    let handle = check_handle(args.handle.as_deref().unwrap_or(&hostname))?;
    let email = args.acme_email.as_deref().map(check_email).transpose()?;
    let password = if let Some(phc) = &args.password_hash {
        crate::auth::check_password_hash(phc).map_err(|e| InitError(e.to_string()))?;
        account::NewPassword::Hash(phc.clone())
    } else {
        let password = if args.password_stdin {
            read_line(stdin)?.ok_or_else(|| InitError("--password-stdin: no input".into()))?
        } else {
            args.password.clone().ok_or_else(|| {
                InitError(
                    "no password: pipe it in with --password-stdin or set PERCH_PASSWORD".into(),
                )
            })?
        };
        check_password(&password)?;
        account::NewPassword::Plain(password)
    };
    Ok(Answers {
        hostname,
        handle,
        email,
        password,
    })
}

/// Asks for whatever the flags did not give.
fn ask(args: &InitArgs, stdin: &mut impl io::BufRead) -> Result<Answers, InitError> {
    println!(
        "Setting up perch. The server needs a DNS name that points at your home \
         connection, e.g. pds.example.com."
    );
    let hostname = match &args.hostname {
        Some(h) => check_hostname(h)?,
        None => ask_until(stdin, "Hostname: ", None, check_hostname)?,
    };
    let handle = match &args.handle {
        Some(h) => check_handle(h)?,
        None => ask_until(
            stdin,
            &format!("Handle [{hostname}]: "),
            Some(&hostname),
            check_handle,
        )?,
    };
    let email = match &args.acme_email {
        Some(e) => Some(check_email(e)?),
        None => {
            let e = ask_until(
                stdin,
                "Your email, for Let's Encrypt and the account (optional): ",
                Some(""),
                |s| {
                    if s.is_empty() {
                        Ok(String::new())
                    } else {
                        check_email(s)
                    }
                },
            )?;
            (!e.is_empty()).then_some(e)
        }
    };
    let password = if let Some(phc) = &args.password_hash {
        crate::auth::check_password_hash(phc).map_err(|e| InitError(e.to_string()))?;
        account::NewPassword::Hash(phc.clone())
    } else {
        let password = if args.password_stdin {
            read_line(stdin)?.ok_or_else(|| InitError("--password-stdin: no input".into()))?
        } else if let Some(p) = &args.password {
            p.clone()
        } else {
            ask_password(stdin)?
        };
        check_password(&password)?;
        account::NewPassword::Plain(password)
    };
    Ok(Answers {
        hostname,
        handle,
        email,
        password,
    })
}

/// Prompts until `check` accepts the answer; an empty answer takes `default`.
fn ask_until(
    stdin: &mut impl io::BufRead,
    prompt: &str,
    default: Option<&str>,
    check: impl Fn(&str) -> Result<String, InitError>,
) -> Result<String, InitError> {
    loop {
        print!("{prompt}");
        io::stdout().flush()?;
        let answer = read_line(stdin)?.ok_or_else(end_of_input)?;
        let answer = match (answer.trim(), default) {
            ("", Some(d)) => d.to_owned(),
            (a, _) => a.to_owned(),
        };
        match check(&answer) {
            Ok(v) => return Ok(v),
            Err(InitError(e)) => println!("  {e}"),
        }
    }
}

/// A new password for a command other than init: from stdin with `--password-stdin` (one
/// line), else from `--password`/PERCH_PASSWORD, else asked twice on the terminal; never
/// only from the command line, where other local users can read it. The same length rule
/// as init.
pub(crate) fn new_password(flag: Option<String>, from_stdin: bool) -> Result<String, String> {
    let stdin = &mut io::stdin().lock();
    let password = if from_stdin {
        read_line(stdin)
            .map_err(|InitError(e)| e)?
            .ok_or("--password-stdin: no input")?
    } else if let Some(p) = flag {
        p
    } else if io::stdin().is_terminal() {
        return ask_password(stdin).map_err(|InitError(e)| e);
    } else {
        return Err("no password: pipe it in with --password-stdin (or set PERCH_PASSWORD)".into());
    };
    check_password(&password).map_err(|InitError(e)| e)?;
    Ok(password)
}

/// A password that already exists (on this server or another): from stdin with
/// `--password-stdin`, else `--password`, else the environment variable `env`, else asked
/// once on the terminal with the echo off.
pub(crate) fn existing_password(
    flag: Option<String>,
    from_stdin: bool,
    env: &str,
    prompt: &str,
) -> Result<String, String> {
    let stdin = &mut io::stdin().lock();
    if from_stdin {
        return Ok(read_line(stdin)
            .map_err(|InitError(e)| e)?
            .ok_or("--password-stdin: no input")?);
    }
    if let Some(p) = flag.or_else(|| std::env::var(env).ok()) {
        return Ok(p);
    }
    if !io::stdin().is_terminal() {
        return Err(format!(
            "no password: pipe it in with --password-stdin (or set {env})"
        ));
    }
    read_secret(stdin, &format!("{prompt}: "), true).map_err(|InitError(e)| e)
}

fn ask_password(stdin: &mut impl io::BufRead) -> Result<String, InitError> {
    let tty = io::stdin().is_terminal();
    loop {
        let first = read_secret(stdin, "Password for the account: ", tty)?;
        if let Err(InitError(e)) = check_password(&first) {
            println!("  {e}");
            continue;
        }
        let again = read_secret(stdin, "Same password again: ", tty)?;
        if first == again {
            return Ok(first);
        }
        println!("  the two passwords differ; once more");
    }
}

/// Reads a line with the terminal's echo off (via stty, which keeps this crate free of
/// unsafe terminal calls).
fn read_secret(stdin: &mut impl io::BufRead, prompt: &str, tty: bool) -> Result<String, InitError> {
    print!("{prompt}");
    io::stdout().flush()?;
    let stty = |arg: &str| {
        if tty {
            let _ = std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    };
    stty("-echo");
    let line = read_line(stdin);
    stty("echo");
    if tty {
        println!();
    }
    line?.ok_or_else(end_of_input)
}

fn end_of_input() -> InitError {
    InitError("no more input; to run without questions use --non-interactive with flags".into())
}

/// One line without its line ending; `None` at end of input.
fn read_line(stdin: &mut impl io::BufRead) -> Result<Option<String>, InitError> {
    let mut line = String::new();
    if stdin.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(Some(
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned(),
    ))
}

fn check_hostname(h: &str) -> Result<String, InitError> {
    answers::hostname(h).map_err(InitError)
}

fn check_handle(h: &str) -> Result<String, InitError> {
    answers::handle(h).map_err(InitError)
}

fn check_email(e: &str) -> Result<String, InitError> {
    answers::email(e).map_err(InitError)
}

fn check_password(p: &str) -> Result<(), InitError> {
    answers::password(p).map_err(InitError)
}

/// The template with `#key = …` lines for the given keys replaced by real settings (values
/// in TOML syntax); keys the template lacks are appended.
pub fn render_config(template: &str, settings: &[(String, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut done = vec![false; settings.len()];
    for line in template.lines() {
        let commented_key = line
            .strip_prefix('#')
            .and_then(|rest| rest.split_once('='))
            .map(|(k, _)| k.trim());
        match commented_key.and_then(|k| settings.iter().position(|(name, _)| name == k)) {
            Some(i) if !done[i] => {
                let (name, value) = &settings[i];
                out.push_str(&format!("{name} = {value}\n"));
                done[i] = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for ((name, value), done) in settings.iter().zip(done) {
        if !done {
            out.push_str(&format!("{name} = {value}\n"));
        }
    }
    out
}

/// The config as `perch serve` will see it once `text` is at `path` (environment and
/// flags included), so mistakes show before anything is written.
fn load_with(path: &Path, text: &str, global: &GlobalArgs) -> Result<Config, InitError> {
    let overrides = Overrides {
        config_path: Some(path.to_owned()),
        dev: false,
        ..global.overrides()
    };
    Config::load_from(&overrides, &|name| std::env::var(name).ok(), &|p| {
        if p == path {
            Ok(text.to_owned())
        } else {
            std::fs::read_to_string(p)
        }
    })
    .map_err(|e| InitError(format!("config error: {e}")))
}

/// Whether the file at `path` must be moved aside first. An absent file, the package's
/// all-comments template and a file identical to ours are simply (re)written.
fn check_existing_config(path: &Path, text: &str, force: bool) -> Result<bool, InitError> {
    let old = match std::fs::read_to_string(path) {
        Ok(old) => old,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(InitError(format!("cannot read {}: {e}", path.display()))),
    };
    let has_settings = old.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    });
    if old == text || !has_settings {
        return Ok(false);
    }
    if force {
        return Ok(true);
    }
    Err(InitError(format!(
        "{} already has settings; nothing was changed. Edit it by hand, or run \
         `perch init --force` to replace it (the old file is kept as {}.old).",
        path.display(),
        path.display()
    )))
}

/// Writes the config readable by root and the service user only (it may hold secrets),
/// through a temporary file so a crash never leaves half a config.
/// The config file's directory, made if missing, and proof that a file can be written there:
/// checked before the data dir is touched, so an unwritable config path leaves nothing behind.
fn config_dir_writable(path: &Path) -> Result<(), InitError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let at = |what: &str, p: &Path, e: io::Error| {
        InitError(format!(
            "cannot {what} {}: {e} (the config goes to {}; run init with sudo, or give a \
             writable --config)",
            p.display(),
            path.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| at("create", dir, e))?;
    let probe = dir.join(format!(".perch-init-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| at("write in", dir, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn write_config(path: &Path, text: &str, keep_old: bool) -> Result<(), InitError> {
    let at = |p: &Path, e: io::Error| InitError(format!("{}: {e}", p.display()));
    config_dir_writable(path)?;
    if keep_old {
        let mut old = path.as_os_str().to_owned();
        old.push(".old");
        std::fs::copy(path, &old).map_err(|e| at(Path::new(&old), e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        if let (true, Some((_, gid))) = (running_as_root(), service_user()) {
            std::os::unix::fs::chown(&tmp, Some(0), Some(gid))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| at(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| at(path, e))?;
    Ok(())
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// uid and gid of the service user, from /etc/passwd (system users are always local).
fn service_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == SERVICE_USER).then_some(())?;
        let uid = f.nth(1)?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Root made the data files; the service runs as `perch` and must own them.
fn give_to_service_user(dir: &Path) {
    let (true, Some((uid, gid))) = (running_as_root(), service_user()) else {
        return;
    };
    fn walk(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
        // The database's -wal and -shm files go away when its last connection closes, which
        // the writer thread may be doing right now: a file gone is not an error (the walk
        // stopping there left `keys` root's, and the service could not start).
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        match std::os::unix::fs::lchown(p, Some(uid), Some(gid)) {
            Err(e) if gone(&e) => return Ok(()),
            r => r?,
        }
        let is_dir = match std::fs::symlink_metadata(p) {
            Err(e) if gone(&e) => return Ok(()),
            r => r?.is_dir(),
        };
        if is_dir {
            for entry in std::fs::read_dir(p)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    if let Err(e) = walk(dir, uid, gid) {
        eprintln!(
            "perch: warning: could not give {} to user {SERVICE_USER}: {e}; run \
             `chown -R {SERVICE_USER}: {}`",
            dir.display(),
            dir.display()
        );
    }
}

/// This machine's address on the way to `probe`. A UDP connect only picks a route and
/// a source address; no packet is sent.
fn local_address(probe: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if probe.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(probe).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// The DNS records, router port-forwards and start command still to do.
fn next_steps(config: &Config, config_path: &Path, handle: &str, did: &str) -> String {
    let host = &config.hostname;
    // Documentation-range probes: they only select the outgoing interface.
    let lan = local_address(SocketAddr::from(([192, 0, 2, 1], 443)))
        .map_or_else(|| "this machine".to_owned(), |ip| ip.to_string());
    let global_v6 = local_address(SocketAddr::new(
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        443,
    ))
    .filter(|ip| matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xe000) == 0x2000));

    let mut out = String::from("\nWhat is left to do:\n\n");
    out.push_str(&format!(
        "1. DNS: at your domain's DNS provider, add\n     {host}.  A     <your home's public \
         IPv4 address>\n"
    ));
    match global_v6 {
        Some(ip) => out.push_str(&format!("     {host}.  AAAA  {ip}\n")),
        None => out.push_str(&format!(
            "     {host}.  AAAA  <this machine's IPv6 address>   (only if you have IPv6)\n"
        )),
    }
    if handle != host.as_str() {
        out.push_str(&format!(
            "     _atproto.{handle}.  TXT  \"did={did}\"   (proves the handle is yours)\n"
        ));
    }
    out.push_str(&format!("\n2. Router: forward these TCP ports to {lan}:\n"));
    let mut forward = |outside: u16, inside: u16, what: &str| {
        let to = format!("{lan}:{inside}");
        out.push_str(&format!("     {outside:<4} -> {to:<22} {what}\n"));
    };
    if config.tls == TlsMode::Off {
        forward(80, config.listen.port(), "HTTP");
    } else {
        forward(443, config.listen.port(), "HTTPS");
        if let Some(http) = config.http_listen {
            forward(80, http.port(), "Let's Encrypt check and redirect to HTTPS");
        }
    }
    let default_config = config_path == Path::new(DEFAULT_CONFIG_PATH);
    let start = if default_config && Path::new("/run/systemd/system").is_dir() {
        "systemctl enable --now perch".to_owned()
    } else if default_config {
        "perch serve".to_owned()
    } else {
        format!("perch serve --config {}", config_path.display())
    };
    out.push_str(&format!(
        "\n3. Start perch:\n     {start}\n   then check it with `perch status`; it is reachable \
         at {} once DNS and the router are set.\n",
        config.public_url()
    ));
    if running_as_root() && service_user().is_some() {
        out.push_str(&format!(
            "   Run later admin commands as the service user, e.g. `sudo -u {SERVICE_USER} \
             perch account app-password create --name phone`.\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_commented_keys_and_appends_others() {
        let t = "# intro\n#hostname = \"x\"\n#log = \"info\"\n";
        let out = render_config(
            t,
            &[
                ("hostname".into(), toml_string("pds.example.com")),
                ("data_dir".into(), toml_string("/srv/a \"b\"")),
            ],
        );
        assert_eq!(
            out,
            "# intro\nhostname = \"pds.example.com\"\n#log = \"info\"\n\
             data_dir = \"/srv/a \\\"b\\\"\"\n"
        );
    }

    /// The template stays in step with the config keys: uncommented it loads (so every key
    /// in it exists), and every key `config show` prints appears in it.
    #[test]
    fn template_matches_the_config_keys() {
        let mut uncommented = String::new();
        for l in CONFIG_TEMPLATE.lines() {
            let setting = l
                .strip_prefix('#')
                .filter(|rest| !rest.starts_with(' ') && rest.contains(" = "));
            uncommented.push_str(setting.unwrap_or(l));
            uncommented.push('\n');
        }
        let path = Path::new("/perch-template.toml");
        let config = load_with(path, &uncommented, &GlobalArgs::default())
            .unwrap_or_else(|e| panic!("uncommented template: {}", e.0));
        for line in config.redacted_toml().lines() {
            let key = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
                .or_else(|| line.split_once(" = ").map(|(k, _)| k));
            if let Some(key) = key.filter(|k| !k.contains(' ')) {
                assert!(
                    CONFIG_TEMPLATE.contains(&format!("\n#{key} = ")),
                    "{key} is missing from packaging/perch.toml"
                );
            }
        }
    }

    #[test]
    fn hostnames_handles_emails_passwords() {
        assert_eq!(
            check_hostname(" PDS.Example.com ").unwrap(),
            "pds.example.com"
        );
        assert!(check_hostname("localhost").is_err());
        assert!(check_hostname("pds.example.com:443").is_err());
        assert!(check_hostname("pds.local").is_err());
        assert!(check_handle("alice.test").is_ok());
        assert!(check_email("me@example.com").is_ok());
        assert!(check_email("me").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }

    #[test]
    fn existing_config_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("perch.toml");
        assert!(!check_existing_config(&p, "hostname = \"a.b\"\n", false).unwrap());
        std::fs::write(&p, CONFIG_TEMPLATE).unwrap();
        assert!(!check_existing_config(&p, "hostname = \"a.b\"\n", false).unwrap());
        std::fs::write(&p, "hostname = \"a.b\"\n").unwrap();
        assert!(!check_existing_config(&p, "hostname = \"a.b\"\n", false).unwrap());
        assert!(check_existing_config(&p, "hostname = \"c.d\"\n", false).is_err());
        assert!(check_existing_config(&p, "hostname = \"c.d\"\n", true).unwrap());
    }
}
