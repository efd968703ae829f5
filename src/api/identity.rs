//! `com.atproto.identity.*` and the identity well-knowns.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::HandlerResult;
use super::auth::{IdentityAttr, Permit};
use crate::account::CodeState;
use crate::app::App;
use crate::identity::plc::directory::Directory;
use crate::store::account::Account;
use crate::syntax;
use crate::xrpc::{self, Body, XrpcError, XrpcRequest, XrpcResponse};

/// The DID document this server publishes for (or registered for) the
/// account: its handle, repo signing key and PDS endpoint.
pub async fn did_document(app: &App, acct: &Account) -> Value {
    let key = app.repo_key.public_key();
    let context_suite = match key.key_type() {
        crate::crypto::KeyType::K256 => "https://w3id.org/security/suites/secp256k1-2019/v1",
        crate::crypto::KeyType::P256 => "https://w3id.org/security/suites/ecdsa-2019/v1",
    };
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            context_suite,
        ],
        "id": acct.did,
        "alsoKnownAs": [format!("at://{}", acct.handle)],
        "verificationMethod": [{
            "id": format!("{}#atproto", acct.did),
            "type": "Multikey",
            "controller": acct.did,
            "publicKeyMultibase": key.to_multikey(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": app.config.public_url(),
        }],
    })
}

