//! The command line: argument definitions (the only module that names `clap`), logging setup
//! and dispatch to the commands.

mod account_cmd;
mod apps_cmd;
pub mod backup_cmd;
pub mod commands;
pub mod config_cmd;
pub mod doctor;
pub mod firstboot_cmd;
pub mod init;
mod journal;
#[cfg(test)]
mod manpage;
pub mod migrate_cmd;
mod progress;
pub mod welcome;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError, Overrides};

/// Flags every subcommand accepts, before or after the subcommand name.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GlobalArgs {
    /// Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides data_dir)
    #[arg(long = "data-dir", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address, e.g. [::]:443 (overrides listen)
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC
    #[arg(long, global = true)]
    pub dev: bool,
}

impl GlobalArgs {
    /// What these flags tell the config loader.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_path: self.config.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            dev: self.dev,
        }
    }
}

/// perch: a single-user AT Protocol Personal Data Server.
#[derive(Parser, Debug)]
#[command(
    name = "perch",
    version,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// First run: write the config, create the account, print the DNS and router setup
    Init(init::InitArgs),
    /// Run the server
    Serve,
    /// SD-card image: apply perch.toml from the boot partition (run at boot, before perch)
    Firstboot(firstboot_cmd::FirstbootArgs),
    /// SD-card image: the setup page shown on the home network until perch is set up
    Welcome(welcome::WelcomeArgs),
    /// Manage the account
    #[command(subcommand)]
    Account(AccountCommand),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Federation self-check: our head, the firehose, and what each relay
    /// knows about this repo
    Status,
    /// Ask the configured relays to crawl this server now
    RequestCrawl,
    /// Move an account between PDSes
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Check DNS, listeners, certificate, clock, database, disk and identity; each line
    /// OK/WARN/FAIL with the fix
    Doctor,
    /// Firehose sequence numbers
    #[command(subcommand)]
    Seq(SeqCommand),
    /// Print the shell completion script (the .deb installs them; for a hand-installed
    /// binary: perch completions bash > /etc/bash_completion.d/perch)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Take a consistent backup while the server keeps running: database snapshot, blobs,
    /// keys and a manifest with checksums, in a new timestamped directory
    Backup {
        /// Where to put it [default: backup_dir from the config]
        dir: Option<PathBuf>,
        /// Afterwards, delete all but the newest N backups there
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
    /// Rebuild the data dir from a backup; every file is checked against the manifest first
    Restore {
        /// The backup: a timestamped directory made by `perch backup`
        backup: PathBuf,
        /// Restore into a non-empty data dir (what is there is moved into .replaced-<time>/)
        #[arg(long)]
        force: bool,
        /// Continue firehose seqs at N, above any seq the old server used (otherwise
        /// `perch seq bump` must be run before `perch serve` starts)
        #[arg(long, value_name = "N")]
        seq_floor: Option<i64>,
    },
    /// Write one tar archive with the repo (CAR), every blob and the preferences
    Export {
        /// Output file, or - for stdout [default: perch-export-<time>.tar]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateCommand {
    /// Move your account from another PDS to this one (run it again to continue after an
    /// interruption)
    In {
        /// Your handle or DID
        #[arg(long)]
        from: String,
        /// Your password on the old PDS (visible to other local users: prefer the prompt,
        /// --password-stdin or PERCH_OLD_PASSWORD)
        #[arg(long)]
        password: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// The old PDS's URL, if not the one in your DID document
        #[arg(long = "old-pds", value_name = "URL")]
        old_pds: Option<String>,
        /// This server's URL (default: its public URL)
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// The confirmation code the old PDS emailed you (second run)
        #[arg(long = "plc-token", value_name = "CODE")]
        plc_token: Option<String>,
    },
    /// Move this server's account to another PDS (run it again to continue after an
    /// interruption)
    Out {
        /// The PDS to move to, e.g. https://pds.example.net
        #[arg(long, value_name = "URL")]
        to: String,
        /// Your password here; the new account gets it too (visible to other local users:
        /// prefer the prompt, --password-stdin or PERCH_PASSWORD)
        #[arg(long)]
        password: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Handle on the new PDS (default: your current handle)
        #[arg(long)]
        handle: Option<String>,
        /// Email for the new account (default: the one here, if any)
        #[arg(long)]
        email: Option<String>,
        /// Invite code, if the new PDS requires one
        #[arg(long = "invite-code")]
        invite_code: Option<String>,
        /// This server's URL (default: its public URL)
        #[arg(long, value_name = "URL")]
        from: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SeqCommand {
    /// Move the sequence forward so the next event gets at least N (after
    /// restoring an old backup, relays must never see a seq twice)
    Bump {
        /// the next seq to use
        #[arg(long)]
        to: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create the account (one per server)
    Create {
        /// Handle, e.g. alice.example.com
        #[arg(long)]
        handle: String,
        /// Login password, at least 8 characters (visible to other local users: prefer the
        /// prompt or --password-stdin)
        #[arg(long, env = "PERCH_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Contact email
        #[arg(long)]
        email: Option<String>,
        /// DID method [default: plc, or web when no PLC directory is configured]
        #[arg(long, value_enum)]
        did_method: Option<DidMethod>,
    },
    /// Change the login password and sign out every session and OAuth app (asks for the
    /// new password on the terminal)
    SetPassword {
        /// New password (visible to other local users: prefer the prompt or
        /// --password-stdin)
        #[arg(long, env = "PERCH_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the new password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Also delete every app password (each app then needs a new one)
        #[arg(long)]
        revoke_app_passwords: bool,
    },
    /// Manage app passwords
    #[command(subcommand)]
    AppPassword(AppPasswordCommand),
    /// Apps signed in with OAuth ("Sign in with your handle"): list them, or end one
    Apps {
        #[command(subcommand)]
        cmd: Option<AppsCommand>,
    },
    /// Print a one-time token (valid 1 h) for com.atproto.identity.signPlcOperation
    /// (what other servers send by email; needed to move the account away)
    PlcToken,
    /// Print a one-time invite code (valid 7 days) that lets a migration tool create your
    /// account here with createAccount (`perch migrate in` makes its own)
    Invite,
    /// Show the account: handle, DID, email, status, app passwords, signed-in apps
    Show,
    /// Show the one-time codes waiting to be used (email confirmation, email change,
    /// password reset, account deletion, PLC operations): what other servers email
    Codes,
    /// Change the handle (it must already point at the account's DID, unless it is this
    /// server's hostname); updates the PLC document and tells the network
    SetHandle {
        /// The new handle, e.g. alice.example.com
        handle: String,
    },
    /// Replace the password with a new random one, printed once, and sign out every session
    /// and OAuth app (for an owner locked out of the account)
    ResetPassword,
    /// Delete the account and everything it owns, for good (asks you to type the handle)
    Delete {
        /// The account's handle, to confirm without a prompt
        #[arg(long, value_name = "HANDLE")]
        confirm: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// List the signed-in apps (the default)
    List,
    /// Sign an app out at once: its tokens stop working, and it must ask again
    Revoke {
        /// The grant id `perch account apps` prints
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppPasswordCommand {
    /// Create an app password and print it
    Create {
        /// Name to tell it apart
        #[arg(long)]
        name: String,
        /// Allow access to direct messages
        #[arg(long)]
        privileged: bool,
    },
    /// List app passwords
    List,
    /// Revoke an app password
    Revoke {
        /// Name of the app password to revoke
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate the configuration, then print the key facts
    Check,
    /// Print the effective configuration as TOML (secrets hidden)
    Show,
}

/// The shells `perch completions` writes for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`, from the clap definitions.
pub fn completion_script(shell: CompletionShell) -> Vec<u8> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "perch", &mut out);
    out
}

/// How the account's DID is made.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DidMethod {
    /// did:plc, registered with the PLC directory
    Plc,
    /// did:web on the server's hostname
    Web,
}

/// A command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
}

/// `main`: parse, load the config (exit 2 on error), start logging, run the command (exit 1
/// on error).
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    // init writes the config file that loading would otherwise require.
    // These run before there is a config to load.
    match cli.command {
        Command::Init(args) => return init::main(args, &cli.global),
        Command::Firstboot(args) => return firstboot_cmd::main(args, &cli.global),
        Command::Welcome(args) => return welcome::main(args, &cli.global),
        Command::Completions { shell } => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&completion_script(shell));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::load(&cli.global.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("perch: config error: {e}");
            return ExitCode::from(2);
        }
    };
    // The server's log is its output; a command's log goes beside its answer, on stderr.
    init_logging(&config.log, matches!(cli.command, Command::Serve));
    // Reading the config writes nothing; the image's units check it as root.
    let writes = !matches!(cli.command, Command::Config(_));
    if let Some(owner) = foreign_owner(&config.data_dir).filter(|_| writes) {
        eprintln!(
            "perch: {} belongs to uid {owner}, not to you (root); files made now would be \
             unreadable for the service. Run it as the owner: sudo -u perch perch …",
            config.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    match run(cli.command, &cli.global, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, global: &GlobalArgs, config: Config) -> Result<(), CliError> {
    match command {
        Command::Init(_)
        | Command::Firstboot(_)
        | Command::Welcome(_)
        | Command::Completions { .. } => {
            unreachable!("dispatched before the config is loaded")
        }
        Command::Serve => commands::serve(
            config,
            crate::config::config_file_in_use(&global.overrides()),
        ),
        Command::Doctor => doctor::run(&config),
        Command::Migrate(MigrateCommand::In {
            from,
            password,
            password_stdin,
            old_pds,
            to,
            plc_token,
        }) => migrate_cmd::run_in(
            &config,
            from,
            password,
            password_stdin,
            old_pds,
            to,
            plc_token,
        ),
        Command::Migrate(MigrateCommand::Out {
            to,
            password,
            password_stdin,
            handle,
            email,
            invite_code,
            from,
        }) => migrate_cmd::run_out(
            &config,
            migrate_cmd::OutArgs {
                to,
                password,
                handle,
                email,
                invite_code,
                from,
                password_stdin,
            },
        ),
        Command::Account(AccountCommand::Create {
            handle,
            password,
            password_stdin,
            email,
            did_method,
        }) => {
            // One rule for every password the owner sets (init, set-password, here), checked
            // before anything is created.
            let password =
                init::new_password(password, password_stdin).map_err(CliError::Message)?;
            let did_method = did_method.unwrap_or(if config.plc_url.is_empty() {
                DidMethod::Web
            } else {
                DidMethod::Plc
            });
            commands::account_create(config, handle, password, email, did_method)
        }
        Command::Account(AccountCommand::PlcToken) => commands::plc_token(config),
        Command::Account(AccountCommand::Invite) => migrate_cmd::invite(&config),
        Command::Account(AccountCommand::Show) => account_cmd::show(config),
        Command::Account(AccountCommand::Codes) => account_cmd::codes(config),
        Command::Account(AccountCommand::SetHandle { handle }) => {
            account_cmd::set_handle(config, handle)
        }
        Command::Account(AccountCommand::ResetPassword) => account_cmd::reset_password(config),
        Command::Account(AccountCommand::Delete { confirm }) => {
            account_cmd::delete(config, confirm)
        }
        Command::Account(AccountCommand::SetPassword {
            password,
            password_stdin,
            revoke_app_passwords,
        }) => {
            let password =
                init::new_password(password, password_stdin).map_err(CliError::Message)?;
            commands::account_set_password(config, password, revoke_app_passwords)
        }
        Command::Account(AccountCommand::AppPassword(cmd)) => match cmd {
            AppPasswordCommand::Create { name, privileged } => {
                commands::app_password_create(config, name, privileged)
            }
            AppPasswordCommand::List => commands::app_password_list(config),
            AppPasswordCommand::Revoke { name } => commands::app_password_revoke(config, name),
        },
        Command::Account(AccountCommand::Apps { cmd }) => match cmd {
            None | Some(AppsCommand::List) => apps_cmd::list(config),
            Some(AppsCommand::Revoke { id }) => apps_cmd::revoke(config, id),
        },
        Command::Status => commands::status(config),
        Command::RequestCrawl => commands::request_crawl(config),
        Command::Seq(SeqCommand::Bump { to }) => commands::seq_bump(config, to),
        Command::Backup { dir, keep } => backup_cmd::backup(&config, dir, keep),
        Command::Restore {
            backup,
            force,
            seq_floor,
        } => backup_cmd::restore(&config, &backup, force, seq_floor),
        Command::Export { file } => backup_cmd::export(&config, file),
        Command::Config(ConfigCommand::Check) => config_cmd::check(&config, global),
        Command::Config(ConfigCommand::Show) => {
            config_cmd::show(&config);
            Ok(())
        }
    }
}

/// Logs to stdout for the server (journald collects it), to stderr for other commands (their
/// stdout is their answer). `RUST_LOG`, when set, wins over the config's `log`.
fn init_logging(config_log: &str, server: bool) {
    use crate::config::log_filter;
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| match log_filter::parse(&s) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("perch: ignoring RUST_LOG={s:?}: {e}");
                None
            }
        });
    let filter = from_env.unwrap_or_else(|| {
        // `Config::validate` has already checked `log`.
        log_filter::parse(config_log).unwrap_or_else(|_| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        })
    });
    let layer = if server {
        log_layer(std::io::stdout, 1, std::io::stdout().is_terminal())
    } else {
        log_layer(std::io::stderr, 2, std::io::stderr().is_terminal())
    };
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

/// The log layer writing to `writer` (file descriptor `fd`): journald's format when that
/// descriptor is the journal stream, colours when it is a terminal.
fn log_layer<W, S>(
    writer: W,
    fd: u8,
    tty: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let plain = tracing_subscriber::fmt::layer().with_writer(writer);
    if journal::fd_is_journal(fd) {
        plain
            .with_ansi(false)
            .event_format(journal::JournalFormat)
            .boxed()
    } else {
        plain.with_ansi(tty).boxed()
    }
}

/// When root runs a command on a data dir that belongs to someone else (the service user),
/// that owner's uid: a database WAL or key file created now would be root's and lock the
/// service out. (`/proc/self` is owned by the effective uid.)
fn foreign_owner(data_dir: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    let owner = std::fs::metadata(data_dir).ok()?.uid();
    (me == 0 && owner != 0).then_some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's arguments can be read back: clap only finds a clash between a
    /// subcommand's argument and a global one of the same name when the value is taken.
    #[test]
    fn image_commands_parse() {
        for args in [
            &["perch", "welcome"][..],
            &[
                "perch",
                "welcome",
                "--listen",
                "127.0.0.1:8080",
                "--boot-dir",
                "/b",
            ],
            &["perch", "firstboot", "--root", "/r", "--boot-dir", "/b"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(matches!(
                cli.command,
                Command::Welcome(_) | Command::Firstboot(_)
            ));
        }
        let cli = Cli::try_parse_from(["perch", "welcome", "--listen", "127.0.0.1:8080"]).unwrap();
        assert_eq!(cli.global.listen.as_deref(), Some("127.0.0.1:8080"));
    }
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("perch").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        for args in [
            &["--dev", "--data-dir", "/d", "config", "show"][..],
            &["config", "--dev", "show", "--data-dir", "/d"],
            &["config", "show", "--dev", "--data-dir=/d"],
        ] {
            let cli = parse(args);
            assert!(cli.global.dev, "{args:?}");
            assert_eq!(cli.global.data_dir, Some(PathBuf::from("/d")), "{args:?}");
            assert!(matches!(cli.command, Command::Config(ConfigCommand::Show)));
        }
        let cli = parse(&[
            "account",
            "app-password",
            "create",
            "--name",
            "phone",
            "--privileged",
            "--listen",
            "127.0.0.1:1",
            "--config",
            "/c.toml",
        ]);
        assert_eq!(cli.global.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(cli.global.config, Some(PathBuf::from("/c.toml")));
        assert!(matches!(
            cli.command,
            Command::Account(AccountCommand::AppPassword(AppPasswordCommand::Create {
                ref name,
                privileged: true
            })) if name == "phone"
        ));
    }

    #[test]
    fn account_create_arguments() {
        let cli = parse(&[
            "account",
            "create",
            "--handle",
            "alice.example.com",
            "--password",
            "pw",
            "--did-method",
            "web",
        ]);
        match cli.command {
            Command::Account(AccountCommand::Create {
                handle,
                email,
                did_method,
                ..
            }) => {
                assert_eq!(handle, "alice.example.com");
                assert_eq!(email, None);
                assert_eq!(did_method, Some(DidMethod::Web));
            }
            other => panic!("{other:?}"),
        }
        // The password may come from stdin or the prompt; the handle may not be left out.
        assert!(Cli::try_parse_from(["perch", "account", "create", "--password-stdin"]).is_err());
        match Cli::try_parse_from(["perch", "account", "create", "--handle", "a.b"])
            .expect("no password flag: asked for later")
            .command
        {
            Command::Account(AccountCommand::Create {
                password_stdin: false,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from([
                "perch",
                "account",
                "create",
                "--handle",
                "a.b",
                "--password",
                "p",
                "--did-method",
                "key"
            ])
            .is_err()
        );
    }
}
