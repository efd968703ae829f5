//! Patching an AppView answer with the owner's records it has not indexed yet: pure JSON in,
//! JSON out, in the shapes `app.bsky.*` uses (`ProfileViewDetailed`, `FeedViewPost`,
//! `ThreadViewPost`). Counts on the new posts are zero: nobody has seen them yet.

use serde_json::{Map, Value, json};

/// What the owner wrote after the AppView's rev.
#[derive(Clone, Debug)]
pub struct Local {
    pub did: String,
    /// The owner as `ProfileViewBasic` (`did`, `handle`, `displayName`, `avatar`).
    pub author: Value,
    /// The profile record, when it changed since the rev, and its avatar and banner URLs.
    pub profile: Option<LocalProfile>,
    /// New posts, newest first.
    pub posts: Vec<LocalPost>,
}

#[derive(Clone, Debug)]
pub struct LocalProfile {
    pub record: Value,
    pub avatar: Option<String>,
    pub banner: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LocalPost {
    pub uri: String,
    pub cid: String,
    pub record: Value,
    /// When it was written (from its rev), RFC 3339.
    pub indexed_at: String,
}

impl LocalPost {
    /// The post this one replies to, if it is a reply.
    fn parent(&self) -> Option<&str> {
        self.record
            .pointer("/reply/parent/uri")
            .and_then(Value::as_str)
    }

    fn has_media(&self) -> bool {
        self.record.get("embed").is_some()
    }
}

fn post_view(local: &Local, p: &LocalPost) -> Value {
    json!({
        "uri": p.uri,
        "cid": p.cid,
        "author": local.author,
        "record": p.record,
        "indexedAt": p.indexed_at,
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 0,
        "quoteCount": 0,
        "labels": [],
    })
}

fn thread_view(local: &Local, p: &LocalPost) -> Value {
    json!({
        "$type": "app.bsky.feed.defs#threadViewPost",
        "post": post_view(local, p),
        "replies": [],
    })
}

/// The owner's profile view with the newer profile record's fields.
fn patch_profile(view: &mut Value, local: &Local) -> bool {
    let Some(p) = &local.profile else {
        return false;
    };
    let Some(obj) = view.as_object_mut() else {
        return false;
    };
    if obj.get("did").and_then(Value::as_str) != Some(local.did.as_str()) {
        return false;
    }
    for field in ["displayName", "description"] {
        match p.record.get(field) {
            Some(v) => obj.insert(field.to_owned(), v.clone()),
            None => obj.remove(field),
        };
    }
    set_or_remove(obj, "avatar", p.avatar.as_deref());
    set_or_remove(obj, "banner", p.banner.as_deref());
    true
}

fn set_or_remove(obj: &mut Map<String, Value>, field: &str, v: Option<&str>) {
    match v {
        Some(v) => obj.insert(field.to_owned(), json!(v)),
        None => obj.remove(field),
    };
}

/// `getProfile`: the owner's own profile.
pub fn profile(mut body: Value, local: &Local) -> Option<Value> {
    patch_profile(&mut body, local).then_some(body)
}

/// `getProfiles`: the owner's profile wherever it is in the list.
pub fn profiles(mut body: Value, local: &Local) -> Option<Value> {
    let list = body.get_mut("profiles")?.as_array_mut()?;
    let mut changed = false;
    for view in list {
        changed |= patch_profile(view, local);
    }
    changed.then_some(body)
}

/// Which of the new posts a feed shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    NoReplies,
    Media,
}

impl Filter {
    /// `getAuthorFeed`'s `filter` parameter.
    pub fn from_param(filter: Option<&str>) -> Filter {
        match filter {
            Some("posts_no_replies") => Filter::NoReplies,
            Some("posts_with_media" | "posts_with_video") => Filter::Media,
            _ => Filter::All,
        }
    }

    fn shows(self, p: &LocalPost) -> bool {
        match self {
            Filter::All => true,
            Filter::NoReplies => p.parent().is_none(),
            Filter::Media => p.has_media(),
        }
    }
}

