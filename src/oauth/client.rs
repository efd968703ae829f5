//! Who an app is: its `client_id` is the URL of its metadata document, which perch fetches
//! (through the guarded outbound client: no private addresses, small, quick, no redirects),
//! validates strictly and caches as its `Cache-Control` allows. `http://localhost` client
//! ids are the development clients the profile defines; their metadata is synthesised from
//! the id's query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{OAuth, OAuthError};

/// A metadata document larger than this is refused (real ones are a few hundred bytes).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The whole fetch must finish within this long.
const FETCH_DEADLINE: Duration = Duration::from_secs(8);
/// How long a document is kept when its response says nothing, and the bounds on what it
/// may say.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
const MAX_TTL: Duration = Duration::from_secs(60 * 60);
const CACHE_ENTRIES: usize = 64;
const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LEN: usize = 2048;
/// Fetches of client documents running at once, at most.
const MAX_FETCHES: usize = 4;

type KeyList = Arc<Vec<Map<String, Value>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppType {
    Web,
    Native,
}

/// A validated client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    pub client_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    /// The scopes it may ask for, space-separated.
    pub scope: String,
    pub app_type: AppType,
    /// Authenticates at the token endpoint with `private_key_jwt`.
    pub confidential: bool,
    /// Its public keys (confidential clients), inline or fetched from `jwks_uri`.
    pub jwks: Option<Vec<Map<String, Value>>>,
    pub jwks_uri: Option<String>,
    pub refresh_tokens: bool,
    /// The `http://localhost` development client.
    pub loopback: bool,
}

impl Client {
    /// The host the client id names: shown beside the app's own name, so a look-alike name
    /// cannot hide where the app really comes from.
    pub fn host(&self) -> String {
        if self.loopback {
            return "localhost (an app on this device, in development)".into();
        }
        parse_url(&self.client_id)
            .map(|u| u.host)
            .unwrap_or_else(|| self.client_id.clone())
    }

    /// Whether `uri` is one of the client's redirect URIs. For the loopback client the port
    /// is not compared (the profile says so: a development server picks its port).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        if self.loopback {
            let Some(u) = parse_url(uri) else {
                return false;
            };
            return self
                .redirect_uris
                .iter()
                .filter_map(|r| parse_url(r))
                .any(|r| r.scheme == u.scheme && r.host == u.host && r.path_query == u.path_query);
        }
        self.redirect_uris.iter().any(|r| r == uri)
    }
}

/// An absolute http(s) URL, taken apart just enough for the checks here.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// From the first `/` on (at least `/`), the query included.
    pub path_query: String,
}

pub fn parse_url(s: &str) -> Option<Url> {
    if s.len() > MAX_URI_LEN || s.contains('#') || s.chars().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let uri: hyper::Uri = s.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let path_query = match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_owned(),
        Some(pq) => format!("/{}", pq.as_str()),
        None => "/".to_owned(),
    };
    Some(Url {
        scheme,
        host,
        port: uri.port_u16(),
        path_query,
    })
}

fn is_loopback_ip_host(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]"
}

/// The development client: `http://localhost` (no port, path `/` or none), with optional
/// `redirect_uri` (repeatable) and `scope` query parameters.
pub fn loopback_client(client_id: &str) -> Result<Client, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("Invalid loopback client_id: {why}"));
    let rest = client_id
        .strip_prefix("http://localhost")
        .ok_or_else(|| bad("must start with http://localhost"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !(path.is_empty() || path == "/") {
        return Err(bad("no port or path is allowed"));
    }
    let params = crate::syntax::form::decode_form(query)
        .ok_or(())
        .map_err(|_| bad("malformed query"))?;
    let mut redirect_uris = vec![];
    let mut scope = None;
    for (k, v) in params {
        match k.as_str() {
            "redirect_uri" => {
                let u = parse_url(&v).ok_or_else(|| bad("redirect_uri is not a URL"))?;
                if u.scheme != "http" || !is_loopback_ip_host(&u.host) {
                    return Err(bad(
                        "redirect_uri must be http://127.0.0.1 or http://[::1] (not localhost)",
                    ));
                }
                redirect_uris.push(v);
            }
            "scope" if scope.is_none() => scope = Some(v),
            _ => return Err(bad(&format!("unexpected parameter {k:?}"))),
        }
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad("too many redirect_uri"));
    }
    if redirect_uris.is_empty() {
        redirect_uris = vec!["http://127.0.0.1/".into(), "http://[::1]/".into()];
    }
    let scope = scope.unwrap_or_else(|| "atproto".into());
    if !scope.split(' ').any(|s| s == "atproto") {
        return Err(bad("scope must include atproto"));
    }
    Ok(Client {
        client_id: client_id.to_owned(),
        name: None,
        client_uri: None,
        tos_uri: None,
        policy_uri: None,
        redirect_uris,
        scope,
        app_type: AppType::Native,
        confidential: false,
        jwks: None,
        jwks_uri: None,
        refresh_tokens: true,
        loopback: true,
    })
}

