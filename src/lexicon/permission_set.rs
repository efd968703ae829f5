//! Permission sets: Lexicon documents whose main definition is a `permission-set`, which an
//! OAuth scope names as `include:<nsid>`. This reads one (strictly: the document's own
//! shape; unknown resources and fields inside a permission are skipped, as the spec asks, so
//! a newer set still grants what this server understands) and expands it into the plain
//! scope tokens it stands for, keeping only what the set may grant: resources in its own
//! namespace.

use serde_json::Value;

use crate::syntax;

/// More than this many permissions (or values in one field) is not a real set.
const MAX_PERMISSIONS: usize = 64;
const MAX_VALUES: usize = 64;
const MAX_TEXT: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionSet {
    pub nsid: String,
    pub title: Option<String>,
    pub detail: Option<String>,
    pub permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    Repo {
        collections: Vec<String>,
        actions: Vec<String>,
    },
    Rpc {
        lxms: Vec<String>,
        aud: Option<String>,
        inherit_aud: bool,
    },
}

fn strings(p: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match p.get(key) {
        None => Ok(vec![]),
        Some(Value::Array(a)) if a.len() <= MAX_VALUES => a
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| s.len() <= MAX_TEXT)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{key} must hold short strings"))
            })
            .collect(),
        Some(_) => Err(format!(
            "{key} must be an array of at most {MAX_VALUES} strings"
        )),
    }
}

fn text(m: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a short string")),
    }
}

/// Reads the permission set `nsid` from its Lexicon document.
pub fn parse(nsid: &str, doc: &Value) -> Result<PermissionSet, String> {
    if doc.get("lexicon").and_then(Value::as_i64) != Some(1) {
        return Err("not a Lexicon version 1 document".into());
    }
    if doc.get("id").and_then(Value::as_str) != Some(nsid) {
        return Err(format!("the document's id is not {nsid}"));
    }
    let main = doc
        .get("defs")
        .and_then(|d| d.get("main"))
        .and_then(Value::as_object)
        .ok_or("the document has no main definition")?;
    if main.get("type").and_then(Value::as_str) != Some("permission-set") {
        return Err("its main definition is not a permission-set".into());
    }
    let list = match main.get("permissions") {
        Some(Value::Array(a)) if a.len() <= MAX_PERMISSIONS => a,
        _ => {
            return Err(format!(
                "permissions must be an array of at most {MAX_PERMISSIONS}"
            ));
        }
    };
    let mut permissions = vec![];
    for p in list {
        let p = p.as_object().ok_or("a permission is not an object")?;
        if p.get("type").and_then(Value::as_str) != Some("permission") {
            return Err("a permission's type is not \"permission\"".into());
        }
        match p.get("resource").and_then(Value::as_str) {
            Some("repo") => permissions.push(Permission::Repo {
                collections: strings(p, "collection")?,
                actions: strings(p, "action")?,
            }),
            Some("rpc") => permissions.push(Permission::Rpc {
                lxms: strings(p, "lxm")?,
                aud: text(p, "aud")?,
                inherit_aud: p.get("inheritAud").and_then(Value::as_bool) == Some(true),
            }),
            Some(_) => {}
            None => return Err("a permission has no resource".into()),
        }
    }
    Ok(PermissionSet {
        nsid: nsid.to_owned(),
        title: text(main, "title")?,
        detail: text(main, "detail")?,
        permissions,
    })
}

/// The NSID's authority as a domain name: all segments but the name, in hostname order
/// (`app.toy.record` → `toy.app`). Its `_lexicon` TXT record names the DID that publishes it.
pub fn authority_domain(nsid: &str) -> Option<String> {
    syntax::validate_nsid(nsid).ok()?;
    let mut segs: Vec<&str> = nsid.split('.').collect();
    segs.pop();
    segs.reverse();
    Some(segs.join("."))
}

/// Whether `nsid` lies in the set's namespace: the set's own group or below it
/// (`com.example.auth` may grant `com.example.*` and `com.example.sub.*`).
fn in_namespace(set: &str, nsid: &str) -> bool {
    let Some((group, _)) = set.rsplit_once('.') else {
        return false;
    };
    nsid.strip_prefix(group)
        .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
        && syntax::validate_nsid(nsid).is_ok()
}

