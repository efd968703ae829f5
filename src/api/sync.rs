//! `com.atproto.sync.*`: what relays and other services read.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::header;
use serde_json::{Value, json};

use super::HandlerResult;
use crate::app::App;
use crate::cid::Cid;
use crate::repo::car::CarWriter;
use crate::repo::export::write_repo_car;
use crate::repo::mst::{Mst, path_proof};
use crate::store::{self, SqlBlocks, account::Account, blobs as blob_rows};
use crate::syntax;
use crate::xrpc::{XrpcError, XrpcRequest, XrpcResponse, stream};

const CAR: &str = "application/vnd.ipld.car";

/// The `did` parameter must be this server's account.
async fn account_for(app: &App, req: &XrpcRequest) -> Result<Account, XrpcError> {
    let did = req.required("did")?;
    syntax::validate_did(did).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    match app.account().await? {
        Some(a) if a.did == did => Ok(a),
        _ => Err(XrpcError::lexicon(
            "RepoNotFound",
            format!("Could not find repo for DID: {did}"),
        )),
    }
}

/// The account's current root, for a request that names it; the repo must
/// be active.
async fn active_root(app: &App, req: &XrpcRequest) -> Result<store::repo::RepoRoot, XrpcError> {
    let a = account_for(app, req).await?;
    active(&a)?;
    app.store
        .read(store::repo::get_root)
        .await?
        .ok_or_else(|| XrpcError::lexicon("RepoNotFound", "repo has no commit"))
}

/// The whole repo as a streamed CAR.
fn full_car(app: &Arc<App>, root: store::repo::RepoRoot) -> XrpcResponse {
    car_stream(app, move |c, w| {
        write_repo_car(&SqlBlocks(c), &root.commit_cid, w)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn active(a: &Account) -> Result<(), XrpcError> {
    match a.status.as_str() {
        "active" => Ok(()),
        "takendown" => Err(XrpcError::lexicon(
            "RepoTakendown",
            "Repo has been takendown",
        )),
        "suspended" => Err(XrpcError::lexicon(
            "RepoSuspended",
            "Repo has been suspended",
        )),
        _ => Err(XrpcError::lexicon(
            "RepoDeactivated",
            "Repo has been deactivated",
        )),
    }
}

pub async fn get_latest_commit(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let root = active_root(&app, &req).await?;
    Ok(XrpcResponse::Json(
        json!({ "cid": root.commit_cid.to_string(), "rev": root.rev }),
    ))
}

pub async fn get_repo_status(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let a = account_for(&app, &req).await?;
    let root = app.store.read(store::repo::get_root).await?;
    let mut body = json!({ "did": a.did, "active": a.is_active() });
    if !a.is_active() {
        body["status"] = Value::String(a.status.clone());
    }
    if let Some(r) = root.filter(|_| a.is_active()) {
        body["rev"] = Value::String(r.rev);
    }
    Ok(XrpcResponse::Json(body))
}

pub async fn list_repos(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    req.int_param("limit", 1, 1000, 500)?;
    // One account: a cursor means the caller has seen it already.
    let repos = match (app.account().await?, req.param("cursor")) {
        (Some(a), None) => {
            let root = app.store.read(store::repo::get_root).await?;
            root.map(|r| {
                let mut v = json!({
                    "did": a.did, "head": r.commit_cid.to_string(), "rev": r.rev,
                    "active": a.is_active(),
                });
                if !a.is_active() {
                    v["status"] = Value::String(a.status.clone());
                }
                v
            })
            .into_iter()
            .collect()
        }
        _ => vec![],
    };
    Ok(XrpcResponse::Json(json!({ "repos": repos })))
}

pub async fn get_blob(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let a = account_for(&app, &req).await?;
    active(&a)?;
    let cid_s = req.required("cid")?.to_owned();
    let cid = crate::blobs::parse_blob_cid(&cid_s)
        .map_err(|_| XrpcError::invalid_request("cid must be a blob CID"))?;
    let key = cid_s.clone();
    // Only blobs some record references are public.
    let meta = app
        .store
        .read(move |c| {
            if !blob_rows::is_referenced(c, &key)? {
                return Ok(None);
            }
            blob_rows::get_blob(c, &key)
        })
        .await?
        .ok_or_else(|| XrpcError::lexicon("BlobNotFound", "Blob not found"))?;
    let (file, len) = app
        .blobs
        .open_blob(&cid)
        .await
        .map_err(XrpcError::internal)?
        .ok_or_else(|| XrpcError::lexicon("BlobNotFound", "Blob not found"))?;
    Ok(XrpcResponse::Body {
        content_type: meta.mime_type,
        body: crate::blobs::stream_file(file, len).boxed(),
        headers: vec![
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".into(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{cid_s}\""),
            ),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".into(),
            ),
        ],
    })
}

