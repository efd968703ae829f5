//! Value kinds: how a key's raw value (a TOML value, or the text of a `PERCH_*` variable, a
//! `--dev` value or a flag) becomes its typed value, and how that value is written back as
//! TOML for `config show`. Each key in the table names its kind; a kind is shared by every
//! key of that shape, so a new key of a known shape needs no new code here.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::table::KeySpec;
use super::{DEFAULT_ACME_DIRECTORY, STAGING_ACME_DIRECTORY, TlsMode};

/// A value before it is parsed for its key.
#[derive(Clone, Debug)]
pub(super) enum Raw {
    Str(String),
    /// From `--data-dir`: a path need not be UTF-8.
    Path(PathBuf),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    /// A TOML value of a type no key takes; holds the type's name.
    Other(&'static str),
}

impl Raw {
    fn type_name(&self) -> &'static str {
        match self {
            Raw::Str(_) | Raw::Path(_) => "a string",
            Raw::Int(_) => "an integer",
            Raw::Bool(_) => "a boolean",
            Raw::List(_) => "a list",
            Raw::Other(t) => t,
        }
    }

    pub(super) fn from_toml(v: toml::Value) -> Raw {
        match v {
            toml::Value::String(s) => Raw::Str(s),
            toml::Value::Integer(i) => Raw::Int(i),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Float(_) => Raw::Other("a float"),
            toml::Value::Datetime(_) => Raw::Other("a date-time"),
            toml::Value::Table(_) => Raw::Other("a table"),
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s),
                        _ => return Raw::Other("a list with non-string items"),
                    }
                }
                Raw::List(out)
            }
        }
    }
}

/// One shape of value. Errors are messages about the key's value; the caller adds the key
/// and where the value came from.
pub(super) trait Kind {
    type Value: fmt::Debug;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Self::Value, String>;
    /// The right-hand side of `key = …` in `config show`; `None` when the key is not set.
    fn to_toml(v: &Self::Value) -> Option<String>;
    /// The value that turns the feature off (empty, zero, none). A key with an `off` note
    /// shows it for this value and skips its check.
    fn is_off(_v: &Self::Value) -> bool {
        false
    }
    /// A comment after the value in `config show`.
    fn note(_v: &Self::Value) -> Option<String> {
        None
    }
}

fn wrong_type(key: &KeySpec, expected: &str, found: &Raw) -> String {
    format!(
        "expected {expected}, found {}; write it like {} = {}",
        found.type_name(),
        key.name,
        key.example
    )
}

fn text(key: &KeySpec, raw: &Raw) -> Result<String, String> {
    match raw {
        Raw::Str(s) => Ok(s.clone()),
        Raw::Path(p) => p
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{} is not valid UTF-8", p.display())),
        other => Err(wrong_type(key, "a string", other)),
    }
}

fn path(key: &KeySpec, raw: &Raw) -> Result<PathBuf, String> {
    match raw {
        Raw::Path(p) => Ok(p.clone()),
        _ => text(key, raw).map(PathBuf::from),
    }
}

/// A list; a plain string (as in `PERCH_RELAYS`) is taken as a comma-separated list.
fn list(key: &KeySpec, raw: &Raw) -> Result<Vec<String>, String> {
    match raw {
        Raw::List(items) => Ok(items.clone()),
        Raw::Str(s) => Ok(split_list(s)),
        other => Err(wrong_type(key, "a list of strings", other)),
    }
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "{s:?} is not an address like [::]:443; write IP:PORT, \
             e.g. \"[::]:443\" (every address), \"127.0.0.1:2583\" or \"0.0.0.0:443\""
        )
    })
}

/// Comma-separated list, items trimmed, empty items dropped.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Drops trailing slashes so callers can append `/xrpc/...`.
fn trim_url(s: &str) -> String {
    s.trim().trim_end_matches('/').to_owned()
}

/// Any string.
pub(super) struct Text;

impl Kind for Text {
    type Value = String;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<String, String> {
        text(key, raw)
    }
    fn to_toml(v: &String) -> Option<String> {
        Some(toml_string(v))
    }
}

/// A host name, lower-cased (its syntax is the key's check).
pub(super) struct Hostname;