fn encode(s: &str) -> String {
    crate::syntax::form::percent_encode(s)
}

/// The plain scope tokens the set stands for, given the `aud` of the `include:` that named
/// it (for `inheritAud` permissions). Anything outside the set's namespace, wildcards
/// (which would reach beyond it), and RPC permissions without an audience are left out.
pub fn expand(set: &PermissionSet, aud: Option<&str>) -> Vec<String> {
    let mut out = vec![];
    for p in &set.permissions {
        match p {
            Permission::Repo {
                collections,
                actions,
            } => {
                let actions: Vec<&String> = actions
                    .iter()
                    .filter(|a| matches!(a.as_str(), "create" | "update" | "delete"))
                    .collect();
                for c in collections.iter().filter(|c| in_namespace(&set.nsid, c)) {
                    let query: Vec<String> =
                        actions.iter().map(|a| format!("action={a}")).collect();
                    if query.is_empty() {
                        out.push(format!("repo:{c}"));
                    } else {
                        out.push(format!("repo:{c}?{}", query.join("&")));
                    }
                }
            }
            Permission::Rpc {
                lxms,
                aud: own,
                inherit_aud,
            } => {
                let aud = if *inherit_aud { aud } else { own.as_deref() };
                let Some(aud) = aud else { continue };
                for l in lxms.iter().filter(|l| in_namespace(&set.nsid, l)) {
                    out.push(format!("rpc:{l}?aud={}", encode(aud)));
                }
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "lexicon": 1,
            "id": "com.example.authBasic",
            "defs": { "main": {
                "type": "permission-set",
                "title": "Basic features",
                "detail": "Post notes and read your calendar",
                "permissions": [
                    { "type": "permission", "resource": "repo",
                      "collection": ["com.example.note", "app.bsky.feed.post", "com.example.sub.item"],
                      "action": ["create", "bogus"] },
                    { "type": "permission", "resource": "rpc", "lxm": ["com.example.getThing", "*"],
                      "inheritAud": true },
                    { "type": "permission", "resource": "rpc", "lxm": ["com.example.list"],
                      "aud": "did:web:cal.example#svc" },
                    { "type": "permission", "resource": "rpc", "lxm": ["com.example.noAud"] },
                    { "type": "permission", "resource": "teleport", "where": "anywhere" }
                ]
            }}
        })
    }

    #[test]
    fn expands_within_its_namespace_only() {
        let set = parse("com.example.authBasic", &doc()).unwrap();
        assert_eq!(set.title.as_deref(), Some("Basic features"));
        let tokens = expand(&set, Some("did:web:api.example#app"));
        assert_eq!(
            tokens,
            vec![
                "repo:com.example.note?action=create",
                "repo:com.example.sub.item?action=create",
                "rpc:com.example.getThing?aud=did%3Aweb%3Aapi.example%23app",
                "rpc:com.example.list?aud=did%3Aweb%3Acal.example%23svc",
            ]
        );
        // Without an audience to inherit, inheritAud permissions grant nothing.
        assert_eq!(expand(&set, None).len(), 3);
    }

    #[test]
    fn refuses_what_is_not_a_permission_set() {
        let mut d = doc();
        assert!(parse("com.example.other", &d).is_err(), "id must match");
        d["defs"]["main"]["type"] = json!("record");
        assert!(parse("com.example.authBasic", &d).is_err());
        let mut d = doc();
        d["defs"]["main"]["permissions"] = json!("all");
        assert!(parse("com.example.authBasic", &d).is_err());
        let mut d = doc();
        d["defs"]["main"]["permissions"][0]["collection"] = json!([1, 2]);
        assert!(parse("com.example.authBasic", &d).is_err());
        let mut d = doc();
        d["lexicon"] = json!(2);
        assert!(parse("com.example.authBasic", &d).is_err());
    }

    #[test]
    fn authority_domains_are_reversed() {
        assert_eq!(
            authority_domain("app.toy.record").as_deref(),
            Some("toy.app")
        );
        assert_eq!(
            authority_domain("com.example.sub.authBasic").as_deref(),
            Some("sub.example.com")
        );
        assert_eq!(authority_domain("not an nsid"), None);
    }
}