/// Handle → DID for anyone's handle, as the reference answers: the local
/// account first; a handle under this server's own names that is not the
/// account is `HandleNotFound` without asking anyone; any other handle is
/// resolved (DNS TXT, then HTTPS, confirmed by the DID document) and an
/// unresolvable one is `InvalidRequest` "Unable to resolve handle".
pub async fn resolve_handle(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    use crate::identity::handles::Resolution;
    let handle = req.required("handle")?;
    syntax::validate_handle(handle).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let handle = syntax::normalize_handle(handle);
    if let Some(a) = app.account().await?
        && a.handle == handle
    {
        return Ok(XrpcResponse::Json(json!({ "did": a.did })));
    }
    let host = &app.config.hostname;
    let ours = handle == *host
        || handle.ends_with(&format!(".{host}"))
        || (app.config.dev && handle.ends_with(".test"));
    if ours {
        return Err(XrpcError::lexicon(
            "HandleNotFound",
            "Unable to resolve handle",
        ));
    }
    let unresolvable = || XrpcError::invalid_request("Unable to resolve handle");
    // Names that never resolve publicly are not looked up at all.
    if syntax::is_disallowed_tld(&handle) {
        return Err(unresolvable());
    }
    match app
        .handles
        .resolve(&app.net, &app.config.plc_url, &handle)
        .await
    {
        Resolution::Found(did) => Ok(XrpcResponse::Json(json!({ "did": did }))),
        Resolution::NotFound | Resolution::Busy => Err(unresolvable()),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(xrpc::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `/.well-known/atproto-did`: the account's DID when asked on its handle's
/// host (or on this server's own hostname, which is the default handle).
pub async fn well_known_atproto_did(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    match app.account().await {
        Ok(Some(a)) if a.handle == host || host == app.config.hostname => {
            plain(StatusCode::OK, a.did)
        }
        Ok(_) => plain(StatusCode::NOT_FOUND, "no user by that name\n".into()),
        Err(e) => XrpcError::internal(e).into_response(),
    }
}

/// `/.well-known/did.json`: served when the account is `did:web` on this
/// server's hostname.
pub async fn well_known_did_json(app: &App) -> Response<Body> {
    match app.account().await {
        Ok(Some(a))
            if a.did
                == crate::identity::web_did(
                    &app.config.hostname,
                    app.config.listen.port(),
                    app.config.dev,
                ) =>
        {
            let doc = did_document(app, &a).await;
            xrpc::json_response(StatusCode::OK, doc.to_string())
        }
        Ok(_) => XrpcError::not_found("NotFound", "no did:web document here").into_response(),
        Err(e) => XrpcError::internal(e).into_response(),
    }
}

/// This server's PLC rotation key, made on first need: an account that moved in (rather than
/// being created here) gets it when the move asks what to put in its DID document.
fn rotation_did_key(app: &App) -> Result<Option<String>, XrpcError> {
    let kd = crate::keys::KeyDir::open(&app.config.data_dir).map_err(XrpcError::internal)?;
    Ok(Some(
        kd.keypair_or_create(crate::keys::ROTATION_KEY)
            .map_err(XrpcError::internal)?
            .did_key(),
    ))
}

/// What this PDS wants in the account's DID document (used by migration).
pub async fn get_recommended_did_credentials(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    super::auth::require_user(&app, &req).await?;
    let acct = app
        .account()
        .await?
        .ok_or_else(|| XrpcError::invalid_request("no account"))?;
    let rotation: Vec<String> = rotation_did_key(&app)?.into_iter().collect();
    Ok(XrpcResponse::Json(json!({
        "rotationKeys": rotation,
        "alsoKnownAs": [format!("at://{}", acct.handle)],
        "verificationMethods": { "atproto": app.repo_key.did_key() },
        "services": {
            "atproto_pds": {
                "type": "AtprotoPersonalDataServer",
                "endpoint": app.config.public_url(),
            }
        },
    })))
}

/// Check that `handle` points at `did`, by DNS TXT `_atproto.<handle>` or
/// by `https://<handle>/.well-known/atproto-did`.
#[derive(serde::Deserialize)]
struct UpdateHandleInput {
    handle: String,
}

pub async fn update_handle(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    let session = super::auth::require_user(&app, &req).await?;
    if session.permissions.is_some() {
        session.permit_identity(IdentityAttr::Handle)?;
    }
    let input: UpdateHandleInput = req.json(crate::xrpc::JSON_LIMIT).await?;
    app.accounts()
        .set_handle(&session.did, &input.handle)
        .await?;
    Ok(XrpcResponse::Empty)
}

fn directory(app: &App) -> Result<Directory<'_>, XrpcError> {
    Ok(Directory::new(&app.net, &app.config.plc_url)?)
}

/// The CID of the DID's latest operation and the state it leaves.
async fn plc_current(
    app: &App,
    did: &str,
) -> Result<(String, crate::identity::plc::PlcState), XrpcError> {
    Ok(directory(app)?.current(did).await?)
}

fn rotation_key(app: &App) -> Result<crate::crypto::Keypair, XrpcError> {
    crate::keys::KeyDir::open(&app.config.data_dir)
        .map_err(XrpcError::internal)?
        .keypair(crate::keys::ROTATION_KEY)
        .map_err(XrpcError::internal)?
        .ok_or_else(|| {
            XrpcError::invalid_request("this server holds no PLC rotation key for the account")
        })
}

async fn plc_submit(
    app: &App,
    did: &str,
    op: &crate::identity::plc::SignedOp,
) -> Result<(), XrpcError> {
    Ok(directory(app)?.submit(did, op).await?)
}

/// Sign and submit a PLC operation that changes `alsoKnownAs`.
pub async fn request_plc_operation_signature(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let s = super::auth::require_user(&app, &req).await?;
    s.permit_identity(IdentityAttr::Any)?;
    app.accounts().issue_plc_code().await?;
    Ok(XrpcResponse::Empty)
}

pub async fn sign_plc_operation(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    use crate::identity::plc;
    let s = super::auth::require_user(&app, &req).await?;
    s.permit_identity(IdentityAttr::Any)?;
    if !s.did.starts_with("did:plc:") {
        return Err(XrpcError::invalid_request("the account is not a did:plc"));
    }
    let body: Value = req.json(crate::xrpc::JSON_LIMIT).await?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            XrpcError::invalid_request("email confirmation token required to sign PLC operations")
        })?
        .to_owned();
    match app.accounts().take_plc_code(&token).await? {
        CodeState::Unknown => return Err(XrpcError::invalid_token("Token is invalid")),
        CodeState::Expired => return Err(XrpcError::expired_token("Token is expired")),
        CodeState::Valid => {}
    }
    let (prev, state) = plc_current(&app, &s.did).await?;
    let mut op = plc::Operation::update_from(&state, &prev).map_err(XrpcError::internal)?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let bad = |what: &str| XrpcError::invalid_request(format!("invalid {what}"));
    if let Some(v) = body.get("rotationKeys") {
        op.rotation_keys = strings(v).ok_or_else(|| bad("rotationKeys"))?;
    }
    if let Some(v) = body.get("alsoKnownAs") {
        op.also_known_as = strings(v).ok_or_else(|| bad("alsoKnownAs"))?;
    }
    if let Some(v) = body.get("verificationMethods") {
        op.verification_methods =
            serde_json::from_value(v.clone()).map_err(|_| bad("verificationMethods"))?;
    }
    if let Some(v) = body.get("services") {
        let m = v.as_object().ok_or_else(|| bad("services"))?;
        op.services = m
            .iter()
            .map(|(k, svc)| {
                let t = svc.get("type").and_then(Value::as_str);
                let e = svc.get("endpoint").and_then(Value::as_str);
                match (t, e) {
                    (Some(t), Some(e)) => Ok((
                        k.clone(),
                        plc::Service {
                            r#type: t.into(),
                            endpoint: e.into(),
                        },
                    )),
                    _ => Err(bad("services")),
                }
            })
            .collect::<Result<_, _>>()?;
    }
    op.validate()
        .map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let signed = plc::sign(op, &rotation_key(&app)?);
    Ok(XrpcResponse::Json(json!({ "operation": signed.to_json() })))
}