pub async fn list_blobs(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let a = account_for(&app, &req).await?;
    active(&a)?;
    let limit = req.int_param("limit", 1, 1000, 500)? as u32;
    let cursor = req.param("cursor").map(str::to_owned);
    let cids = app
        .store
        .read(move |c| blob_rows::list_blobs(c, cursor.as_deref(), limit))
        .await?;
    let mut body = json!({ "cids": cids });
    if cids.len() == limit as usize
        && let Some(last) = cids.last()
    {
        body["cursor"] = Value::String(last.clone());
    }
    Ok(XrpcResponse::Json(body))
}

/// Stream a CAR produced on a blocking thread.
fn car_stream(
    app: &Arc<App>,
    produce: impl FnOnce(&rusqlite::Connection, &mut stream::ChunkWriter) -> Result<(), String>
    + Send
    + 'static,
) -> XrpcResponse {
    let (mut w, body) = stream::channel();
    let store = Arc::clone(&app.store);
    tokio::task::spawn_blocking(move || {
        let r = store.read_blocking(|c| Ok(produce(c, &mut w)));
        let r = match r {
            Ok(inner) => inner,
            Err(e) => Err(e.to_string()),
        };
        match r.and_then(|()| std::io::Write::flush(&mut w).map_err(|e| e.to_string())) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!("CAR stream failed: {e}");
                w.fail(std::io::Error::other(e));
            }
        }
    });
    XrpcResponse::Body {
        content_type: CAR.into(),
        body: body.boxed(),
        headers: vec![],
    }
}

pub async fn get_repo(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let since = req.param("since").map(str::to_owned);
    if let Some(s) = &since {
        syntax::validate_tid(s).map_err(|_| XrpcError::invalid_request("since must be a TID"))?;
    }
    let root = active_root(&app, &req).await?;
    let Some(since) = since else {
        return Ok(full_car(&app, root));
    };
    Ok(car_stream(&app, move |c, w| {
        let mut car = CarWriter::new(w, &[root.commit_cid]).map_err(|e| e.to_string())?;
        store::repo::blocks_since(c, &since, &mut |cid, data| {
            car.write_block(&cid, data)
                .map_err(|e| store::StoreError::Corrupt(e.to_string()))
        })
        .map_err(|e| e.to_string())
    }))
}

pub async fn get_record(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let collection = req.required("collection")?.to_owned();
    let rkey = req.required("rkey")?.to_owned();
    syntax::validate_nsid(&collection).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    syntax::validate_record_key(&rkey).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let root = active_root(&app, &req).await?;
    Ok(car_stream(&app, move |c, w| {
        let src = SqlBlocks(c);
        let path = format!("{collection}/{rkey}");
        let commit = store::repo::get_block(c, &root.commit_cid)
            .map_err(|e| e.to_string())?
            .ok_or("missing commit block")?;
        let tree = Mst::load(root.data_cid);
        let proof = path_proof(&src, &tree, path.as_bytes()).map_err(|e| e.to_string())?;
        let mut car = CarWriter::new(w, &[root.commit_cid]).map_err(|e| e.to_string())?;
        car.write_block(&root.commit_cid, &commit)
            .map_err(|e| e.to_string())?;
        for (cid, data) in proof.iter() {
            car.write_block(cid, data).map_err(|e| e.to_string())?;
        }
        let leaf: Option<Cid> = tree.get(&src, path.as_bytes()).map_err(|e| e.to_string())?;
        if let Some(leaf) = leaf
            && let Some(b) = store::repo::get_block(c, &leaf).map_err(|e| e.to_string())?
        {
            car.write_block(&leaf, &b).map_err(|e| e.to_string())?;
        }
        Ok(())
    }))
}

pub async fn get_blocks(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let a = account_for(&app, &req).await?;
    active(&a)?;
    let cids = req.params("cids");
    if cids.len() > 1000 {
        return Err(XrpcError::invalid_request("at most 1000 cids"));
    }
    let cids: Vec<Cid> = cids
        .iter()
        .map(|s| {
            crate::cid::parse(s)
                .map_err(|_| XrpcError::invalid_request(format!("invalid cid: {s}")))
        })
        .collect::<Result<_, _>>()?;
    let want = cids.clone();
    let missing = app
        .store
        .read(move |c| {
            for cid in &want {
                if store::repo::get_block(c, cid)?.is_none() {
                    return Ok(Some(*cid));
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(m) = missing {
        return Err(XrpcError::lexicon(
            "BlockNotFound",
            format!("Could not find block: {m}"),
        ));
    }
    Ok(car_stream(&app, move |c, w| {
        let mut car = CarWriter::new(w, &[]).map_err(|e| e.to_string())?;
        for cid in &cids {
            if let Some(b) = store::repo::get_block(c, cid).map_err(|e| e.to_string())? {
                car.write_block(cid, &b).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }))
}

/// Deprecated: the current commit CID.
pub async fn get_head(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let root = active_root(&app, &req).await?;
    Ok(XrpcResponse::Json(
        json!({ "root": root.commit_cid.to_string() }),
    ))
}

/// Deprecated: the whole repo, as `getRepo` without `since`.
pub async fn get_checkout(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let root = active_root(&app, &req).await?;
    Ok(full_car(&app, root))
}
