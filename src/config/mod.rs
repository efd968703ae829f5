//! The effective configuration.
//!
//! Layers, later ones winning key by key:
//!
//! 1. built-in defaults;
//! 2. `--dev` values (plain HTTP on 127.0.0.1:2583, hostname `localhost`, data in
//!    `./perch-dev`, no PLC directory, no relays);
//! 3. the TOML file: `--config FILE` (must exist), else `/etc/perch/perch.toml` if it exists
//!    (never read under `--dev` without `--config`);
//! 4. `PERCH_<KEY>` environment variables (list keys such as `PERCH_RELAYS` and
//!    `PERCH_TRUSTED_PROXIES` are comma-separated);
//! 5. command-line flags (`--data-dir`, `--listen`), given as [`Overrides`].
//!
//! Every key is declared once, in the table in `keys.rs` (type, default, `--dev` value,
//! example, check, flags); the struct, the file keys, the variables, `config show` and the
//! per-key checks come from it. `kinds.rs` holds how each shape of value is parsed and shown,
//! `layers.rs` the merging, `check.rs` the validation.
//!
//! Every error names the key, where its value came from, and how to fix it. Loading never
//! reads the process environment or the file system directly: [`Config::load_from`] takes both
//! as functions so tests can run it hermetically; [`Config::load`] passes the real ones.

mod check;
mod keys;
mod kinds;
mod layers;
pub mod log_filter;
mod show;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use keys::Config;
pub use kinds::{format_size, parse_size, toml_string};
pub use table::env_var_name;

use kinds::Raw;
use layers::{Layers, Origin};

/// Read when neither `--config` nor `--dev` is given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/perch/perch.toml";
/// Let's Encrypt production.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging (untrusted certificates, generous rate limits): `acme_directory = "staging"`.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// What the command line says about the configuration: which file, `--dev`, and the keys
/// its flags set (layer 5).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config`: this file, which must exist.
    pub config_path: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--dev`.
    pub dev: bool,
}

/// How the HTTPS listener gets its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Certificates from an ACME CA (HTTP-01 on `http_listen`).
    Acme,
    /// Certificate and key read from `tls_cert` / `tls_key` (PEM).
    Files,
    /// Plain HTTP (dev, or behind a TLS-terminating reverse proxy).
    Off,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Acme => "acme",
            TlsMode::Files => "files",
            TlsMode::Off => "off",
        }
    }

    fn parse(s: &str) -> Option<TlsMode> {
        match s.to_ascii_lowercase().as_str() {
            "acme" => Some(TlsMode::Acme),
            "files" => Some(TlsMode::Files),
            "off" => Some(TlsMode::Off),
            _ => None,
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration problem: which key (or file / flag), where its value came from, and the
/// fix. Displays as `key: message (from ORIGIN)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key to fix, e.g. `listen`; or `--config`, or a file path for TOML syntax errors.
    pub key: String,
    /// Where the offending value came from: `--dev`, a file path, `PERCH_LISTEN`, `--listen`.
    pub origin: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            origin: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads from the real environment and file system. See the module docs for the layers.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from(overrides, &|name| std::env::var(name).ok(), &|path| {
            std::fs::read_to_string(path)
        })
    }

    /// Loads with the environment and file reading supplied by the caller (`env` gets a
    /// variable name such as `PERCH_LISTEN`). The result has passed [`Config::validate`].
    pub fn load_from(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();
        if overrides.dev {
            layers.apply_dev();
        }

        let mut no_file = None;
        if let Some((path, required)) = config_file_choice(overrides) {
            match read_file(&path) {
                Ok(text) => layers.apply_file(&path, &text)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                    no_file = Some(path.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ConfigError::new(
                        "--config",
                        format!(
                            "{} does not exist; create it or point --config at an existing file",
                            path.display()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::new(
                        path.display().to_string(),
                        format!("cannot read the config file: {e}; check that it is readable"),
                    ));
                }
            }
        }

        layers.apply_env(env);

        if let Some(dir) = &overrides.data_dir {
            layers.set(
                "data_dir",
                Raw::Path(dir.clone()),
                Origin::Flag("--data-dir"),
            );
        }
        if let Some(listen) = &overrides.listen {
            layers.set("listen", Raw::Str(listen.clone()), Origin::Flag("--listen"));
        }

        let mut config = Config::from_layers(&layers, overrides.dev)?;
        keys::derive_defaults(&mut config, |key| layers.is_set(key));
        if let Some(path) = no_file.filter(|_| !layers.is_set("hostname")) {
            // Nothing configured at all: perch has not been set up on this machine.
            return Err(ConfigError::new(
                "hostname",
                format!(
                    "perch is not set up yet ({} does not exist): run `sudo perch init`, or \
                     set PERCH_HOSTNAME (or use --dev for a local test server)",
                    path.display()
                ),
            ));
        }
        config.validate().map_err(|e| layers.attach_origin(e))?;
        Ok(config)
    }

    /// Dev defaults with the given data directory, no file and no environment: handy in tests.
    pub fn dev(data_dir: impl Into<PathBuf>) -> Config {
        let overrides = Overrides {
            dev: true,
            data_dir: Some(data_dir.into()),
            ..Overrides::default()
        };
        Config::load_from(&overrides, &|_| None, &|_| {
            Err(io::Error::from(io::ErrorKind::NotFound))
        })
        .expect("dev defaults are a valid config")
    }

    /// The URL clients and the network reach this PDS at, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.dev || self.tls == TlsMode::Off {
            match self.listen.port() {
                80 => format!("http://{}", self.hostname),
                port => format!("http://{}:{port}", self.hostname),
            }
        } else {
            format!("https://{}", self.hostname)
        }
    }
}

/// Which file to read, and whether it must exist.
fn config_file_choice(overrides: &Overrides) -> Option<(PathBuf, bool)> {
    match (&overrides.config_path, overrides.dev) {
        (Some(p), _) => Some((p.clone(), true)),
        (None, true) => None,
        (None, false) => Some((PathBuf::from(DEFAULT_CONFIG_PATH), false)),
    }
}

/// The config file `load` would read for these overrides, if it exists (for `config check`).
pub fn config_file_in_use(overrides: &Overrides) -> Option<PathBuf> {
    config_file_choice(overrides).and_then(|(p, required)| (required || p.exists()).then_some(p))
}
