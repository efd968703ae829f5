//! Lexicon documents parsed into the few shapes validation needs. Every `ref` is resolved to
//! an index into the catalog when the documents are loaded, so validating never looks a
//! name up, and a reference to a definition that is not there is an error at load time, not
//! on some later write.

use std::collections::HashMap;

use serde_json::Value;

/// One definition's type, as far as validating data needs it.
#[derive(Debug, Clone)]
pub enum Def {
    Null,
    Boolean(BooleanDef),
    Integer(IntegerDef),
    String(StringDef),
    Bytes {
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    CidLink,
    Blob(BlobDef),
    Array {
        items: Box<Def>,
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    Object(ObjectDef),
    /// Index of the definition referred to.
    Ref(usize),
    Union(UnionDef),
    /// Any object.
    Unknown,
    /// A name only (used in `knownValues`); never the type of data.
    Token,
    Record(RecordDef),
    /// Queries, procedures, subscriptions, permission sets and anything newer: not data.
    Other,
}

#[derive(Debug, Clone, Default)]
pub struct BooleanDef {
    pub konst: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct IntegerDef {
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub enumeration: Option<Vec<i64>>,
    pub konst: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    AtIdentifier,
    AtUri,
    Cid,
    Datetime,
    Did,
    Handle,
    Language,
    Nsid,
    RecordKey,
    Tid,
    Uri,
}

#[derive(Debug, Clone, Default)]
pub struct StringDef {
    pub format: Option<Format>,
    /// In UTF-8 bytes.
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// In extended grapheme clusters.
    pub min_graphemes: Option<u64>,
    pub max_graphemes: Option<u64>,
    pub enumeration: Option<Vec<String>>,
    pub konst: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct BlobDef {
    /// MIME types, `type/*` wildcards, or `*/*`; absent = anything.
    pub accept: Option<Vec<String>>,
    pub max_size: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectDef {
    pub properties: Vec<(String, Def)>,
    pub required: Vec<String>,
    pub nullable: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UnionDef {
    /// `$type` value (the NSID, with `#name` unless it is `main`) and definition index.
    pub refs: Vec<(String, usize)>,
    pub closed: bool,
}

/// Which record keys a record type allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRule {
    Tid,
    Nsid,
    Any,
    Literal(String),
}

#[derive(Debug, Clone)]
pub struct RecordDef {
    pub key: KeyRule,
    pub record: ObjectDef,
}

/// Why a set of documents could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("lexicon {id}: {message}")]
pub struct SchemaError {
    pub id: String,
    pub message: String,
}

/// Definitions by full name (`nsid#name`), parsed in two passes: names first, so a `ref`
/// can point at any definition of any document.
pub struct Parsed {
    pub defs: Vec<Def>,
    pub names: HashMap<String, usize>,
}

pub fn parse_all(docs: &[Value]) -> Result<Parsed, SchemaError> {
    let mut names = HashMap::new();
    let mut raw = vec![];
    for doc in docs {
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| SchemaError {
                id: "?".into(),
                message: "no id".into(),
            })?;
        crate::syntax::validate_nsid(id).map_err(|e| SchemaError {
            id: id.into(),
            message: format!("id is not an NSID: {e}"),
        })?;
        if doc.get("lexicon").and_then(Value::as_i64) != Some(1) {
            return Err(SchemaError {
                id: id.into(),
                message: "not a version 1 Lexicon document".into(),
            });
        }
        let defs = doc
            .get("defs")
            .and_then(Value::as_object)
            .ok_or_else(|| SchemaError {
                id: id.into(),
                message: "no defs".into(),
            })?;
        for (name, def) in defs {
            let full = format!("{id}#{name}");
            if names.insert(full.clone(), raw.len()).is_some() {
                return Err(SchemaError {
                    id: id.into(),
                    message: format!("{full} is defined twice"),
                });
            }
            raw.push((id.to_owned(), def));
        }
    }
    let mut defs = Vec::with_capacity(raw.len());
    for (id, def) in raw {
        let p = Parser {
            id: &id,
            names: &names,
        };
        defs.push(p.def(def, true).map_err(|message| SchemaError {
            id: id.clone(),
            message,
        })?);
    }
    Ok(Parsed { defs, names })
}

/// `lex:nsid#name`, `nsid#name`, `#name` or `nsid` → `nsid#name`.
pub fn full_name(reference: &str, current: &str) -> String {
    let r = reference.strip_prefix("lex:").unwrap_or(reference);
    match r.split_once('#') {
        Some(("", name)) => format!("{current}#{name}"),
        Some((nsid, name)) => format!("{nsid}#{name}"),
        None => format!("{r}#main"),
    }
}

/// The `$type` that names a definition: `nsid` for `main`, else `nsid#name`.
pub fn type_name(full: &str) -> &str {
    full.strip_suffix("#main").unwrap_or(full)
}

struct Parser<'a> {
    id: &'a str,
    names: &'a HashMap<String, usize>,
}

type R<T> = Result<T, String>;

fn uint(v: &Value, key: &str) -> R<Option<u64>> {
    match v.get(key) {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative integer")),
    }
}

fn int(v: &Value, key: &str) -> R<Option<i64>> {
    match v.get(key) {
        None => Ok(None),
        Some(x) => x
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{key} must be an integer")),
    }
}

fn strings(v: &Value, key: &str) -> R<Option<Vec<String>>> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{key} must list strings"))
            })
            .collect::<R<Vec<_>>>()
            .map(Some),
        Some(_) => Err(format!("{key} must be an array")),
    }
}

