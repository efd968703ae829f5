//! `com.atproto.sync.*`: what relays and other services read.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::header;
use serde_json::{Value, json};

use super::HandlerResult;
use crate::app::App;
use crate::cid::Cid;
use crate::repo::car::CarWriter;
use crate::repo::export::ExportWalk;
use crate::repo::mst::{Mst, path_proof};
use crate::store::{self, SqlBlocks, account::Account, blobs as blob_rows};
use crate::syntax;
use crate::xrpc::stream::{self, BATCH, Batches};
use crate::xrpc::{XrpcError, XrpcRequest, XrpcResponse};

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
fn full_car(app: &Arc<App>, req: &XrpcRequest, root: store::repo::RepoRoot) -> HandlerResult {
    car_stream(app, req, FullRepo(ExportWalk::new(root.commit_cid)))
}

struct FullRepo(ExportWalk);

impl Batches for FullRepo {
    fn next(&mut self, c: &store::Db) -> Result<Option<Vec<u8>>, String> {
        if self.0.is_done() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(BATCH);
        // One snapshot for the batch's many lookups, not one per statement.
        let txn = c.begin_read().map_err(|e| e.to_string())?;
        self.0
            .next_batch(&SqlBlocks(&txn), &mut out, BATCH)
            .map_err(|e| e.to_string())?;
        Ok(Some(out))
    }
}

fn active(a: &Account) -> Result<(), XrpcError> {
    if a.is_active() {
        Ok(())
    } else {
        Err(XrpcError::repo_unavailable(a.status, None))
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
        body["status"] = a.status.as_str().into();
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
                    v["status"] = a.status.as_str().into();
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
    let since = req.param("since").map(str::to_owned);
    if let Some(s) = &since {
        syntax::validate_tid(s).map_err(|_| XrpcError::invalid_request("since must be a TID"))?;
    }
    let cids = app
        .store
        .read(move |c| blob_rows::list_blobs(c, since.as_deref(), cursor.as_deref(), limit))
        .await?;
    let mut body = json!({ "cids": cids });
    if cids.len() == limit as usize
        && let Some(last) = cids.last()
    {
        body["cursor"] = Value::String(last.clone());
    }
    Ok(XrpcResponse::Json(body))
}

/// Stream a CAR made in batches (see `xrpc::stream`), if the client and everyone together
/// are below their caps on exports at once. Beyond them: 429 `RateLimitExceeded`, the
/// answer every atproto client already backs off from (and honours `Retry-After`); a 503
/// would read as this server being down rather than busy for a moment.
fn car_stream(app: &Arc<App>, req: &XrpcRequest, batches: impl Batches) -> HandlerResult {
    let slot = app
        .exports
        .try_take(req.peer)
        .ok_or_else(|| XrpcError::rate_limited(EXPORT_RETRY_AFTER))?;
    let body = stream::batched(Arc::clone(&app.store), batches, slot);
    Ok(XrpcResponse::Body {
        content_type: CAR.into(),
        body: body.boxed(),
        headers: vec![],
    })
}

/// Seconds a client refused an export slot is told to wait.
const EXPORT_RETRY_AFTER: u64 = 5;

/// `getRepo?since=`: the blocks written after a rev, in (rev, CID) pages.
struct BlocksSince {
    root: Cid,
    since: String,
    cursor: Option<store::repo::SinceCursor>,
    state: Paging,
}

#[derive(PartialEq)]
enum Paging {
    Header,
    More,
    Done,
}

impl Batches for BlocksSince {
    fn next(&mut self, c: &store::Db) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::with_capacity(BATCH);
        let mut car = match self.state {
            Paging::Done => return Ok(None),
            Paging::Header => {
                self.state = Paging::More;
                CarWriter::new(&mut out, &[self.root]).map_err(|e| e.to_string())?
            }
            Paging::More => CarWriter::resume(&mut out),
        };
        self.cursor = store::repo::blocks_since_page(
            c,
            &self.since,
            self.cursor.as_ref(),
            &mut |cid, data| {
                // Writing into a Vec cannot fail.
                let _ = car.write_block(&cid, data);
                car.bytes_written() < BATCH as u64
            },
        )
        .map_err(|e| e.to_string())?;
        if self.cursor.is_none() {
            self.state = Paging::Done;
        }
        Ok(Some(out))
    }
}

