//! `perch config check` and `perch config show`.

use std::path::Path;

use super::{CliError, GlobalArgs};
use crate::config::{Config, TlsMode, config_file_in_use, format_size};

/// `config show`: the effective configuration as TOML, secrets hidden.
pub fn show(config: &Config) {
    print!("{}", config.redacted_toml());
}

/// `config check`: checks what loading cannot (files named by the config exist), then prints
/// "config ok", the key facts and any warnings.
pub fn check(config: &Config, global: &GlobalArgs) -> Result<(), CliError> {
    if config.tls == TlsMode::Files {
        for (key, path) in [("tls_cert", &config.tls_cert), ("tls_key", &config.tls_key)] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(CliError::Message(format!(
                    "{key}: {} is not a readable file; point {key} at the PEM file",
                    path.display()
                )));
            }
        }
    }
    if let Some(root) = &config.acme_ca_root
        && !root.is_file()
    {
        return Err(CliError::Message(format!(
            "acme_ca_root: {} is not a readable file; point it at the CA's PEM root or remove it",
            root.display()
        )));
    }
    if config.data_dir.exists() && !config.data_dir.is_dir() {
        return Err(CliError::Message(format!(
            "data_dir: {} exists but is not a directory; choose another data_dir",
            config.data_dir.display()
        )));
    }
    print!("{}", facts(config, global));
    for warning in warnings(config) {
        println!("warning: {warning}");
    }
    Ok(())
}

fn facts(c: &Config, global: &GlobalArgs) -> String {
    let file = match config_file_in_use(&global.overrides()) {
        Some(p) => p.display().to_string(),
        None => "none (defaults, PERCH_* variables and flags only)".to_owned(),
    };
    let data_dir = format!(
        "{} ({})",
        c.data_dir.display(),
        if c.data_dir.is_dir() {
            "exists"
        } else {
            "will be created"
        }
    );
    let scheme = if c.tls == TlsMode::Off {
        "plain HTTP"
    } else {
        "HTTPS"
    };
    let http_listen = match c.http_listen {
        Some(a) => format!("{a} (ACME challenges, redirects to HTTPS)"),
        None => "off".to_owned(),
    };
    let tls = match c.tls {
        TlsMode::Acme => format!(
            "acme via {}{}",
            c.acme_directory,
            c.acme_email
                .as_ref()
                .map(|e| format!(" (contact {e})"))
                .unwrap_or_default()
        ),
        TlsMode::Files => format!(
            "files: cert {}, key {}",
            show_path(c.tls_cert.as_deref()),
            show_path(c.tls_key.as_deref())
        ),
        TlsMode::Off => "off".to_owned(),
    };
    let plc = if c.plc_url.is_empty() {
        "none (did:web only)".to_owned()
    } else {
        c.plc_url.clone()
    };
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let rows = [
        ("config file", file),
        ("mode", if c.dev { "dev" } else { "production" }.to_owned()),
        ("hostname", c.hostname.clone()),
        ("public url", c.public_url()),
        ("data dir", data_dir),
        ("listen", format!("{} ({scheme})", c.listen)),
        ("http listen", http_listen),
        ("tls", tls),
        ("plc directory", plc),
        ("appview", format!("{} at {}", c.appview_did, c.appview_url)),
        ("chat", format!("{} at {}", c.chat_did, c.chat_url)),
        ("relays", list(c.relays.clone())),
        ("blob limit", format_size(c.blob_limit)),
        ("log", c.log.clone()),
        (
            "admin password",
            if c.admin_password.is_some() {
                "set"
            } else {
                "not set"
            }
            .to_owned(),
        ),
        (
            "trusted proxies",
            list(c.trusted_proxies.iter().map(ToString::to_string).collect()),
        ),
    ];
    let mut out = String::from("config ok\n");
    for (name, value) in rows {
        out.push_str(&format!("  {name:<16}{value}\n"));
    }
    out
}

fn show_path(p: Option<&Path>) -> String {
    p.map_or_else(|| "(not set)".to_owned(), |p| p.display().to_string())
}

fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if c.allow_loopback && !c.dev {
        out.push(
            "PERCH_ALLOW_LOOPBACK=1 lets outbound requests reach this machine; use it only \
             for tests"
                .to_owned(),
        );
    }
    if c.tls == TlsMode::Acme && c.http_listen.is_none() {
        out.push(
            "tls = \"acme\" with http_listen off: HTTP-01 challenges need port 80; set \
             http_listen = \"[::]:80\""
                .to_owned(),
        );
    }
    if c.tls == TlsMode::Off && !c.dev {
        out.push(format!(
            "tls is off outside --dev: the public URL is {}; other atproto services expect \
             https",
            c.public_url()
        ));
    }
    out
}
