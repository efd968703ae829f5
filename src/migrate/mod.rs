//! `perch migrate in`: moving an account from another PDS to this one with the standard
//! endpoints on both sides, step by step. Every step first looks at where things stand, so
//! running the command again after a failure (or a crash of either server) carries on.

pub mod client;

use std::time::Duration;

use serde_json::{Value, json};

use crate::net::Net;
use client::{CallError, Pds};

/// What `perch migrate in` needs.
pub struct InOptions {
    /// Handle or DID of the account to move.
    pub from: String,
    /// The account password on the old PDS (also the password here).
    pub password: String,
    /// The old PDS, when it should not be read from the DID document.
    pub old_pds: Option<String>,
    /// This server's URL (default: its public URL).
    pub to: String,
    /// The code the old PDS emailed for signing the PLC operation.
    pub plc_token: Option<String>,
    pub plc_url: String,
    /// This server's invite code for createAccount.
    pub invite_code: Option<String>,
}

/// What `perch migrate out` needs.
pub struct OutOptions {
    /// This server's URL (default: its public URL).
    pub from: String,
    /// The PDS to move to.
    pub to: String,
    /// The account here (its DID).
    pub login: String,
    /// The account password here; the new account gets the same one.
    pub password: String,
    /// Handle on the new PDS (default: the current one).
    pub handle: Option<String>,
    pub email: Option<String>,
    pub invite_code: Option<String>,
    /// A PLC operation code minted here (the CLI runs on this box, so no email is needed).
    pub plc_token: String,
    pub plc_url: String,
}

/// How the old PDS's PLC signature is authorised.
enum PlcCode {
    /// Emailed by the old PDS: requested on the first run, given back on a later one.
    Emailed(Option<String>),
    /// Minted by this box for itself.
    Minted(String),
}

/// One move: `login` signs in on `old`; the account is created on `new`.
struct Move<'a> {
    net: Net,
    old: Pds,
    new: Pds,
    /// DID or handle on the old PDS.
    login: String,
    /// Handle and email for the new account; by default the old session's.
    handle: Option<String>,
    email: Option<String>,
    password: String,
    invite_code: Option<String>,
    plc: PlcCode,
    plc_url: String,
    /// Told about the blob copy, the long part.
    progress: &'a dyn crate::progress::Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{0}")]
    Step(String),
    /// Not a failure: the user must do something, then run the command again.
    #[error("{0}")]
    Waiting(String),
}

fn step(m: impl Into<String>) -> MigrateError {
    MigrateError::Step(m.into())
}

fn say(m: impl AsRef<str>) {
    println!("{}", m.as_ref());
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a str, MigrateError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| step(format!("the answer has no {k}: {v}")))
}

