//! `packaging/perch.1`, generated from the clap definitions so that it never disagrees with
//! `--help`: every command and subcommand with its arguments, around a few sections of
//! prose (description, environment, files, exit status). The test at the bottom keeps the
//! committed page current; `PERCH_BLESS=1 cargo test --lib man_page` rewrites it.

use std::fmt::Write as _;

use clap::Command;

const DESCRIPTION: &str = r#".B perch
keeps one person's AT Protocol repository (posts, likes, follows, images) on
hardware they own, under their own handle, and federates it with the network.
It is one static executable with an embedded SQLite database; the packaged
service runs it as the \fBperch\fR user under systemd.
.PP
A new server is set up with \fBsudo perch init\fR, started with
\fBsudo systemctl start perch\fR and checked with \fBsudo perch doctor\fR."#;

const TAIL: &str = r#".SH ENVIRONMENT
Every configuration key can be set as
.BI PERCH_ KEY\fR,
for example
.BR PERCH_LOG=debug ;
it wins over the file and loses to the command-line flags.
.B RUST_LOG
overrides the log filter.
.B PERCH_PASSWORD
gives a password to the commands that take one (prefer the prompt or
\fB\-\-password\-stdin\fR: other local users can read the environment of a
process).
.SH FILES
.TP
.I /etc/perch/perch.toml
Configuration; every key is described in the file.
.TP
.I /var/lib/perch
The database, blob files and keys: back this directory up (\fBperch backup\fR).
.SH EXIT STATUS
0 on success, 1 when a command fails, 2 for a configuration or usage error.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1)
"#;

/// Text for roff: backslashes and hyphens escaped, a leading `.` or `'` made literal.
fn esc(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// A paragraph of help text: its lines joined back into one (clap keeps the doc comment's
/// line breaks), blank lines as paragraph breaks.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| esc(&p.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("\n.PP\n")
}

fn arg_line(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
    let takes_value = a.get_action().takes_values();
    if a.is_positional() {
        return format!(".I {}", esc(&value));
    }
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\-{s}"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\-\\-{}", esc(l)));
    }
    let names = names.join(", ");
    if takes_value {
        format!(".BI \"{names} \" {}", esc(&value))
    } else {
        format!(".B {names}")
    }
}

fn args_of(cmd: &Command, out: &mut String, globals: bool) {
    for a in cmd.get_arguments() {
        let builtin = matches!(a.get_id().as_str(), "help" | "version");
        if a.is_hide_set() || builtin || a.is_global_set() != globals {
            continue;
        }
        out.push_str(".TP\n");
        out.push_str(&arg_line(a));
        out.push('\n');
        let help = a
            .get_long_help()
            .or_else(|| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut text = paragraphs(&help);
        if let Some(env) = a.get_env() {
            let _ = write!(text, " (also \\fB{}\\fR)", esc(&env.to_string_lossy()));
        }
        let values: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        if !values.is_empty() && a.get_action().takes_values() {
            let _ = write!(text, " One of: {}.", esc(&values.join(", ")));
        }
        out.push_str(&text);
        out.push('\n');
    }
}

fn commands(cmd: &Command, path: &str, out: &mut String) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{path} {}", sub.get_name());
        let usage: Vec<String> = sub
            .get_arguments()
            .filter(|a| a.is_positional() && !a.is_hide_set())
            .map(|a| {
                let v = a
                    .get_value_names()
                    .and_then(|v| v.first().map(|n| n.to_string()))
                    .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
                if a.is_required_set() {
                    v
                } else {
                    format!("[{v}]")
                }
            })
            .collect();
        let _ = writeln!(
            out,
            ".SS \"{}\"",
            esc(format!("{name} {}", usage.join(" ")).trim_end())
        );
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|h| h.to_string())
            .unwrap_or_default();
        out.push_str(&paragraphs(&about));
        out.push('\n');
        args_of(sub, out, false);
        commands(sub, &name, out);
    }
}

/// The whole page for `cmd` (the `perch` command).
pub fn render(cmd: &Command) -> String {
    let mut out = String::new();
    let version = cmd.get_version().unwrap_or_default();
    let _ = writeln!(
        out,
        ".TH PERCH 1 \"\" \"perch {version}\" \"User Commands\""
    );
    out.push_str(
        ".SH NAME\nperch \\- a single\\-user AT Protocol (Bluesky) Personal Data Server\n",
    );
    out.push_str(".SH SYNOPSIS\n.B perch\n.I command\n.RI [ arguments ]\n.RI [ options ]\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(DESCRIPTION);
    out.push_str("\n.SH OPTIONS\nThese are accepted by every command, before or after its name.\n");
    args_of(cmd, &mut out, true);
    out.push_str(".SH COMMANDS\n");
    commands(cmd, "perch", &mut out);
    out.push_str(TAIL);
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn man_page_is_current() {
        let page = super::render(&super::super::Cli::command());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/perch.1");
        if std::env::var_os("PERCH_BLESS").is_some() {
            std::fs::write(path, &page).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap();
        assert!(
            committed == page,
            "packaging/perch.1 is out of date: run `PERCH_BLESS=1 cargo test --lib man_page`"
        );
        for command in [
            "init",
            "account codes",
            "doctor",
            "backup",
            "restore",
            "migrate in",
        ] {
            assert!(
                page.contains(&format!(".SS \"perch {command}")),
                "{command}"
            );
        }
    }
}