/// Checks a `client_id` URL before anything is fetched. `insecure` (tests and development
/// only) also allows plain http and ports.
pub fn check_client_id(client_id: &str, insecure: bool) -> Result<Url, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("Invalid client_id: {why}"));
    let u = parse_url(client_id).ok_or_else(|| bad("not an https URL"))?;
    if !insecure {
        if u.scheme != "https" {
            return Err(bad("must be an https URL"));
        }
        if u.port.is_some() {
            return Err(bad("must not name a port"));
        }
        if u.host.parse::<std::net::IpAddr>().is_ok() || u.host.starts_with('[') {
            return Err(bad("must name a host, not an IP address"));
        }
    }
    if client_id != format!("{}://{}{}", u.scheme, authority(&u), u.path_query) {
        return Err(bad("must be in normal form (lowercase host, a path)"));
    }
    Ok(u)
}

fn authority(u: &Url) -> String {
    match u.port {
        Some(p) => format!("{}:{p}", u.host),
        None => u.host.clone(),
    }
}

/// Validates a fetched metadata document for `client_id`.
pub fn validate(client_id: &str, doc: &Value, insecure: bool) -> Result<Client, OAuthError> {
    let bad = |why: String| OAuthError::invalid_client_metadata(why);
    let id_url = check_client_id(client_id, insecure)?;
    let m = doc
        .as_object()
        .ok_or_else(|| bad("the document is not a JSON object".into()))?;
    let string = |k: &str| -> Result<Option<String>, OAuthError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_URI_LEN => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{k} must be a short string"))),
        }
    };
    let strings = |k: &str| -> Result<Option<Vec<String>>, OAuthError> {
        match m.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) if a.len() <= MAX_REDIRECT_URIS => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be an array of strings"))),
            Some(_) => Err(bad(format!("{k} must be a short array of strings"))),
        }
    };
    if string("client_id")?.as_deref() != Some(client_id) {
        return Err(bad("client_id in the document differs from its URL".into()));
    }
    let app_type = match string("application_type")?.as_deref() {
        None | Some("web") => AppType::Web,
        Some("native") => AppType::Native,
        Some(other) => return Err(bad(format!("unknown application_type {other:?}"))),
    };
    let grants = strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if !grants.iter().any(|g| g == "authorization_code") {
        return Err(bad("grant_types must include authorization_code".into()));
    }
    if let Some(g) = grants
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(bad(format!("unsupported grant type {g:?}")));
    }
    let response_types = strings("response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if !response_types.iter().any(|r| r == "code") {
        return Err(bad("response_types must include code".into()));
    }
    let scope = string("scope")?.ok_or_else(|| bad("scope is required".into()))?;
    if !scope.split(' ').any(|s| s == "atproto") {
        return Err(bad("scope must include atproto".into()));
    }
    if m.get("dpop_bound_access_tokens") != Some(&Value::Bool(true)) {
        return Err(bad("dpop_bound_access_tokens must be true".into()));
    }
    let confidential = match string("token_endpoint_auth_method")?.as_deref() {
        Some("none") => false,
        Some("private_key_jwt") => true,
        Some(other) => {
            return Err(bad(format!(
                "unsupported token_endpoint_auth_method {other:?}"
            )));
        }
        None => return Err(bad("token_endpoint_auth_method is required".into())),
    };
    let jwks = match m.get("jwks") {
        None => None,
        Some(v) => Some(jwk_list(v).ok_or_else(|| bad("jwks must hold keys".into()))?),
    };
    let jwks_uri = string("jwks_uri")?;
    if confidential {
        if let Some(alg) = string("token_endpoint_auth_signing_alg")?
            && alg != "ES256"
        {
            return Err(bad(format!("unsupported signing alg {alg:?}")));
        }
        match (&jwks, &jwks_uri) {
            (Some(k), None) if !k.is_empty() => {}
            (None, Some(u)) => {
                check_client_id(u, insecure).map_err(|_| bad("jwks_uri must be https".into()))?;
            }
            _ => return Err(bad("a confidential client needs jwks or jwks_uri".into())),
        }
    } else if jwks.is_some() || jwks_uri.is_some() {
        return Err(bad("a public client must not publish keys".into()));
    }
    let redirect_uris = strings("redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(bad("redirect_uris is required".into()));
    }
    for r in &redirect_uris {
        check_redirect(r, &id_url, app_type, insecure).map_err(|why| bad(why.into()))?;
    }
    let same_host = |k: &str| -> Result<Option<String>, OAuthError> {
        let Some(v) = string(k)? else { return Ok(None) };
        match parse_url(&v) {
            Some(u) if u.scheme == "https" || insecure => Ok(Some(v)),
            _ => Err(bad(format!("{k} must be an https URL"))),
        }
    };
    let client_uri = same_host("client_uri")?;
    if let Some(u) = client_uri.as_deref().and_then(parse_url)
        && u.host != id_url.host
    {
        return Err(bad("client_uri must be on the client_id's host".into()));
    }
    let name = string("client_name")?.map(|n| n.chars().take(100).collect());
    Ok(Client {
        client_id: client_id.to_owned(),
        name,
        client_uri,
        tos_uri: same_host("tos_uri")?,
        policy_uri: same_host("policy_uri")?,
        redirect_uris,
        scope,
        app_type,
        confidential,
        jwks,
        jwks_uri,
        refresh_tokens: grants.iter().any(|g| g == "refresh_token"),
        loopback: false,
    })
}

