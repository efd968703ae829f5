//! The SD-card image's first boot. The owner edits `perch.toml` on the FAT boot partition
//! from any computer; at boot `perch firstboot` reads it once, applies the system settings
//! (Wi-Fi, SSH key), runs `perch init` with the account settings, and leaves a copy
//! without secrets behind. This module is the part that needs no system: parsing,
//! checking and scrubbing the owner's file. `system` writes the files it asks for.
//! Before the box is set up, the LAN setup page (`perch welcome`) writes the same file from
//! a form (`form`), behind a code only the card and the console show (`setup_code`).
//!
//! The boot file is not perch's own config: it has the few answers `perch init` asks
//! for plus the image's system settings at the top, and any other perch config key in a
//! `[perch]` table, copied into /etc/perch/perch.toml as written.

pub mod answers;
pub mod form;
pub mod setup_code;
pub mod system;

use toml::{Table, Value};

/// The owner's file on the boot partition.
pub const BOOT_FILE: &str = "perch.toml";
/// What is left of it once applied: the same settings, secrets removed.
pub const APPLIED_FILE: &str = "perch-applied.toml";
/// What the last first boot did, or why it stopped, in words for the owner.
pub const RESULT_FILE: &str = "perch-setup.txt";

/// Keys whose values never stay on the FAT partition (readable by anyone who holds the
/// card).
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "wifi_password",
    "plc_token",
    "admin_password",
];

/// Top-level keys of the boot file.
const KNOWN_KEYS: &[&str] = &[
    "hostname",
    "handle",
    "password",
    "password_hash",
    "email",
    "wifi_ssid",
    "wifi_password",
    "wifi_country",
    "ssh_key",
    "migrate_from",
    "old_pds",
    "plc_token",
    "perch",
];

#[derive(Debug, Default, PartialEq)]
pub struct BootConfig {
    /// The server's DNS name. Absent: only the system settings are applied.
    pub hostname: Option<String>,
    pub handle: Option<String>,
    pub password: Option<String>,
    /// An argon2id PHC string instead of `password`.
    pub password_hash: Option<String>,
    /// For Let's Encrypt and the account.
    pub email: Option<String>,
    pub wifi: Option<Wifi>,
    /// OpenSSH public keys allowed to log in as root; SSH stays off without one.
    pub ssh_keys: Vec<String>,
    /// Move an existing account here instead of creating one.
    pub migrate: Option<Migrate>,
    /// More perch config keys, values in TOML syntax.
    pub perch: Vec<(String, String)>,
}

#[derive(Debug, PartialEq)]
pub struct Wifi {
    pub ssid: String,
    /// WPA2/WPA3-personal passphrase; None for an open network.
    pub password: Option<String>,
    /// ISO 3166 country code: the radio's legal channels (5 GHz needs it).
    pub country: Option<String>,
}

#[derive(Debug, PartialEq)]
pub struct Migrate {
    /// The handle or DID on the old PDS.
    pub from: String,
    pub old_pds: Option<String>,
    /// The code the old PDS emailed (second boot).
    pub plc_token: Option<String>,
}