impl Kind for Hostname {
    type Value = String;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<String, String> {
        Ok(text(key, raw)?.to_ascii_lowercase())
    }
    fn to_toml(v: &String) -> Option<String> {
        Some(toml_string(v))
    }
}

/// A URL without trailing slashes; empty means none.
pub(super) struct Url;

impl Kind for Url {
    type Value = String;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<String, String> {
        Ok(trim_url(&text(key, raw)?))
    }
    fn to_toml(v: &String) -> Option<String> {
        Some(toml_string(v))
    }
    fn is_off(v: &String) -> bool {
        v.is_empty()
    }
}

/// An ACME directory URL, or a name for Let's Encrypt's: `production` (or `letsencrypt`),
/// `staging` (or `letsencrypt-staging`).
pub(super) struct AcmeUrl;

impl Kind for AcmeUrl {
    type Value = String;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<String, String> {
        Ok(match Url::parse(key, raw)?.as_str() {
            "production" | "letsencrypt" => DEFAULT_ACME_DIRECTORY.to_owned(),
            "staging" | "letsencrypt-staging" => STAGING_ACME_DIRECTORY.to_owned(),
            other => other.to_owned(),
        })
    }
    fn to_toml(v: &String) -> Option<String> {
        Some(toml_string(v))
    }
}

/// A directory that must be named: empty is an error, not "unset".
pub(super) struct Dir;

impl Kind for Dir {
    type Value = PathBuf;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<PathBuf, String> {
        let p = path(key, raw)?;
        if p.as_os_str().is_empty() {
            return Err(format!(
                "is empty; set a directory, e.g. {} = {}",
                key.name, key.example
            ));
        }
        Ok(p)
    }
    fn to_toml(v: &PathBuf) -> Option<String> {
        Some(toml_string(&v.to_string_lossy()))
    }
}

/// An optional path; the empty string means "not set".
pub(super) struct OptPath;

impl Kind for OptPath {
    type Value = Option<PathBuf>;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Option<PathBuf>, String> {
        Ok(Some(path(key, raw)?).filter(|p| !p.as_os_str().is_empty()))
    }
    fn to_toml(v: &Option<PathBuf>) -> Option<String> {
        v.as_ref().map(|p| toml_string(&p.to_string_lossy()))
    }
}

/// An optional string; the empty string means "not set".
pub(super) struct OptText;

impl Kind for OptText {
    type Value = Option<String>;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Option<String>, String> {
        Ok(Some(text(key, raw)?).filter(|s| !s.is_empty()))
    }
    fn to_toml(v: &Option<String>) -> Option<String> {
        v.as_deref().map(toml_string)
    }
}

/// `IP:PORT`.
pub(super) struct Addr;

impl Kind for Addr {
    type Value = SocketAddr;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<SocketAddr, String> {
        addr(&text(key, raw)?)
    }
    fn to_toml(v: &SocketAddr) -> Option<String> {
        Some(toml_string(&v.to_string()))
    }
}

/// `IP:PORT`, or the empty string for no listener.
pub(super) struct OptAddr;

impl Kind for OptAddr {
    type Value = Option<SocketAddr>;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Option<SocketAddr>, String> {
        let s = text(key, raw)?;
        if s.trim().is_empty() {
            return Ok(None);
        }
        addr(&s).map(Some)
    }
    fn to_toml(v: &Option<SocketAddr>) -> Option<String> {
        Some(toml_string(&v.map(|a| a.to_string()).unwrap_or_default()))
    }
    fn is_off(v: &Option<SocketAddr>) -> bool {
        v.is_none()
    }
}

/// `acme`, `files` or `off`.
pub(super) struct Tls;

impl Kind for Tls {
    type Value = TlsMode;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<TlsMode, String> {
        let s = text(key, raw)?;
        TlsMode::parse(&s)
            .ok_or_else(|| format!("{s:?} is not a TLS mode; use \"acme\", \"files\" or \"off\""))
    }
    fn to_toml(v: &TlsMode) -> Option<String> {
        Some(toml_string(v.as_str()))
    }
}

/// A boolean; as text, `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub(super) struct Switch;

impl Kind for Switch {
    type Value = bool;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<bool, String> {
        match raw {
            Raw::Bool(b) => Ok(*b),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(format!("{s:?} is not true or false")),
            },
            other => Err(wrong_type(key, "true or false", other)),
        }
    }
    fn to_toml(v: &bool) -> Option<String> {
        Some(v.to_string())
    }
}

