//! Read-after-write, as the reference PDS does it: right after the owner posts, the AppView
//! has not indexed the post yet, so their own feed, profile and thread would not show it.
//! The AppView says how far it has read this repo (`atproto-repo-rev`); when the repo has
//! moved on, the proxied answer is patched with the owner's newer posts and profile, and
//! `atproto-upstream-lag` says by how much (ms).
//!
//! Bounded: only the methods below, only a JSON answer without a content encoding and at
//! most `MAX_BODY` long, at most `MAX_POSTS` new posts. Anything else passes through as the
//! plain proxy would pass it.

mod munge;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::app::App;
use crate::store::{StoreError, account, repo};
use crate::xrpc::{Body, XrpcRequest};
use munge::{Filter, Local, LocalPost, LocalProfile};

/// The methods whose answers are patched.
const METHODS: &[&str] = &[
    "app.bsky.actor.getProfile",
    "app.bsky.actor.getProfiles",
    "app.bsky.feed.getTimeline",
    "app.bsky.feed.getAuthorFeed",
    "app.bsky.feed.getPostThread",
];
/// Larger answers pass through unpatched.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The newest posts considered.
const MAX_POSTS: u32 = 50;
const POST: &str = "app.bsky.feed.post";
const PROFILE: &str = "app.bsky.actor.profile";

/// Whether `nsid`'s answers may be patched (such requests ask the AppView for an
/// uncompressed answer, so it can be read).
pub fn applies(nsid: &str) -> bool {
    METHODS.contains(&nsid)
}

/// The AppView's answer to `req`, patched when it is behind the owner's repo.
pub async fn patch(
    app: &Arc<App>,
    req: &XrpcRequest,
    resp: Response<hyper::body::Incoming>,
) -> Response<Body> {
    let Some(rev) = behind_at(&req.nsid, &resp) else {
        return super::proxy::relay_response(resp);
    };
    let local = match local_since(app, &rev).await {
        Ok(Some(local)) => local,
        Ok(None) => return super::proxy::relay_response(resp),
        Err(e) => {
            tracing::warn!("read-after-write: {e}");
            return super::proxy::relay_response(resp);
        }
    };
    let (parts, body) = resp.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::warn!("read-after-write: reading the AppView's answer: {e}");
            return bad_gateway();
        }
    };
    let patched = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| munge_for(req, parts.status, v, &local.view));
    let lag = patched.as_ref().and_then(|_| patched_lag(&local));
    let (status, body) = match patched {
        Some((status, v)) => (status, Bytes::from(v.to_string())),
        None => (parts.status, bytes),
    };
    let mut out = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *out.status_mut() = status;
    for name in super::proxy::FORWARD_RESPONSE {
        if *name == "content-length" {
            continue;
        }
        if let Some(v) = parts.headers.get(*name) {
            out.headers_mut().insert(*name, v.clone());
        }
    }
    if let Some(lag) = lag
        && let Ok(v) = lag.to_string().parse()
    {
        out.headers_mut().insert("atproto-upstream-lag", v);
    }
    out
}

/// The rev the AppView has read the repo to, when its answer is one that may be patched:
/// a JSON answer (or `getPostThread`'s `NotFound`) that is not encoded and not too long.
fn behind_at(nsid: &str, resp: &Response<hyper::body::Incoming>) -> Option<String> {
    let status = resp.status();
    let thread_missing = nsid == "app.bsky.feed.getPostThread" && status == StatusCode::BAD_REQUEST;
    if status != StatusCode::OK && !thread_missing {
        return None;
    }
    let headers = resp.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if !text(header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json")) {
        return None;
    }
    if text(header::CONTENT_ENCODING).is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return None;
    }
    if text(header::CONTENT_LENGTH)
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return None;
    }
    let rev = text(header::HeaderName::from_static("atproto-repo-rev"))?;
    crate::tid::Tid::parse(rev).ok()?;
    Some(rev.to_owned())
}

