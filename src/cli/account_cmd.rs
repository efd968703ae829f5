//! `perch account show | codes | set-handle | reset-password | delete`: the owner's view of
//! the account and the changes the apps would otherwise have to make over XRPC.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use rand_core::{OsRng, RngCore};

use super::CliError;
use super::commands::{msg, open, runtime};
use crate::app::App;
use crate::config::Config;
use crate::store::account::{self as rows, Account, AccountStatus};

/// The server's data dir and its account; no account is an error saying how to make one.
async fn open_account(config: Config) -> Result<(Arc<App>, Account), CliError> {
    let app = open(config).await?;
    let acct =
        app.account().await.map_err(msg)?.ok_or_else(|| {
            msg("no account yet: run `sudo perch init` (or `perch account create`)")
        })?;
    Ok((app, acct))
}

fn minutes_left(expires_at: i64) -> i64 {
    ((expires_at - crate::clock::unix_secs()) + 59) / 60
}

/// `perch account show`.
pub fn show(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let (app, acct) = open_account(config).await?;
        let status = match acct.status {
            AccountStatus::Active => "active",
            AccountStatus::Deactivated => {
                "deactivated (the network sees it as gone until it is activated)"
            }
            AccountStatus::Takendown => "taken down",
            AccountStatus::Suspended => "suspended",
        };
        let email = match (&acct.email, &acct.email_confirmed_at) {
            (None, _) => "none".to_owned(),
            (Some(e), Some(_)) => format!("{e} (confirmed)"),
            (Some(e), None) => format!("{e} (not confirmed)"),
        };
        let app_passwords = app
            .store
            .read(rows::list_app_passwords)
            .await
            .map_err(msg)?
            .len();
        let apps = app.oauth().grants().await.map_err(msg)?.len();
        let codes = app.accounts().pending_codes().await.map_err(msg)?.len();
        println!("handle:         @{}", acct.handle);
        println!("DID:            {}", acct.did);
        println!("server:         {}", app.config.public_url());
        println!("status:         {status}");
        println!("email:          {email}");
        println!("created:        {}", acct.created_at);
        println!("app passwords:  {app_passwords}");
        println!("signed-in apps: {apps} (`perch account apps`)");
        println!("waiting codes:  {codes} (`perch account codes`)");
        Ok(())
    })
}

/// `perch account codes`: every one-time code that is waiting, which is how the owner gets
/// them without a mail relay (and a copy when there is one).
pub fn codes(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let codes = app.accounts().pending_codes().await.map_err(msg)?;
        if codes.is_empty() {
            println!("no codes are waiting");
        }
        for c in codes {
            println!(
                "{:<15} {}  valid {} min more",
                c.purpose.replace('_', "-"),
                c.code,
                minutes_left(c.expires_at)
            );
        }
        Ok(())
    })
}

/// `perch account set-handle HANDLE`.
pub fn set_handle(config: Config, handle: String) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let (app, acct) = open_account(config).await?;
        let changed = app
            .accounts()
            .set_handle(&acct.did, &handle)
            .await
            .map_err(msg)?;
        if changed {
            println!(
                "the handle is now @{}",
                crate::syntax::normalize_handle(&handle)
            );
        } else {
            println!("the handle already is @{}", acct.handle);
        }
        Ok(())
    })
}

/// A password nobody has to type: 20 characters of an unambiguous alphabet (about 100 bits).
fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut out = String::with_capacity(23);
    let mut b = [0u8; 20];
    OsRng.fill_bytes(&mut b);
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[*x as usize % ALPHABET.len()] as char);
    }
    out
}

/// `perch account reset-password`: a new random password, printed once; every session and
/// connected app is signed out.
pub fn reset_password(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let (app, _) = open_account(config).await?;
        let password = random_password();
        app.accounts()
            .set_password(&password, false)
            .await
            .map_err(msg)?;
        println!("new password: {password}");
        println!("every session and signed-in app was signed out; app passwords still work");
        Ok(())
    })
}

/// `perch account delete`: after the owner types the handle (or gives it with `--confirm`),
/// the account and everything it owns go, and the firehose says so, as `deleteAccount` does.
pub fn delete(config: Config, confirm: Option<String>) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let (app, acct) = open_account(config).await?;
        let typed = match confirm {
            Some(c) => c,
            None if std::io::stdin().is_terminal() => {
                eprintln!(
                    "This deletes @{} ({}) from this server for good: every record, blob, \
                     session and app password. Relays are told the account is gone.\n\
                     A backup (`perch backup`) is the only way back.",
                    acct.handle, acct.did
                );
                eprint!("Type the handle to go on: ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(msg)?;
                line
            }
            None => {
                return Err(msg(
                    "not deleting: give --confirm HANDLE (there is no terminal to ask on)",
                ));
            }
        };
        let typed = typed.trim().trim_start_matches('@');
        if !typed.eq_ignore_ascii_case(&acct.handle) {
            return Err(msg("not deleting: that is not the account's handle"));
        }
        let cids = app.accounts().delete_by_owner().await.map_err(msg)?;
        let blobs = app.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.delete_many_blocking(&cids))
            .await
            .map_err(msg)?;
        println!("deleted @{} ({})", acct.handle, acct.did);
        Ok(())
    })
}
