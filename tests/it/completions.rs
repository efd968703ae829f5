//! `perch completions`: the committed scripts (what the .deb installs) are what the binary
//! prints, and bash really completes with them.

use crate::support::process::{perch, text};

const SCRIPTS: &[(&str, &str)] = &[
    ("bash", "packaging/completions/perch.bash"),
    ("zsh", "packaging/completions/_perch"),
    ("fish", "packaging/completions/perch.fish"),
];

#[test]
fn committed_completion_scripts_are_current() {
    for (shell, file) in SCRIPTS {
        let o = perch(&["completions", shell]);
        assert!(o.status.success(), "{}", text(&o));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if std::env::var_os("PERCH_BLESS").is_some() {
            std::fs::write(&path, &o.stdout).unwrap();
        }
        let committed = std::fs::read(&path).unwrap();
        assert!(
            committed == o.stdout,
            "{file} is out of date: run `PERCH_BLESS=1 cargo test --test it completions`"
        );
    }
    let o = perch(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn bash_completes_commands_and_subcommands() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/completions/perch.bash"
    );
    let complete = |words: &str, cword: usize| {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {script}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 _perch perch \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
                 echo \"${{COMPREPLY[@]}}\""
            ))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(complete("perch acc", 1), "account");
    let account = complete("perch account ''", 2);
    for sub in [
        "create",
        "codes",
        "show",
        "set-handle",
        "reset-password",
        "delete",
    ] {
        assert!(account.split(' ').any(|w| w == sub), "{sub} in {account}");
    }
    assert_eq!(complete("perch completions z", 2), "zsh");
}
