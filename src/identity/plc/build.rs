//! Building ops this PDS will sign, held to the current directory rules.

use std::collections::HashSet;

use super::op::{Operation, Service, SignedOp};
use super::{
    ATPROTO_PDS_SERVICE, ATPROTO_PDS_TYPE, ATPROTO_VERIFICATION_METHOD, MAX_ROTATION_KEYS,
    MAX_VERIFICATION_METHODS, PlcError, PlcState,
};
use crate::cid;
use crate::crypto::PublicKey;
use crate::syntax::{normalize_handle, validate_handle};

/// Longest did:key we accept in `verificationMethods`; k256/p256 keys are 57 chars.
const MAX_DID_KEY_LEN: usize = 256;
/// Longest map key we accept in `verificationMethods` / `services`.
const MAX_ENTRY_NAME_LEN: usize = 64;
/// Placeholder with the length of every real signature (64 bytes → 86 chars), so that
/// size checks on an unsigned op are exact.
const SIG_PLACEHOLDER: &str =
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

impl Operation {
    /// The atproto genesis op: `rotation_keys` (highest authority first), the repo
    /// signing key as `verificationMethods.atproto`, `alsoKnownAs: ["at://<handle>"]`
    /// and `services.atproto_pds` pointing at `pds_endpoint`; `prev` is null.
    ///
    /// The handle is lower-cased. Whether its TLD is acceptable for registration is
    /// the caller's decision; only syntax is checked here.
    pub fn genesis(
        rotation_keys: Vec<String>,
        signing_did_key: &str,
        handle: &str,
        pds_endpoint: &str,
    ) -> Result<Operation, PlcError> {
        Operation::default()
            .with_rotation_keys(rotation_keys)?
            .with_signing_key(signing_did_key)?
            .with_handle(handle)?
            .with_pds_endpoint(pds_endpoint)?
            .validated()
    }

    /// An update that starts as a copy of `state` (the data of the latest op) and
    /// builds on the op with CID `prev_cid`. Change it with the `with_*` methods.
    pub fn update_from(state: &PlcState, prev_cid: &str) -> Result<Operation, PlcError> {
        check_prev(prev_cid)?;
        Ok(Operation {
            rotation_keys: state.rotation_keys.clone(),
            verification_methods: state.verification_methods.clone(),
            also_known_as: state.also_known_as.clone(),
            services: state.services.clone(),
            prev: Some(prev_cid.to_owned()),
        })
    }

    /// Sets the handle: replaces the first `at://` alias in place, or puts
    /// `at://<handle>` first when there is none. Other aliases are kept.
    pub fn with_handle(mut self, handle: &str) -> Result<Operation, PlcError> {
        let handle = check_handle(handle)?;
        let uri = format!("at://{handle}");
        match self
            .also_known_as
            .iter()
            .position(|a| a.starts_with("at://"))
        {
            Some(i) => self.also_known_as[i] = uri,
            None => self.also_known_as.insert(0, uri),
        }
        Ok(self)
    }

    /// Points `services.atproto_pds` at `endpoint` (`https://host[:port]`, no path).
    pub fn with_pds_endpoint(mut self, endpoint: &str) -> Result<Operation, PlcError> {
        check_endpoint(endpoint)?;
        self.services.insert(
            ATPROTO_PDS_SERVICE.to_owned(),
            Service {
                r#type: ATPROTO_PDS_TYPE.to_owned(),
                endpoint: endpoint.to_owned(),
            },
        );
        Ok(self)
    }

    /// Sets `verificationMethods.atproto`, the repo signing key (k256 or p256 did:key).
    pub fn with_signing_key(mut self, did_key: &str) -> Result<Operation, PlcError> {
        check_blessed_did_key(did_key).map_err(PlcError::VerificationMethod)?;
        self.verification_methods
            .insert(ATPROTO_VERIFICATION_METHOD.to_owned(), did_key.to_owned());
        Ok(self)
    }

    /// Replaces the rotation keys (1–5 distinct k256/p256 did:keys, highest authority
    /// first).
    pub fn with_rotation_keys(mut self, keys: Vec<String>) -> Result<Operation, PlcError> {
        check_rotation_keys(&keys)?;
        self.rotation_keys = keys;
        Ok(self)
    }

