//! OAuth scopes as this PDS reads them when it acts as the resource server: parsing the
//! space-separated scope string of a grant and answering "may this token do X?".
//!
//! Scopes are parsed strictly at the top level. A client that asks for something we do not
//! understand gets a clear refusal at authorization time rather than a token that silently
//! grants less than the user was shown. (Permission sets are the exception the spec makes,
//! where unknown entries are skipped; expanding them is done elsewhere, and this module only
//! records the `include:` tokens.)
//!
//! Pure like the rest of `auth`: no I/O, no clock, no SQL. Every input, however odd, yields
//! a value or a [`ScopeError`]; nothing here panics.

use std::collections::HashSet;

use crate::auth::methods::{is_privileged, is_protected};
use crate::syntax::{is_valid_did, is_valid_nsid};

/// Upper bound on the whole scope string. Real grants are a few hundred bytes; the bound
/// keeps parsing and the stored token row small whatever a client sends.
pub const MAX_SCOPE_LEN: usize = 4096;
/// Upper bound on the number of tokens, for the same reason.
pub const MAX_SCOPE_TOKENS: usize = 64;

const ATPROTO: &str = "atproto";
const TRANSITION_GENERIC: &str = "transition:generic";
const TRANSITION_CHAT: &str = "transition:chat.bsky";
const TRANSITION_EMAIL: &str = "transition:email";

/// Prefix of every direct-message method; `transition:chat.bsky` unlocks exactly these.
const CHAT_PREFIX: &str = "chat.bsky.";