/// `getTimeline`, `getAuthorFeed` (first page): the new posts on top, newest first, unless
/// the feed already has them.
pub fn feed(mut body: Value, local: &Local, filter: Filter) -> Option<Value> {
    let list = body.get_mut("feed")?.as_array_mut()?;
    let known: std::collections::HashSet<String> = list
        .iter()
        .filter_map(|item| item.pointer("/post/uri").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let new: Vec<Value> = local
        .posts
        .iter()
        .filter(|p| filter.shows(p) && !known.contains(&p.uri))
        .map(|p| json!({ "post": post_view(local, p) }))
        .collect();
    if new.is_empty() {
        return None;
    }
    list.splice(0..0, new);
    Some(body)
}

/// `getPostThread`: new replies hung under the posts they answer, wherever those are in the
/// thread.
pub fn thread(mut body: Value, local: &Local) -> Option<Value> {
    let root = body.get_mut("thread")?;
    let mut changed = false;
    // Oldest first, so a reply to a new reply finds its parent already in place.
    for p in local.posts.iter().rev() {
        if let Some(parent) = p.parent() {
            changed |= attach(root, parent, &thread_view(local, p), &p.uri);
        }
    }
    changed.then_some(body)
}

fn attach(node: &mut Value, parent: &str, reply: &Value, uri: &str) -> bool {
    if node.pointer("/post/uri").and_then(Value::as_str) == Some(parent) {
        let Some(obj) = node.as_object_mut() else {
            return false;
        };
        let replies = obj.entry("replies").or_insert_with(|| json!([]));
        let Some(list) = replies.as_array_mut() else {
            return false;
        };
        if list
            .iter()
            .any(|r| r.pointer("/post/uri").and_then(Value::as_str) == Some(uri))
        {
            return false;
        }
        list.insert(0, reply.clone());
        return true;
    }
    match node.get_mut("replies").and_then(Value::as_array_mut) {
        Some(list) => list.iter_mut().any(|r| attach(r, parent, reply, uri)),
        None => false,
    }
}

/// `getPostThread` for a post the AppView has not seen (it answered `NotFound`): the thread
/// of that one post, from the local record.
pub fn thread_not_found(uri: &str, local: &Local) -> Option<Value> {
    let p = local.posts.iter().find(|p| p.uri == uri)?;
    Some(json!({ "thread": thread_view(local, p) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        let did = "did:plc:owner";
        let post = |rkey: &str, text: &str, parent: Option<&str>, at: &str| {
            let mut record = json!({"$type": "app.bsky.feed.post", "text": text,
                                    "createdAt": at});
            if let Some(parent) = parent {
                record["reply"] = json!({"root": {"uri": parent, "cid": "bafyroot"},
                                         "parent": {"uri": parent, "cid": "bafyparent"}});
            }
            LocalPost {
                uri: format!("at://{did}/app.bsky.feed.post/{rkey}"),
                cid: format!("bafy{rkey}"),
                record,
                indexed_at: at.into(),
            }
        };
        Local {
            did: did.into(),
            author: json!({"did": did, "handle": "owner.test"}),
            profile: Some(LocalProfile {
                record: json!({"$type": "app.bsky.actor.profile", "displayName": "New name"}),
                avatar: Some("https://pds.test/avatar".into()),
                banner: None,
            }),
            // Newest first: a reply to the other thread, then a top-level post.
            posts: vec![
                post(
                    "3b",
                    "reply",
                    Some("at://did:plc:other/app.bsky.feed.post/1"),
                    "2026-01-02T00:00:00.000Z",
                ),
                post("3a", "hello", None, "2026-01-01T00:00:00.000Z"),
            ],
        }
    }

    #[test]
    fn the_owners_profile_takes_the_new_record_and_others_stay() {
        let l = local();
        let mine = json!({"did": "did:plc:owner", "handle": "owner.test",
                          "displayName": "Old", "description": "gone", "banner": "x",
                          "followersCount": 7});
        let p = profile(mine.clone(), &l).unwrap();
        assert_eq!(p["displayName"], "New name");
        assert_eq!(p["avatar"], "https://pds.test/avatar");
        assert!(p.get("description").is_none() && p.get("banner").is_none());
        assert_eq!(p["followersCount"], 7, "the AppView's counts stay");
        let theirs = json!({"did": "did:plc:other", "displayName": "Them"});
        assert!(profile(theirs.clone(), &l).is_none());
        let both = profiles(json!({"profiles": [theirs, mine]}), &l).unwrap();
        assert_eq!(both["profiles"][0]["displayName"], "Them");
        assert_eq!(both["profiles"][1]["displayName"], "New name");
    }

    #[test]
    fn new_posts_go_on_top_once_and_filters_apply() {
        let l = local();
        let stale = json!({"feed": [{"post": {"uri": "at://did:plc:x/app.bsky.feed.post/old"}}],
                           "cursor": "c"});
        let f = feed(stale.clone(), &l, Filter::All).unwrap();
        let uris: Vec<_> = f["feed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["post"]["uri"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(uris, ["3b", "3a", "old"]);
        assert_eq!(f["feed"][0]["post"]["author"]["handle"], "owner.test");
        assert_eq!(f["feed"][0]["post"]["likeCount"], 0);
        assert_eq!(f["cursor"], "c");
        let again = feed(f.clone(), &l, Filter::All);
        assert!(again.is_none(), "already there: unchanged");
        let roots = feed(stale.clone(), &l, Filter::NoReplies).unwrap();
        assert_eq!(roots["feed"].as_array().unwrap().len(), 2);
        assert!(feed(stale, &l, Filter::Media).is_none());
    }

    #[test]
    fn replies_hang_under_their_parent_and_unknown_threads_come_from_local() {
        let l = local();
        let t = json!({"thread": {"$type": "app.bsky.feed.defs#threadViewPost",
                                  "post": {"uri": "at://did:plc:other/app.bsky.feed.post/1"},
                                  "replies": [{"post": {"uri": "at://did:plc:z/app.bsky.feed.post/9"}}]}});
        let patched = thread(t.clone(), &l).unwrap();
        assert_eq!(patched["thread"]["replies"].as_array().unwrap().len(), 2);
        assert_eq!(
            patched["thread"]["replies"][0]["post"]["record"]["text"],
            "reply"
        );
        assert!(thread(patched, &l).is_none(), "once");
        let elsewhere = json!({"thread": {"post": {"uri": "at://did:plc:q/app.bsky.feed.post/2"}}});
        assert!(thread(elsewhere, &l).is_none());
        let uri = "at://did:plc:owner/app.bsky.feed.post/3a";
        let made = thread_not_found(uri, &l).unwrap();
        assert_eq!(made["thread"]["post"]["uri"], uri);
        assert!(thread_not_found("at://did:plc:owner/app.bsky.feed.post/nope", &l).is_none());
    }
}
