//! The shape of the key table (`keys.rs`) and what is derived from it for every key: the
//! `Config` struct, the list of keys with their environment variables and examples, parsing
//! from the layers, and a walk over every key for `config show`, `Debug` and the checks.

use super::keys::KEYS;
use super::kinds::Kind;

/// What the table says about a key besides its type, default and check.
pub(super) struct KeySpec {
    pub(super) name: &'static str,
    /// The key's doc comment; its first line is the one-line summary.
    pub(super) doc: &'static str,
    /// A correct right-hand side of `key = …`, quoted in error messages; for a test-only key,
    /// the value of its environment variable that turns it on.
    pub(super) example: &'static str,
    /// Its value under `--dev`, read like the environment variable's.
    pub(super) dev: Option<&'static str>,
    /// What the value that turns the feature off (empty, zero, none) means; `config show`
    /// notes it, and the key's check leaves that value alone.
    pub(super) off: Option<&'static str>,
    pub(super) flags: u8,
}

/// `config show` and `Debug` print `********` instead of the value.
pub(super) const SECRET: u8 = 1;
/// Set only by its environment variable, for tests: not a file key, not in the shipped
/// template, shown as a comment when on.
pub(super) const TEST_ONLY: u8 = 2;

impl KeySpec {
    pub(super) fn env_var(&self) -> String {
        env_var_name(self.name)
    }

    pub(super) fn secret(&self) -> bool {
        self.flags & SECRET != 0
    }

    pub(super) fn test_only(&self) -> bool {
        self.flags & TEST_ONLY != 0
    }

    pub(super) fn summary(&self) -> &'static str {
        self.doc.lines().next().unwrap_or_default().trim()
    }
}

/// A key's own check, on its typed value.
pub(super) type Check<K> = fn(&KeySpec, &<K as Kind>::Value) -> Result<(), String>;

/// Something done for every key in table order (see `Config::visit`).
pub(super) trait Visit {
    fn key<K: Kind>(&mut self, spec: &'static KeySpec, value: &K::Value, check: Option<Check<K>>);
}

/// Declares the keys: one entry per key, as
///
/// ```text
/// /// One-line doc (more lines: rustdoc only).
/// name: Type as Kind = default, example "rhs" [, dev "value"] [, off "meaning"]
///     [, check path] [, flags FLAG | FLAG];
/// ```
///
/// and generates the `Config` struct (a field per key, plus `dev`), `KEYS`,
/// `Config::from_layers` and `Config::visit`.
macro_rules! config_keys {
    (@opt) => { None };
    (@opt $e:expr) => { Some($e) };
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty as $kind:ident = $default:expr, example $example:literal
            $(, dev $dev:literal)? $(, off $off:literal)? $(, check $check:path)?
            $(, flags $($flag:ident)|+)?;
    )+) => {
        /// The effective configuration: a field per key of the table in `config/keys.rs`,
        /// and `dev`. `Debug` hides secrets.
        #[derive(Clone, PartialEq, Eq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
            /// `--dev` was given.
            pub dev: bool,
        }

        /// Every key, in `config show` order.
        pub(super) static KEYS: &[KeySpec] = &[$(
            KeySpec {
                name: stringify!($name),
                doc: concat!($($doc, "\n"),+),
                example: $example,
                dev: config_keys!(@opt $($dev)?),
                off: config_keys!(@opt $($off)?),
                flags: 0 $($(| $flag)+)?,
            },
        )+];

        impl Config {
            /// Parses every key from the merged layers; unset keys take their default.
            pub(super) fn from_layers(layers: &Layers, dev: bool) -> Result<Config, ConfigError> {
                Ok(Config {
                    $( $name: layers.value::<$kind>(stringify!($name), || $default)?, )+
                    dev,
                })
            }

            /// Calls `v` for every key, in table order.
            pub(super) fn visit(&self, v: &mut impl Visit) {
                $(
                    v.key::<$kind>(
                        spec(stringify!($name)),
                        &self.$name,
                        config_keys!(@opt $($check as Check<$kind>)?),
                    );
                )+
            }
        }
    };
}
pub(super) use config_keys;

/// The key called `name` (a name written in the code, so it exists).
pub(super) fn spec(name: &str) -> &'static KeySpec {
    KEYS.iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the config key table"))
}

/// A key the config file may set.
pub(super) fn file_key(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name && !k.test_only())
}

fn file_key_names() -> String {
    let names: Vec<&str> = KEYS
        .iter()
        .filter(|k| !k.test_only())
        .map(|k| k.name)
        .collect();
    names.join(", ")
}

/// The environment variable that overrides `key`.
pub fn env_var_name(key: &str) -> String {
    format!("PERCH_{}", key.to_ascii_uppercase())
}

/// For a file key perch does not know: a hint when it looks like one, then every key.
pub(super) fn unknown_key_message(name: &str) -> String {
    let normalized = name.to_ascii_lowercase().replace('-', "_");
    let hint = if normalized == "dev" {
        " (dev mode is the --dev flag, not a file key)".to_owned()
    } else {
        match KEYS.iter().find(|k| k.name == normalized) {
            Some(k) if k.test_only() => {
                format!(
                    " (it is set only by {}={}, for tests)",
                    k.env_var(),
                    k.example
                )
            }
            Some(k) => format!("; did you mean {:?}?", k.name),
            None => String::new(),
        }
    };
    format!(
        "unknown key{hint}; remove it or use one of: {}",
        file_key_names()
    )
}
