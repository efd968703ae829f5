//! `com.atproto.repo.*`: record writes and reads, blobs.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::HandlerResult;
use super::auth::{self, Permit, RepoAction, Session};
use crate::app::App;
use crate::cbor::{self, Ipld};
use crate::cid::{self, Cid};
use crate::lexicon::{Mode, Status};
use crate::store::{self, blobs as blob_rows};
use crate::syntax;
use crate::writer::{CommitOutcome, RepoWrite, WriteError, WriteOp};
use crate::xrpc::{JSON_LIMIT, XrpcError, XrpcRequest, XrpcResponse};

/// Bodies of createRecord, putRecord and applyWrites: 1,000,000 bytes, as at the reference
/// PDS, so a record written here can be written at any other PDS (and a commit stays well
/// under the firehose's 2 MB event cap).
const WRITE_BODY_LIMIT: usize = 1_000_000;

fn write_error(e: WriteError) -> XrpcError {
    match e {
        WriteError::InvalidRequest(m) => XrpcError::invalid_request(m),
        WriteError::InvalidSwap(m) => XrpcError::lexicon("InvalidSwap", m),
        WriteError::BlobNotFound(c) => {
            XrpcError::invalid_request(format!("Could not find blob: {c}"))
        }
        WriteError::InvalidMimeType(m) => XrpcError::lexicon("InvalidMimeType", m),
        WriteError::InvalidSize(m) => XrpcError::lexicon("InvalidSize", m),
        WriteError::NoAccount => XrpcError::lexicon("RepoNotFound", "no account on this server"),
        WriteError::AccountInactive(s) => XrpcError::account_inactive(s),
        WriteError::Store(s) => s.into(),
        other => XrpcError::internal(other),
    }
}

/// The `repo` field must name the signed-in account, by DID or handle.
fn check_repo(session: &Session, repo: &str) -> Result<(), XrpcError> {
    if repo == session.did || syntax::normalize_handle(repo) == session.handle {
        return Ok(());
    }
    if !syntax::is_valid_at_identifier(repo) {
        return Err(XrpcError::invalid_request(format!("invalid repo: {repo}")));
    }
    Err(XrpcError::forbidden(
        "Can not write to a repo other than your own",
    ))
}

fn check_collection(c: &str) -> Result<(), XrpcError> {
    syntax::validate_nsid(c).map_err(|e| XrpcError::invalid_request(e.to_string()))
}

fn check_rkey(r: &str) -> Result<(), XrpcError> {
    syntax::validate_record_key(r).map_err(|e| XrpcError::invalid_request(e.to_string()))
}

fn parse_cid_field(name: &str, v: &str) -> Result<Cid, XrpcError> {
    cid::parse(v).map_err(|_| XrpcError::invalid_request(format!("{name} is not a valid CID")))
}

/// JSON record → data-model value; it must be an object whose `$type`
/// names the collection.
fn record_value(collection: &str, record: &Value) -> Result<Ipld, XrpcError> {
    let v = cbor::record_from_json(record)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid record: {e}")))?;
    match v.get("$type").and_then(Ipld::as_str) {
        Some(t) if t == collection => Ok(v),
        Some(t) => Err(XrpcError::invalid_request(format!(
            "Invalid $type: expected {collection}, got {t}"
        ))),
        None => Err(XrpcError::invalid_request("Invalid record: missing $type")),
    }
}

/// Lexicon validation of a record about to be written at `collection/rkey` (see
/// `crate::lexicon`): the `validationStatus` to report, or 400 `InvalidRequest`.
fn validated(
    collection: &str,
    rkey: &str,
    record: &Ipld,
    validate: Option<bool>,
) -> Result<Status, XrpcError> {
    crate::lexicon::Catalog::embedded()
        .check_record(collection, rkey, record, Mode::from_flag(validate))
        .map(|checked| checked.status)
        .map_err(|e| XrpcError::invalid_request(e.0))
}