/// `{"keys": [...]}` with at most 10 objects.
pub(crate) fn jwk_list(v: &Value) -> Option<Vec<Map<String, Value>>> {
    let keys = v.get("keys")?.as_array()?;
    if keys.len() > 10 {
        return None;
    }
    keys.iter().map(|k| k.as_object().cloned()).collect()
}

fn check_redirect(
    r: &str,
    id: &Url,
    app_type: AppType,
    insecure: bool,
) -> Result<(), &'static str> {
    if let Some(u) = parse_url(r) {
        return match (u.scheme.as_str(), app_type) {
            ("https", _) if u.host == id.host => Ok(()),
            ("https", _) => Err("an https redirect_uri must be on the client_id's host"),
            ("http", AppType::Native) if is_loopback_ip_host(&u.host) => Ok(()),
            ("http", _) if insecure && u.host == id.host => Ok(()),
            _ => Err("a redirect_uri must be https (or loopback http for native apps)"),
        };
    }
    // A native app's private-use scheme: the client host reversed, then `:/path`.
    let (scheme, rest) = r.split_once(':').ok_or("a redirect_uri is not a URI")?;
    let reversed: Vec<&str> = id.host.split('.').rev().collect();
    if app_type == AppType::Native
        && scheme == reversed.join(".")
        && rest.starts_with('/')
        && !rest.starts_with("//")
        && r.len() <= MAX_URI_LEN
    {
        Ok(())
    } else {
        Err("a custom-scheme redirect_uri must be the client host reversed, then :/path")
    }
}

/// Fetched documents, by client id, until their time is up.
pub struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Client>)>>,
    /// Confidential clients' keys fetched from their `jwks_uri`, by URI.
    keys: Mutex<HashMap<String, (Instant, KeyList)>>,
    /// Places for fetches running at once; a permit goes back when its request ends, however
    /// it ends (a client that hangs up mid-fetch must not keep its place).
    fetching: tokio::sync::Semaphore,
}

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache {
            entries: Mutex::default(),
            keys: Mutex::default(),
            fetching: tokio::sync::Semaphore::new(MAX_FETCHES),
        }
    }
}

