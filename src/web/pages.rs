//! The sign-in and consent pages, as HTML made by `maud` (every value is escaped by
//! construction). One small stylesheet, a script only for passkeys (this origin's), no
//! third-party asset: the pages work in any browser, on a phone, with a screen reader, and
//! nothing on them can be framed.

use maud::{DOCTYPE, Markup, html};

use crate::oauth::Prompt;

/// The stylesheet, served from `/oauth/style.css`.
pub const STYLE: &str = include_str!("style.css");

fn page(title: &str, server: &str, body: Markup) -> Markup {
    shell(title, server, "card", body)
}

/// The frame of every page: head, stylesheet, and a `main` of `class` around `body`.
pub(crate) fn shell(title: &str, server: &str, class: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · " (server) }
                link rel="stylesheet" href="/oauth/style.css";
            }
            body {
                main class=(class) {
                    p class="server" { "perch · " (server) }
                    (body)
                }
            }
        }
    }
}

/// Who is asking: the app's own name (which it chose, so it is not trusted alone) and the
/// host its client id is on (which it cannot fake).
fn app(prompt: &Prompt) -> Markup {
    let c = &prompt.client;
    html! {
        section class="app" aria-label="The app asking" {
            p {
                @if let Some(name) = &c.name {
                    strong class="app-name" { (name) }
                    " "
                }
                span class="host" { "from " strong { (c.host()) } }
            }
            @if c.tos_uri.is_some() || c.policy_uri.is_some() || c.client_uri.is_some() {
                p class="links" {
                    @if let Some(u) = &c.client_uri { a href=(u) rel="noopener noreferrer" { "Website" } " " }
                    @if let Some(u) = &c.tos_uri { a href=(u) rel="noopener noreferrer" { "Terms" } " " }
                    @if let Some(u) = &c.policy_uri { a href=(u) rel="noopener noreferrer" { "Privacy policy" } }
                }
            }
        }
    }
}

fn app_name(prompt: &Prompt) -> String {
    prompt
        .client
        .name
        .clone()
        .unwrap_or_else(|| prompt.client.host())
}

fn hidden(prompt: &Prompt) -> Markup {
    html! {
        input type="hidden" name="client_id" value=(prompt.client.client_id);
        input type="hidden" name="request_uri" value=(prompt.request_uri);
        input type="hidden" name="csrf" value=(prompt.csrf);
    }
}

pub fn sign_in(prompt: &Prompt, server: &str) -> Markup {
    let name = app_name(prompt);
    page(
        "Sign in",
        server,
        html! {
            h1 { "Sign in to continue to " (name) }
            (app(prompt))
            form id="sign-in-form" method="post" action="/oauth/authorize/sign-in" {
                (hidden(prompt))
                p { "Account: " strong { "@" (prompt.handle) } }
                label for="password" { "Password" }
                input id="password" name="password" type="password"
                    autocomplete="current-password" required autofocus
                    aria-describedby=[prompt.error.as_ref().map(|_| "error")];
                @if let Some(e) = &prompt.error {
                    p id="error" class="error" role="alert" { (e) }
                }
                p class="hint" { "Use your account password, not an app password. Your password is never shown to the app." }
                div class="actions" {
                    button type="submit" class="primary" { "Sign in" }
                }
            }
            @if prompt.passkeys {
                div class="actions" {
                    button id="passkey-sign-in" type="button" class="secondary" hidden
                        data-endpoint="/oauth/authorize/passkey" data-form="sign-in-form" { "Sign in with a passkey" }
                }
                p id="passkey-error" class="error" role="alert" hidden {}
                script src="/account/passkey.js" defer {}
            }
        },
    )
}

pub fn consent(prompt: &Prompt, server: &str) -> Markup {
    let name = app_name(prompt);
    page(
        "Allow access",
        server,
        html! {
            h1 { "Allow " (name) " to use your account?" }
            (app(prompt))
            p { "Signed in as " strong { "@" (prompt.handle) } "." }
            h2 { "It will be able to" }
            ul class="permissions" {
                @for line in &prompt.set_lines {
                    li { (line) }
                }
                @for line in prompt.permissions.describe() {
                    li { (line) }
                }
            }
            form method="post" action="/oauth/authorize/consent" {
                (hidden(prompt))
                label class="check" {
                    input type="checkbox" name="remember" value="1" checked;
                    " Remember my choice for this app"
                }
                div class="actions" {
                    button type="submit" name="decision" value="deny" class="secondary" { "Deny" }
                    button type="submit" name="decision" value="allow" class="primary" { "Allow" }
                }
            }
            p class="hint" { "You can end this app's access at any time with " code { "perch account apps" } "." }
        },
    )
}

pub fn error(message: &str, server: &str) -> Markup {
    page(
        "Sign-in problem",
        server,
        html! {
            h1 { "This sign-in cannot continue" }
            p role="alert" { (message) }
            p class="hint" { "Go back to the app and start signing in again." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        let m = error("<script>alert(1)</script> & \"x\"", "pds.example.com");
        let s = m.into_string();
        assert!(s.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(!s.contains("<script>"));
        assert!(s.starts_with("<!DOCTYPE html>"));
    }
}
