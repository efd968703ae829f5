//! Resolving other identities over the network: DID documents (did:plc at
//! the PLC directory, did:web at `/.well-known/did.json`) and handles (DNS
//! TXT `_atproto.<handle>`, then HTTPS `/.well-known/atproto-did`).
//! Every fetch goes through `net`, so private addresses are refused.

use hyper::Method;
use serde_json::Value;

use crate::net::{Net, NetError};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unsupported DID: {0}")]
    Unsupported(String),
    #[error("could not resolve {0}: {1}")]
    Fetch(String, NetError),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("bad DID document for {0}")]
    BadDocument(String),
    #[error("{0}")]
    BadHandle(String),
}

/// Where the document of `did:web:<host>` lives. Only the bare host form is
/// supported (no path segments). A `%3A`-encoded port is for the development
/// host `localhost` exactly, and plain HTTP too, only when loopback targets
/// are allowed (`PERCH_ALLOW_LOOPBACK`; otherwise `net` refuses localhost
/// anyway). A host that merely starts with `localhost` (`localhost.evil.com`)
/// is an ordinary public name: plain HTTP there would let anyone on the path
/// forge the document.
pub fn did_web_url(did: &str, allow_loopback: bool) -> Result<String, ResolveError> {
    let unsupported = || ResolveError::Unsupported(did.into());
    let id = did.strip_prefix("did:web:").ok_or_else(unsupported)?;
    // A literal ':' separates path segments, which atproto does not use.
    if id.is_empty() || id.contains(':') {
        return Err(unsupported());
    }
    let decoded = id.replace("%3A", ":").replace("%3a", ":");
    let (name, port) = match decoded.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (decoded.as_str(), None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !name_ok {
        return Err(unsupported());
    }
    // A port only makes sense for the development host; elsewhere it is refused.
    let localhost = name.eq_ignore_ascii_case("localhost");
    let port = match port {
        None => None,
        Some(p) if localhost && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(unsupported()),
            }
        }
        Some(_) => return Err(unsupported()),
    };
    let scheme = if localhost && allow_loopback {
        "http"
    } else {
        "https"
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{name}:{p}/.well-known/did.json"),
        None => format!("{scheme}://{name}/.well-known/did.json"),
    })
}

/// Fetch and sanity-check the DID document of `did`.
pub async fn did_document(net: &Net, plc_url: &str, did: &str) -> Result<Value, ResolveError> {
    let url = if did.starts_with("did:web:") {
        did_web_url(did, net.allows_private())?
    } else if did.starts_with("did:plc:") && !plc_url.is_empty() {
        format!("{}/{did}", plc_url.trim_end_matches('/'))
    } else {
        return Err(ResolveError::Unsupported(did.into()));
    };
    let (status, body) = net
        .json(Method::GET, &url, None)
        .await
        .map_err(|e| ResolveError::Fetch(did.into(), e))?;
    if !status.is_success() {
        return Err(ResolveError::NotFound(did.into()));
    }
    let doc: Value =
        serde_json::from_slice(&body).map_err(|_| ResolveError::BadDocument(did.into()))?;
    if doc.get("id").and_then(Value::as_str) != Some(did) {
        return Err(ResolveError::BadDocument(did.into()));
    }
    Ok(doc)
}

/// The `#atproto` verification key of a DID document, as a did:key. Besides `Multikey`, the
/// legacy `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019` forms
/// (a bare multibase point, no multicodec prefix) are read, as older PLC directories and
/// did:web documents still publish them.
pub fn signing_key(doc: &Value) -> Option<String> {
    use crate::crypto::{KeyType, PublicKey};
    let method = doc
        .get("verificationMethod")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.ends_with("#atproto"))
        })?;
    let mb = method.get("publicKeyMultibase")?.as_str()?;
    let legacy = match method.get("type").and_then(Value::as_str) {
        Some("EcdsaSecp256k1VerificationKey2019") => Some(KeyType::K256),
        Some("EcdsaSecp256r1VerificationKey2019") => Some(KeyType::P256),
        _ => None,
    };
    match legacy {
        Some(kt) => PublicKey::from_legacy_multibase(kt, mb)
            .ok()
            .map(|k| k.to_did_key()),
        None => Some(format!("did:key:{mb}")),
    }
}

/// The endpoint of service `#id` in a DID document.
pub fn service_endpoint(doc: &Value, id: &str) -> Option<String> {
    let did = doc.get("id").and_then(Value::as_str).unwrap_or("");
    let (rel, abs) = (format!("#{id}"), format!("{did}#{id}"));
    doc.get("service")?
        .as_array()?
        .iter()
        .find(|s| {
            s.get("id")
                .and_then(Value::as_str)
                .is_some_and(|x| x == rel || x == abs)
        })?
        .get("serviceEndpoint")?
        .as_str()
        .map(|e| e.trim_end_matches('/').to_owned())
}

