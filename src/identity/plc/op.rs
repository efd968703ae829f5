//! The operation types and their two encodings: JSON (what the directory speaks) and
//! DAG-CBOR (what is hashed and signed).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{MAX_OP_BYTES, PlcError};
use crate::cbor::{self, Ipld};
use crate::cid::{self, Cid};

const TYPE_OPERATION: &str = "plc_operation";
const TYPE_TOMBSTONE: &str = "plc_tombstone";
const TYPE_CREATE: &str = "create";

/// A `services` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub r#type: String,
    pub endpoint: String,
}

/// The unsigned content of a `plc_operation`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Operation {
    /// did:key strings, highest authority first.
    pub rotation_keys: Vec<String>,
    /// Name (no `#`) → did:key.
    pub verification_methods: BTreeMap<String, String>,
    /// URIs; atproto puts `at://<handle>` first.
    pub also_known_as: Vec<String>,
    /// Name (no `#`) → service.
    pub services: BTreeMap<String, Service>,
    /// CID string of the op this one builds on; `None` for genesis.
    pub prev: Option<String>,
}

/// A signed op as it appears in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedOp {
    /// `plc_operation`: genesis (`prev` = `None`) or update.
    Operation { op: Operation, sig: String },
    /// `plc_tombstone`: deactivates the DID.
    Tombstone { prev: String, sig: String },
    /// Legacy `create` genesis op (read only; `prev` is always null).
    LegacyCreate {
        signing_key: String,
        recovery_key: String,
        handle: String,
        service: String,
        sig: String,
    },
}

impl Operation {
    /// The unsigned op in data-model form (`type` included, `sig` absent).
    pub fn to_ipld(&self) -> Ipld {
        Ipld::Map(self.unsigned_map())
    }

    fn unsigned_map(&self) -> BTreeMap<String, Ipld> {
        let mut m = BTreeMap::new();
        m.insert("type".into(), text(TYPE_OPERATION));
        m.insert("rotationKeys".into(), text_list(&self.rotation_keys));
        let vms = self
            .verification_methods
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        m.insert("verificationMethods".into(), Ipld::Map(vms));
        m.insert("alsoKnownAs".into(), text_list(&self.also_known_as));
        let services = self
            .services
            .iter()
            .map(|(k, s)| {
                let mut entry = BTreeMap::new();
                entry.insert("type".to_owned(), text(&s.r#type));
                entry.insert("endpoint".to_owned(), text(&s.endpoint));
                (k.clone(), Ipld::Map(entry))
            })
            .collect();
        m.insert("services".into(), Ipld::Map(services));
        m.insert("prev".into(), self.prev.as_deref().map_or(Ipld::Null, text));
        m
    }

    /// DAG-CBOR of the unsigned op: the bytes a rotation key signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.to_ipld())
    }
}

impl SignedOp {
    /// `plc_operation`, `plc_tombstone` or `create`.
    pub fn op_type(&self) -> &'static str {
        match self {
            SignedOp::Operation { .. } => TYPE_OPERATION,
            SignedOp::Tombstone { .. } => TYPE_TOMBSTONE,
            SignedOp::LegacyCreate { .. } => TYPE_CREATE,
        }
    }

    /// The CID string of the op this one builds on; `None` for genesis ops.
    pub fn prev(&self) -> Option<&str> {
        match self {
            SignedOp::Operation { op, .. } => op.prev.as_deref(),
            SignedOp::Tombstone { prev, .. } => Some(prev),
            SignedOp::LegacyCreate { .. } => None,
        }
    }

    pub fn sig(&self) -> &str {
        match self {
            SignedOp::Operation { sig, .. }
            | SignedOp::Tombstone { sig, .. }
            | SignedOp::LegacyCreate { sig, .. } => sig,
        }
    }

    pub(crate) fn set_sig(&mut self, value: String) {
        match self {
            SignedOp::Operation { sig, .. }
            | SignedOp::Tombstone { sig, .. }
            | SignedOp::LegacyCreate { sig, .. } => *sig = value,
        }
    }