/// A switch set only by its environment variable: `1`/`true`/`yes`, or `0`/`false`/`no`/empty.
pub(super) struct EnvSwitch;

impl Kind for EnvSwitch {
    type Value = bool;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<bool, String> {
        let Raw::Str(s) = raw else {
            return Err(wrong_type(key, "a switch", raw));
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(true),
            "" | "0" | "false" | "no" => Ok(false),
            v => {
                let var = key.env_var();
                Err(format!(
                    "{v:?} is not a switch; set {var}=1 to enable it or unset it"
                ))
            }
        }
    }
    fn to_toml(v: &bool) -> Option<String> {
        Some(if *v { "1" } else { "0" }.to_owned())
    }
    fn is_off(v: &bool) -> bool {
        !v
    }
}

/// A non-negative whole number (a TOML integer or a string of digits).
pub(super) struct Count;

impl Kind for Count {
    type Value = u64;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<u64, String> {
        match raw {
            Raw::Int(i) => {
                u64::try_from(*i).map_err(|_| format!("{i} is negative; use a whole number"))
            }
            Raw::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a whole number")),
            other => Err(wrong_type(key, "a whole number", other)),
        }
    }
    fn to_toml(v: &u64) -> Option<String> {
        Some(v.to_string())
    }
    fn is_off(v: &u64) -> bool {
        *v == 0
    }
}

/// A size in bytes: an integer, or a string such as `"100MiB"` (see [`parse_size`]).
pub(super) struct Size;

impl Kind for Size {
    type Value = u64;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<u64, String> {
        match raw {
            Raw::Int(i) => u64::try_from(*i)
                .map_err(|_| format!("{i} is negative; use a size like \"100MiB\"")),
            Raw::Str(s) => parse_size(s),
            other => Err(wrong_type(key, "a size (integer or string)", other)),
        }
    }
    fn to_toml(v: &u64) -> Option<String> {
        Some(v.to_string())
    }
    fn note(v: &u64) -> Option<String> {
        Some(format_size(*v))
    }
}

/// A list of URLs, each without trailing slashes.
pub(super) struct Urls;

impl Kind for Urls {
    type Value = Vec<String>;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Vec<String>, String> {
        Ok(list(key, raw)?.iter().map(|s| trim_url(s)).collect())
    }
    fn to_toml(v: &Vec<String>) -> Option<String> {
        Some(toml_list(v))
    }
}

/// A list of plain IP addresses.
pub(super) struct Ips;

impl Kind for Ips {
    type Value = Vec<IpAddr>;
    fn parse(key: &KeySpec, raw: &Raw) -> Result<Vec<IpAddr>, String> {
        list(key, raw)?
            .iter()
            .map(|s| {
                s.trim().parse::<IpAddr>().map_err(|_| {
                    format!(
                        "{s:?} is not an IP address; list plain addresses, e.g. {} = \
                         [\"127.0.0.1\", \"::1\"]",
                        key.name
                    )
                })
            })
            .collect()
    }
    fn to_toml(v: &Vec<IpAddr>) -> Option<String> {
        Some(toml_list(v))
    }
}

/// Parses `1048576`, `"5MiB"`, `"5 MB"`, `"512KiB"`, `"1GiB"`, `"100B"`. Decimal units (kB,
/// MB, GB) are powers of 1000, binary ones (KiB, MiB, GiB) powers of 1024; units are
/// case-insensitive. The result must be at least 1 byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let fix = "use a whole number of bytes or a size like \"100MiB\", \"5MB\" or \"512KiB\"";
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size; {fix}"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is too large; {fix}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit; {fix}")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large; {fix}"))?;
    if bytes == 0 {
        return Err(format!("{s:?} is zero; {fix}"));
    }
    Ok(bytes)
}

/// `104857600` → `"100MiB"`; falls back to plain bytes when no binary unit divides evenly.
pub fn format_size(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// A TOML basic string with the escapes TOML requires. The one TOML string writer: `config
/// show`, `perch init` and first boot all write through it.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|i| toml_string(&i.to_string())).collect();
    format!("[{}]", inner.join(", "))
}