/// As [`service_endpoint`], only when the entry also has type `kind` (the
/// reference checks it for the push service, `BskyNotificationService`).
pub fn typed_service_endpoint(doc: &Value, id: &str, kind: &str) -> Option<String> {
    let did = doc.get("id").and_then(Value::as_str).unwrap_or("");
    let (rel, abs) = (format!("#{id}"), format!("{did}#{id}"));
    let entry = doc.get("service")?.as_array()?.iter().find(|s| {
        s.get("id")
            .and_then(Value::as_str)
            .is_some_and(|x| x == rel || x == abs)
    })?;
    if entry.get("type").and_then(Value::as_str) != Some(kind) {
        return None;
    }
    service_endpoint(doc, id)
}

/// The handle a DID document claims (its first `at://` alias).
pub fn claimed_handle(doc: &Value) -> Option<String> {
    doc.get("alsoKnownAs")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("at://"))
        .map(crate::syntax::normalize_handle)
}

/// The DID a handle's `_atproto` TXT record names: `None` when there is no
/// such record (or DNS is unavailable); an error when records disagree.
pub async fn dns_did(handle: &str) -> Result<Option<String>, ResolveError> {
    match super::dns::system_resolver() {
        Ok(resolver) => dns_did_at(resolver, handle).await,
        Err(_) => Ok(None),
    }
}

/// As [`dns_did`], asking `resolver`.
pub async fn dns_did_at(
    resolver: std::net::SocketAddr,
    handle: &str,
) -> Result<Option<String>, ResolveError> {
    let Ok(records) = super::dns::txt(resolver, &format!("_atproto.{handle}")).await else {
        return Ok(None);
    };
    let mut dids: Vec<String> = records
        .iter()
        .filter_map(|r| r.strip_prefix("did="))
        .map(|d| d.trim().to_owned())
        .collect();
    dids.sort();
    dids.dedup();
    match dids.len() {
        0 => Ok(None),
        1 => Ok(dids.pop()),
        _ => Err(ResolveError::NotFound(format!(
            "{handle} (conflicting TXT records)"
        ))),
    }
}

/// The DID `https://<handle>/.well-known/atproto-did` names, if any.
pub async fn https_did(net: &Net, handle: &str) -> Option<String> {
    let url = format!("https://{handle}/.well-known/atproto-did");
    let (status, body) = net.json(Method::GET, &url, None).await.ok()?;
    status.is_success().then(|| well_known_did(&body)).flatten()
}

/// The body of `/.well-known/atproto-did`: one DID and nothing else (a body
/// naming two DIDs names none).
fn well_known_did(body: &[u8]) -> Option<String> {
    let did = std::str::from_utf8(body).ok()?.trim();
    crate::syntax::validate_did(did)
        .is_ok()
        .then(|| did.to_owned())
}

/// Handle → DID (DNS TXT wins; HTTPS otherwise), confirmed in the other
/// direction: the DID's document must claim the handle.
pub async fn handle_to_did(net: &Net, plc_url: &str, handle: &str) -> Result<String, ResolveError> {
    let dns = super::dns::system_resolver().ok();
    handle_to_did_via(net, plc_url, dns, handle).await
}

/// As [`handle_to_did`], asking the DNS server `dns` (none: HTTPS only). The
/// handle is checked and lower-cased first: `Alice.Example.COM` is
/// `alice.example.com`, and `alice.example.com.` is not a handle.
pub async fn handle_to_did_via(
    net: &Net,
    plc_url: &str,
    dns: Option<std::net::SocketAddr>,
    handle: &str,
) -> Result<String, ResolveError> {
    crate::syntax::validate_handle(handle)
        .map_err(|e| ResolveError::BadHandle(format!("{handle:?}: {e}")))?;
    let handle = crate::syntax::normalize_handle(handle);
    let from_dns = match dns {
        Some(resolver) => dns_did_at(resolver, &handle).await?,
        None => None,
    };
    let did = match from_dns {
        Some(d) => d,
        None => https_did(net, &handle)
            .await
            .ok_or_else(|| ResolveError::NotFound(handle.clone()))?,
    };
    confirm(net, plc_url, &handle, did).await
}