    /// The op without `sig`, in data-model form.
    pub fn unsigned_ipld(&self) -> Ipld {
        Ipld::Map(self.unsigned_map())
    }

    fn unsigned_map(&self) -> BTreeMap<String, Ipld> {
        match self {
            SignedOp::Operation { op, .. } => op.unsigned_map(),
            SignedOp::Tombstone { prev, .. } => {
                let mut m = BTreeMap::new();
                m.insert("type".into(), text(TYPE_TOMBSTONE));
                m.insert("prev".into(), text(prev));
                m
            }
            SignedOp::LegacyCreate {
                signing_key,
                recovery_key,
                handle,
                service,
                ..
            } => {
                let mut m = BTreeMap::new();
                m.insert("type".into(), text(TYPE_CREATE));
                m.insert("signingKey".into(), text(signing_key));
                m.insert("recoveryKey".into(), text(recovery_key));
                m.insert("handle".into(), text(handle));
                m.insert("service".into(), text(service));
                m.insert("prev".into(), Ipld::Null);
                m
            }
        }
    }

    /// DAG-CBOR of the unsigned op: the bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.unsigned_ipld())
    }

    /// The signed op in data-model form.
    pub fn to_ipld(&self) -> Ipld {
        let mut m = self.unsigned_map();
        m.insert("sig".into(), text(self.sig()));
        Ipld::Map(m)
    }

    /// Canonical DAG-CBOR of the signed op.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::encode(&self.to_ipld())
    }

    /// The JSON form submitted to and served by the directory.
    pub fn to_json(&self) -> Value {
        cbor::to_json(&self.to_ipld())
    }

    /// The op's CID (CIDv1, dag-cbor, sha2-256 of the signed op).
    pub fn cid(&self) -> Cid {
        cid::for_cbor(&self.to_cbor())
    }

    /// The op's CID in its `b…` base32 string form, as used in `prev`.
    pub fn cid_string(&self) -> String {
        self.cid().to_string()
    }

    /// Length of the signed op's DAG-CBOR encoding.
    pub fn encoded_len(&self) -> usize {
        self.to_cbor().len()
    }

    /// Fails when the signed op encodes to more than [`MAX_OP_BYTES`].
    pub fn check_size(&self) -> Result<(), PlcError> {
        let len = self.encoded_len();
        if len > MAX_OP_BYTES {
            return Err(PlcError::TooLarge {
                len,
                max: MAX_OP_BYTES,
            });
        }
        Ok(())
    }

    /// Parses a signed op from its JSON form, strictly: the `type` must be known, every
    /// field of that type must be present with the right JSON type (`prev` explicitly
    /// `null` on genesis ops), and no other field may appear (it would change the CID).
    pub fn from_json(v: &Value) -> Result<SignedOp, PlcError> {
        let obj = v
            .as_object()
            .ok_or_else(|| malformed("operation must be a JSON object"))?;
        let ty = get_str(obj, "type")?;
        match ty {
            TYPE_OPERATION => {
                only_fields(
                    obj,
                    &[
                        "type",
                        "rotationKeys",
                        "verificationMethods",
                        "alsoKnownAs",
                        "services",
                        "prev",
                        "sig",
                    ],
                )?;
                let op = Operation {
                    rotation_keys: get_str_list(obj, "rotationKeys")?,
                    verification_methods: get_str_map(obj, "verificationMethods")?,
                    also_known_as: get_str_list(obj, "alsoKnownAs")?,
                    services: get_services(obj)?,
                    prev: get_nullable_str(obj, "prev")?,
                };
                let sig = get_str(obj, "sig")?.to_owned();
                Ok(SignedOp::Operation { op, sig })
            }
            TYPE_TOMBSTONE => {
                only_fields(obj, &["type", "prev", "sig"])?;
                let prev = get_nullable_str(obj, "prev")?
                    .ok_or_else(|| malformed("tombstone prev must be a CID string"))?;
                let sig = get_str(obj, "sig")?.to_owned();
                Ok(SignedOp::Tombstone { prev, sig })
            }
            TYPE_CREATE => {
                only_fields(
                    obj,
                    &[
                        "type",
                        "signingKey",
                        "recoveryKey",
                        "handle",
                        "service",
                        "prev",
                        "sig",
                    ],
                )?;
                if get_nullable_str(obj, "prev")?.is_some() {
                    return Err(malformed("legacy create op must have prev null"));
                }
                Ok(SignedOp::LegacyCreate {
                    signing_key: get_str(obj, "signingKey")?.to_owned(),
                    recovery_key: get_str(obj, "recoveryKey")?.to_owned(),
                    handle: get_str(obj, "handle")?.to_owned(),
                    service: get_str(obj, "service")?.to_owned(),
                    sig: get_str(obj, "sig")?.to_owned(),
                })
            }
            other => Err(PlcError::UnknownType(other.to_owned())),
        }
    }
}

