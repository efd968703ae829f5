//! Asking one relay what it knows of this host and this repo, and asking it to crawl.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::policy::Observation;
use crate::net::Net;
use crate::syntax::form::percent_encode;

fn xrpc(relay: &str, method: &str, query: &str) -> String {
    format!("{}/xrpc/{method}{query}", relay.trim_end_matches('/'))
}

/// The XRPC error name of an answer, if it is one.
fn error_name(body: &Bytes) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.as_str().map(str::to_owned)
}

/// A relay that does not have a method answers 404 or 501, or names it `MethodNotImplemented`.
fn unsupported(status: StatusCode, body: &Bytes) -> bool {
    let name = error_name(body);
    status == StatusCode::NOT_FOUND && matches!(name.as_deref(), None | Some("NotFound"))
        || status == StatusCode::NOT_IMPLEMENTED
        || name.as_deref() == Some("MethodNotImplemented")
}

/// Both questions, `getHostStatus` then `getRepoStatus` (or `getLatestCommit` where the relay
/// is older); a network failure on either is the observation's `error`.
pub async fn observe(net: &Net, relay: &str, hostname: &str, did: &str) -> Observation {
    let mut obs = Observation::default();
    if let Err(e) = host_status(net, relay, hostname, &mut obs).await {
        obs.error = Some(e);
        return obs;
    }
    if let Err(e) = repo_status(net, relay, did, &mut obs).await {
        obs.error = Some(e);
    }
    obs
}

async fn host_status(
    net: &Net,
    relay: &str,
    hostname: &str,
    obs: &mut Observation,
) -> Result<(), String> {
    let url = xrpc(
        relay,
        "com.atproto.sync.getHostStatus",
        &format!("?hostname={}", percent_encode(hostname)),
    );
    let (status, body) = net
        .json(Method::GET, &url, None)
        .await
        .map_err(|e| e.to_string())?;
    obs.host = if status.is_success() {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        obs.host_seq = v.get("seq").and_then(Value::as_i64);
        v.get("status")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    } else if error_name(&body).as_deref() == Some("HostNotFound") {
        "not-found".to_owned()
    } else if unsupported(status, &body) {
        "unsupported".to_owned()
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(format!("getHostStatus answered {status}"));
    } else {
        // Some other refusal (400 for a hostname it will not look up): no claim either way.
        String::new()
    };
    Ok(())
}

async fn repo_status(
    net: &Net,
    relay: &str,
    did: &str,
    obs: &mut Observation,
) -> Result<(), String> {
    let query = format!("?did={}", percent_encode(did));
    let url = xrpc(relay, "com.atproto.sync.getRepoStatus", &query);
    let (status, body) = net
        .json(Method::GET, &url, None)
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(active) = v.get("active").and_then(Value::as_bool) {
            obs.repo_found = true;
            obs.rev = v.get("rev").and_then(Value::as_str).map(str::to_owned);
            if !active {
                obs.repo_status = Some(
                    v.get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("inactive")
                        .to_owned(),
                );
            }
            return Ok(());
        }
    } else if error_name(&body).as_deref() == Some("RepoNotFound") {
        return Ok(());
    } else if !unsupported(status, &body) {
        return Err(format!("getRepoStatus answered {status}"));
    }
    // An older relay: its latest commit is all it can say.
    let url = xrpc(relay, "com.atproto.sync.getLatestCommit", &query);
    let (status, body) = net
        .json(Method::GET, &url, None)
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        obs.rev = v.get("rev").and_then(Value::as_str).map(str::to_owned);
        obs.repo_found = obs.rev.is_some();
    } else if status.is_server_error() {
        return Err(format!("getLatestCommit answered {status}"));
    }
    Ok(())
}

/// `com.atproto.sync.requestCrawl`: "ok", or what went wrong.
pub async fn request_crawl(net: &Net, relay: &str, hostname: &str) -> String {
    let url = xrpc(relay, "com.atproto.sync.requestCrawl", "");
    let body = json!({ "hostname": hostname });
    match net.json(Method::POST, &url, Some(&body)).await {
        Ok((status, _)) if status.is_success() => "ok".to_owned(),
        Ok((status, body)) => format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ),
        Err(e) => e.to_string(),
    }
}
