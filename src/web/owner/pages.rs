//! The owner's page as HTML: the sign-in form and the page itself (account, box,
//! federation, app passwords, apps). Every form carries the session's form token.

use std::time::Duration;

use maud::{Markup, html};

use super::glance::{Glance, TlsLine};
use crate::backup::human_bytes;
use crate::federation::{Health, RelayView, policy::ago};
use crate::web::pages::shell;

/// A one-off message at the top of the page: the outcome of the last form.
pub enum Notice {
    Done(&'static str),
    Problem(String),
    /// A new app password, shown this once.
    NewAppPassword {
        name: String,
        password: String,
    },
}

pub fn sign_in(server: &str, error: Option<&str>, has_account: bool, has_passkeys: bool) -> Markup {
    shell(
        "Your perch",
        server,
        "card",
        html! {
            h1 { "Sign in to your perch" }
            @if has_account {
                form method="post" action="/account/sign-in" {
                    label for="password" { "Account password" }
                    input id="password" name="password" type="password"
                        autocomplete="current-password" required autofocus
                        aria-describedby=[error.map(|_| "error")];
                    @if let Some(e) = error {
                        p id="error" class="error" role="alert" { (e) }
                    }
                    p class="hint" { "The password you chose at setup, not an app password." }
                    div class="actions" {
                        button type="submit" class="primary" { "Sign in" }
                    }
                }
                @if has_passkeys {
                    div class="actions" {
                        button id="passkey-sign-in" type="button" class="secondary" hidden { "Sign in with a passkey" }
                    }
                    p id="passkey-error" class="error" role="alert" hidden {}
                    script src="/account/passkey.js" defer {}
                }
            } @else {
                p { "This server has no account yet. On the box, run " code { "sudo perch init" } "." }
            }
        },
    )
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn badge(ok: bool, text: &str) -> Markup {
    html! { span class=(if ok { "badge ok" } else { "badge warn" }) { (text) } }
}

fn health_badge(h: Health) -> Markup {
    let class = match h {
        Health::Healthy => "badge ok",
        Health::CatchingUp | Health::Unchecked | Health::Inactive => "badge",
        Health::Healing | Health::Attention | Health::Unreachable => "badge warn",
    };
    html! { span class=(class) { (h.word()) } }
}

fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

fn notice(n: &Notice) -> Markup {
    match n {
        Notice::Done(text) => html! { p class="notice" role="status" { (text) } },
        Notice::Problem(text) => html! { p class="notice error" role="alert" { (text) } },
        Notice::NewAppPassword { name, password } => html! {
            div class="notice secret" role="status" {
                p { "App password " strong { (name) } " (shown only now: copy it into the app):" }
                p { code id="new-app-password" { (password) } }
            }
        },
    }
}

fn account(g: &Glance) -> Markup {
    let a = &g.account;
    html! {
        section aria-labelledby="account-h" {
            h2 id="account-h" { "Your account" }
            dl {
                dt { "Handle" } dd id="handle" { "@" (a.handle) }
                dt { "DID" } dd id="did" { code { (a.did) } }
                dt { "DID points to" }
                dd {
                    @match &g.pds {
                        Ok(url) if url.trim_end_matches('/') == g.origin => { (url) " " (badge(true, "this server")) }
                        Ok(url) => { (url) " " (badge(false, "another server")) }
                        Err(e) => { (badge(false, "unknown")) " " (e) }
                    }
                }
                dt { "Email" }
                dd {
                    @match &a.email {
                        Some(e) => { (e) " " (badge(a.email_confirmed_at.is_some(), if a.email_confirmed_at.is_some() { "confirmed" } else { "not confirmed" })) }
                        None => { "none" }
                    }
                }
                dt { "Status" } dd { (badge(a.is_active(), a.status.as_str())) }
            }
        }
    }
}

fn the_box(g: &Glance) -> Markup {
    let total_records: u64 = g.records.iter().map(|(_, n)| n).sum();
    html! {
        section aria-labelledby="box-h" {
            h2 id="box-h" { "This box" }
            dl {
                dt { "Certificate" }
                dd {
                    @match &g.tls {
                        TlsLine::Off => { "TLS is off: HTTPS is a proxy's job" }
                        TlsLine::Serving(days) => {
                            (badge(*days >= crate::tls::EXPIRY_WARNING_DAYS, &format!("{days} days left")))
                        }
                        TlsLine::Waiting(m) => { (badge(false, "none yet")) " " (m) }
                    }
                }
                dt { "Storage" }
                dd {
                    @match &g.storage_failure {
                        None => (badge(true, "healthy")),
                        Some(e) => { (badge(false, "failed")) " " (e) ": read-only until perch is restarted" }
                    }
                }
                dt { "Free disk" }
                dd { @match g.free_disk { Some(b) => (human_bytes(b)), None => "unknown" } }
                dt { "Database" } dd { (human_bytes(g.database_bytes)) }
                dt { "Blobs" } dd { (g.blobs.0) " files, " (human_bytes(g.blobs.1)) }
                dt { "Records" }
                dd {
                    (total_records)
                    @if !g.records.is_empty() {
                        " ("
                        @for (i, (collection, n)) in g.records.iter().take(4).enumerate() {
                            @if i > 0 { ", " }
                            (n) " " (collection)
                        }
                        ")"
                    }
                }
                dt { "Backups" } dd { (badge(g.backup.0, if g.backup.0 { "ok" } else { "check" })) " " (g.backup.1) }
                dt { "Firehose" } dd { "event " (g.firehose_seq) ", " (g.subscribers) " subscriber(s)" }
                dt { "Version" } dd { "perch " (g.version) ", up " (uptime(g.uptime)) }
            }
        }
    }
}

fn relay_row(v: &RelayView, now: i64) -> Markup {
    html! {
        tr {
            td { (v.relay) }
            td { (health_badge(v.health)) }
            td { @if v.host.is_empty() { "—" } @else { (v.host) } }
            td {
                @match &v.rev {
                    Some(r) => code { (r) },
                    None => { "none" },
                }
            }
            td { (ago(now, v.matched_at)) }
            td {
                @match &v.crawl_result {
                    Some(r) => { (ago(now, v.crawled_at)) " (" (r) ")" }
                    None => { "never" }
                }
            }
        }
        @if let Some(a) = v.advice() {
            tr class="advice" { td colspan="6" { (a) } }
        }
    }
}

fn federation(g: &Glance, token: &str, now: i64) -> Markup {
    let ours = g.relays.first().and_then(|v| v.local_rev.clone());
    html! {
        section aria-labelledby="fed-h" id="federation" {
            h2 id="fed-h" { "Federation" }
            @if g.relays.is_empty() {
                p { "No relays are configured, so nobody is asked to carry your posts. Set " code { "relays" } " in perch.toml." }
            } @else {
                p class="hint" {
                    "How each relay sees this server. perch checks every 30 minutes and asks a relay that stopped following to crawl again."
                    @if let Some(r) = &ours { " Your repo is at " code { (r) } "." }
                }
                div class="scroll" {
                    table {
                        thead { tr { th { "Relay" } th { "State" } th { "Host status" } th { "Its rev" } th { "Last matched" } th { "Crawl asked" } } }
                        tbody { @for v in &g.relays { (relay_row(v, now)) } }
                    }
                }
                form method="post" action="/account/relays/crawl" {
                    (csrf(token))
                    button type="submit" class="secondary" { "Ask the relays to crawl now" }
                }
            }
        }
    }
}

fn app_passwords(g: &Glance, token: &str) -> Markup {
    html! {
        section aria-labelledby="ap-h" id="app-passwords" {
            h2 id="ap-h" { "App passwords" }
            p class="hint" { "For apps that sign in with a password rather than OAuth. Each can be revoked alone." }
            @if g.app_passwords.is_empty() {
                p { "None yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Created" } th { "Kind" } th {} } }
                    tbody {
                        @for p in &g.app_passwords {
                            tr {
                                td class="name" { (p.name) }
                                td { (p.created_at.get(..10).unwrap_or(&p.created_at)) }
                                td { @if p.privileged { "may read direct messages" } @else { "standard" } }
                                td {
                                    form method="post" action="/account/app-passwords/revoke" {
                                        (csrf(token))
                                        input type="hidden" name="name" value=(p.name);
                                        button type="submit" class="secondary small" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/account/app-passwords" class="inline" {
                (csrf(token))
                label for="ap-name" { "New app password named" }
                input id="ap-name" name="name" type="text" required maxlength="64" placeholder="e.g. phone";
                label class="check" {
                    input type="checkbox" name="privileged" value="1";
                    " May read direct messages"
                }
                div class="actions" { button type="submit" class="primary" { "Create" } }
            }
        }
    }
}

fn passkeys(g: &Glance, token: &str, now: i64) -> Markup {
    html! {
        section aria-labelledby="pk-h" id="passkeys" {
            h2 id="pk-h" { "Passkeys" }
            p class="hint" { "Sign in to this page with your phone, a security key or this computer instead of the password." }
            @if g.passkeys.is_empty() {
                p { "None yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Added" } th { "Last used" } th {} } }
                    tbody {
                        @for k in &g.passkeys {
                            tr {
                                td class="name" { (k.name) }
                                td { (ago(now, k.created_at)) }
                                td { (ago(now, k.last_used_at.unwrap_or(0))) }
                                td {
                                    form method="post" action="/account/passkeys/remove" class="row" {
                                        (csrf(token))
                                        input type="hidden" name="id" value=(k.id);
                                        input type="password" name="password" required autocomplete="current-password"
                                            placeholder="password" aria-label=(format!("Password to remove {}", k.name));
                                        button type="submit" class="secondary small" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form id="passkey-add" class="inline" {
                (csrf(token))
                label for="pk-name" { "New passkey named" }
                input id="pk-name" name="name" type="text" maxlength="64" placeholder="e.g. my phone";
                label for="pk-password" { "Your password, to confirm it is you" }
                input id="pk-password" name="password" type="password" required autocomplete="current-password";
                p id="passkey-add-error" class="error" role="alert" hidden {}
                div class="actions" { button type="submit" class="primary" { "Add a passkey" } }
            }
            script src="/account/passkey.js" defer {}
        }
    }
}

fn apps(g: &Glance, token: &str, now: i64) -> Markup {
    let (password, app_password) = g.sessions;
    html! {
        section aria-labelledby="apps-h" id="apps" {
            h2 id="apps-h" { "Connected apps" }
            p id="sessions" {
                (password.saturating_sub(1)) " other session(s) signed in with the password, "
                (app_password) " with app passwords."
            }
            @if password > 1 || app_password > 0 {
                form method="post" action="/account/sessions/sign-out" {
                    (csrf(token))
                    button type="submit" class="secondary small" { "Sign out every other session" }
                }
            }
            @if g.apps.is_empty() {
                p { "No app is signed in over OAuth." }
            } @else {
                table {
                    thead { tr { th { "App" } th { "Signed in" } th { "Last used" } th {} } }
                    tbody {
                        @for a in &g.apps {
                            tr {
                                td {
                                    @if let Some(n) = &a.client_name { strong { (n) } br; }
                                    span class="host" { (crate::oauth::client::parse_url(&a.client_id).map(|u| u.host).unwrap_or_else(|| a.client_id.clone())) }
                                }
                                td { (ago(now, a.created_at)) }
                                td { (ago(now, a.last_used_at)) }
                                td {
                                    form method="post" action="/account/apps/revoke" {
                                        (csrf(token))
                                        input type="hidden" name="id" value=(a.id);
                                        button type="submit" class="secondary small" { "Sign out" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn dashboard(server: &str, g: &Glance, token: &str, notices: &[Notice]) -> Markup {
    let now = crate::clock::unix_secs();
    shell(
        "Your perch",
        server,
        "card wide",
        html! {
            header class="top" {
                h1 { "Your perch" }
                form method="post" action="/account/sign-out" {
                    (csrf(token))
                    button type="submit" class="secondary small" { "Sign out" }
                }
            }
            @for n in notices { (notice(n)) }
            (account(g))
            (federation(g, token, now))
            (the_box(g))
            section aria-labelledby="plots-h" id="plots" {
                h2 id="plots-h" { "Over time" }
                (super::plots::writes(&g.writes))
                (super::plots::storage(&g.storage))
                (super::plots::requests(&g.hours))
                (super::plots::subscribers(&g.hours))
            }
            (passkeys(g, token, now))
            (app_passwords(g, token))
            (apps(g, token, now))
            (super::forms::manage(g, token, now))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_escapes_and_asks_only_with_an_account() {
        let s = sign_in("pds.example", Some("<b>no</b>"), true, false).into_string();
        assert!(s.contains("&lt;b&gt;no&lt;/b&gt;") && !s.contains("<b>no"));
        assert!(s.contains("action=\"/account/sign-in\""));
        assert!(!s.contains("passkey"), "no passkey button without passkeys");
        let with = sign_in("pds.example", None, true, true).into_string();
        assert!(with.contains("id=\"passkey-sign-in\"") && with.contains("/account/passkey.js"));
        let none = sign_in("pds.example", None, false, false).into_string();
        assert!(!none.contains("<form") && none.contains("sudo perch init"));
    }

    #[test]
    fn uptimes_read_in_words() {
        assert_eq!(uptime(Duration::from_secs(90)), "1 min");
        assert_eq!(uptime(Duration::from_secs(5 * 3600)), "5 h");
        assert_eq!(uptime(Duration::from_secs(9 * 86400)), "9 days");
    }
}
