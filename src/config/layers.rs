//! The layers above the defaults: `--dev` values, the file, `PERCH_*` variables and
//! command-line flags, merged key by key with the later layer winning, each raw value
//! kept with where it came from so errors can name it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::keys::KEYS;
use super::kinds::{Kind, Raw};
use super::table::{file_key, spec, unknown_key_message};

/// Where a value came from.
#[derive(Clone, Debug)]
pub(super) enum Origin {
    Dev,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Dev => f.write_str("--dev"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => f.write_str(v),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// The merged raw values, each with the layer that set it last.
#[derive(Default)]
pub(super) struct Layers {
    values: BTreeMap<&'static str, (Raw, Origin)>,
}

impl Layers {
    pub(super) fn set(&mut self, key: &str, raw: Raw, origin: Origin) {
        self.values.insert(spec(key).name, (raw, origin));
    }

    pub(super) fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Tags an error with where its key's value came from, unless it already says.
    pub(super) fn attach_origin(&self, mut e: ConfigError) -> ConfigError {
        if e.origin.is_none() {
            e.origin = self.values.get(e.key.as_str()).map(|(_, o)| o.to_string());
        }
        e
    }

    /// The key's value parsed as kind `K`, or `default()` when no layer set it. A test-only
    /// key's errors name its variable, the only place it can come from.
    pub(super) fn value<K: Kind>(
        &self,
        name: &str,
        default: impl FnOnce() -> K::Value,
    ) -> Result<K::Value, ConfigError> {
        let Some((raw, _)) = self.values.get(name) else {
            return Ok(default());
        };
        let key = spec(name);
        K::parse(key, raw).map_err(|message| {
            if key.test_only() {
                ConfigError::new(key.env_var(), message)
            } else {
                self.attach_origin(ConfigError::new(name, message))
            }
        })
    }

    /// Layer 2: the keys `--dev` changes.
    pub(super) fn apply_dev(&mut self) {
        for key in KEYS {
            if let Some(value) = key.dev {
                self.set(key.name, Raw::Str(value.to_owned()), Origin::Dev);
            }
        }
    }

    /// Layer 3: one TOML document; unknown keys are errors.
    pub(super) fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new(
                path.display().to_string(),
                format!(
                    "not valid TOML: {}; fix the file (each line is key = value, strings in quotes)",
                    e.to_string().trim_end()
                ),
            )
        })?;
        for (name, value) in table {
            let origin = Origin::File(path.to_owned());
            let Some(key) = file_key(&name) else {
                return Err(ConfigError {
                    message: unknown_key_message(&name),
                    key: name,
                    origin: Some(origin.to_string()),
                });
            };
            self.set(key.name, Raw::from_toml(value), origin);
        }
        Ok(())
    }

    /// Layer 4: `PERCH_<KEY>` for every key.
    pub(super) fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        for key in KEYS {
            let var = key.env_var();
            if let Some(value) = env(&var) {
                self.set(key.name, Raw::Str(value), Origin::Env(var));
            }
        }
    }
}
