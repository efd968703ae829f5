//! The setup page's answers as the boot file first boot reads: the page does not set the
//! box up itself, it writes `perch.toml` as the owner would have on the card, so both ways
//! go through the same checks and the same `perch firstboot`. Everything first boot would
//! refuse is refused here first, while the owner is still looking at the form.

use std::path::PathBuf;

use super::answers;
use crate::config::{Config, Overrides, toml_string};

/// What the owner typed, untrimmed.
#[derive(Debug, Default)]
pub struct SetupAnswers {
    pub hostname: String,
    pub handle: String,
    pub password: String,
    pub password_again: String,
    pub email: String,
    /// OpenSSH public keys, one per line.
    pub ssh_keys: String,
    /// More perch settings, TOML lines as under `[perch]` in the boot file.
    pub more: String,
}

/// The boot file for these answers, or what is wrong, in words for the owner.
pub fn boot_file(a: &SetupAnswers, now: &str) -> Result<String, String> {
    if a.hostname.trim().is_empty() {
        return Err("Hostname: the server's DNS name is needed, like pds.example.com".into());
    }
    let hostname = answers::hostname(&a.hostname).map_err(|e| format!("Hostname: {e}"))?;
    let handle = match a.handle.trim() {
        "" => None,
        h => Some(answers::handle(h).map_err(|e| format!("Handle: {e}"))?),
    };
    answers::password(&a.password).map_err(|e| format!("Password: {e}"))?;
    if a.password != a.password_again {
        return Err("Password: the two passwords are not the same".into());
    }
    let email = match a.email.trim() {
        "" => None,
        e => Some(answers::email(e).map_err(|e| format!("Email: {e}"))?),
    };
    let keys: Vec<&str> = a
        .ssh_keys
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let more = a.more.replace("\r\n", "\n");
    check_perch_settings(&hostname, email.as_deref(), &more)?;

    let mut text = format!(
        "# Written by the setup page (http://perch.local) at {now}; first boot applies it\n\
         # and removes the password from the card.\n\
         hostname = {}\n",
        toml_string(&hostname)
    );
    if let Some(h) = &handle {
        text.push_str(&format!("handle = {}\n", toml_string(h)));
    }
    text.push_str(&format!("password = {}\n", toml_string(&a.password)));
    if let Some(e) = &email {
        text.push_str(&format!("email = {}\n", toml_string(e)));
    }
    if !keys.is_empty() {
        let list: Vec<String> = keys.iter().map(|k| toml_string(k)).collect();
        text.push_str(&format!("ssh_key = [{}]\n", list.join(", ")));
    }
    if !more.trim().is_empty() {
        text.push_str("\n[perch]\n");
        text.push_str(more.trim_end());
        text.push('\n');
    }
    // First boot reads it the same way: what it would refuse is refused now.
    super::parse(&text).map_err(|e| match e.strip_prefix("ssh_key ") {
        Some(rest) => format!("SSH key: {rest}"),
        None => format!("More settings: {e}"),
    })?;
    Ok(text)
}

/// The extra settings, checked as perch's config would be with the hostname and email
/// from the form: a misspelt key or a bad value is refused now, not at first boot.
fn check_perch_settings(hostname: &str, email: Option<&str>, more: &str) -> Result<(), String> {
    if more.lines().any(|l| l.trim_start().starts_with('[')) {
        return Err("More settings: no [tables] here, only key = value lines".into());
    }
    let mut text = format!("hostname = {}\n", toml_string(hostname));
    if let Some(e) = email {
        text.push_str(&format!("acme_email = {}\n", toml_string(e)));
    }
    text.push_str(more);
    text.push('\n');
    let overrides = Overrides {
        config_path: Some(PathBuf::from("perch.toml")),
        ..Overrides::default()
    };
    Config::load_from(&overrides, &|_| None, &|_| Ok(text.clone()))
        .map(drop)
        .map_err(|e| format!("More settings: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> SetupAnswers {
        SetupAnswers {
            hostname: " PDS.example.com ".into(),
            handle: "alice.example.com".into(),
            password: "a \"quoted\" password".into(),
            password_again: "a \"quoted\" password".into(),
            email: "alice@example.com".into(),
            ssh_keys: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop\r\n\r\n".into(),
            more: "tls = \"off\"\r\nrelays = []\n".into(),
        }
    }

    #[test]
    fn the_answers_become_a_boot_file_first_boot_reads_back() {
        let text = boot_file(&answers(), "2026-12-04T20:00:00.000Z").unwrap();
        let c = super::super::parse(&text).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("pds.example.com"));
        assert_eq!(c.handle.as_deref(), Some("alice.example.com"));
        assert_eq!(c.password.as_deref(), Some("a \"quoted\" password"));
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.ssh_keys.len(), 1);
        assert_eq!(
            c.perch,
            vec![
                ("relays".into(), "[]".into()),
                ("tls".into(), "\"off\"".into())
            ]
        );
        // What stays on the card afterwards holds no password.
        assert!(!super::super::scrub(&text).contains("quoted"));
    }

    #[test]
    fn wrong_answers_are_refused_naming_the_field() {
        type Change = fn(&mut SetupAnswers);
        let cases: [(Change, &str); 9] = [
            (|a| a.hostname.clear(), "Hostname: the server's DNS name"),
            (|a| a.hostname = "pds.local".into(), "Hostname:"),
            (|a| a.handle = "not a handle".into(), "Handle:"),
            (|a| a.password = "short".into(), "Password:"),
            (|a| a.password_again = "other".into(), "not the same"),
            (|a| a.email = "nobody".into(), "Email:"),
            (|a| a.ssh_keys = "my key".into(), "SSH key:"),
            (
                |a| a.more = "frobnicate = 1".into(),
                "More settings: frobnicate",
            ),
            (|a| a.more = "[other]\nx = 1".into(), "no [tables]"),
        ];
        for (change, want) in cases {
            let mut a = answers();
            change(&mut a);
            let e = boot_file(&a, "now").expect_err(want);
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_value_cannot_break_out_of_its_line() {
        // The password takes any characters: quotes and a newline stay inside it.
        let mut a = answers();
        let sneaky = "x\"\nssh_key = \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB evil\"\n#";
        a.password = sneaky.into();
        a.password_again = sneaky.into();
        a.ssh_keys.clear();
        let c = super::super::parse(&boot_file(&a, "now").unwrap()).unwrap();
        assert_eq!(c.password.as_deref(), Some(sneaky));
        assert!(c.ssh_keys.is_empty());
        // More settings stay under [perch]: a broken string is refused, not applied.
        a.password = PASSWORD_OK.into();
        a.password_again = PASSWORD_OK.into();
        a.more = "tls = \"off\"\"\"\npassword_hash = \"x\"".into();
        assert!(boot_file(&a, "now").is_err());
    }

    const PASSWORD_OK: &str = "long enough";
}
