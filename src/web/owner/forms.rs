//! The "Manage" part of the owner's page: handle, password, email and waiting codes,
//! backups, deactivating and deleting the account.

use maud::{Markup, html};

use super::glance::Glance;
use crate::federation::policy::ago;

fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// What a waiting code is for, in words (the code itself is never shown here).
fn purpose(p: &str) -> &str {
    match p {
        "confirm_email" => "confirming the email address",
        "update_email" => "changing the email address",
        "reset_password" => "resetting the password",
        "delete_account" => "deleting the account",
        "invite" => "moving an account in",
        "plc_operation" => "an identity change (PLC operation)",
        other => other,
    }
}

fn handle(g: &Glance, token: &str) -> Markup {
    html! {
        form method="post" action="/account/handle" class="inline" {
            (csrf(token))
            label for="new-handle" { "Handle" }
            input id="new-handle" name="handle" type="text" required value=(g.account.handle)
                autocomplete="off" spellcheck="false";
            p class="hint" { "A name you own: its DNS must point at your DID first (a TXT record " code { "_atproto.<handle>" } " with " code { "did=" (g.account.did) } "). perch checks both ways before it changes anything." }
            div class="actions" { button type="submit" class="secondary" { "Change handle" } }
        }
    }
}

fn password(token: &str) -> Markup {
    html! {
        form method="post" action="/account/password" class="inline" id="password-form" {
            (csrf(token))
            label for="pw-current" { "Current password" }
            input id="pw-current" name="current" type="password" required autocomplete="current-password";
            label for="pw-new" { "New password (at least " (crate::account::MIN_PASSWORD_CHARS) " characters)" }
            input id="pw-new" name="new" type="password" required autocomplete="new-password"
                minlength=(crate::account::MIN_PASSWORD_CHARS);
            label for="pw-confirm" { "New password again" }
            input id="pw-confirm" name="confirm" type="password" required autocomplete="new-password";
            p class="hint" { "Every other browser and app is signed out; app passwords stay." }
            div class="actions" { button type="submit" class="secondary" { "Change password" } }
        }
    }
}

fn email(g: &Glance, token: &str, now: i64) -> Markup {
    let a = &g.account;
    let confirmed = a.email_confirmed_at.is_some();
    html! {
        form method="post" action="/account/email" class="inline" id="email-form" {
            (csrf(token))
            label for="email" { "Email address" }
            input id="email" name="email" type="email" required value=[a.email.as_deref()] autocomplete="email";
            @if confirmed {
                label for="email-code" { "Code sent to the current address" }
                input id="email-code" name="code" type="text" autocomplete="one-time-code" required;
            }
            div class="actions" { button type="submit" class="secondary" { "Change email" } }
        }
        @if a.email.is_some() {
            div class="actions start" {
                form method="post" action="/account/email/code" {
                    (csrf(token))
                    button type="submit" class="secondary small" {
                        @if confirmed { "Send a code to change it" } @else { "Send a confirmation code" }
                    }
                }
            }
            @if !confirmed {
                form method="post" action="/account/email/confirm" class="row" {
                    (csrf(token))
                    input name="code" type="text" required autocomplete="one-time-code" placeholder="code"
                        aria-label="Confirmation code";
                    button type="submit" class="secondary small" { "Confirm" }
                }
            }
        }
        h3 { "Codes waiting" }
        @if g.codes.is_empty() {
            p { "None." }
        } @else {
            ul id="codes" {
                @for (p, expires) in &g.codes {
                    li { "For " (purpose(p)) ", until " (expires_in(now, *expires)) }
                }
            }
            p class="hint" { "They were mailed (when mail is set up) and are shown by " code { "perch account codes" } " on the box; never here." }
        }
    }
}

fn expires_in(now: i64, at: i64) -> String {
    match at - now {
        s if s < 3600 => format!("{} min from now", (s / 60).max(1)),
        s if s < 2 * 86400 => format!("{} h from now", s / 3600),
        s => format!("{} days from now", s / 86400),
    }
}

fn backups(g: &Glance, token: &str, now: i64) -> Markup {
    html! {
        @match &g.backups {
            None => p { "No " code { "backup_dir" } " is set, so there is nowhere to back up to. Set it (and " code { "backup_interval_hours = 24" } ") in perch.toml." }
            Some(list) => {
                @if list.is_empty() {
                    p { "No backup yet." }
                } @else {
                    ul id="backups" {
                        @for (name, at) in list { li { code { (name) } " · " (ago(now, *at)) } }
                    }
                }
                form method="post" action="/account/backup" {
                    (csrf(token))
                    button type="submit" class="secondary" { "Back up now" }
                }
            }
        }
        p {
            a href="/account/export" id="export-link" { "Download everything" }
            " (what " code { "perch export" } " writes: your repository, preferences and every blob in one tar file), or just "
            a href=(format!("/xrpc/com.atproto.sync.getRepo?did={}", g.account.did)) download=(format!("{}.car", g.account.handle)) {
                "the repository"
            }
            " (a CAR file of every record)."
        }
    }
}

fn deactivate(g: &Glance, token: &str) -> Markup {
    html! {
        @if g.account.is_active() {
            form method="post" action="/account/deactivate" class="inline" id="deactivate-form" {
                (csrf(token))
                p { "Deactivating stops the network getting your repository from here (apps and relays see the account as deactivated) and keeps everything on this box; reactivate here at any time." }
                label for="deact-password" { "Password" }
                input id="deact-password" name="password" type="password" required autocomplete="current-password";
                div class="actions" { button type="submit" class="secondary" { "Deactivate" } }
            }
        } @else {
            form method="post" action="/account/activate" id="activate-form" {
                (csrf(token))
                p { "The account is " strong { (g.account.status.as_str()) } ". Reactivating needs its DID document to name this server and its key." }
                div class="actions start" { button type="submit" class="primary" { "Reactivate" } }
            }
        }
    }
}

fn delete(g: &Glance, token: &str) -> Markup {
    html! {
        form method="post" action="/account/delete" class="inline danger" id="delete-form" {
            (csrf(token))
            p { "Deleting removes every record, blob and key of " strong { "@" (g.account.handle) } " from this box and tells the network. It cannot be undone: download your repository first." }
            label for="del-confirm" { "Type the handle to confirm" }
            input id="del-confirm" name="confirm" type="text" required autocomplete="off" spellcheck="false";
            label for="del-password" { "Password" }
            input id="del-password" name="password" type="password" required autocomplete="current-password";
            div class="actions" { button type="submit" class="danger" { "Delete the account" } }
        }
    }
}

pub fn manage(g: &Glance, token: &str, now: i64) -> Markup {
    html! {
        section aria-labelledby="manage-h" id="manage" {
            h2 id="manage-h" { "Manage" }
            (handle(g, token))
            h3 { "Password" }
            (password(token))
            h3 { "Email" }
            (email(g, token, now))
            h3 { "Backups" }
            (backups(g, token, now))
            h3 { "Deactivate" }
            (deactivate(g, token))
            h3 { "Delete the account" }
            (delete(g, token))
        }
    }
}