fn munge_for(
    req: &XrpcRequest,
    status: StatusCode,
    body: Value,
    local: &Local,
) -> Option<(StatusCode, Value)> {
    let mine = |actor: Option<&str>| {
        actor.is_some_and(|a| a == local.did || Some(a) == local.author["handle"].as_str())
    };
    let ok = |v| Some((StatusCode::OK, v));
    match req.nsid.as_str() {
        "app.bsky.actor.getProfile" => munge::profile(body, local).and_then(ok),
        "app.bsky.actor.getProfiles" => munge::profiles(body, local).and_then(ok),
        // Only the first page: later pages are older than anything new.
        "app.bsky.feed.getTimeline" if req.param("cursor").is_none() => {
            munge::feed(body, local, Filter::All).and_then(ok)
        }
        "app.bsky.feed.getAuthorFeed"
            if req.param("cursor").is_none() && mine(req.param("actor")) =>
        {
            munge::feed(body, local, Filter::from_param(req.param("filter"))).and_then(ok)
        }
        "app.bsky.feed.getPostThread" => {
            let uri = req.param("uri")?;
            if status == StatusCode::OK {
                munge::thread(body, local).and_then(ok)
            } else if body["error"] == "NotFound" {
                munge::thread_not_found(uri, local).and_then(ok)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The owner's records newer than `rev`, and when the oldest of them was written.
struct Newer {
    view: Local,
    /// Unix ms of the oldest record the AppView has not seen.
    oldest_ms: Option<i64>,
}

fn patched_lag(n: &Newer) -> Option<i64> {
    n.oldest_ms
        .map(|t| (crate::clock::unix_millis() - t).max(0))
}

/// What the owner wrote after `rev`; none when the repo is not past it.
async fn local_since(app: &Arc<App>, rev: &str) -> Result<Option<Newer>, StoreError> {
    let since = rev.to_owned();
    let found = app
        .store
        .read(move |db| {
            let (Some(acct), Some(root)) = (account::get_account(db)?, repo::get_root(db)?) else {
                return Ok(None);
            };
            if root.rev.as_str() <= since.as_str() {
                return Ok(None);
            }
            let load = |rows: Vec<repo::RecordRow>| -> Result<_, StoreError> {
                let mut out = Vec::new();
                for row in rows {
                    if let Some(bytes) = repo::get_block(db, &row.cid)?
                        && let Ok(v) = crate::cbor::decode(&bytes)
                    {
                        out.push((row, crate::cbor::to_json(&v)));
                    }
                }
                Ok(out)
            };
            let posts = load(repo::records_since(db, POST, &since, MAX_POSTS)?)?;
            let profile = load(repo::records_since(db, PROFILE, &since, 1)?)?
                .into_iter()
                .find(|(row, _)| row.rkey == "self");
            let current_profile = match &profile {
                Some((_, v)) => Some(v.clone()),
                None => match repo::get_record(db, PROFILE, "self")? {
                    Some(cid) => repo::get_block(db, &cid)?
                        .and_then(|b| crate::cbor::decode(&b).ok())
                        .map(|v| crate::cbor::to_json(&v)),
                    None => None,
                },
            };
            Ok(Some((acct, posts, profile, current_profile)))
        })
        .await?;
    let Some((acct, posts, profile, current_profile)) = found else {
        return Ok(None);
    };
    if posts.is_empty() && profile.is_none() {
        return Ok(None);
    }
    let blob_url = |record: &Value, field: &str| {
        record
            .pointer(&format!("/{field}/ref/$link"))
            .and_then(Value::as_str)
            .map(|cid| {
                format!(
                    "{}/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}",
                    app.config.public_url().trim_end_matches('/'),
                    acct.did.replace('%', "%25")
                )
            })
    };
    let mut author = json!({"did": acct.did, "handle": acct.handle});
    if let Some(p) = &current_profile {
        if let Some(name) = p.get("displayName") {
            author["displayName"] = name.clone();
        }
        if let Some(url) = blob_url(p, "avatar") {
            author["avatar"] = json!(url);
        }
    }
    let rev_ms = |rev: &str| {
        crate::tid::Tid::parse(rev)
            .ok()
            .map(|t| i64::try_from(t.micros() / 1000).unwrap_or(i64::MAX))
    };
    let mut oldest_ms: Option<i64> = None;
    let mut note = |ms: Option<i64>| {
        if let Some(ms) = ms {
            oldest_ms = Some(oldest_ms.map_or(ms, |o| o.min(ms)));
        }
    };
    let posts: Vec<LocalPost> = posts
        .into_iter()
        .map(|(row, record)| {
            let ms = rev_ms(&row.rev);
            note(ms);
            LocalPost {
                uri: format!("at://{}/{POST}/{}", acct.did, row.rkey),
                cid: row.cid.to_string(),
                record,
                indexed_at: crate::syntax::format_datetime_millis(ms.unwrap_or(0)),
            }
        })
        .collect();
    let profile = profile.map(|(row, record)| {
        note(rev_ms(&row.rev));
        LocalProfile {
            avatar: blob_url(&record, "avatar"),
            banner: blob_url(&record, "banner"),
            record,
        }
    });
    Ok(Some(Newer {
        view: Local {
            did: acct.did,
            author,
            profile,
            posts,
        },
        oldest_ms,
    }))
}

fn bad_gateway() -> Response<Body> {
    crate::xrpc::XrpcError::new(
        StatusCode::BAD_GATEWAY,
        "UpstreamFailure",
        "upstream failed",
    )
    .into_response()
}