fn format(name: &str) -> R<Format> {
    Ok(match name {
        "at-identifier" => Format::AtIdentifier,
        "at-uri" => Format::AtUri,
        "cid" => Format::Cid,
        "datetime" => Format::Datetime,
        "did" => Format::Did,
        "handle" => Format::Handle,
        "language" => Format::Language,
        "nsid" => Format::Nsid,
        "record-key" => Format::RecordKey,
        "tid" => Format::Tid,
        "uri" => Format::Uri,
        other => return Err(format!("unknown string format {other:?}")),
    })
}

impl Parser<'_> {
    fn target(&self, reference: &str) -> R<usize> {
        let full = full_name(reference, self.id);
        self.names
            .get(&full)
            .copied()
            .ok_or_else(|| format!("reference to {full}, which is not loaded"))
    }

    /// `top`: a definition directly under `defs` (records and the non-data kinds may only
    /// appear there).
    fn def(&self, v: &Value, top: bool) -> R<Def> {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a definition without a type")?;
        Ok(match kind {
            "null" => Def::Null,
            "boolean" => Def::Boolean(BooleanDef {
                konst: v.get("const").and_then(Value::as_bool),
            }),
            "integer" => Def::Integer(IntegerDef {
                minimum: int(v, "minimum")?,
                maximum: int(v, "maximum")?,
                enumeration: match v.get("enum") {
                    None => None,
                    Some(Value::Array(a)) => Some(
                        a.iter()
                            .map(|x| x.as_i64().ok_or("enum must list integers"))
                            .collect::<Result<_, _>>()?,
                    ),
                    Some(_) => return Err("enum must be an array".into()),
                },
                konst: int(v, "const")?,
            }),
            "string" => Def::String(StringDef {
                format: v
                    .get("format")
                    .and_then(Value::as_str)
                    .map(format)
                    .transpose()?,
                min_length: uint(v, "minLength")?,
                max_length: uint(v, "maxLength")?,
                min_graphemes: uint(v, "minGraphemes")?,
                max_graphemes: uint(v, "maxGraphemes")?,
                enumeration: strings(v, "enum")?,
                konst: v.get("const").and_then(Value::as_str).map(str::to_owned),
            }),
            "bytes" => Def::Bytes {
                min_length: uint(v, "minLength")?,
                max_length: uint(v, "maxLength")?,
            },
            "cid-link" => Def::CidLink,
            "blob" => Def::Blob(BlobDef {
                accept: strings(v, "accept")?,
                max_size: uint(v, "maxSize")?,
            }),
            "array" => Def::Array {
                items: Box::new(self.def(v.get("items").ok_or("an array without items")?, false)?),
                min_length: uint(v, "minLength")?,
                max_length: uint(v, "maxLength")?,
            },
            "object" => Def::Object(self.object(v)?),
            "ref" => Def::Ref(
                self.target(
                    v.get("ref")
                        .and_then(Value::as_str)
                        .ok_or("a ref without a target")?,
                )?,
            ),
            "union" => {
                let refs = strings(v, "refs")?.ok_or("a union without refs")?;
                Def::Union(UnionDef {
                    refs: refs
                        .iter()
                        .map(|r| {
                            let full = full_name(r, self.id);
                            Ok((type_name(&full).to_owned(), self.target(r)?))
                        })
                        .collect::<R<_>>()?,
                    closed: v.get("closed").and_then(Value::as_bool).unwrap_or(false),
                })
            }
            "unknown" => Def::Unknown,
            "token" => Def::Token,
            "record" if top => Def::Record(RecordDef {
                key: match v.get("key").and_then(Value::as_str).unwrap_or("any") {
                    "tid" => KeyRule::Tid,
                    "nsid" => KeyRule::Nsid,
                    "any" => KeyRule::Any,
                    other => match other.strip_prefix("literal:") {
                        Some(lit) => KeyRule::Literal(lit.to_owned()),
                        None => return Err(format!("unknown record key type {other:?}")),
                    },
                },
                record: self.object(v.get("record").ok_or("a record without a schema")?)?,
            }),
            _ if top => Def::Other,
            other => return Err(format!("{other:?} cannot describe a field")),
        })
    }

    fn object(&self, v: &Value) -> R<ObjectDef> {
        if v.get("type").and_then(Value::as_str) != Some("object") {
            return Err("a record's schema must be an object".into());
        }
        let properties = match v.get("properties") {
            None => vec![],
            Some(Value::Object(props)) => props
                .iter()
                .map(|(k, d)| Ok((k.clone(), self.def(d, false)?)))
                .collect::<R<_>>()?,
            Some(_) => return Err("properties must be an object".into()),
        };
        Ok(ObjectDef {
            properties,
            required: strings(v, "required")?.unwrap_or_default(),
            nullable: strings(v, "nullable")?.unwrap_or_default(),
        })
    }
}
