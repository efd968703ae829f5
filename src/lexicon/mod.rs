//! Lexicon validation of records, as the reference PDS does it before a record is signed
//! into the repo: a record of a collection whose schema is known must match it, or the
//! write is refused with `400 InvalidRequest`, instead of going out to relays for the
//! AppView to drop.
//!
//! Pure: no I/O, no clock. The schemas are the official documents vendored under
//! `lexicons/` (`scripts/lexicons/`), compiled into the binary and parsed once, on first
//! use. [`Catalog::check_record`] is what the write paths call.

pub mod permission_set;
mod sample;
pub mod schema;
mod validate;

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::cbor::Ipld;
pub use schema::{KeyRule, SchemaError};
pub use validate::{BlobUse, ValidationError, accepts};

/// The vendored documents as one compact JSON array, without their descriptions: written
/// by `scripts/lexicons/vendor.py` next to `lexicons/`, and checked against it by the tests.
const EMBEDDED: &str = include_str!("embedded.json");

/// Loaded Lexicon definitions.
pub struct Catalog {
    defs: Vec<schema::Def>,
    names: HashMap<String, usize>,
}

/// The `validate` flag of createRecord/putRecord/applyWrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Omitted: validate what is known, let the rest through as `unknown`.
    Default,
    /// `true`: the schema must be known.
    Require,
    /// `false`: no validation, and no `validationStatus` in the answer.
    Skip,
}

impl Mode {
    pub fn from_flag(validate: Option<bool>) -> Mode {
        match validate {
            None => Mode::Default,
            Some(true) => Mode::Require,
            Some(false) => Mode::Skip,
        }
    }
}

/// What a write reports as `validationStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Valid,
    Unknown,
    /// Not validated on request: the answer carries no status.
    Skipped,
}

impl Status {
    /// The `validationStatus` value, if the answer carries one.
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            Status::Valid => Some("valid"),
            Status::Unknown => Some("unknown"),
            Status::Skipped => None,
        }
    }
}

/// A record that passed: its status, and the blobs it references with the type and size it
/// claims for them (the caller checks those against the stored blobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub status: Status,
    pub blobs: Vec<BlobUse>,
}

/// Why a record was refused; the message is what the client sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRecord(pub String);

impl Catalog {
    /// Loads Lexicon documents; every `ref` must resolve among them.
    pub fn load(docs: &[Value]) -> Result<Catalog, SchemaError> {
        let parsed = schema::parse_all(docs)?;
        Ok(Catalog {
            defs: parsed.defs,
            names: parsed.names,
        })
    }

    /// The vendored schemas, parsed on first use.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            let docs: Result<Vec<Value>, _> = serde_json::from_str(EMBEDDED);
            // The documents are compiled in and checked by the unit tests; failing here
            // is a broken build, and an empty catalog (everything `unknown`) keeps the
            // server usable while the error says what happened.
            match docs
                .map_err(|e| e.to_string())
                .and_then(|d| Catalog::load(&d).map_err(|e| e.to_string()))
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("the built-in Lexicon schemas do not load: {e}");
                    Catalog {
                        defs: vec![],
                        names: HashMap::new(),
                    }
                }
            }
        })
    }

    /// The record definition of `collection`, if known.
    pub fn record(&self, collection: &str) -> Option<&schema::RecordDef> {
        let i = *self.names.get(&format!("{collection}#main"))?;
        match &self.defs[i] {
            schema::Def::Record(r) => Some(r),
            _ => None,
        }
    }

    /// Record types this catalog knows, sorted.
    pub fn record_types(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .names
            .iter()
            .filter(|(_, i)| matches!(self.defs[**i], schema::Def::Record(_)))
            .filter_map(|(n, _)| n.strip_suffix("#main"))
            .collect();
        out.sort_unstable();
        out
    }

    /// Checks a record about to be written at `collection/rkey`.
    pub fn check_record(
        &self,
        collection: &str,
        rkey: &str,
        record: &Ipld,
        mode: Mode,
    ) -> Result<Checked, InvalidRecord> {
        let skipped = Checked {
            status: Status::Skipped,
            blobs: vec![],
        };
        if mode == Mode::Skip {
            return Ok(skipped);
        }
        let Some(def) = self.record(collection) else {
            if mode == Mode::Require {
                return Err(InvalidRecord(format!("Unknown lexicon type: {collection}")));
            }
            return Ok(Checked {
                status: Status::Unknown,
                blobs: vec![],
            });
        };
        check_key(&def.key, rkey)
            .map_err(|why| InvalidRecord(format!("Invalid record key for {collection}: {why}")))?;
        let mut walk = validate::Walk::new(&self.defs, "Record");
        walk.value(
            &self.defs[self.names[&format!("{collection}#main")]],
            record,
        )
        .map_err(|e| InvalidRecord(format!("Invalid {collection} record: {e}")))?;
        Ok(Checked {
            status: Status::Valid,
            blobs: walk.blobs,
        })
    }
}

fn check_key(rule: &KeyRule, rkey: &str) -> Result<(), String> {
    use crate::syntax;
    match rule {
        KeyRule::Any => syntax::validate_record_key(rkey).map_err(|e| e.to_string()),
        KeyRule::Tid => syntax::validate_tid(rkey).map_err(|_| format!("{rkey:?} is not a TID")),
        KeyRule::Nsid => {
            syntax::validate_nsid(rkey).map_err(|_| format!("{rkey:?} is not an NSID"))
        }
        KeyRule::Literal(lit) if lit == rkey => Ok(()),
        KeyRule::Literal(lit) => Err(format!("must be {lit:?}, not {rkey:?}")),
    }
}

#[cfg(test)]
mod tests;