/// Parses and checks the owner's file. Errors are sentences for the owner, naming the key.
pub fn parse(text: &str) -> Result<BootConfig, String> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{BOOT_FILE} is not valid TOML: {e}"))?;
    if let Some(k) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown setting {k:?} (known: {}; other perch settings go under [perch])",
            KNOWN_KEYS.join(", ")
        ));
    }
    let mut c = BootConfig {
        hostname: string(&table, "hostname")?,
        handle: string(&table, "handle")?,
        password: string(&table, "password")?,
        password_hash: string(&table, "password_hash")?,
        email: string(&table, "email")?,
        ..BootConfig::default()
    };
    if c.password.is_some() && c.password_hash.is_some() {
        return Err("give password or password_hash, not both".into());
    }
    if let Some(ssid) = string(&table, "wifi_ssid")? {
        let password = string(&table, "wifi_password")?;
        if let Some(p) = &password {
            // What wpa_supplicant takes as a passphrase.
            if !(8..=63).contains(&p.len()) || p.chars().any(|ch| ch.is_control()) {
                return Err(
                    "wifi_password must be 8 to 63 characters, no control characters".into(),
                );
            }
        }
        if ssid.len() > 32 {
            return Err("wifi_ssid is longer than 32 bytes".into());
        }
        let country = string(&table, "wifi_country")?
            .map(|cc| {
                let cc = cc.to_ascii_uppercase();
                if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()) {
                    Ok(cc)
                } else {
                    Err(format!(
                        "wifi_country {cc:?} is not a two-letter country code"
                    ))
                }
            })
            .transpose()?;
        c.wifi = Some(Wifi {
            ssid,
            password,
            country,
        });
    } else if string(&table, "wifi_password")?.is_some() {
        return Err("wifi_password is set but wifi_ssid is not".into());
    }
    c.ssh_keys = match table.get("ssh_key") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("ssh_key: a list of strings")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("ssh_key must be a string or a list of strings".into()),
    };
    c.ssh_keys.retain(|k| !k.trim().is_empty());
    for k in &mut c.ssh_keys {
        *k = k.trim().to_owned();
        check_ssh_key(k)?;
    }
    if let Some(from) = string(&table, "migrate_from")? {
        c.migrate = Some(Migrate {
            from,
            old_pds: string(&table, "old_pds")?,
            plc_token: string(&table, "plc_token")?,
        });
    }
    if let Some(perch) = table.get("perch") {
        let Value::Table(perch) = perch else {
            return Err("perch must be a table: [perch]".into());
        };
        for (k, v) in perch {
            if matches!(k.as_str(), "hostname" | "acme_email") {
                return Err(format!(
                    "[perch] {k}: set it at the top (hostname / email) instead"
                ));
            }
            c.perch.push((
                k.clone(),
                to_toml(v).map_err(|e| format!("[perch] {k}: {e}"))?,
            ));
        }
    }
    if c.hostname.is_some() && c.password.is_none() && c.password_hash.is_none() {
        return Err(if c.migrate.is_some() {
            "password (your password on the old PDS) is needed to move your account".into()
        } else {
            "password is empty: the account needs one (8 characters or more)".into()
        });
    }
    if c.hostname.is_none() && (c.handle.is_some() || c.migrate.is_some() || !c.perch.is_empty()) {
        return Err("hostname is empty: it is needed to set up perch".into());
    }
    Ok(c)
}

/// A string setting; an empty string (as in the template) counts as not set.
fn string(t: &Table, key: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(format!("{key} must be a string in quotes")),
    }
}

/// One line of authorized_keys: a key type, base64, an optional comment; no options
/// (`command=…` and friends are for people who write authorized_keys themselves).
fn check_ssh_key(k: &str) -> Result<(), String> {
    let mut parts = k.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    if !known || body.len() < 16 || k.contains(['\n', '\r']) {
        return Err(format!(
            "ssh_key {:?} is not an OpenSSH public key (like \"ssh-ed25519 AAAA… you@laptop\")",
            k.chars().take(24).collect::<String>()
        ));
    }
    Ok(())
}

/// A config value back in TOML syntax (the toml crate's writer is not compiled in).
fn to_toml(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::String(s) => crate::config::toml_string(s),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Float(f) if f.is_finite() => format!("{f:?}"),
        Value::Array(a) => {
            let items: Result<Vec<_>, _> = a.iter().map(to_toml).collect();
            format!("[{}]", items?.join(", "))
        }
        _ => return Err("only strings, numbers, true/false and lists are supported".into()),
    })
}