    /// Checks the op against the rules the directory applies to new ops: 1–5 distinct
    /// k256/p256 rotation keys, at most 10 syntactically valid did:key verification
    /// methods, sane entry names, a CID `prev`, and a signed size within the limit.
    pub fn validate(&self) -> Result<(), PlcError> {
        check_rotation_keys(&self.rotation_keys)?;
        if self.verification_methods.len() > MAX_VERIFICATION_METHODS {
            return Err(PlcError::VerificationMethod(format!(
                "more than {MAX_VERIFICATION_METHODS} verification methods"
            )));
        }
        for (name, key) in &self.verification_methods {
            check_entry_name(name).map_err(PlcError::VerificationMethod)?;
            check_did_key_syntax(key).map_err(PlcError::VerificationMethod)?;
        }
        for (name, service) in &self.services {
            check_entry_name(name).map_err(PlcError::Service)?;
            if service.r#type.is_empty() || service.endpoint.is_empty() {
                return Err(PlcError::Service(format!(
                    "service {name} needs a type and an endpoint"
                )));
            }
        }
        if let Some(prev) = &self.prev {
            check_prev(prev)?;
        }
        SignedOp::Operation {
            op: self.clone(),
            sig: SIG_PLACEHOLDER.to_owned(),
        }
        .check_size()
    }

    fn validated(self) -> Result<Operation, PlcError> {
        self.validate()?;
        Ok(self)
    }
}

pub(super) fn check_prev(prev: &str) -> Result<(), PlcError> {
    cid::parse(prev)
        .map(|_| ())
        .map_err(|e| PlcError::Prev(e.to_string()))
}

fn check_rotation_keys(keys: &[String]) -> Result<(), PlcError> {
    if keys.is_empty() || keys.len() > MAX_ROTATION_KEYS {
        return Err(PlcError::RotationKeys(format!(
            "need 1 to {MAX_ROTATION_KEYS} keys, got {}",
            keys.len()
        )));
    }
    let mut seen = HashSet::new();
    for key in keys {
        check_blessed_did_key(key).map_err(PlcError::RotationKeys)?;
        if !seen.insert(key.as_str()) {
            return Err(PlcError::RotationKeys(format!("duplicate key {key}")));
        }
    }
    Ok(())
}

/// A k256 or p256 did:key in its one canonical spelling (so keys compare as text).
fn check_blessed_did_key(key: &str) -> Result<(), String> {
    match PublicKey::from_did_key(key) {
        Ok(pk) if pk.to_did_key() == key => Ok(()),
        Ok(_) => Err(format!("{key} is not in canonical did:key form")),
        Err(e) => Err(format!("{key:?}: {e}")),
    }
}

/// Any syntactically valid did:key: `did:key:z` + base58btc (spec v0.2 allows key types
/// beyond k256/p256 in `verificationMethods`).
fn check_did_key_syntax(key: &str) -> Result<(), String> {
    let body = key
        .strip_prefix("did:key:z")
        .filter(|b| !b.is_empty() && key.len() <= MAX_DID_KEY_LEN)
        .ok_or_else(|| format!("{key:?} is not a did:key"))?;
    bs58::decode(body)
        .into_vec()
        .map(|_| ())
        .map_err(|_| format!("{key:?} is not base58btc"))
}

fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ENTRY_NAME_LEN || name.contains('#') {
        return Err(format!(
            "entry name {name:?} must be 1-{MAX_ENTRY_NAME_LEN} chars without '#'"
        ));
    }
    Ok(())
}

fn check_handle(handle: &str) -> Result<String, PlcError> {
    validate_handle(handle).map_err(|e| PlcError::Handle(e.message))?;
    Ok(normalize_handle(handle))
}

/// `https://host[:port]` and nothing more: no path (not even `/`), query, fragment or
/// user info. Hosts are DNS names or dotted IPv4. Plain `http://` is allowed only for
/// `localhost`/`127.0.0.1` (a development PDS registered at a local PLC directory).
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), PlcError> {
    let fail = |why: &str| Err(PlcError::Service(format!("endpoint {endpoint:?}: {why}")));
    let authority = match (
        endpoint.strip_prefix("https://"),
        endpoint.strip_prefix("http://"),
    ) {
        (Some(a), _) => a,
        (None, Some(a)) if is_loopback_authority(a) => a,
        _ => return fail("must start with https://"),
    };
    if authority.contains(['/', '?', '#', '@']) {
        return fail("must be scheme and host only (no path, query, fragment or user)");
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !ok {
            return fail("bad port");
        }
    }
    if !is_hostname(host) {
        return fail("bad host");
    }
    Ok(())
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = authority.split_once(':').map_or(authority, |(h, _)| h);
    host == "localhost" || host == "127.0.0.1"
}

fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-')
        })
}