/// `getBlocks`: the named blocks, in the order asked, a batch at a time.
struct NamedBlocks {
    cids: Vec<Cid>,
    next: usize,
}

impl Batches for NamedBlocks {
    fn next(&mut self, c: &store::Db) -> Result<Option<Vec<u8>>, String> {
        if self.next > self.cids.len() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(BATCH);
        let mut car = if self.next == 0 {
            CarWriter::new(&mut out, &[]).map_err(|e| e.to_string())?
        } else {
            CarWriter::resume(&mut out)
        };
        self.next = self.next.max(1);
        while car.bytes_written() < BATCH as u64 {
            let Some(cid) = self.cids.get(self.next - 1) else {
                self.next = self.cids.len() + 1;
                break;
            };
            // Checked before the response began; blocks go only with the repo itself.
            let b = store::repo::get_block(c, cid)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("block {cid} is gone"))?;
            car.write_block(cid, &b).map_err(|e| e.to_string())?;
            self.next += 1;
        }
        Ok(Some(out))
    }
}

pub async fn get_repo(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let since = req.param("since").map(str::to_owned);
    if let Some(s) = &since {
        syntax::validate_tid(s).map_err(|_| XrpcError::invalid_request("since must be a TID"))?;
    }
    let root = active_root(&app, &req).await?;
    let Some(since) = since else {
        return full_car(&app, &req, root);
    };
    car_stream(
        &app,
        &req,
        BlocksSince {
            root: root.commit_cid,
            since,
            cursor: None,
            state: Paging::Header,
        },
    )
}

/// A record with its proof (the commit and the path of nodes down to it): a handful of
/// blocks, so one short read makes the whole CAR.
pub async fn get_record(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let collection = req.required("collection")?.to_owned();
    let rkey = req.required("rkey")?.to_owned();
    syntax::validate_nsid(&collection).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    syntax::validate_record_key(&rkey).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let root = active_root(&app, &req).await?;
    let car = app
        .store
        .read(move |c| {
            let fail = |e: String| store::StoreError::Corrupt(e);
            let src = SqlBlocks(c);
            let path = format!("{collection}/{rkey}");
            let commit = store::repo::get_block(c, &root.commit_cid)?
                .ok_or_else(|| fail("missing commit block".into()))?;
            let tree = Mst::load(root.data_cid);
            let proof =
                path_proof(&src, &tree, path.as_bytes()).map_err(|e| fail(e.to_string()))?;
            let io = |e: std::io::Error| fail(e.to_string());
            let mut car = CarWriter::new(Vec::new(), &[root.commit_cid]).map_err(io)?;
            car.write_block(&root.commit_cid, &commit).map_err(io)?;
            for (cid, data) in proof.iter() {
                car.write_block(cid, data).map_err(io)?;
            }
            let leaf: Option<Cid> = tree
                .get(&src, path.as_bytes())
                .map_err(|e| fail(e.to_string()))?;
            if let Some(leaf) = leaf
                && let Some(b) = store::repo::get_block(c, &leaf)?
            {
                car.write_block(&leaf, &b).map_err(io)?;
            }
            car.finish().map_err(io)
        })
        .await
        .map_err(XrpcError::internal)?;
    Ok(XrpcResponse::Body {
        content_type: CAR.into(),
        body: crate::xrpc::full(car),
        headers: vec![],
    })
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
    car_stream(&app, &req, NamedBlocks { cids, next: 0 })
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
    full_car(&app, &req, root)
}