/// The owner's file with every secret's line replaced by a note, so what stays on the
/// card still shows what was set up. When the secret lines cannot be told apart (a
/// multi-line string, say), only the settings without secrets are kept.
pub fn scrub(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.starts_with('#'));
        match key {
            Some(k) if SECRET_KEYS.contains(&k) => {
                out.push_str(&format!("# {k}: removed by perch after use\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let clean = out.parse::<Table>().is_ok_and(|t| {
        !SECRET_KEYS.iter().any(|k| t.contains_key(*k))
            && !SECRET_KEYS.iter().any(|k| {
                // A secret's value must not survive anywhere, e.g. inside a multi-line string.
                text.parse::<Table>()
                    .ok()
                    .and_then(|t| t.get(*k).and_then(Value::as_str).map(str::to_owned))
                    .is_some_and(|v| !v.is_empty() && out.contains(&v))
            })
    });
    if clean {
        return out;
    }
    let mut kept = String::from("# perch: the settings applied, secrets removed\n");
    if let Ok(t) = text.parse::<Table>() {
        for (k, v) in t.iter().filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str())) {
            if let (false, Ok(v)) = (k == "perch", to_toml(v)) {
                kept.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
hostname = "pds.example.com"
handle = "alice.example.com"
password = "correct horse battery"
email = "alice@example.com"
wifi_ssid = "Home \"5G\""
wifi_password = "wifi secret 1"
wifi_country = "de"
ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop"

[perch]
tls = "off"
relays = []
max_connections = 200
"#;

    #[test]
    fn parses_every_setting() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("pds.example.com"));
        assert_eq!(c.handle.as_deref(), Some("alice.example.com"));
        assert_eq!(c.password.as_deref(), Some("correct horse battery"));
        assert_eq!(
            c.wifi,
            Some(Wifi {
                ssid: "Home \"5G\"".into(),
                password: Some("wifi secret 1".into()),
                country: Some("DE".into()),
            })
        );
        assert_eq!(c.ssh_keys.len(), 1);
        assert_eq!(
            c.perch,
            vec![
                ("max_connections".into(), "200".into()),
                ("relays".into(), "[]".into()),
                ("tls".into(), "\"off\"".into()),
            ]
        );
    }

    #[test]
    fn the_template_as_shipped_is_empty_not_wrong() {
        let t = include_str!("../../image/boot/perch.toml");
        assert_eq!(parse(t).unwrap(), BootConfig::default());
        // First boot refuses migrate_from (see firstboot_cmd); the card must not offer it.
        assert!(!t.contains("migrate_from") && !t.contains("plc_token"));
    }

    #[test]
    fn refuses_what_would_go_wrong_later() {
        let cases = [
            ("hostnme = \"x.example.com\"", "unknown setting"),
            ("hostname = \"a.example.com\"", "password is empty"),
            (
                "hostname = \"a.example.com\"\npassword = \"x\"\npassword_hash = \"y\"",
                "not both",
            ),
            ("wifi_password = \"12345678\"", "wifi_ssid is not"),
            ("wifi_ssid = \"a\"\nwifi_password = \"short\"", "8 to 63"),
            (
                "wifi_ssid = \"a\"\nwifi_country = \"Germany\"",
                "two-letter",
            ),
            ("ssh_key = \"my key\"", "not an OpenSSH public key"),
            ("ssh_key = 5", "string or a list"),
            ("handle = \"a.example.com\"", "hostname is empty"),
            ("hostname = 5", "must be a string"),
            ("[perch]\nhostname = \"x\"", "set it at the top"),
            ("[perch]\nlisten = { a = 1 }", "only strings"),
            ("hostname = \"unterminated", "not valid TOML"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn system_settings_alone_need_no_account() {
        let c = parse("wifi_ssid = \"cafe\"\nssh_key = [\"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB x\"]")
            .unwrap();
        assert_eq!(c.hostname, None);
        assert_eq!(c.wifi.unwrap().password, None);
        assert_eq!(c.ssh_keys.len(), 1);
    }

    #[test]
    fn scrub_removes_every_secret_and_keeps_the_rest() {
        let out = scrub(FULL);
        for secret in ["correct horse battery", "wifi secret 1"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("# password: removed by perch after use"));
        let again: Table = out.parse().unwrap();
        assert_eq!(again["hostname"].as_str(), Some("pds.example.com"));
        assert_eq!(again["perch"].as_table().map(Table::len), Some(3));
        assert!(!SECRET_KEYS.iter().any(|k| again.contains_key(*k)));
    }

    #[test]
    fn scrub_falls_back_when_a_secret_spans_lines() {
        let text = "hostname = \"h.example.com\"\npassword = \"\"\"\nmulti\nline secret\"\"\"\n";
        let out = scrub(text);
        assert!(!out.contains("line secret"), "{out}");
        assert!(out.contains("hostname = \"h.example.com\""), "{out}");
    }
}
