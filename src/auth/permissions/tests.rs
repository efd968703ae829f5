use super::*;

const APPVIEW: &str = "did:web:api.bsky.app#bsky_appview";

fn parse(extra: &str) -> Permissions {
    let scope = format!("atproto {extra}");
    match Permissions::parse(&scope) {
        Ok(p) => p,
        Err(e) => panic!("{scope:?} should parse: {e}"),
    }
}

fn refuse(extra: &str) -> ScopeError {
    let scope = format!("atproto {extra}");
    match Permissions::parse(&scope) {
        Ok(p) => panic!("{scope:?} should be refused, got {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn atproto_alone_grants_nothing() {
    let p = parse("");
    assert_eq!(p.tokens(), ["atproto"]);
    assert!(!p.allows_repo("app.bsky.feed.post", RepoAction::Create));
    assert!(!p.allows_blob("image/png"));
    assert!(!p.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    assert!(!p.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!p.allows_identity(IdentityAttr::Handle));
    assert!(!p.email_readable());
    assert!(p.includes().is_empty());
    assert_eq!(
        p.describe(),
        ["Know your account's identity (handle and DID)"]
    );
}

#[test]
fn repo_single_collection() {
    let p = parse("repo:app.bsky.feed.post");
    for a in ALL_REPO_ACTIONS {
        assert!(p.allows_repo("app.bsky.feed.post", a));
        assert!(!p.allows_repo("app.bsky.feed.like", a));
    }
    assert_eq!(
        p.describe()[1],
        "Create, change and delete records of type app.bsky.feed.post"
    );
}

#[test]
fn repo_wildcard_with_action() {
    let p = parse("repo:*?action=delete");
    assert!(p.allows_repo("app.bsky.feed.post", RepoAction::Delete));
    assert!(p.allows_repo("com.example.thing", RepoAction::Delete));
    assert!(!p.allows_repo("app.bsky.feed.post", RepoAction::Create));
    assert!(!p.allows_repo("app.bsky.feed.post", RepoAction::Update));
    // A wildcard does not cover strings that are not collections at all.
    assert!(!p.allows_repo("not a collection", RepoAction::Delete));
    assert!(!p.allows_repo("", RepoAction::Delete));
    assert_eq!(p.describe()[1], "Delete any record in your repository");
}

#[test]
fn repo_query_collections() {
    let p = parse("repo?collection=a.b.c&collection=a.b.d");
    assert!(p.allows_repo("a.b.c", RepoAction::Update));
    assert!(p.allows_repo("a.b.d", RepoAction::Create));
    assert!(!p.allows_repo("a.b.e", RepoAction::Create));
    assert_eq!(
        p.describe()[1],
        "Create, change and delete records of types a.b.c, a.b.d"
    );
    let p = parse("repo:a.b.c?action=update&action=create&action=update");
    assert!(p.allows_repo("a.b.c", RepoAction::Create));
    assert!(p.allows_repo("a.b.c", RepoAction::Update));
    assert!(!p.allows_repo("a.b.c", RepoAction::Delete));
    assert_eq!(p.describe()[1], "Create and change records of type a.b.c");
}

#[test]
fn rpc_percent_encoded_aud() {
    let p = parse("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview");
    assert!(p.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    // Exact audience only: no fragment, another fragment or another method all miss.
    assert!(!p.allows_rpc("app.bsky.feed.getTimeline", "did:web:api.bsky.app"));
    assert!(!p.allows_rpc("app.bsky.feed.getTimeline", "did:web:api.bsky.app#other"));
    assert!(!p.allows_rpc("app.bsky.feed.getFeed", APPVIEW));
    assert_eq!(
        p.describe()[1],
        "Call app.bsky.feed.getTimeline at did:web:api.bsky.app#bsky_appview"
    );
    // The raw `#` is a legal scope-token character too, and means the same.
    let raw = parse("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app#bsky_appview");
    assert!(raw.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
}

#[test]
fn rpc_wildcards_and_query_form() {
    let p = parse("rpc?lxm=a.b.c&lxm=a.b.d&aud=*");
    assert!(p.allows_rpc("a.b.c", APPVIEW));
    assert!(p.allows_rpc("a.b.d", "did:web:elsewhere.example#svc"));
    assert!(!p.allows_rpc("a.b.e", APPVIEW));
    assert_eq!(p.describe()[1], "Call a.b.c, a.b.d at any service");

    let p = parse("rpc:*?aud=did:web:api.bsky.app%23bsky_appview");
    assert!(p.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    assert!(p.allows_rpc("chat.bsky.convo.getMessages", APPVIEW));
    assert!(!p.allows_rpc("app.bsky.feed.getTimeline", "did:web:x.example#y"));
    // Protected methods are out of reach of every rpc scope.
    assert!(!p.allows_rpc("com.atproto.server.getSession", APPVIEW));
    assert!(!p.allows_rpc("not-an-nsid", APPVIEW));
    assert_eq!(
        p.describe()[1],
        "Call any method at did:web:api.bsky.app#bsky_appview"
    );

    let p = parse("rpc:com.atproto.identity.updateHandle?aud=*");
    assert!(!p.allows_rpc("com.atproto.identity.updateHandle", APPVIEW));
}

#[test]
fn blob_any() {
    let p = parse("blob:*/*");
    assert!(p.allows_blob("image/png"));
    assert!(p.allows_blob("application/octet-stream"));
    assert!(!p.allows_blob("not a mime"));
    assert!(!p.allows_blob(""));
    assert_eq!(p.describe()[1], "Upload files of any type");
}

#[test]
fn blob_query_list() {
    let p = parse("blob?accept=video/*&accept=text/html");
    assert!(p.allows_blob("video/mp4"));
    assert!(p.allows_blob("VIDEO/MP4"));
    assert!(p.allows_blob("text/html; charset=utf-8"));
    assert!(p.allows_blob("Text/HTML"));
    assert!(!p.allows_blob("text/plain"));
    assert!(!p.allows_blob("image/png"));
    // A wildcard content type is not a concrete type and matches nothing narrower.
    assert!(!p.allows_blob("video/*"));
    assert!(!p.allows_blob("videos/mp4"));
    assert_eq!(
        p.describe()[1],
        "Upload videos and text files (video/*, text/html)"
    );

    let p = parse("blob?accept=image/*&accept=video/*");
    assert_eq!(
        p.describe()[1],
        "Upload images and videos (image/*, video/*)"
    );
    let p = parse("blob:Application/Atom+XML");
    assert!(p.allows_blob("application/atom+xml"));
}

#[test]
fn account_scopes() {
    let p = parse("account:email");
    assert!(p.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!p.allows_account(AccountAttr::Email, AccountAction::Manage));
    assert!(!p.allows_account(AccountAttr::Repo, AccountAction::Read));
    assert!(p.email_readable());
    assert_eq!(p.describe()[1], "Read your email address");

    let s = parse("account:status?action=manage");
    assert!(s.allows_account(AccountAttr::Status, AccountAction::Read));
    assert!(!s.allows_account(AccountAttr::Repo, AccountAction::Read));
    let p = parse("account:repo?action=manage");
    assert!(p.allows_account(AccountAttr::Repo, AccountAction::Manage));
    assert!(p.allows_account(AccountAttr::Repo, AccountAction::Read));
    assert!(!p.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!p.email_readable());

    let p = parse("account?attr=email&action=manage");
    assert!(p.allows_account(AccountAttr::Email, AccountAction::Manage));
    assert!(p.email_readable());
    assert_eq!(p.describe()[1], "Read and change your email address");
}

#[test]
fn identity_scopes() {
    let p = parse("identity:handle");
    assert!(p.allows_identity(IdentityAttr::Handle));
    assert!(!p.allows_identity(IdentityAttr::Any));
    assert_eq!(p.describe()[1], "Change your handle");

    let p = parse("identity:*");
    assert!(p.allows_identity(IdentityAttr::Handle));
    assert!(p.allows_identity(IdentityAttr::Any));
    let p = parse("identity:%2A");
    assert!(p.allows_identity(IdentityAttr::Any));
}

#[test]
fn include_is_recorded() {
    let p =
        parse("include:com.example.authBasicFeatures?aud=did:web:api.example.com%23svc_appview");
    assert_eq!(
        p.includes(),
        [Include {
            nsid: "com.example.authBasicFeatures".to_owned(),
            aud: Some("did:web:api.example.com#svc_appview".to_owned()),
        }]
    );
    // Recorded only: it grants nothing by itself here.
    assert!(!p.allows_rpc(
        "com.example.authBasicFeatures",
        "did:web:api.example.com#svc_appview"
    ));
    let p = parse("include:com.example.authBasicFeatures");
    assert_eq!(p.includes()[0].aud, None);
    assert_eq!(
        p.describe()[1],
        "Permissions from the set com.example.authBasicFeatures"
    );
}

#[test]
fn transition_generic() {
    let p = parse("transition:generic");
    assert!(p.allows_repo("app.bsky.feed.post", RepoAction::Delete));
    assert!(p.allows_blob("application/x-anything"));
    assert!(p.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    assert!(p.allows_rpc("com.example.any.method", "did:web:x.example#y"));
    // Privileged: DMs and creating an account elsewhere.
    assert!(!p.allows_rpc("chat.bsky.convo.getMessages", APPVIEW));
    assert!(!p.allows_rpc(
        "com.atproto.server.createAccount",
        "did:web:pds.example#atproto_pds"
    ));
    // Protected: account management.
    for m in crate::auth::methods::PROTECTED {
        assert!(!p.allows_rpc(m, APPVIEW), "{m}");
    }
    assert!(!p.allows_account(AccountAttr::Repo, AccountAction::Manage));
    assert!(!p.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!p.allows_identity(IdentityAttr::Handle));
    assert!(!p.email_readable());
    let lines = p.describe();
    assert_eq!(
        lines[1],
        "Create, change and delete any record in your repository"
    );
    assert_eq!(lines.len(), 4);
}

#[test]
fn transition_chat_and_email() {
    let p = parse("transition:generic transition:chat.bsky transition:email");
    assert!(p.allows_rpc("chat.bsky.convo.getMessages", APPVIEW));
    // Chat does not extend to the other privileged method, nor to protected ones.
    assert!(!p.allows_rpc("com.atproto.server.createAccount", APPVIEW));
    assert!(!p.allows_rpc("com.atproto.server.updateEmail", APPVIEW));
    assert!(p.email_readable());
    assert!(p.allows_account(AccountAttr::Email, AccountAction::Read));
    assert!(!p.allows_account(AccountAttr::Email, AccountAction::Manage));
    let lines = p.describe();
    assert!(lines.contains(&"Send and read your direct messages (chat.bsky)".to_owned()));
    assert!(lines.contains(&"Read your email address".to_owned()));

    let p = parse("transition:email");
    assert!(p.email_readable());
    assert!(!p.allows_repo("app.bsky.feed.post", RepoAction::Create));
}

#[test]
fn tokens_dedup_and_subset() {
    let p = parse(" repo:a.b.c  atproto repo:a.b.c blob:*/* ");
    assert_eq!(p.tokens(), ["atproto", "repo:a.b.c", "blob:*/*"]);
    assert!(p.is_subset_of_client("atproto blob:*/* repo:a.b.c transition:generic"));
    assert!(!p.is_subset_of_client("atproto repo:a.b.c"));
    // Exact strings: an equivalent spelling does not count.
    assert!(!p.is_subset_of_client("atproto repo?collection=a.b.c blob:*/*"));
    assert!(!p.is_subset_of_client(""));
}

#[test]
fn describe_is_deduplicated_and_ordered() {
    let p = parse("account:email transition:email identity:handle repo:a.b.c");
    assert_eq!(
        p.describe(),
        [
            "Know your account's identity (handle and DID)",
            "Read your email address",
            "Create, change and delete records of type a.b.c",
            "Change your handle",
        ]
    );
}

#[test]
fn refusals() {
    assert_eq!(
        Permissions::parse("repo:a.b.c"),
        Err(ScopeError::MissingAtproto)
    );
    assert_eq!(Permissions::parse(""), Err(ScopeError::MissingAtproto));
    assert_eq!(
        Permissions::parse("atproto transition:chat.bsky"),
        Err(ScopeError::ChatWithoutGeneric)
    );
    let long = format!("atproto {}", "x".repeat(MAX_SCOPE_LEN));
    assert!(matches!(
        Permissions::parse(&long),
        Err(ScopeError::TooLong { .. })
    ));
    let many = format!("atproto {}", "repo:a.b.c ".repeat(MAX_SCOPE_TOKENS));
    assert_eq!(
        Permissions::parse(&many),
        Err(ScopeError::TooManyTokens {
            count: MAX_SCOPE_TOKENS + 1
        })
    );
    // Exactly at the limit is fine.
    let at_limit = format!("atproto {}", "repo:a.b.c ".repeat(MAX_SCOPE_TOKENS - 1));
    assert!(Permissions::parse(&at_limit).is_ok());

    for unknown in [
        "frobnicate",
        "Repo:a.b.c",
        "transition:other",
        "atproto:x",
        "atproto?x=y",
    ] {
        assert!(
            matches!(refuse(unknown), ScopeError::UnknownResource { ref token } if token == unknown),
            "{unknown}"
        );
    }
    for bad in [
        "repo:",
        "repo?",
        "repo:a.b.c?action",
        "repo:a.b.c?=x",
        "repo:a.b.c?action=create&",
        "repo:a%2",
        "repo:a%zz.b.c",
        "repo:%ff",
        "rpc:*?aud=*",
        "rpc:a.b.c?aud=*&inheritAud=true",
        "repo:\u{e9}",
        "repo:a.b.c\"",
        "repo:a\\b",
    ] {
        assert!(
            matches!(refuse(bad), ScopeError::Malformed { .. }),
            "{bad}: {}",
            refuse(bad)
        );
    }
    assert!(matches!(
        refuse("repo:a.b.c?foo=bar"),
        ScopeError::UnknownParam { ref param, .. } if param == "foo"
    ));
    assert!(matches!(
        refuse("identity:handle?action=manage"),
        ScopeError::UnknownParam { .. }
    ));
    assert_eq!(
        refuse("repo:a.b.c?collection=a.b.d"),
        ScopeError::PositionalRepeated {
            token: "repo:a.b.c?collection=a.b.d".to_owned(),
            param: "collection"
        }
    );
    assert!(matches!(
        refuse("blob:image/*?accept=video/*"),
        ScopeError::PositionalRepeated { .. }
    ));
    for (missing, param) in [
        ("repo", "collection"),
        ("repo?action=create", "collection"),
        ("rpc:a.b.c", "aud"),
        ("rpc?aud=*", "lxm"),
        ("blob", "accept"),
        ("account", "attr"),
        ("identity", "attr"),
        ("include", "nsid"),
    ] {
        assert_eq!(
            refuse(missing),
            ScopeError::MissingParam {
                token: missing.to_owned(),
                param
            }
        );
    }
    assert!(matches!(
        refuse("rpc:a.b.c?aud=did:web:a.example%23x&aud=*"),
        ScopeError::RepeatedParam { param: "aud", .. }
    ));
    assert!(matches!(
        refuse("account:email?action=read&action=manage"),
        ScopeError::RepeatedParam {
            param: "action",
            ..
        }
    ));
    for (bad, param) in [
        ("repo:notansid", "collection"),
        ("repo:a.b.c?action=read", "action"),
        ("rpc:bad?aud=*", "lxm"),
        ("rpc:a.b.c?aud=did:web:api.bsky.app", "aud"),
        ("rpc:a.b.c?aud=did:web:api.bsky.app%23", "aud"),
        ("rpc:a.b.c?aud=notadid%23x", "aud"),
        ("blob:image", "accept"),
        ("blob:*/png", "accept"),
        ("blob:image/png/x", "accept"),
        ("blob:image/p*", "accept"),
        ("blob?accept=image/%20png", "accept"),
        ("account:profile", "attr"),
        ("account:email?action=write", "action"),
        ("identity:email", "attr"),
        ("include:*", "nsid"),
        ("include:a.b.c?aud=*", "aud"),
    ] {
        match refuse(bad) {
            ScopeError::InvalidValue { param: p, .. } => assert_eq!(p, param, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn error_messages_name_the_token() {
    let e = refuse("repo:nope");
    assert!(e.to_string().contains("\"repo:nope\""), "{e}");
    let e = refuse("whatever:x");
    assert_eq!(e.to_string(), "unknown scope \"whatever:x\"");
    assert_eq!(
        ScopeError::TooLong { len: 5000 }.to_string(),
        "scope is 5000 bytes long; at most 4096 are allowed"
    );
}

#[test]
fn odd_inputs_never_panic() {
    let odd = [
        "",
        " ",
        "%",
        "%%",
        ":",
        "?",
        "&",
        "=",
        "?&=",
        "::",
        "repo::",
        "repo:?",
        "repo?:",
        "repo?&",
        "repo?a=b=c",
        "rpc:%",
        "rpc:%2",
        "rpc?aud=%23",
        "blob:/",
        "blob://",
        "blob:*/",
        "blob:/*",
        "blob:%2F",
        "account:%",
        "identity:",
        "include:?aud=",
        "\u{0}",
        "\t",
        "\u{ff}\u{fe}",
        "é:é?é=é",
        "repo:%C3%A9",
        "repo:%C3",
        "rpc:*?aud=%2A",
        "transition:generic\ttransition:email",
        "repo:a.b.c?collection",
        "blob?accept=*/*&accept=*/*",
        "rpc:a.b.c?aud=did:plc:abc%23%23",
    ];
    let mut accepted = 0;
    for a in odd {
        for b in ["", "atproto ", "atproto transition:generic "] {
            let scope = format!("{b}{a}");
            if let Ok(p) = Permissions::parse(&scope) {
                accepted += 1;
                assert!(!p.describe().is_empty());
                let _ = p.allows_blob(a);
                let _ = p.allows_rpc(a, a);
                let _ = p.allows_repo(a, RepoAction::Create);
                assert!(p.is_subset_of_client(&scope));
            }
        }
    }
    // Only the blank inputs and the repeated `*/*` blob, each after `atproto`, parse.
    assert_eq!(accepted, 6);
    assert!(Permissions::parse(&"%".repeat(MAX_SCOPE_LEN)).is_err());
}