/// A scope string that is refused. Every variant that concerns one token names it, so the
/// message can go back to the client as an `invalid_scope` description. Tokens are shown
/// quoted (`{:?}`) because they come from the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is {len} bytes long; at most {max} are allowed", max = MAX_SCOPE_LEN)]
    TooLong { len: usize },
    #[error("scope has {count} tokens; at most {max} are allowed", max = MAX_SCOPE_TOKENS)]
    TooManyTokens { count: usize },
    #[error("scope must include `atproto`")]
    MissingAtproto,
    #[error("`transition:chat.bsky` requires `transition:generic`")]
    ChatWithoutGeneric,
    #[error("unknown scope {token:?}")]
    UnknownResource { token: String },
    #[error("malformed scope {token:?}: {reason}")]
    Malformed { token: String, reason: &'static str },
    #[error("scope {token:?}: unknown parameter {param:?}")]
    UnknownParam { token: String, param: String },
    #[error("scope {token:?}: `{param}` is given both positionally and as a query parameter")]
    PositionalRepeated { token: String, param: &'static str },
    #[error("scope {token:?}: `{param}` is missing")]
    MissingParam { token: String, param: &'static str },
    #[error("scope {token:?}: `{param}` may be given only once")]
    RepeatedParam { token: String, param: &'static str },
    #[error("scope {token:?}: {value:?} is not a valid `{param}` (expected {expected})")]
    InvalidValue {
        token: String,
        param: &'static str,
        value: String,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoAction {
    Create,
    Update,
    Delete,
}

/// In the order used for display ("create, change and delete").
const ALL_REPO_ACTIONS: [RepoAction; 3] =
    [RepoAction::Create, RepoAction::Update, RepoAction::Delete];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAttr {
    Email,
    Repo,
    /// Whether the account is active (the reference accepts it; perch parses it so such
    /// apps can sign in, and grants nothing with it: (de)activation stays for password
    /// sessions).
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    Read,
    Manage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAttr {
    Handle,
    /// `identity:*`: every identity operation, including PLC operations.
    Any,
}

/// An `include:<nsid>[?aud=...]` token: a permission set to resolve and expand elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub nsid: String,
    /// The audience handed to the set's `inheritAud` rpc permissions.
    pub aud: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoGrant {
    /// NSIDs, or `*` for every collection.
    collections: Vec<String>,
    actions: Vec<RepoAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RpcGrant {
    /// NSIDs, or `*` for every method.
    lxms: Vec<String>,
    /// `did#service`, or `*` for every service.
    aud: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobGrant {
    /// Lower-cased `type/subtype`, `type/*` or `*/*`.
    accept: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AccountGrant {
    attr: AccountAttr,
    action: AccountAction,
}

/// What one granted scope string allows. `Default` is a grant of nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    tokens: Vec<String>,
    generic: bool,
    chat: bool,
    email: bool,
    repo: Vec<RepoGrant>,
    rpc: Vec<RpcGrant>,
    blob: Vec<BlobGrant>,
    account: Vec<AccountGrant>,
    identity: Vec<IdentityAttr>,
    includes: Vec<Include>,
}

impl Permissions {
    /// Parses a scope string (tokens separated by spaces; runs of spaces are tolerated).
    pub fn parse(scope: &str) -> Result<Permissions, ScopeError> {
        if scope.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong { len: scope.len() });
        }
        let raw: Vec<&str> = split_scope(scope).collect();
        if raw.len() > MAX_SCOPE_TOKENS {
            return Err(ScopeError::TooManyTokens { count: raw.len() });
        }
        let mut perms = Permissions::default();
        let mut has_atproto = false;
        for token in raw {
            if perms.tokens.iter().any(|t| t == token) {
                continue;
            }
            has_atproto |= token == ATPROTO;
            perms.add_token(token)?;
            perms.tokens.push(token.to_owned());
        }
        if !has_atproto {
            return Err(ScopeError::MissingAtproto);
        }
        if perms.chat && !perms.generic {
            return Err(ScopeError::ChatWithoutGeneric);
        }
        Ok(perms)
    }

    /// The tokens as given, deduplicated, in order (for storing and for the token response
    /// `scope`).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The `include:` tokens, in order. Resolving them is the caller's job.
    pub fn includes(&self) -> &[Include] {
        &self.includes
    }

    /// May the token create/update/delete a record in `collection`? A collection that is
    /// not a valid NSID is never allowed, so a malformed name cannot ride on a wildcard.
    pub fn allows_repo(&self, collection: &str, action: RepoAction) -> bool {
        if !is_valid_nsid(collection) {
            return false;
        }
        self.generic
            || self.repo.iter().any(|g| {
                g.actions.contains(&action)
                    && g.collections.iter().any(|c| c == "*" || c == collection)
            })
    }

    /// May the token upload a blob with this `Content-Type`? Parameters after `;` are
    /// ignored and the comparison is case-insensitive. `transition:generic` allows any
    /// content type, as an app password does.
    pub fn allows_blob(&self, mime: &str) -> bool {
        if self.generic {
            return true;
        }
        let Some(mime) = normalize_content_type(mime) else {
            return false;
        };
        self.blob
            .iter()
            .any(|g| g.accept.iter().any(|a| accept_matches(a, &mime)))
    }

    /// May the token call method `lxm` on service `aud` (proxying or `getServiceAuth`)?
    ///
    /// Protected methods are never reachable through OAuth scopes (they are account
    /// management, handled by this server itself). The audience must match exactly,
    /// `did#fragment` included: a grant for `did:web:x#a` does not cover `did:web:x`.
    pub fn allows_rpc(&self, lxm: &str, aud: &str) -> bool {
        if !is_valid_nsid(lxm) || is_protected(lxm) {
            return false;
        }
        if self.generic && !is_privileged(lxm) {
            return true;
        }
        if self.generic && self.chat && lxm.starts_with(CHAT_PREFIX) {
            return true;
        }
        self.rpc
            .iter()
            .any(|g| (g.aud == "*" || g.aud == aud) && g.lxms.iter().any(|l| l == "*" || l == lxm))
    }

    /// Account attributes. `manage` implies `read`; `transition:email` grants reading
    /// the email address (as in the reference PDS).
    pub fn allows_account(&self, attr: AccountAttr, action: AccountAction) -> bool {
        if attr == AccountAttr::Email && action == AccountAction::Read && self.email {
            return true;
        }
        self.account
            .iter()
            .any(|g| g.attr == attr && (g.action == AccountAction::Manage || g.action == action))
    }

    /// Identity operations. `identity:*` covers the handle too; asking for
    /// [`IdentityAttr::Any`] (e.g. signing a PLC operation) needs `identity:*` itself.
    pub fn allows_identity(&self, attr: IdentityAttr) -> bool {
        self.identity
            .iter()
            .any(|&g| g == IdentityAttr::Any || g == attr)
    }

    /// Whether `getSession` may include `email`/`emailConfirmed`.
    pub fn email_readable(&self) -> bool {
        self.allows_account(AccountAttr::Email, AccountAction::Read)
    }

    /// True if every granted token appears, as an exact string, among the tokens of the
    /// client's declared `scope` (the client metadata must be a superset of any request).
    pub fn is_subset_of_client(&self, client_scope: &str) -> bool {
        let declared: HashSet<&str> = split_scope(client_scope).collect();
        self.tokens.iter().all(|t| declared.contains(t.as_str()))
    }

    /// Plain-English lines for a consent page, one per permission, without repeats. The
    /// identity line comes first (every grant includes it), then the transitional grants,
    /// then granular ones grouped by resource in the order they were given.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Lines::default();
        lines.push("Know your account's identity (handle and DID)".to_owned());
        if self.generic {
            lines.push(repo_line(&["*".to_owned()], &ALL_REPO_ACTIONS));
            lines.push("Upload files of any type".to_owned());
            lines.push(
                "Call other services on your behalf, except direct messages and account \
                 management"
                    .to_owned(),
            );
        }
        if self.chat {
            lines.push("Send and read your direct messages (chat.bsky)".to_owned());
        }
        if self.email {
            lines.push(account_line(AccountAttr::Email, AccountAction::Read).to_owned());
        }
        for g in &self.repo {
            lines.push(repo_line(&g.collections, &g.actions));
        }
        for g in &self.blob {
            lines.push(blob_line(&g.accept));
        }
        for g in &self.rpc {
            lines.push(rpc_line(g));
        }
        for g in &self.account {
            lines.push(account_line(g.attr, g.action).to_owned());
        }
        for &g in &self.identity {
            lines.push(identity_line(g).to_owned());
        }
        for inc in &self.includes {
            lines.push(include_line(inc));
        }
        lines.0
    }

    /// Records one (new) token. Exact-match scopes first, then the resource syntax.
    fn add_token(&mut self, token: &str) -> Result<(), ScopeError> {
        if !is_scope_token(token) {
            return Err(malformed(
                token,
                "contains characters not allowed in a scope token",
            ));
        }
        match token {
            ATPROTO => return Ok(()),
            TRANSITION_GENERIC => self.generic = true,
            TRANSITION_CHAT => self.chat = true,
            TRANSITION_EMAIL => self.email = true,
            _ => self.add_resource(&RawToken::split(token)?)?,
        }
        Ok(())
    }

    fn add_resource(&mut self, raw: &RawToken<'_>) -> Result<(), ScopeError> {
        match raw.resource {
            "repo" => self.repo.push(parse_repo(raw)?),
            "rpc" => self.rpc.push(parse_rpc(raw)?),
            "blob" => self.blob.push(parse_blob(raw)?),
            "account" => self.account.push(parse_account(raw)?),
            "identity" => self.identity.push(parse_identity(raw)?),
            "include" => self.includes.push(parse_include(raw)?),
            _ => {
                return Err(ScopeError::UnknownResource {
                    token: raw.token.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Tokens are separated by single spaces (RFC 6749 §3.3); empty pieces from doubled or
/// trailing spaces are skipped rather than refused, since they carry no meaning.
fn split_scope(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|t| !t.is_empty())
}

/// RFC 6749 `scope-token`: printable ASCII except space, `"` and `\`. Checking this first
/// also makes every later byte-level split safe.
fn is_scope_token(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn malformed(token: &str, reason: &'static str) -> ScopeError {
    ScopeError::Malformed {
        token: token.to_owned(),
        reason,
    }
}

/// `resource[:positional][?name=value&...]`, values percent-decoded.
struct RawToken<'a> {
    token: &'a str,
    resource: &'a str,
    positional: Option<String>,
    params: Vec<(String, String)>,
}

impl<'a> RawToken<'a> {
    fn split(token: &'a str) -> Result<RawToken<'a>, ScopeError> {
        // The first `?` ends the positional part, so a `:` inside the query is just data.
        let (head, query) = match token.split_once('?') {
            Some((head, query)) => (head, Some(query)),
            None => (token, None),
        };
        let (resource, positional) = match head.split_once(':') {
            Some((resource, positional)) => (resource, Some(positional)),
            None => (head, None),
        };
        let positional = match positional {
            Some("") => return Err(malformed(token, "empty value after `:`")),
            Some(p) => Some(percent_decode(token, p)?),
            None => None,
        };
        let params = match query {
            Some("") => return Err(malformed(token, "empty query after `?`")),
            Some(q) => parse_query(token, q)?,
            None => Vec::new(),
        };
        Ok(RawToken {
            token,
            resource,
            positional,
            params,
        })
    }

    fn err_missing(&self, param: &'static str) -> ScopeError {
        ScopeError::MissingParam {
            token: self.token.to_owned(),
            param,
        }
    }

    fn invalid(&self, param: &'static str, value: &str, expected: &'static str) -> ScopeError {
        ScopeError::InvalidValue {
            token: self.token.to_owned(),
            param,
            value: value.to_owned(),
            expected,
        }
    }

    /// Refuses any query parameter the resource does not define.
    fn only_params(&self, allowed: &[&str]) -> Result<(), ScopeError> {
        match self
            .params
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ScopeError::UnknownParam {
                token: self.token.to_owned(),
                param: k.clone(),
            }),
            None => Ok(()),
        }
    }

    /// All values of `name`; for the resource's positional parameter the positional value
    /// counts too, but it may not also appear in the query.
    fn multi(&self, name: &'static str, is_positional: bool) -> Result<Vec<String>, ScopeError> {
        let named: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        match (&self.positional, is_positional) {
            (Some(_), true) if !named.is_empty() => Err(ScopeError::PositionalRepeated {
                token: self.token.to_owned(),
                param: name,
            }),
            (Some(p), true) => Ok(vec![p.clone()]),
            _ => Ok(named),
        }
    }

    fn single(
        &self,
        name: &'static str,
        is_positional: bool,
    ) -> Result<Option<String>, ScopeError> {
        let mut values = self.multi(name, is_positional)?;
        if values.len() > 1 {
            return Err(ScopeError::RepeatedParam {
                token: self.token.to_owned(),
                param: name,
            });
        }
        Ok(values.pop())
    }

    fn required_multi(
        &self,
        name: &'static str,
        is_positional: bool,
    ) -> Result<Vec<String>, ScopeError> {
        let values = self.multi(name, is_positional)?;
        if values.is_empty() {
            return Err(self.err_missing(name));
        }
        Ok(values)
    }

    fn required_single(
        &self,
        name: &'static str,
        is_positional: bool,
    ) -> Result<String, ScopeError> {
        self.single(name, is_positional)?
            .ok_or_else(|| self.err_missing(name))
    }
}

fn parse_query(token: &str, query: &str) -> Result<Vec<(String, String)>, ScopeError> {
    query
        .split('&')
        .map(|pair| {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(malformed(token, "query parameter without `=`"));
            };
            if k.is_empty() {
                return Err(malformed(token, "query parameter with an empty name"));
            }
            Ok((percent_decode(token, k)?, percent_decode(token, v)?))
        })
        .collect()
}

/// `%XX` escapes only (a `+` stays a `+`: MIME types such as `application/atom+xml` use it
/// literally, and a space could never be valid anyway).
fn percent_decode(token: &str, s: &str) -> Result<String, ScopeError> {
    crate::syntax::form::percent_decode_strict(s)
        .ok_or_else(|| malformed(token, "invalid percent-encoding (or not UTF-8)"))
}

const NSID_OR_STAR: &str = "an NSID or `*`";

fn parse_repo(raw: &RawToken<'_>) -> Result<RepoGrant, ScopeError> {
    raw.only_params(&["collection", "action"])?;
    let collections = raw.required_multi("collection", true)?;
    if let Some(bad) = collections.iter().find(|c| !is_nsid_or_star(c)) {
        return Err(raw.invalid("collection", bad, NSID_OR_STAR));
    }
    let mut actions = Vec::new();
    for value in raw.multi("action", false)? {
        let action = match value.as_str() {
            "create" => RepoAction::Create,
            "update" => RepoAction::Update,
            "delete" => RepoAction::Delete,
            _ => return Err(raw.invalid("action", &value, "`create`, `update` or `delete`")),
        };
        if !actions.contains(&action) {
            actions.push(action);
        }
    }
    if actions.is_empty() {
        actions = ALL_REPO_ACTIONS.to_vec();
    }
    Ok(RepoGrant {
        collections,
        actions,
    })
}

/// `inheritAud` is refused here: it only has a meaning inside a permission set, where the
/// `include:` token supplies the audience. At the top level it would silently grant
/// nothing, which is worse than telling the client.
fn parse_rpc(raw: &RawToken<'_>) -> Result<RpcGrant, ScopeError> {
    if raw.params.iter().any(|(k, _)| k == "inheritAud") {
        return Err(malformed(
            raw.token,
            "`inheritAud` is only allowed inside permission sets",
        ));
    }
    raw.only_params(&["lxm", "aud"])?;
    let lxms = raw.required_multi("lxm", true)?;
    if let Some(bad) = lxms.iter().find(|l| !is_nsid_or_star(l)) {
        return Err(raw.invalid("lxm", bad, NSID_OR_STAR));
    }
    let aud = raw.required_single("aud", false)?;
    if aud != "*" && !is_audience(&aud) {
        return Err(raw.invalid("aud", &aud, "`did#service` or `*`"));
    }
    if aud == "*" && lxms.iter().any(|l| l == "*") {
        return Err(malformed(raw.token, "`lxm` and `aud` may not both be `*`"));
    }
    Ok(RpcGrant { lxms, aud })
}

fn parse_blob(raw: &RawToken<'_>) -> Result<BlobGrant, ScopeError> {
    raw.only_params(&["accept"])?;
    let mut accept = Vec::new();
    for value in raw.required_multi("accept", true)? {
        if !is_accept(&value) {
            return Err(raw.invalid("accept", &value, "a MIME type, `type/*` or `*/*`"));
        }
        // MIME types are case-insensitive; storing lower case keeps matching a plain compare.
        let value = value.to_ascii_lowercase();
        if !accept.contains(&value) {
            accept.push(value);
        }
    }
    Ok(BlobGrant { accept })
}

fn parse_account(raw: &RawToken<'_>) -> Result<AccountGrant, ScopeError> {
    raw.only_params(&["attr", "action"])?;
    let attr = raw.required_single("attr", true)?;
    let attr = match attr.as_str() {
        "email" => AccountAttr::Email,
        "repo" => AccountAttr::Repo,
        "status" => AccountAttr::Status,
        _ => return Err(raw.invalid("attr", &attr, "`email`, `repo` or `status`")),
    };
    let action = match raw.single("action", false)?.as_deref() {
        None | Some("read") => AccountAction::Read,
        Some("manage") => AccountAction::Manage,
        Some(other) => return Err(raw.invalid("action", other, "`read` or `manage`")),
    };
    Ok(AccountGrant { attr, action })
}

fn parse_identity(raw: &RawToken<'_>) -> Result<IdentityAttr, ScopeError> {
    raw.only_params(&["attr"])?;
    let attr = raw.required_single("attr", true)?;
    match attr.as_str() {
        "handle" => Ok(IdentityAttr::Handle),
        "*" => Ok(IdentityAttr::Any),
        _ => Err(raw.invalid("attr", &attr, "`handle` or `*`")),
    }
}

/// The audience of an include must be concrete: it is what the set's `inheritAud`
/// permissions get, and a wildcard there would widen every such permission.
fn parse_include(raw: &RawToken<'_>) -> Result<Include, ScopeError> {
    raw.only_params(&["nsid", "aud"])?;
    let nsid = raw.required_single("nsid", true)?;
    if !is_valid_nsid(&nsid) {
        return Err(raw.invalid("nsid", &nsid, "a permission-set NSID"));
    }
    let aud = raw.single("aud", false)?;
    if let Some(aud) = &aud
        && !is_audience(aud)
    {
        return Err(raw.invalid("aud", aud, "`did#service`"));
    }
    Ok(Include { nsid, aud })
}

fn is_nsid_or_star(s: &str) -> bool {
    s == "*" || is_valid_nsid(s)
}

/// `did#service`: a valid DID plus a non-empty fragment naming a service entry in its DID
/// document. The fragment is only compared, never interpreted, so any printable ASCII
/// other than `#` is accepted.
fn is_audience(s: &str) -> bool {
    let Some((did, fragment)) = s.split_once('#') else {
        return false;
    };
    is_valid_did(did)
        && !fragment.is_empty()
        && fragment.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// `type/subtype`, `type/*` or `*/*`.
fn is_accept(s: &str) -> bool {
    match s.split_once('/') {
        Some(("*", sub)) => sub == "*",
        Some((ty, sub)) => is_mime_name(ty) && (sub == "*" || is_mime_name(sub)),
        None => false,
    }
}

/// RFC 6838 `restricted-name`. It excludes `/` and `*`, so a second slash or a stray
/// wildcard is refused by the callers without extra checks.
fn is_mime_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.len() <= 127
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// The bare lower-cased `type/subtype` of a `Content-Type` value, or `None` if it is not
/// a concrete MIME type (a wildcard content type must not match a narrower grant).
fn normalize_content_type(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let (ty, sub) = essence.split_once('/')?;
    (is_mime_name(ty) && is_mime_name(sub)).then(|| essence.to_ascii_lowercase())
}

/// Both arguments are already lower case: `accept` from parsing, `mime` from
/// [`normalize_content_type`].
fn accept_matches(accept: &str, mime: &str) -> bool {
    match accept.strip_suffix("/*") {
        Some("*") => true,
        Some(ty) => mime.split_once('/').is_some_and(|(t, _)| t == ty),
        None => accept == mime,
    }
}

/// Collects consent lines, dropping repeats (e.g. `transition:email` and `account:email`).
mod describe;
use describe::*;

#[cfg(test)]
mod tests;
