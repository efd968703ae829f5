//! `perch account apps`: the apps signed in to the account over OAuth, and ending one.

use super::CliError;
use super::commands::{msg, open, runtime};
use crate::config::Config;

fn when(unix: i64) -> String {
    let t = crate::syntax::format_datetime_millis(unix.saturating_mul(1000));
    // "2026-12-04T13:40:00.000Z" → "2026-12-04 13:40 UTC"
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => t,
    }
}

pub fn list(config: Config) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        let grants = app.oauth().grants().await.map_err(msg)?;
        if grants.is_empty() {
            println!("no apps are signed in");
        }
        for g in grants {
            let host = crate::oauth::client::parse_url(&g.client_id)
                .map(|u| u.host)
                .unwrap_or_else(|| g.client_id.clone());
            let name = match &g.client_name {
                Some(n) => format!("{n} ({host})"),
                None => host,
            };
            println!("{}  {name}", g.id);
            println!("    client: {}", g.client_id);
            println!("    scope:  {}", g.scope);
            println!(
                "    signed in {}, last refreshed {}, ends {}",
                when(g.created_at),
                when(g.last_used_at),
                when(g.expires_at)
            );
        }
        Ok(())
    })
}

pub fn revoke(config: Config, id: String) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let app = open(config).await?;
        if app.oauth().revoke_grant(&id).await.map_err(msg)? {
            println!("signed out {id}: its tokens stop working now");
            Ok(())
        } else {
            Err(msg(format!(
                "no signed-in app {id:?} (see `perch account apps`)"
            )))
        }
    })
}