/// The DID a genesis op creates: `did:plc:` + the first 24 characters of lower-case
/// base32 of SHA-256 of the signed op's DAG-CBOR. Legacy `create` ops qualify.
pub fn did_for_genesis(genesis: &SignedOp) -> Result<String, PlcError> {
    if genesis.prev().is_some() {
        return Err(PlcError::NotGenesis);
    }
    let digest = cid::sha256(&genesis.to_cbor());
    // 24 base32 characters carry 120 bits: the first 15 bytes of the hash.
    let mut id = base32_lower(&digest[..15]);
    id.truncate(24);
    Ok(format!("did:plc:{id}"))
}

/// RFC 4648 base32, lower-case alphabet, no padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn text(s: &str) -> Ipld {
    Ipld::String(s.to_owned())
}

fn text_list(items: &[String]) -> Ipld {
    Ipld::List(items.iter().map(|s| text(s)).collect())
}

pub(super) fn malformed(msg: impl Into<String>) -> PlcError {
    PlcError::Malformed(msg.into())
}

pub(super) fn only_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), PlcError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(malformed(format!("unexpected field {k:?}"))),
        None => Ok(()),
    }
}

pub(super) fn get_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, PlcError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(format!("{name} must be a string"))),
        None => Err(malformed(format!("missing field {name}"))),
    }
}

/// A field that must be present and either a string or `null`.
fn get_nullable_str(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, PlcError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Null) => Ok(None),
        Some(_) => Err(malformed(format!("{name} must be a string or null"))),
        None => Err(malformed(format!(
            "missing field {name} (must be explicit, null on genesis)"
        ))),
    }
}

pub(super) fn get_str_list(obj: &Map<String, Value>, name: &str) -> Result<Vec<String>, PlcError> {
    let Some(Value::Array(items)) = obj.get(name) else {
        return Err(malformed(format!("{name} must be an array of strings")));
    };
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("{name} must contain only strings")))
        })
        .collect()
}

pub(super) fn get_str_map(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<BTreeMap<String, String>, PlcError> {
    let Some(Value::Object(entries)) = obj.get(name) else {
        return Err(malformed(format!("{name} must be an object")));
    };
    entries
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(malformed(format!("{name}.{k} must be a string"))),
        })
        .collect()
}

pub(super) fn get_services(
    obj: &Map<String, Value>,
) -> Result<BTreeMap<String, Service>, PlcError> {
    let Some(Value::Object(entries)) = obj.get("services") else {
        return Err(malformed("services must be an object"));
    };
    entries
        .iter()
        .map(|(name, v)| {
            let entry = v
                .as_object()
                .ok_or_else(|| malformed(format!("services.{name} must be an object")))?;
            only_fields(entry, &["type", "endpoint"])?;
            let service = Service {
                r#type: get_str(entry, "type")?.to_owned(),
                endpoint: get_str(entry, "endpoint")?.to_owned(),
            };
            Ok((name.clone(), service))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::base32_lower;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10, lower-cased, padding dropped.
        let cases = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (input, want) in cases {
            assert_eq!(base32_lower(input.as_bytes()), want, "{input:?}");
        }
    }
}