pub async fn submit_plc_operation(app: Arc<App>, mut req: XrpcRequest) -> HandlerResult {
    use crate::identity::plc;
    let s = super::auth::require_user(&app, &req).await?;
    if s.permissions.is_some() {
        s.permit_identity(IdentityAttr::Any)?;
    }
    if !s.did.starts_with("did:plc:") {
        return Err(XrpcError::invalid_request("the account is not a did:plc"));
    }
    let body: Value = req.json(crate::xrpc::JSON_LIMIT).await?;
    let op_json = body
        .get("operation")
        .ok_or_else(|| XrpcError::invalid_request("missing operation"))?;
    let signed = plc::SignedOp::from_json(op_json)
        .map_err(|e| XrpcError::invalid_request(format!("invalid operation: {e}")))?;
    let plc::SignedOp::Operation { op, .. } = &signed else {
        return Err(XrpcError::invalid_request(
            "only plc_operation can be submitted here",
        ));
    };
    // As the reference does: the account must stay hosted here.
    let ours = rotation_key(&app)?.did_key();
    if !op.rotation_keys.contains(&ours) {
        return Err(XrpcError::invalid_request(
            "Rotation keys do not include server's rotation key",
        ));
    }
    if op.verification_methods.get("atproto") != Some(&app.repo_key.did_key()) {
        return Err(XrpcError::invalid_request("Incorrect signing key"));
    }
    let endpoint = op
        .services
        .get("atproto_pds")
        .map(|svc| svc.endpoint.as_str());
    if endpoint != Some(app.config.public_url().as_str()) {
        return Err(XrpcError::invalid_request(
            "Incorrect endpoint on atproto_pds service",
        ));
    }
    plc_submit(&app, &s.did, &signed).await?;
    // Handles live in alsoKnownAs; announce whatever it now says.
    let handle = op
        .also_known_as
        .iter()
        .find_map(|a| a.strip_prefix("at://"))
        .map(syntax::normalize_handle)
        .unwrap_or(s.handle);
    app.writer.set_handle(s.did, handle).await?;
    Ok(XrpcResponse::Empty)
}
