//! Plain words for each permission, for the consent page.

use super::*;

#[derive(Default)]
pub(super) struct Lines(pub(super) Vec<String>);

impl Lines {
    pub(super) fn push(&mut self, line: String) {
        if !self.0.contains(&line) {
            self.0.push(line);
        }
    }
}

/// "a", "a and b", "a, b and c".
pub(super) fn join_words(words: &[&str]) -> String {
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

pub(super) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn repo_line(collections: &[String], actions: &[RepoAction]) -> String {
    // Canonical order, whatever order the token listed them in.
    let verbs: Vec<&str> = ALL_REPO_ACTIONS
        .iter()
        .filter(|a| actions.contains(a))
        .map(|a| match a {
            RepoAction::Create => "create",
            RepoAction::Update => "change",
            RepoAction::Delete => "delete",
        })
        .collect();
    let verbs = capitalize(&join_words(&verbs));
    if collections.iter().any(|c| c == "*") {
        format!("{verbs} any record in your repository")
    } else if let [one] = collections {
        format!("{verbs} records of type {one}")
    } else {
        format!("{verbs} records of types {}", collections.join(", "))
    }
}

pub(super) fn blob_line(accept: &[String]) -> String {
    if accept.iter().any(|a| a == "*/*") {
        return "Upload files of any type".to_owned();
    }
    let mut kinds: Vec<&str> = Vec::new();
    for a in accept {
        let kind = match a.split_once('/').map(|(ty, _)| ty) {
            Some("image") => "images",
            Some("video") => "videos",
            Some("audio") => "audio",
            Some("text") => "text files",
            _ => "files",
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    format!("Upload {} ({})", join_words(&kinds), accept.join(", "))
}

pub(super) fn rpc_line(g: &RpcGrant) -> String {
    let what = if g.lxms.iter().any(|l| l == "*") {
        "any method".to_owned()
    } else {
        g.lxms.join(", ")
    };
    if g.aud == "*" {
        format!("Call {what} at any service")
    } else {
        format!("Call {what} at {}", g.aud)
    }
}

pub(super) fn account_line(attr: AccountAttr, action: AccountAction) -> &'static str {
    match (attr, action) {
        (AccountAttr::Email, AccountAction::Read) => "Read your email address",
        (AccountAttr::Email, AccountAction::Manage) => "Read and change your email address",
        (AccountAttr::Repo, AccountAction::Read) => "See the status of your repository",
        (AccountAttr::Repo, AccountAction::Manage) => {
            "Replace your whole repository (import a repository)"
        }
        (AccountAttr::Status, AccountAction::Read) => "See whether your account is active",
        (AccountAttr::Status, AccountAction::Manage) => {
            "See whether your account is active (changing it stays with you)"
        }
    }
}

pub(super) fn identity_line(attr: IdentityAttr) -> &'static str {
    match attr {
        IdentityAttr::Handle => "Change your handle",
        IdentityAttr::Any => "Change your handle and your whole identity (DID document and keys)",
    }
}

pub(super) fn include_line(inc: &Include) -> String {
    match &inc.aud {
        Some(aud) => format!("Permissions from the set {} for {aud}", inc.nsid),
        None => format!("Permissions from the set {}", inc.nsid),
    }
}