fn opt_cid(name: &str, v: Option<&str>) -> Result<Option<Cid>, XrpcError> {
    v.map(|s| parse_cid_field(name, s)).transpose()
}

/// createRecord / putRecord: one write, answered with the record's URI,
/// CID and the commit.
async fn write_one(
    app: &App,
    op: WriteOp,
    swap_commit: Option<Cid>,
    status: Status,
) -> HandlerResult {
    let out = app
        .writer
        .write(RepoWrite {
            ops: vec![op],
            swap_commit,
        })
        .await
        .map_err(write_error)?;
    Ok(XrpcResponse::Json(record_written(&out, &status)))
}

/// The output of createRecord and putRecord.
fn record_written(out: &CommitOutcome, status: &Status) -> Value {
    let r = &out.results[0];
    let mut body = json!({
        "uri": r.uri,
        "cid": r.cid.map(|c| c.to_string()),
    });
    if let Some(s) = status.as_str() {
        body["validationStatus"] = s.into();
    }
    if let Some(m) = commit_meta(out) {
        body["commit"] = m;
    }
    body
}

fn commit_meta(out: &CommitOutcome) -> Option<Value> {
    out.commit
        .as_ref()
        .map(|(c, rev)| json!({ "cid": c.to_string(), "rev": rev }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    repo: String,
    collection: String,
    rkey: Option<String>,
    validate: Option<bool>,
    record: Value,
    swap_commit: Option<String>,
}

pub async fn create_record(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    let input: CreateInput = req.json(WRITE_BODY_LIMIT).await?;
    check_repo(&session, &input.repo)?;
    check_collection(&input.collection)?;
    session.permit_repo(&input.collection, RepoAction::Create)?;
    let rkey = match input.rkey {
        Some(r) => {
            check_rkey(&r)?;
            r
        }
        None => crate::tid::now().to_string(),
    };
    let record = record_value(&input.collection, &input.record)?;
    let status = validated(&input.collection, &rkey, &record, input.validate)?;
    let swap_commit = opt_cid("swapCommit", input.swap_commit.as_deref())?;
    let op = WriteOp::Create {
        collection: input.collection,
        rkey,
        record,
    };
    write_one(&app, op, swap_commit, status).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutInput {
    repo: String,
    collection: String,
    rkey: String,
    validate: Option<bool>,
    record: Value,
    /// Absent: no check. `null`: the record must not exist.
    #[serde(default, deserialize_with = "double_option")]
    swap_record: Option<Option<String>>,
    swap_commit: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

pub async fn put_record(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    let input: PutInput = req.json(WRITE_BODY_LIMIT).await?;
    check_repo(&session, &input.repo)?;
    check_collection(&input.collection)?;
    // A put creates or replaces: both are asked for (as the reference does).
    session.permit_repo(&input.collection, RepoAction::Create)?;
    session.permit_repo(&input.collection, RepoAction::Update)?;
    check_rkey(&input.rkey)?;
    let record = record_value(&input.collection, &input.record)?;
    let status = validated(&input.collection, &input.rkey, &record, input.validate)?;
    let swap_record = match input.swap_record {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(parse_cid_field("swapRecord", &s)?)),
    };
    let swap_commit = opt_cid("swapCommit", input.swap_commit.as_deref())?;
    let op = WriteOp::Put {
        collection: input.collection,
        rkey: input.rkey,
        record,
        swap_record,
        unchanged_is_noop: true,
    };
    write_one(&app, op, swap_commit, status).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    repo: String,
    collection: String,
    rkey: String,
    swap_record: Option<String>,
    swap_commit: Option<String>,
}

pub async fn delete_record(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    let input: DeleteInput = req.json(JSON_LIMIT).await?;
    check_repo(&session, &input.repo)?;
    check_collection(&input.collection)?;
    session.permit_repo(&input.collection, RepoAction::Delete)?;
    check_rkey(&input.rkey)?;
    let swap_record = opt_cid("swapRecord", input.swap_record.as_deref())?;
    let swap_commit = opt_cid("swapCommit", input.swap_commit.as_deref())?;
    let out = app
        .writer
        .write(RepoWrite {
            ops: vec![WriteOp::Delete {
                collection: input.collection,
                rkey: input.rkey,
                swap_record,
            }],
            swap_commit,
        })
        .await
        .map_err(write_error)?;
    let mut body = json!({});
    if let Some(m) = commit_meta(&out) {
        body["commit"] = m;
    }
    Ok(XrpcResponse::Json(body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyInput {
    repo: String,
    validate: Option<bool>,
    writes: Vec<Value>,
    swap_commit: Option<String>,
}

pub async fn apply_writes(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    let input: ApplyInput = req.json(WRITE_BODY_LIMIT).await?;
    check_repo(&session, &input.repo)?;
    if input.writes.len() > crate::writer::MAX_OPS {
        return Err(XrpcError::invalid_request(format!(
            "Too many writes. Max: {}",
            crate::writer::MAX_OPS
        )));
    }
    let mut ops = Vec::with_capacity(input.writes.len());
    let mut kinds = Vec::with_capacity(input.writes.len());
    let mut statuses = Vec::with_capacity(input.writes.len());
    for w in &input.writes {
        let t = w.get("$type").and_then(Value::as_str).unwrap_or("");
        let collection = w
            .get("collection")
            .and_then(Value::as_str)
            .ok_or_else(|| XrpcError::invalid_request("write is missing collection"))?
            .to_owned();
        check_collection(&collection)?;
        let rkey = w.get("rkey").and_then(Value::as_str).map(str::to_owned);
        if let Some(r) = &rkey {
            check_rkey(r)?;
        }
        let need_rkey = || {
            rkey.clone()
                .ok_or_else(|| XrpcError::invalid_request("write is missing rkey"))
        };
        let value = || {
            w.get("value")
                .ok_or_else(|| XrpcError::invalid_request("write is missing value"))
                .and_then(|v| record_value(&collection, v))
        };
        // Every record is checked before anything is written: one invalid op fails the
        // whole call.
        let op = match t {
            "com.atproto.repo.applyWrites#create" => {
                session.permit_repo(&collection, RepoAction::Create)?;
                let rkey = rkey
                    .clone()
                    .unwrap_or_else(|| crate::tid::now().to_string());
                let record = value()?;
                statuses.push(validated(&collection, &rkey, &record, input.validate)?);
                WriteOp::Create {
                    rkey,
                    record,
                    collection: collection.clone(),
                }
            }
            "com.atproto.repo.applyWrites#update" => {
                session.permit_repo(&collection, RepoAction::Update)?;
                let rkey = need_rkey()?;
                let record = value()?;
                statuses.push(validated(&collection, &rkey, &record, input.validate)?);
                WriteOp::Put {
                    rkey,
                    record,
                    collection: collection.clone(),
                    swap_record: None,
                    unchanged_is_noop: false,
                }
            }
            "com.atproto.repo.applyWrites#delete" => {
                session.permit_repo(&collection, RepoAction::Delete)?;
                statuses.push(Status::Skipped);
                WriteOp::Delete {
                    rkey: need_rkey()?,
                    collection: collection.clone(),
                    swap_record: None,
                }
            }
            other => {
                return Err(XrpcError::invalid_request(format!(
                    "unknown write type: {other:?}"
                )));
            }
        };
        kinds.push(t.to_owned());
        ops.push(op);
    }
    let swap_commit = opt_cid("swapCommit", input.swap_commit.as_deref())?;
    let out = app
        .writer
        .write(RepoWrite { ops, swap_commit })
        .await
        .map_err(write_error)?;
    let results: Vec<Value> = kinds
        .iter()
        .zip(&out.results)
        .zip(&statuses)
        .map(|((k, r), status)| match k.as_str() {
            "com.atproto.repo.applyWrites#delete" => {
                json!({ "$type": "com.atproto.repo.applyWrites#deleteResult" })
            }
            k => {
                let mut v = json!({
                    "$type": format!("{k}Result"),
                    "uri": r.uri,
                    "cid": r.cid.map(|c| c.to_string()),
                });
                if let Some(s) = status.as_str() {
                    v["validationStatus"] = s.into();
                }
                v
            }
        })
        .collect();
    let mut body = json!({ "results": results });
    if let Some(m) = commit_meta(&out) {
        body["commit"] = m;
    }
    Ok(XrpcResponse::Json(body))
}

/// A repo that is not active is not public, to its owner neither (as the reference's
/// describeRepo; its getRecord and listRecords find no such repo).
fn available(a: &store::account::Account, repo: &str) -> Result<(), XrpcError> {
    if a.is_active() {
        Ok(())
    } else {
        Err(XrpcError::repo_unavailable(a.status, Some(repo)))
    }
}

/// Resolve a `repo` parameter (DID or handle) to the local account's DID.
async fn local_repo(app: &App, repo: &str) -> Result<store::account::Account, XrpcError> {
    let acct = app.account().await?;
    match acct {
        Some(a) if a.did == repo || a.handle == syntax::normalize_handle(repo) => {
            available(&a, repo).map(|()| a)
        }
        _ if !syntax::is_valid_at_identifier(repo) => {
            Err(XrpcError::invalid_request(format!("invalid repo: {repo}")))
        }
        _ => Err(XrpcError::lexicon(
            "RepoNotFound",
            format!("Could not find repo: {repo}"),
        )),
    }
}

pub async fn get_record(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let repo = req.required("repo")?.to_owned();
    let collection = req.required("collection")?.to_owned();
    let rkey = req.required("rkey")?.to_owned();
    check_collection(&collection)?;
    check_rkey(&rkey)?;
    let want = req
        .param("cid")
        .map(|s| parse_cid_field("cid", s))
        .transpose()?;
    let acct = match local_repo(&app, &repo).await {
        Ok(a) => a,
        // Not hosted here: the AppView has it (as the reference answers).
        Err(e) if e.error == "RepoNotFound" => {
            return super::proxy::forward_to_appview_unsigned(&app, &req).await;
        }
        Err(e) => return Err(e),
    };
    let uri = format!("at://{}/{collection}/{rkey}", acct.did);
    let found = app
        .store
        .read(move |c| {
            let Some(cid) = store::repo::get_record(c, &collection, &rkey)? else {
                return Ok(None);
            };
            Ok(store::repo::get_block(c, &cid)?.map(|b| (cid, b)))
        })
        .await?;
    let (cid, bytes) = match found {
        Some((c, b)) if want.is_none_or(|w| w == c) => (c, b),
        _ => {
            return Err(XrpcError::lexicon(
                "RecordNotFound",
                format!("Could not locate record: {uri}"),
            ));
        }
    };
    let mut out = Vec::with_capacity(64 + 2 * bytes.len());
    out.push(b'{');
    record_json(&uri, &cid, &bytes, &mut out)?;
    out.push(b'}');
    Ok(XrpcResponse::JsonText(out))
}

/// `"uri":…,"cid":…,"value":…` of a record, its value transcoded from the stored bytes.
fn record_json(uri: &str, cid: &Cid, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), XrpcError> {
    out.extend_from_slice(b"\"uri\":");
    cbor::json_string(uri, out);
    out.extend_from_slice(b",\"cid\":");
    cbor::json_string(&cid.to_string(), out);
    out.extend_from_slice(b",\"value\":");
    cbor::to_json_text(bytes, out).map_err(XrpcError::internal)
}

pub async fn list_records(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let repo = req.required("repo")?.to_owned();
    let collection = req.required("collection")?.to_owned();
    check_collection(&collection)?;
    let limit = req.int_param("limit", 1, 100, 50)? as u32;
    let reverse = req.bool_param("reverse", false)?;
    let cursor = req.param("cursor").map(str::to_owned);
    if let Some(c) = &cursor {
        check_rkey(c).map_err(|_| XrpcError::invalid_request("invalid cursor"))?;
    }
    let acct = local_repo(&app, &repo).await?;
    let coll = collection.clone();
    let rows = app
        .store
        .read(move |c| {
            // The page and its records from one snapshot, the records in one lookup.
            let c = c.begin_read()?;
            let page = store::repo::list_records(&c, &coll, cursor.as_deref(), limit, reverse)?;
            let cids: Vec<Cid> = page.iter().map(|(_, cid)| *cid).collect();
            let blocks = store::repo::get_blocks(&c, &cids, usize::MAX)?;
            page.into_iter()
                .zip(blocks)
                .map(|((rkey, cid), bytes)| {
                    let bytes = bytes.ok_or_else(|| {
                        store::StoreError::Corrupt(format!("missing record block {cid}"))
                    })?;
                    Ok((rkey, cid, bytes))
                })
                .collect::<Result<Vec<_>, store::StoreError>>()
        })
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.0.clone()))
        .flatten();
    let size: usize = rows.iter().map(|r| 160 + 2 * r.2.len()).sum();
    let mut out = Vec::with_capacity(32 + size);
    out.extend_from_slice(b"{\"records\":[");
    for (i, (rkey, cid, bytes)) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let uri = format!("at://{}/{collection}/{rkey}", acct.did);
        record_json(&uri, cid, bytes, &mut out)?;
        out.push(b'}');
    }
    out.push(b']');
    if let Some(c) = next {
        out.extend_from_slice(b",\"cursor\":");
        cbor::json_string(&c, &mut out);
    }
    out.push(b'}');
    Ok(XrpcResponse::JsonText(out))
}

pub async fn describe_repo(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let repo = req.required("repo")?.to_owned();
    let acct = local_repo(&app, &repo).await?;
    let collections = app.store.read(store::repo::collections).await?;
    let did_doc = super::identity::did_document(&app, &acct).await;
    Ok(XrpcResponse::Json(json!({
        "handle": acct.handle,
        "did": acct.did,
        "didDoc": did_doc,
        "collections": collections,
        "handleIsCorrect": true,
    })))
}

pub async fn upload_blob(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user_or_service(&app, &req, "com.atproto.repo.uploadBlob").await?;
    let declared = req.header("content-type").map(str::to_owned);
    session.permit_blob(declared.as_deref().unwrap_or("application/octet-stream"))?;
    let expected = req.content_length()?;
    let body = req
        .body
        .take()
        .ok_or_else(|| XrpcError::invalid_request("missing body"))?;
    let blob = app
        .uploads()
        .upload(body, expected, declared.as_deref())
        .await?;
    Ok(XrpcResponse::Json(json!({
        "blob": {
            "$type": "blob",
            "ref": { "$link": blob.cid.to_string() },
            "mimeType": blob.mime_type,
            "size": blob.size,
        }
    })))
}

pub async fn list_missing_blobs(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let session = auth::require_user(&app, &req).await?;
    let limit = req.int_param("limit", 1, 1000, 500)? as u32;
    let cursor = req.param("cursor").map(str::to_owned);
    let rows = app
        .store
        .read(move |c| blob_rows::list_missing_blobs(c, cursor.as_deref(), limit))
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.0.clone()))
        .flatten();
    let blobs: Vec<Value> = rows
        .into_iter()
        .map(|(cid, path)| json!({ "cid": cid, "recordUri": format!("at://{}/{path}", session.did) }))
        .collect();
    let mut body = json!({ "blobs": blobs });
    if let Some(c) = next {
        body["cursor"] = Value::String(c);
    }
    Ok(XrpcResponse::Json(body))
}
