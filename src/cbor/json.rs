//! atproto's JSON form of the data model: `{"$link": cid}` for links,
//! `{"$bytes": base64}` for bytes, blob objects with a `ref` link. JSON is
//! never hashed; it is converted to `Ipld` first.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use serde_json::{Map, Number, Value};
use thiserror::Error;

use super::Ipld;
use crate::cid;

/// Standard alphabet; padding optional on input.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// 2^53 - 1: the largest integer every JSON implementation represents exactly.
const MAX_SAFE_INT: f64 = 9_007_199_254_740_991.0;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("{0}")]
    Invalid(String),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, JsonError> {
    Err(JsonError::Invalid(msg.into()))
}

/// A record: the top level must be an object.
pub fn record_from_json(v: &Value) -> Result<Ipld, JsonError> {
    if !v.is_object() {
        return bad("record must be a JSON object");
    }
    from_json(v)
}

/// Any data-model value.
pub fn from_json(v: &Value) -> Result<Ipld, JsonError> {
    convert(v, 0)
}

fn number(n: &Number) -> Result<Ipld, JsonError> {
    if let Some(i) = n.as_i64() {
        return Ok(Ipld::Integer(i));
    }
    if n.is_u64() {
        return bad("integer out of range");
    }
    match n.as_f64() {
        // `123.0` is an integer written the JSON way; anything with a
        // fraction is a float, which atproto forbids.
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_SAFE_INT =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(Ipld::Integer(f as i64))
        }
        _ => bad("floats are not allowed"),
    }
}

/// `depth`: containers around `v`. Counted as the DAG-CBOR decoder counts
/// them, so a record accepted here decodes again.
fn convert(v: &Value, depth: usize) -> Result<Ipld, JsonError> {
    if (v.is_array() || v.is_object()) && depth >= super::MAX_DEPTH {
        return bad("nesting too deep");
    }
    Ok(match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => number(n)?,
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(
            a.iter()
                .map(|x| convert(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => object(o, depth)?,
    })
}

fn object(o: &Map<String, Value>, depth: usize) -> Result<Ipld, JsonError> {
    if let Some(link) = o.get("$link") {
        if o.len() != 1 {
            return bad("$link object must have no other keys");
        }
        let Some(s) = link.as_str() else {
            return bad("$link must be a string");
        };
        return cid::parse(s)
            .map(Ipld::Link)
            .or_else(|e| bad(format!("$link: {e}")));
    }
    if let Some(bytes) = o.get("$bytes") {
        if o.len() != 1 {
            return bad("$bytes object must have no other keys");
        }
        let Some(s) = bytes.as_str() else {
            return bad("$bytes must be a string");
        };
        return B64_LENIENT
            .decode(s)
            .map(Ipld::Bytes)
            .or_else(|_| bad("$bytes is not valid base64"));
    }
    if let Some(t) = o.get("$type") {
        match t.as_str() {
            Some("") | None => return bad("$type must be a non-empty string"),
            Some("blob") => check_blob(o)?,
            Some(_) => {}
        }
    }
    let mut m = BTreeMap::new();
    for (k, x) in o {
        m.insert(k.clone(), convert(x, depth + 1)?);
    }
    Ok(Ipld::Map(m))
}

fn check_blob(o: &Map<String, Value>) -> Result<(), JsonError> {
    let link_ok = o
        .get("ref")
        .and_then(Value::as_object)
        .is_some_and(|r| r.contains_key("$link"));
    if !link_ok {
        return bad("blob needs a ref link");
    }
    if o.get("mimeType")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return bad("blob needs a non-empty mimeType");
    }
    if o.get("size").and_then(Value::as_i64).is_none_or(|s| s < 0) {
        return bad("blob size must be a non-negative integer");
    }
    Ok(())
}

/// The JSON form of a value.
pub fn to_json(v: &Ipld) -> Value {
    match v {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => Value::Number((*i).into()),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => {
            let mut m = Map::new();
            m.insert("$bytes".into(), Value::String(STANDARD_NO_PAD.encode(b)));
            Value::Object(m)
        }
        Ipld::Link(c) => {
            let mut m = Map::new();
            m.insert("$link".into(), Value::String(c.to_string()));
            Value::Object(m)
        }
        Ipld::List(l) => Value::Array(l.iter().map(to_json).collect()),
        Ipld::Map(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), to_json(x))).collect()),
    }
}
