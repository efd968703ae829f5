//! The current PLC data of a DID and the DID document rendered from it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::op::{SignedOp, get_services, get_str_list, get_str_map, malformed, only_fields};
use super::{
    ATPROTO_PDS_SERVICE, ATPROTO_PDS_TYPE, ATPROTO_VERIFICATION_METHOD, PlcError, Service,
};
use crate::crypto::{KeyType, PublicKey};

const CONTEXT_DID: &str = "https://www.w3.org/ns/did/v1";
const CONTEXT_MULTIKEY: &str = "https://w3id.org/security/multikey/v1";
const CONTEXT_K256: &str = "https://w3id.org/security/suites/secp256k1-2019/v1";
const CONTEXT_P256: &str = "https://w3id.org/security/suites/ecdsa-2019/v1";

/// The data of a DID's latest op (what the directory serves at `/<did>/data`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PlcState {
    pub rotation_keys: Vec<String>,
    pub verification_methods: BTreeMap<String, String>,
    pub also_known_as: Vec<String>,
    pub services: BTreeMap<String, Service>,
}

impl PlcState {
    /// The state an op leaves behind; `None` for a tombstone (the DID is deactivated).
    /// A legacy `create` op is normalised the way the directory does it: rotation keys
    /// `[recoveryKey, signingKey]`, `atproto` = signingKey, `at://` + handle, and the
    /// service with an `https://` prefix when it has no scheme.
    pub fn from_op(op: &SignedOp) -> Option<PlcState> {
        match op {
            SignedOp::Operation { op, .. } => Some(PlcState {
                rotation_keys: op.rotation_keys.clone(),
                verification_methods: op.verification_methods.clone(),
                also_known_as: op.also_known_as.clone(),
                services: op.services.clone(),
            }),
            SignedOp::Tombstone { .. } => None,
            SignedOp::LegacyCreate {
                signing_key,
                recovery_key,
                handle,
                service,
                ..
            } => {
                let mut verification_methods = BTreeMap::new();
                verification_methods
                    .insert(ATPROTO_VERIFICATION_METHOD.to_owned(), signing_key.clone());
                let mut services = BTreeMap::new();
                services.insert(
                    ATPROTO_PDS_SERVICE.to_owned(),
                    Service {
                        r#type: ATPROTO_PDS_TYPE.to_owned(),
                        endpoint: with_http_prefix(service),
                    },
                );
                Some(PlcState {
                    rotation_keys: vec![recovery_key.clone(), signing_key.clone()],
                    verification_methods,
                    also_known_as: vec![with_at_prefix(handle)],
                    services,
                })
            }
        }
    }

    /// Parses the directory's `/<did>/data` JSON. A `did` field is allowed (and ignored:
    /// the caller knows which DID it asked for); anything else unknown is rejected.
    pub fn from_json(v: &Value) -> Result<PlcState, PlcError> {
        let obj = v
            .as_object()
            .ok_or_else(|| malformed("PLC data must be a JSON object"))?;
        only_fields(
            obj,
            &[
                "did",
                "rotationKeys",
                "verificationMethods",
                "alsoKnownAs",
                "services",
            ],
        )?;
        Ok(PlcState {
            rotation_keys: get_str_list(obj, "rotationKeys")?,
            verification_methods: get_str_map(obj, "verificationMethods")?,
            also_known_as: get_str_list(obj, "alsoKnownAs")?,
            services: get_services(obj)?,
        })
    }

    /// The `/<did>/data` JSON form.
    pub fn to_json(&self, did: &str) -> Value {
        let services: Map<String, Value> = self
            .services
            .iter()
            .map(|(k, s)| (k.clone(), json!({"type": s.r#type, "endpoint": s.endpoint})))
            .collect();
        json!({
            "did": did,
            "rotationKeys": self.rotation_keys,
            "verificationMethods": self.verification_methods,
            "alsoKnownAs": self.also_known_as,
            "services": services,
        })
    }

    /// The handle: the first `at://` alias, without the prefix.
    pub fn handle(&self) -> Option<&str> {
        self.also_known_as
            .iter()
            .find_map(|a| a.strip_prefix("at://"))
    }

    /// The `atproto_pds` endpoint, if the service has the PDS type.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.services
            .get(ATPROTO_PDS_SERVICE)
            .filter(|s| s.r#type == ATPROTO_PDS_TYPE)
            .map(|s| s.endpoint.as_str())
    }

    /// The repo signing key (`verificationMethods.atproto`) as a did:key.
    pub fn signing_key(&self) -> Option<&str> {
        self.verification_methods
            .get(ATPROTO_VERIFICATION_METHOD)
            .map(String::as_str)
    }
}

/// Renders the DID document resolvers see for `did` in `state`.
///
/// Each verification method becomes a `Multikey` entry `<did>#<name>`; `@context` gets the
/// multikey context plus the suite context for each k256 / p256 key present. Entries
/// whose value is not a `did:key:` are left out. Services become `#<name>` entries.
pub fn document(did: &str, state: &PlcState) -> Value {
    let mut context = vec![CONTEXT_DID, CONTEXT_MULTIKEY];
    let mut methods = Vec::new();
    for (name, key) in &state.verification_methods {
        let Some(multibase) = key.strip_prefix("did:key:") else {
            continue;
        };
        let suite = match PublicKey::from_did_key(key).map(|k| k.key_type()) {
            Ok(KeyType::K256) => Some(CONTEXT_K256),
            Ok(KeyType::P256) => Some(CONTEXT_P256),
            Err(_) => None,
        };
        if let Some(suite) = suite.filter(|s| !context.contains(s)) {
            context.push(suite);
        }
        methods.push(json!({
            "id": format!("{did}#{name}"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": multibase,
        }));
    }
    let services: Vec<Value> = state
        .services
        .iter()
        .map(|(name, s)| {
            json!({
                "id": format!("#{name}"),
                "type": s.r#type,
                "serviceEndpoint": s.endpoint,
            })
        })
        .collect();
    json!({
        "@context": context,
        "id": did,
        "alsoKnownAs": state.also_known_as,
        "verificationMethod": methods,
        "service": services,
    })
}

/// Legacy `handle` → alias: keep `at://…`, else drop an http(s) scheme and add `at://`.
fn with_at_prefix(handle: &str) -> String {
    if handle.starts_with("at://") {
        return handle.to_owned();
    }
    let bare = handle
        .strip_prefix("https://")
        .or_else(|| handle.strip_prefix("http://"))
        .unwrap_or(handle);
    format!("at://{bare}")
}

/// Legacy `service` → endpoint: keep an http(s) URL, else add `https://`.
fn with_http_prefix(service: &str) -> String {
    if service.starts_with("https://") || service.starts_with("http://") {
        service.to_owned()
    } else {
        format!("https://{service}")
    }
}
