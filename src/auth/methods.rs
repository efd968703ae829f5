//! Which XRPC methods a session may reach through another service (proxying, or a
//! service-auth token from `getServiceAuth`). The lists follow the reference PDS.

/// Account management: only ever called on this server directly, never proxied and never
/// granted as a service-auth token (a token for these would let another service act as
/// the account's own PDS).
pub const PROTECTED: &[&str] = &[
    "com.atproto.admin.sendEmail",
    "com.atproto.identity.requestPlcOperationSignature",
    "com.atproto.identity.signPlcOperation",
    "com.atproto.identity.updateHandle",
    "com.atproto.server.activateAccount",
    "com.atproto.server.confirmEmail",
    "com.atproto.server.createAppPassword",
    "com.atproto.server.deactivateAccount",
    "com.atproto.server.getAccountInviteCodes",
    "com.atproto.server.getSession",
    "com.atproto.server.listAppPasswords",
    "com.atproto.server.requestAccountDelete",
    "com.atproto.server.requestEmailConfirmation",
    "com.atproto.server.requestEmailUpdate",
    "com.atproto.server.revokeAppPassword",
    "com.atproto.server.updateEmail",
];

pub fn is_protected(nsid: &str) -> bool {
    PROTECTED.contains(&nsid)
}

/// Methods only full sessions and privileged app passwords may reach: direct messages
/// (every `chat.bsky.*` method) and creating an account elsewhere with this DID (the first
/// step of moving the account away).
pub fn is_privileged(nsid: &str) -> bool {
    nsid.starts_with("chat.bsky.") || nsid == "com.atproto.server.createAccount"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert!(is_protected("com.atproto.server.getSession"));
        assert!(!is_protected("com.atproto.server.getSessionX"));
        assert!(!is_protected("app.bsky.feed.getTimeline"));
        assert!(is_privileged("chat.bsky.convo.getMessages"));
        assert!(is_privileged("com.atproto.server.createAccount"));
        assert!(!is_privileged("chat.bsky"));
        assert!(!is_privileged("app.bsky.feed.getTimeline"));
    }
}
