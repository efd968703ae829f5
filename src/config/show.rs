//! `config show` (the effective configuration as TOML, loadable again, secrets hidden) and
//! `Debug`, both walking the key table.

use std::fmt;

use super::Config;
use super::kinds::{Kind, toml_string};
use super::table::{Check, KeySpec, Visit};

/// What is printed instead of a secret.
const REDACTED: &str = "********";

impl Config {
    /// The effective configuration as TOML (loadable again as a config file) with secrets
    /// replaced by `********`. Keys that are not set are comments; test-only switches that
    /// are on are noted at the top.
    pub fn redacted_toml(&self) -> String {
        let mut show = Show::default();
        show.header
            .push("# perch effective configuration (secrets hidden)".to_owned());
        if self.dev {
            show.header.push("# dev mode (--dev)".to_owned());
        }
        self.visit(&mut show);
        let mut out = String::new();
        for line in show.header.iter().chain(&show.lines) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[derive(Default)]
struct Show {
    header: Vec<String>,
    lines: Vec<String>,
}

impl Visit for Show {
    fn key<K: Kind>(&mut self, spec: &'static KeySpec, value: &K::Value, _: Option<Check<K>>) {
        let rhs = K::to_toml(value);
        if spec.test_only() {
            if !K::is_off(value) {
                let rhs = rhs.unwrap_or_default();
                let var = spec.env_var();
                self.header
                    .push(format!("# {var}={rhs}: {}", spec.summary()));
            }
            return;
        }
        let Some(rhs) = rhs else {
            self.lines.push(format!("# {} is not set", spec.name));
            return;
        };
        let rhs = if spec.secret() {
            toml_string(REDACTED)
        } else {
            rhs
        };
        let note = match spec.off {
            Some(off) if K::is_off(value) => Some(off.to_owned()),
            _ => K::note(value),
        };
        self.lines.push(match note {
            Some(note) => format!("{} = {rhs} # {note}", spec.name),
            None => format!("{} = {rhs}", spec.name),
        });
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fields = Fields(f.debug_struct("Config"));
        self.visit(&mut fields);
        fields.0.field("dev", &self.dev).finish()
    }
}

struct Fields<'a, 'b>(fmt::DebugStruct<'a, 'b>);

impl Visit for Fields<'_, '_> {
    fn key<K: Kind>(&mut self, spec: &'static KeySpec, value: &K::Value, _: Option<Check<K>>) {
        if spec.secret() {
            self.0
                .field(spec.name, &K::to_toml(value).map(|_| REDACTED));
        } else {
            self.0.field(spec.name, value);
        }
    }
}
