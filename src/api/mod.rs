//! XRPC handlers, one file per lexicon group. Parsing and rendering only:
//! state changes go through `crate::writer`, reads through `crate::store`.

pub mod actor;
pub mod auth;
pub mod email;
pub mod exports;
pub mod health;
pub mod identity;
pub mod migrate;
pub mod notification;
pub mod proxy;
mod read_after_write;
pub mod repo;
pub mod server;
pub mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::Method;

use crate::app::App;
use crate::xrpc::{Kind, XrpcError, XrpcRequest, XrpcResponse};

pub type HandlerResult = Result<XrpcResponse, XrpcError>;
type Fut = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = fn(Arc<App>, XrpcRequest) -> Fut;

macro_rules! h {
    ($f:path) => {{
        fn wrap(app: Arc<App>, req: XrpcRequest) -> Fut {
            Box::pin($f(app, req))
        }
        wrap as Handler
    }};
}

fn lookup(nsid: &str) -> Option<(Kind, Handler)> {
    use Kind::{Procedure as P, Query as Q};
    Some(match nsid {
        "com.atproto.server.describeServer" => (Q, h!(server::describe_server)),
        "com.atproto.server.createSession" => (P, h!(server::create_session)),
        "com.atproto.server.getSession" => (Q, h!(server::get_session)),
        "com.atproto.server.refreshSession" => (P, h!(server::refresh_session)),
        "com.atproto.server.deleteSession" => (P, h!(server::delete_session)),
        "com.atproto.server.createAppPassword" => (P, h!(server::create_app_password)),
        "com.atproto.server.listAppPasswords" => (Q, h!(server::list_app_passwords)),
        "com.atproto.server.revokeAppPassword" => (P, h!(server::revoke_app_password)),
        "com.atproto.server.getServiceAuth" => (Q, h!(server::get_service_auth)),
        "com.atproto.server.checkAccountStatus" => (Q, h!(server::check_account_status)),
        "com.atproto.server.createAccount" => (P, h!(migrate::create_account)),
        "com.atproto.server.activateAccount" => (P, h!(migrate::activate_account)),
        "com.atproto.server.deactivateAccount" => (P, h!(migrate::deactivate_account)),
        "com.atproto.repo.importRepo" => (P, h!(migrate::import_repo)),
        "com.atproto.server.requestAccountDelete" => (P, h!(migrate::request_account_delete)),
        "com.atproto.server.deleteAccount" => (P, h!(migrate::delete_account)),
        "com.atproto.server.requestEmailConfirmation" => (P, h!(email::request_email_confirmation)),
        "com.atproto.server.confirmEmail" => (P, h!(email::confirm_email)),
        "com.atproto.server.requestEmailUpdate" => (P, h!(email::request_email_update)),
        "com.atproto.server.updateEmail" => (P, h!(email::update_email)),
        "com.atproto.server.requestPasswordReset" => (P, h!(email::request_password_reset)),
        "com.atproto.server.resetPassword" => (P, h!(email::reset_password)),
        "com.atproto.server.getAccountInviteCodes" => (Q, h!(server::get_account_invite_codes)),
        "com.atproto.repo.createRecord" => (P, h!(repo::create_record)),
        "com.atproto.repo.putRecord" => (P, h!(repo::put_record)),
        "com.atproto.repo.deleteRecord" => (P, h!(repo::delete_record)),
        "com.atproto.repo.applyWrites" => (P, h!(repo::apply_writes)),
        "com.atproto.repo.getRecord" => (Q, h!(repo::get_record)),
        "com.atproto.repo.listRecords" => (Q, h!(repo::list_records)),
        "com.atproto.repo.describeRepo" => (Q, h!(repo::describe_repo)),
        "com.atproto.repo.uploadBlob" => (P, h!(repo::upload_blob)),
        "com.atproto.repo.listMissingBlobs" => (Q, h!(repo::list_missing_blobs)),
        "com.atproto.sync.getLatestCommit" => (Q, h!(sync::get_latest_commit)),
        "com.atproto.sync.getRepoStatus" => (Q, h!(sync::get_repo_status)),
        "com.atproto.sync.listRepos" => (Q, h!(sync::list_repos)),
        "com.atproto.sync.getBlob" => (Q, h!(sync::get_blob)),
        "com.atproto.sync.listBlobs" => (Q, h!(sync::list_blobs)),
        "com.atproto.sync.getRecord" => (Q, h!(sync::get_record)),
        "com.atproto.sync.getRepo" => (Q, h!(sync::get_repo)),
        "com.atproto.sync.getBlocks" => (Q, h!(sync::get_blocks)),
        "com.atproto.sync.getHead" => (Q, h!(sync::get_head)),
        "com.atproto.sync.getCheckout" => (Q, h!(sync::get_checkout)),
        "com.atproto.identity.resolveHandle" => (Q, h!(identity::resolve_handle)),
        "com.atproto.identity.updateHandle" => (P, h!(identity::update_handle)),
        "com.atproto.identity.requestPlcOperationSignature" => {
            (P, h!(identity::request_plc_operation_signature))
        }
        "com.atproto.identity.signPlcOperation" => (P, h!(identity::sign_plc_operation)),
        "com.atproto.identity.submitPlcOperation" => (P, h!(identity::submit_plc_operation)),
        "com.atproto.identity.getRecommendedDidCredentials" => {
            (Q, h!(identity::get_recommended_did_credentials))
        }
        "app.bsky.actor.getPreferences" => (Q, h!(actor::get_preferences)),
        "app.bsky.actor.putPreferences" => (P, h!(actor::put_preferences)),
        "app.bsky.notification.registerPush" => (P, h!(notification::register_push)),
        "app.bsky.notification.unregisterPush" => (P, h!(notification::unregister_push)),
        _ => return None,
    })
}

pub async fn dispatch(app: Arc<App>, req: XrpcRequest) -> HandlerResult {
    let Some((kind, handler)) = lookup(&req.nsid) else {
        if proxy::wants_proxy(&req) {
            let q = req.raw_query.clone();
            return proxy::forward(app, req, q).await;
        }
        return Err(XrpcError::method_not_implemented());
    };
    let ok = match kind {
        Kind::Query => req.method == Method::GET || req.method == Method::HEAD,
        Kind::Procedure => req.method == Method::POST,
    };
    if !ok {
        let expected = if kind == Kind::Query { "GET" } else { "POST" };
        return Err(XrpcError::invalid_request(format!(
            "Incorrect HTTP method ({}) expected {expected}",
            req.method
        )));
    }
    handler(app, req).await
}
