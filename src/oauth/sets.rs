//! `include:<nsid>` scopes: permission sets, resolved the way Lexicons are (the NSID's
//! authority's `_lexicon` TXT record names a DID; that DID's PDS holds the set as a
//! `com.atproto.lexicon.schema` record), read by `lexicon::permission_set`, cached for an
//! hour (the spec allows a day; never shorter than an access token), and expanded into the
//! plain permissions an access token carries. Granted scopes stay as the owner approved them;
//! their expansion is redone at each refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{OAuth, OAuthError};
use crate::auth::permissions::Permissions;
use crate::lexicon::permission_set::{self, PermissionSet};
use crate::syntax::form::percent_encode;

const SET_TTL: Duration = Duration::from_secs(60 * 60);
const CACHE_ENTRIES: usize = 64;
const MAX_SET_BYTES: usize = 64 * 1024;
const FETCH_DEADLINE: Duration = Duration::from_secs(8);

#[derive(Default)]
pub struct SetCache {
    entries: Mutex<HashMap<String, (Instant, Arc<PermissionSet>)>>,
}

impl OAuth<'_> {
    /// The permission set `nsid`, from the cache or resolved now.
    pub(super) async fn permission_set(
        &self,
        nsid: &str,
    ) -> Result<Arc<PermissionSet>, OAuthError> {
        let cache = &self.state.sets;
        if let Ok(map) = cache.entries.lock()
            && let Some((at, set)) = map.get(nsid)
            && at.elapsed() < SET_TTL
        {
            return Ok(Arc::clone(set));
        }
        let set = Arc::new(self.resolve_set(nsid).await.map_err(|why| {
            OAuthError::invalid_scope(format!(
                "the permission set {nsid} could not be used: {why}"
            ))
        })?);
        if let Ok(mut map) = cache.entries.lock() {
            if map.len() >= CACHE_ENTRIES {
                map.retain(|_, (at, _)| at.elapsed() < SET_TTL);
                if map.len() >= CACHE_ENTRIES {
                    map.clear();
                }
            }
            map.insert(nsid.to_owned(), (Instant::now(), Arc::clone(&set)));
        }
        Ok(set)
    }

    async fn resolve_set(&self, nsid: &str) -> Result<PermissionSet, String> {
        let domain = permission_set::authority_domain(nsid).ok_or("not an NSID")?;
        let resolver = match self.dns {
            Some(r) => r,
            None => crate::identity::dns::system_resolver().map_err(|e| e.to_string())?,
        };
        let name = format!("_lexicon.{domain}");
        let txt = crate::identity::dns::txt(resolver, &name)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let did = txt
            .iter()
            .find_map(|t| t.strip_prefix("did="))
            .filter(|d| crate::syntax::validate_did(d).is_ok())
            .ok_or_else(|| format!("no did= TXT record at {name}"))?
            .to_owned();
        let doc = crate::identity::resolve::did_document(self.net, &self.config.plc_url, &did)
            .await
            .map_err(|e| format!("{did}: {e}"))?;
        let pds = crate::identity::resolve::service_endpoint(&doc, "atproto_pds")
            .ok_or_else(|| format!("{did} names no PDS"))?;
        let url = format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo={}&collection=com.atproto.lexicon.schema&rkey={}",
            pds.trim_end_matches('/'),
            percent_encode(&did),
            percent_encode(nsid)
        );
        let (status, _, body) = self
            .net
            .get_small(&url, "application/json", MAX_SET_BYTES, FETCH_DEADLINE)
            .await
            .map_err(|e| e.to_string())?;
        if status != hyper::StatusCode::OK {
            return Err(format!("its record answered {status}"));
        }
        let record: Value = serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())?;
        let value = record.get("value").ok_or("the record has no value")?;
        permission_set::parse(nsid, value)
    }

    /// Resolves every `include:` of a scope (a request fails when one cannot be).
    pub(super) async fn check_sets(&self, perms: &Permissions) -> Result<(), OAuthError> {
        for i in perms.includes() {
            self.permission_set(&i.nsid).await?;
        }
        Ok(())
    }

    /// The scope an access token carries: the granted tokens with each `include:` replaced
    /// by what its set grants now. Tokens of a set this server cannot read are left out, one
    /// by one, rather than failing the set.
    pub(super) async fn expanded_scope(&self, granted: &str) -> Result<String, OAuthError> {
        let perms = Permissions::parse(granted).map_err(|e| OAuthError::server(e.to_string()))?;
        if perms.includes().is_empty() {
            return Ok(granted.to_owned());
        }
        let mut tokens: Vec<String> = perms
            .tokens()
            .iter()
            .filter(|t| !t.starts_with("include:"))
            .cloned()
            .collect();
        for i in perms.includes() {
            let set = self.permission_set(&i.nsid).await?;
            for t in permission_set::expand(&set, i.aud.as_deref()) {
                if Permissions::parse(&format!("atproto {t}")).is_ok() && !tokens.contains(&t) {
                    tokens.push(t);
                }
            }
        }
        Ok(tokens.join(" "))
    }

    /// What the consent page says about the sets a scope includes: their titles and details.
    pub(super) async fn set_descriptions(&self, perms: &Permissions) -> Vec<String> {
        let mut lines = vec![];
        for i in perms.includes() {
            if let Ok(set) = self.permission_set(&i.nsid).await {
                match (&set.title, &set.detail) {
                    (Some(t), Some(d)) => lines.push(format!("{t}: {d}")),
                    (Some(t), None) => lines.push(t.clone()),
                    (None, Some(d)) => lines.push(d.clone()),
                    (None, None) => {}
                }
            }
        }
        lines
    }
}