async fn confirm(
    net: &Net,
    plc_url: &str,
    handle: &str,
    did: String,
) -> Result<String, ResolveError> {
    let doc = did_document(net, plc_url, &did).await?;
    if claimed_handle(&doc).as_deref() != Some(handle) {
        return Err(ResolveError::NotFound(handle.into()));
    }
    Ok(did)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_and_handle_from_a_document() {
        let doc = json!({
            "id": "did:plc:abc",
            "alsoKnownAs": ["https://x", "at://Alice.Example.com"],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com/"},
                {"id": "did:plc:abc#bsky_appview", "type": "BskyAppView", "serviceEndpoint": "https://api.example.com"}
            ]
        });
        assert_eq!(
            service_endpoint(&doc, "atproto_pds").unwrap(),
            "https://pds.example.com"
        );
        assert_eq!(
            service_endpoint(&doc, "bsky_appview").unwrap(),
            "https://api.example.com"
        );
        assert!(service_endpoint(&doc, "nope").is_none());
        assert_eq!(
            typed_service_endpoint(&doc, "bsky_appview", "BskyAppView").unwrap(),
            "https://api.example.com"
        );
        assert!(typed_service_endpoint(&doc, "bsky_appview", "BskyNotificationService").is_none());
        assert_eq!(claimed_handle(&doc).unwrap(), "alice.example.com");
    }

    #[test]
    fn a_well_known_body_names_exactly_one_did() {
        assert_eq!(
            well_known_did(b"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa\n").as_deref(),
            Some("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
        );
        for body in [
            &b"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa\ndid:plc:bbbbbbbbbbbbbbbbbbbbbbbb"[..],
            b"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
            b"<html>did:plc:aaaaaaaaaaaaaaaaaaaaaaaa</html>",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(well_known_did(body), None, "{body:?}");
        }
    }

    #[test]
    fn only_the_exact_development_host_gets_plain_http() {
        // Loopback allowed (tests, development): localhost itself, with or
        // without a port, is fetched over http.
        for (did, want) in [
            ("did:web:localhost", "http://localhost/.well-known/did.json"),
            (
                "did:web:localhost%3A2583",
                "http://localhost:2583/.well-known/did.json",
            ),
            (
                "did:web:localhost%3a2583",
                "http://localhost:2583/.well-known/did.json",
            ),
            (
                "did:web:LOCALHOST%3A8080",
                "http://LOCALHOST:8080/.well-known/did.json",
            ),
            (
                "did:web:example.com",
                "https://example.com/.well-known/did.json",
            ),
        ] {
            assert_eq!(did_web_url(did, true).unwrap(), want, "{did}");
        }
        // Names that only start like the development host are public names:
        // https, whatever the loopback setting.
        for (did, host) in [
            ("did:web:localhost.evil.com", "localhost.evil.com"),
            ("did:web:localhostx", "localhostx"),
            ("did:web:localhost-evil.com", "localhost-evil.com"),
            ("did:web:localhost.", "localhost."),
            ("did:web:xlocalhost", "xlocalhost"),
            ("did:web:localhost.localhost", "localhost.localhost"),
        ] {
            for allow in [true, false] {
                assert_eq!(
                    did_web_url(did, allow).unwrap(),
                    format!("https://{host}/.well-known/did.json"),
                    "{did} allow={allow}"
                );
            }
        }
        // Loopback not allowed: even localhost is https (and `net` refuses it).
        assert_eq!(
            did_web_url("did:web:localhost%3A2583", false).unwrap(),
            "https://localhost:2583/.well-known/did.json"
        );
        // Ports anywhere else, ports that are not ports, paths, userinfo and
        // other encodings are not supported at all.
        for did in [
            "did:web:localhost%3A80.evil",
            "did:web:localhost%3A80.evil.com",
            "did:web:localhost%3A%3A80",
            "did:web:localhost%3A80%3A90",
            "did:web:localhost%3A",
            "did:web:localhost%3A0",
            "did:web:localhost%3A65536",
            "did:web:localhost%3A123456",
            "did:web:localhost%3A-1",
            "did:web:localhost%3A+80",
            "did:web:localhost.evil.com%3A80",
            "did:web:localhostx%3A80",
            "did:web:example.com%3A443",
            "did:web:localhost:80",
            "did:web:localhost:evil.com",
            "did:web:evil.com%40localhost",
            "did:web:localhost%40evil.com",
            "did:web:localhost%2Fevil.com",
            "did:web:localhost%2F..%2Fevil",
            "did:web:localhost%23x",
            "did:web:localhost%3Fx",
            "did:web:local%68ost",
            "did:web:",
            "did:web:%3A80",
            "did:plc:localhost",
        ] {
            for allow in [true, false] {
                assert!(
                    matches!(did_web_url(did, allow), Err(ResolveError::Unsupported(_))),
                    "{did} allow={allow}: {:?}",
                    did_web_url(did, allow)
                );
            }
        }
    }

    #[tokio::test]
    async fn private_targets_and_odd_dids_are_refused() {
        let net = Net::new(false);
        for did in [
            "did:web:127.0.0.1",
            "did:web:localhost%3A9",
            "did:web:10.0.0.1",
        ] {
            let e = did_document(&net, "", did).await.unwrap_err();
            assert!(
                matches!(e, ResolveError::Fetch(_, NetError::Private(_))),
                "{did}: {e}"
            );
        }
        for did in ["did:web:a.com:path", "did:key:zQ3sh", "did:plc:abc"] {
            assert!(
                matches!(
                    did_document(&net, "", did).await,
                    Err(ResolveError::Unsupported(_))
                ),
                "{did}"
            );
        }
    }
}
