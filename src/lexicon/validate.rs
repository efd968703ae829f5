//! Data against a definition. The walk keeps the path as a stack of segments and renders it
//! only when something fails, so a valid record costs a tree walk and nothing else. Errors
//! are worded as the official `@atproto/lexicon` words them (`Record/text must be a
//! string`), which is what clients have been shown for years.

use std::fmt::Write as _;

use unicode_segmentation::UnicodeSegmentation;

use super::schema::{BlobDef, Def, Format, IntegerDef, ObjectDef, StringDef};
use crate::cbor::Ipld;

/// What failed, and where: `Record/embed/images/0/image should be a blob ref`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {message}")]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A blob reference met on the way: the CID, and what the record says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUse {
    pub cid: crate::cid::Cid,
    pub mime_type: String,
    pub size: u64,
}

pub(super) struct Walk<'a> {
    defs: &'a [Def],
    root: &'static str,
    path: Vec<Seg<'a>>,
    pub blobs: Vec<BlobUse>,
}

type R = Result<(), ValidationError>;

impl<'a> Walk<'a> {
    pub fn new(defs: &'a [Def], root: &'static str) -> Self {
        Walk {
            defs,
            root,
            path: Vec::with_capacity(16),
            blobs: vec![],
        }
    }

    fn fail(&self, message: impl Into<String>) -> R {
        let mut path = String::from(self.root);
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    let _ = write!(path, "/{k}");
                }
                Seg::Index(i) => {
                    let _ = write!(path, "/{i}");
                }
            }
        }
        Err(ValidationError {
            path,
            message: message.into(),
        })
    }

    /// `v` against `def`: `None` means the value is absent (a missing property).
    pub fn value(&mut self, def: &'a Def, v: &'a Ipld) -> R {
        match def {
            Def::Null => match v {
                Ipld::Null => Ok(()),
                _ => self.fail("must be null"),
            },
            Def::Boolean(b) => match v {
                Ipld::Bool(x) => match b.konst {
                    Some(c) if c != *x => self.fail(format!("must be {c}")),
                    _ => Ok(()),
                },
                _ => self.fail("must be a boolean"),
            },
            Def::Integer(d) => match v {
                Ipld::Integer(n) => self.integer(d, *n),
                _ => self.fail("must be an integer"),
            },
            Def::String(d) => match v {
                Ipld::String(s) => self.string(d, s),
                _ => self.fail("must be a string"),
            },
            Def::Bytes {
                min_length,
                max_length,
            } => match v {
                Ipld::Bytes(b) => {
                    let n = b.len() as u64;
                    if let Some(max) = max_length
                        && n > *max
                    {
                        return self.fail(format!("must not be larger than {max} bytes"));
                    }
                    if let Some(min) = min_length
                        && n < *min
                    {
                        return self.fail(format!("must not be smaller than {min} bytes"));
                    }
                    Ok(())
                }
                _ => self.fail("must be a byte array"),
            },
            Def::CidLink => match v {
                Ipld::Link(_) => Ok(()),
                _ => self.fail("must be a CID"),
            },
            Def::Blob(d) => self.blob(d, v),
            Def::Array {
                items,
                min_length,
                max_length,
            } => {
                let Ipld::List(list) = v else {
                    return self.fail("must be an array");
                };
                let n = list.len() as u64;
                if let Some(max) = max_length
                    && n > *max
                {
                    return self.fail(format!("must not have more than {max} elements"));
                }
                if let Some(min) = min_length
                    && n < *min
                {
                    return self.fail(format!("must not have fewer than {min} elements"));
                }
                for (i, item) in list.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(items, item)?;
                    self.path.pop();
                }
                Ok(())
            }
            Def::Object(o) => self.object(o, v),
            Def::Record(r) => self.object(&r.record, v),
            Def::Ref(i) => self.value(&self.defs[*i], v),
            Def::Union(u) => {
                let Some(ty) = v.get("$type").and_then(Ipld::as_str) else {
                    return self.fail("must be an object which includes the \"$type\" property");
                };
                let ty = ty.strip_suffix("#main").unwrap_or(ty);
                match u.refs.iter().find(|(name, _)| name == ty) {
                    Some((_, i)) => self.value(&self.defs[*i], v),
                    None if u.closed => {
                        let names: Vec<&str> = u.refs.iter().map(|(n, _)| n.as_str()).collect();
                        self.fail(format!("$type must be one of {}", names.join(", ")))
                    }
                    // An open union admits types this server does not know.
                    None => Ok(()),
                }
            }
            Def::Unknown => match v {
                Ipld::Map(_) => Ok(()),
                _ => self.fail("must be an object"),
            },
            Def::Token | Def::Other => self.fail("has a type that data cannot have"),
        }
    }

    fn object(&mut self, o: &'a ObjectDef, v: &'a Ipld) -> R {
        let Ipld::Map(map) = v else {
            return self.fail("must be an object");
        };
        for key in &o.required {
            if !map.contains_key(key) {
                return self.fail(format!("must have the property \"{key}\""));
            }
        }
        for (key, def) in &o.properties {
            let Some(value) = map.get(key) else {
                continue;
            };
            if matches!(value, Ipld::Null) && o.nullable.iter().any(|n| n == key) {
                continue;
            }
            self.path.push(Seg::Key(key));
            self.value(def, value)?;
            self.path.pop();
        }
        Ok(())
    }

    fn integer(&self, d: &IntegerDef, n: i64) -> R {
        if let Some(c) = d.konst
            && c != n
        {
            return self.fail(format!("must be {c}"));
        }
        if let Some(e) = &d.enumeration
            && !e.contains(&n)
        {
            let list: Vec<String> = e.iter().map(i64::to_string).collect();
            return self.fail(format!("must be one of ({})", list.join("|")));
        }
        if let Some(max) = d.maximum
            && n > max
        {
            return self.fail(format!("can not be greater than {max}"));
        }
        if let Some(min) = d.minimum
            && n < min
        {
            return self.fail(format!("can not be less than {min}"));
        }
        Ok(())
    }

    fn string(&self, d: &StringDef, s: &str) -> R {
        if let Some(c) = &d.konst
            && c != s
        {
            return self.fail(format!("must be {c}"));
        }
        if let Some(e) = &d.enumeration
            && !e.iter().any(|x| x == s)
        {
            return self.fail(format!("must be one of ({})", e.join("|")));
        }
        let bytes = s.len() as u64;
        if let Some(max) = d.max_length
            && bytes > max
        {
            return self.fail(format!("must not be longer than {max} characters"));
        }
        if let Some(min) = d.min_length
            && bytes < min
        {
            return self.fail(format!("must not be shorter than {min} characters"));
        }
        if d.max_graphemes.is_some() || d.min_graphemes.is_some() {
            // A string has no more graphemes than chars and no more chars than bytes: count
            // only when the cheap bounds cannot decide.
            let max_ok = d.max_graphemes.is_none_or(|max| bytes <= max);
            let min_ok = d.min_graphemes.is_none_or(|min| min == 0);
            if !(max_ok && min_ok) {
                let chars = s.chars().count() as u64;
                let graphemes = if d.max_graphemes.is_some_and(|max| chars > max)
                    || d.min_graphemes.is_some()
                {
                    s.graphemes(true).count() as u64
                } else {
                    chars
                };
                if let Some(max) = d.max_graphemes
                    && graphemes > max
                {
                    return self.fail(format!("must not be longer than {max} graphemes"));
                }
                if let Some(min) = d.min_graphemes
                    && graphemes < min
                {
                    return self.fail(format!("must not be shorter than {min} graphemes"));
                }
            }
        }
        match d.format {
            None => Ok(()),
            Some(f) => self.format(f, s),
        }
    }

    fn format(&self, f: Format, s: &str) -> R {
        use crate::syntax;
        let (ok, what) = match f {
            Format::AtIdentifier => (
                syntax::is_valid_at_identifier(s),
                "must be a valid did or a handle",
            ),
            Format::AtUri => (syntax::is_valid_at_uri(s), "must be a valid at-uri"),
            Format::Cid => (syntax::is_valid_cid_string(s), "must be a cid string"),
            Format::Datetime => (
                syntax::is_valid_datetime(s),
                "must be an valid atproto datetime (both RFC-3339 and ISO-8601)",
            ),
            Format::Did => (syntax::is_valid_did(s), "must be a valid did"),
            Format::Handle => (syntax::is_valid_handle(s), "must be a valid handle"),
            Format::Language => (
                syntax::is_valid_language(s),
                "must be a well-formed BCP 47 language tag",
            ),
            Format::Nsid => (syntax::is_valid_nsid(s), "must be a valid nsid"),
            Format::RecordKey => (syntax::is_valid_record_key(s), "must be a valid Record Key"),
            Format::Tid => (syntax::is_valid_tid(s), "must be a valid TID"),
            Format::Uri => (syntax::is_valid_uri(s), "must be a uri"),
        };
        if ok { Ok(()) } else { self.fail(what) }
    }

    /// A typed blob (`{$type: "blob", ref, mimeType, size}`), whose declared type and size
    /// fit the definition. Whether they are true of the stored blob is the caller's check
    /// (see [`BlobUse`]).
    fn blob(&mut self, d: &BlobDef, v: &Ipld) -> R {
        let typed = v.get("$type").and_then(Ipld::as_str) == Some("blob");
        let cid = v.get("ref").and_then(Ipld::as_link);
        let mime = v.get("mimeType").and_then(Ipld::as_str);
        let size = v.get("size").and_then(Ipld::as_integer);
        let (true, Some(cid), Some(mime), Some(size)) = (typed, cid, mime, size) else {
            return self.fail("should be a blob ref");
        };
        let Ok(size) = u64::try_from(size) else {
            return self.fail("should be a blob ref");
        };
        if mime.is_empty() || cid.codec() != crate::cid::RAW {
            return self.fail("should be a blob ref");
        }
        if let Some(accept) = &d.accept
            && !accepts(accept, mime)
        {
            return self.fail(format!(
                "mimeType must be one of {} (got {mime})",
                accept.join(", ")
            ));
        }
        if let Some(max) = d.max_size
            && size > max
        {
            return self.fail(format!("is too large: {size} bytes, the maximum is {max}"));
        }
        self.blobs.push(BlobUse {
            cid: *cid,
            mime_type: mime.to_owned(),
            size,
        });
        Ok(())
    }
}

/// Whether `mime` matches one of `accept`: exact (case-insensitive), `type/*`, or `*/*`.
pub fn accepts(accept: &[String], mime: &str) -> bool {
    let mime = mime.trim().to_ascii_lowercase();
    let essence = mime.split(';').next().unwrap_or("").trim();
    accept.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*/*"
            || a == essence
            || a.strip_suffix("/*")
                .is_some_and(|ty| essence.split('/').next() == Some(ty) && essence.contains('/'))
    })
}