/// How long the response lets a document be kept.
fn ttl(headers: &hyper::HeaderMap) -> Duration {
    let Some(cc) = headers
        .get(hyper::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_TTL;
    };
    let mut ttl = DEFAULT_TTL;
    for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-store" || d == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(s) = d.strip_prefix("max-age=")
            && let Ok(n) = s.trim_matches('"').parse::<u64>()
        {
            ttl = Duration::from_secs(n).min(MAX_TTL);
        }
    }
    ttl
}

impl OAuth<'_> {
    /// The client a `client_id` names: synthesised (loopback), cached, or fetched now.
    pub async fn client(&self, client_id: &str) -> Result<Arc<Client>, OAuthError> {
        if client_id.starts_with("http://localhost") {
            return loopback_client(client_id).map(Arc::new);
        }
        let insecure = self.config.allow_loopback;
        check_client_id(client_id, insecure)?;
        let cache = &self.state.clients;
        if let Ok(map) = cache.entries.lock()
            && let Some((until, c)) = map.get(client_id)
            && Instant::now() < *until
        {
            return Ok(Arc::clone(c));
        }
        let Ok(_place) = cache.fetching.try_acquire() else {
            return Err(OAuthError {
                retry_after: Some(2),
                ..OAuthError::new(
                    503,
                    "temporarily_unavailable",
                    "Too many client metadata fetches at once",
                )
            });
        };
        let fetched = self
            .net
            .get_small(
                client_id,
                "application/json",
                MAX_METADATA_BYTES,
                FETCH_DEADLINE,
            )
            .await;
        let (status, headers, body) = fetched.map_err(|e| {
            tracing::info!("oauth: client metadata {client_id}: {e}");
            OAuthError::invalid_client_metadata(format!("Could not fetch the client metadata: {e}"))
        })?;
        if status != hyper::StatusCode::OK {
            return Err(OAuthError::invalid_client_metadata(format!(
                "The client metadata URL answered {status} (200 without redirects is required)"
            )));
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| OAuthError::invalid_client_metadata("The client metadata is not JSON"))?;
        let client = Arc::new(validate(client_id, &doc, insecure)?);
        let keep = ttl(&headers);
        if !keep.is_zero()
            && let Ok(mut map) = cache.entries.lock()
        {
            if map.len() >= CACHE_ENTRIES {
                let now = Instant::now();
                map.retain(|_, (until, _)| *until > now);
                if map.len() >= CACHE_ENTRIES {
                    map.clear();
                }
            }
            map.insert(
                client_id.to_owned(),
                (Instant::now() + keep, Arc::clone(&client)),
            );
        }
        Ok(client)
    }

    /// A confidential client's keys: inline, or fetched from its `jwks_uri`.
    pub(super) async fn client_keys(
        &self,
        client: &Client,
    ) -> Result<Vec<Map<String, Value>>, OAuthError> {
        if let Some(k) = &client.jwks {
            return Ok(k.clone());
        }
        let Some(uri) = &client.jwks_uri else {
            return Ok(vec![]);
        };
        let cache = &self.state.clients.keys;
        if let Ok(map) = cache.lock()
            && let Some((until, keys)) = map.get(uri)
            && Instant::now() < *until
        {
            return Ok(keys.as_ref().clone());
        }
        let Ok(_place) = self.state.clients.fetching.try_acquire() else {
            return Err(OAuthError::new(
                503,
                "temporarily_unavailable",
                "Too many client key fetches at once",
            ));
        };
        let (status, headers, body) = self
            .net
            .get_small(uri, "application/json", MAX_METADATA_BYTES, FETCH_DEADLINE)
            .await
            .map_err(|e| OAuthError::invalid_client(format!("Could not fetch jwks_uri: {e}")))?;
        if status != hyper::StatusCode::OK {
            return Err(OAuthError::invalid_client(format!(
                "jwks_uri answered {status}"
            )));
        }
        let keys = serde_json::from_slice::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(jwk_list)
            .ok_or_else(|| OAuthError::invalid_client("jwks_uri holds no keys"))?;
        let keep = ttl(&headers);
        if !keep.is_zero()
            && let Ok(mut map) = cache.lock()
        {
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(uri.clone(), (Instant::now() + keep, Arc::new(keys.clone())));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests;