/// Retries transient failures (transport errors, 5xx) a few times with a growing pause.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, MigrateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut delay = Duration::from_millis(500);
    for attempt in 1.. {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let transient = match &e {
                    CallError::Transport { .. } => true,
                    CallError::Xrpc { status, .. } => *status >= 500 || *status == 429,
                };
                if !transient || attempt >= 5 {
                    return Err(e.into());
                }
                tracing::warn!("{what} failed (attempt {attempt}): {e}; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    unreachable!("the loop returns")
}

async fn resolve_did(net: &Net, plc_url: &str, from: &str) -> Result<String, MigrateError> {
    if from.starts_with("did:") {
        return Ok(from.to_owned());
    }
    let handle = crate::syntax::normalize_handle(from.trim_start_matches('@'));
    crate::identity::resolve::handle_to_did(net, plc_url, &handle)
        .await
        .map_err(|e| step(format!("cannot resolve {handle}: {e}")))
}

/// Moves the account here. Returns a summary line.
pub async fn migrate_in(
    opts: InOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<String, MigrateError> {
    let net = Net::new(true);
    let did = resolve_did(&net, &opts.plc_url, &opts.from).await?;
    let doc = crate::identity::resolve::did_document(&net, &opts.plc_url, &did)
        .await
        .map_err(|e| step(format!("cannot read the DID document of {did}: {e}")))?;
    let new = Pds::new(&net, &opts.to);
    let current_pds = crate::identity::resolve::service_endpoint(&doc, "atproto_pds");
    let old_url = match (&opts.old_pds, &current_pds) {
        (Some(u), _) => u.clone(),
        (None, Some(u)) if u.trim_end_matches('/') != new.url => u.clone(),
        _ => {
            return Err(step(format!(
                "the DID document of {did} already names this server; if the move stopped \
                 half-way, give the old server with --old-pds URL"
            )));
        }
    };
    move_account(Move {
        net: net.clone(),
        old: Pds::new(&net, &old_url),
        new,
        login: did,
        handle: None,
        email: None,
        password: opts.password.clone(),
        invite_code: opts.invite_code.clone(),
        plc: PlcCode::Emailed(opts.plc_token.clone()),
        plc_url: opts.plc_url.clone(),
        progress,
    })
    .await
}

/// Moves this server's account to another PDS.
pub async fn migrate_out(
    opts: OutOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<String, MigrateError> {
    let net = Net::new(true);
    let here = Pds::new(&net, &opts.from);
    let new = Pds::new(&net, &opts.to);
    if here.url == new.url {
        return Err(step("--to names this server"));
    }
    move_account(Move {
        net: net.clone(),
        old: here,
        new,
        login: opts.login.clone(),
        handle: opts.handle.clone(),
        email: opts.email.clone(),
        password: opts.password.clone(),
        invite_code: opts.invite_code.clone(),
        plc: PlcCode::Minted(opts.plc_token.clone()),
        plc_url: opts.plc_url.clone(),
        progress,
    })
    .await
}

async fn move_account(m: Move<'_>) -> Result<String, MigrateError> {
    let Move {
        net,
        old,
        new,
        login,
        handle,
        email,
        password,
        invite_code,
        plc,
        plc_url,
        progress,
    } = m;
    // 1. Sessions: the old server, then this one (creating the account on first run).
    let old_session = retry("login to the old PDS", || {
        old.procedure(
            "com.atproto.server.createSession",
            Some(&json!({ "identifier": login, "password": password })),
        )
    })
    .await?;
    let old = old.with_token(field(&old_session, "accessJwt")?);
    let did = field(&old_session, "did")?.to_owned();
    if login.starts_with("did:") && did != login {
        return Err(step(format!("the old PDS logged in {did}, not {login}")));
    }
    let handle = match handle {
        Some(h) => h,
        None => field(&old_session, "handle")?.to_owned(),
    };
    let email = email.or_else(|| {
        old_session
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    say(format!("moving {did} from {} to {}", old.url, new.url));
    let new = match new
        .procedure(
            "com.atproto.server.createSession",
            Some(&json!({ "identifier": did, "password": password })),
        )
        .await
    {
        Ok(s) => {
            say("account already created here; continuing");
            new.with_token(field(&s, "accessJwt")?)
        }
        Err(_) => {
            let describe = new.query("com.atproto.server.describeServer", &[]).await?;
            let service_did = field(&describe, "did")?.to_owned();
            let exp = (crate::clock::unix_secs() + 600).to_string();
            let auth = old
                .query(
                    "com.atproto.server.getServiceAuth",
                    &[
                        ("aud", &service_did),
                        ("lxm", "com.atproto.server.createAccount"),
                        ("exp", &exp),
                    ],
                )
                .await?;
            let mut body = json!({ "did": did, "handle": handle, "password": password });
            if let Some(e) = &email {
                body["email"] = json!(e);
            }
            if let Some(code) = &invite_code {
                body["inviteCode"] = json!(code);
            }
            let created = new
                .with_token(field(&auth, "token")?)
                .procedure("com.atproto.server.createAccount", Some(&body))
                .await?;
            say(format!(
                "created {handle} ({did}) here, deactivated until the move is done"
            ));
            new.with_token(field(&created, "accessJwt")?)
        }
    };

    let status = new
        .query("com.atproto.server.checkAccountStatus", &[])
        .await?;
    let activated = status.get("activated").and_then(Value::as_bool) == Some(true);
    if !activated {
        copy_repo(&old, &new, &did, &status).await?;
        copy_blobs(&old, &new, &did, progress).await?;
        let prefs = old.query("app.bsky.actor.getPreferences", &[]).await?;
        new.procedure("app.bsky.actor.putPreferences", Some(&prefs))
            .await?;
        say("preferences copied");
        update_identity(&old, &new, &did, &plc).await?;
        retry("activateAccount", || {
            new.procedure("com.atproto.server.activateAccount", None)
        })
        .await?;
        say("account activated here");
    } else {
        say("account already active here");
    }
    match old
        .procedure("com.atproto.server.deactivateAccount", Some(&json!({})))
        .await
    {
        Ok(_) => say("account deactivated on the old PDS"),
        Err(e) => say(format!(
            "warning: could not deactivate the account on the old PDS: {e}"
        )),
    }
    verify(&net, &plc_url, &old, &new, &did, &handle).await
}

async fn copy_repo(old: &Pds, new: &Pds, did: &str, status: &Value) -> Result<(), MigrateError> {
    let latest = retry("getLatestCommit", || {
        old.query("com.atproto.sync.getLatestCommit", &[("did", did)])
    })
    .await?;
    let old_rev = field(&latest, "rev")?;
    if status.get("repoRev").and_then(Value::as_str) == Some(old_rev) {
        say(format!("repository already imported (rev {old_rev})"));
        return Ok(());
    }
    let started = std::time::Instant::now();
    let car = retry("getRepo", || {
        old.query_raw("com.atproto.sync.getRepo", &[("did", did)])
    })
    .await?;
    let size = car.bytes.len();
    retry("importRepo", || {
        new.procedure_raw(
            "com.atproto.repo.importRepo",
            "application/vnd.ipld.car",
            car.bytes.clone(),
        )
    })
    .await?;
    say(format!(
        "repository imported: {:.1} MB in {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn copy_blobs(
    old: &Pds,
    new: &Pds,
    did: &str,
    progress: &dyn crate::progress::Progress,
) -> Result<(), MigrateError> {
    let mut copied = 0usize;
    let mut bytes = 0usize;
    let started = std::time::Instant::now();
    // The new PDS knows from the imported records how many blobs it expects.
    if let Ok(status) = new
        .query("com.atproto.server.checkAccountStatus", &[])
        .await
    {
        let n = |k: &str| status.get(k).and_then(Value::as_u64).unwrap_or(0);
        progress.total(n("expectedBlobs").saturating_sub(n("importedBlobs")), 0);
    }
    loop {
        // Always from the start: what was uploaded is no longer missing.
        let page = retry("listMissingBlobs", || {
            new.query("com.atproto.repo.listMissingBlobs", &[("limit", "500")])
        })
        .await?;
        let missing: Vec<String> = page
            .get("blobs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|b| b.get("cid").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if missing.is_empty() {
            break;
        }
        let before = copied;
        for cid in missing {
            let blob = match retry("getBlob", || {
                old.query_raw("com.atproto.sync.getBlob", &[("did", did), ("cid", &cid)])
            })
            .await
            {
                Ok(b) => b,
                Err(MigrateError::Call(e)) if e.error_name() == Some("BlobNotFound") => {
                    say(format!(
                        "warning: the old PDS no longer has blob {cid}; skipped"
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ct = blob
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            let up = retry("uploadBlob", || {
                new.procedure_raw("com.atproto.repo.uploadBlob", &ct, blob.bytes.clone())
            })
            .await?;
            let got = up
                .pointer("/blob/ref/$link")
                .and_then(Value::as_str)
                .unwrap_or("");
            if got != cid {
                return Err(step(format!(
                    "blob {cid} arrived as {got}: the bytes differ"
                )));
            }
            copied += 1;
            bytes += blob.bytes.len();
            progress.step(blob.bytes.len() as u64);
        }
        if copied == before {
            return Err(step(
                "blobs are missing that the old PDS cannot provide".to_owned(),
            ));
        }
    }
    say(format!(
        "blobs: {copied} copied ({:.1} MB) in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Points the DID at this server: for did:plc, the old PDS signs an operation (with the
/// emailed code) that this server submits.
async fn update_identity(
    old: &Pds,
    new: &Pds,
    did: &str,
    plc: &PlcCode,
) -> Result<(), MigrateError> {
    let status = new
        .query("com.atproto.server.checkAccountStatus", &[])
        .await?;
    if status.get("validDid").and_then(Value::as_bool) == Some(true) {
        say("the DID document already points here");
        return Ok(());
    }
    if !did.starts_with("did:plc:") {
        let creds = new
            .query("com.atproto.identity.getRecommendedDidCredentials", &[])
            .await?;
        return Err(MigrateError::Waiting(format!(
            "{did} is a did:web: update its did.json yourself to use these credentials, then \
             run this command again:\n{creds:#}"
        )));
    }
    let token = match plc {
        PlcCode::Minted(t) | PlcCode::Emailed(Some(t)) => t.clone(),
        PlcCode::Emailed(None) => {
            old.procedure("com.atproto.identity.requestPlcOperationSignature", None)
                .await?;
            return Err(MigrateError::Waiting(
                "the old PDS has emailed you a confirmation code; run the same command again \
                 with --plc-token CODE"
                    .into(),
            ));
        }
    };
    let mut creds = new
        .query("com.atproto.identity.getRecommendedDidCredentials", &[])
        .await?;
    creds["token"] = json!(token);
    let signed = old
        .procedure("com.atproto.identity.signPlcOperation", Some(&creds))
        .await?;
    new.procedure(
        "com.atproto.identity.submitPlcOperation",
        Some(&json!({ "operation": signed.get("operation") })),
    )
    .await?;
    say("PLC directory updated: the DID now points here");
    Ok(())
}

async fn verify(
    net: &Net,
    plc_url: &str,
    old: &Pds,
    new: &Pds,
    did: &str,
    handle: &str,
) -> Result<String, MigrateError> {
    let doc = crate::identity::resolve::did_document(net, plc_url, did)
        .await
        .map_err(|e| step(format!("cannot read the DID document: {e}")))?;
    let endpoint =
        crate::identity::resolve::service_endpoint(&doc, "atproto_pds").unwrap_or_default();
    if endpoint.trim_end_matches('/') != new.url {
        return Err(step(format!("the DID document still names {endpoint}")));
    }
    let ours = new
        .query("com.atproto.server.checkAccountStatus", &[])
        .await?;
    let theirs = old
        .query("com.atproto.server.checkAccountStatus", &[])
        .await
        .ok();
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(-1);
    if let Some(t) = &theirs
        && n(t, "indexedRecords") != n(&ours, "indexedRecords")
    {
        return Err(step(format!(
            "record counts differ: {} there, {} here",
            n(t, "indexedRecords"),
            n(&ours, "indexedRecords")
        )));
    }
    if n(&ours, "expectedBlobs") != n(&ours, "importedBlobs") {
        return Err(step(format!(
            "{} of {} blobs are here",
            n(&ours, "importedBlobs"),
            n(&ours, "expectedBlobs")
        )));
    }
    let handle_ok = crate::identity::resolve::handle_to_did(net, plc_url, handle)
        .await
        .is_ok_and(|d| d == did);
    if !handle_ok {
        say(format!(
            "warning: {handle} does not resolve to {did} right now; if it is a handle of the \
             old provider, set your own with perch's updateHandle"
        ));
    }
    Ok(format!(
        "done: {did} lives here now ({} records, {} blobs; DID document points to {})",
        n(&ours, "indexedRecords"),
        n(&ours, "importedBlobs"),
        new.url
    ))
}
