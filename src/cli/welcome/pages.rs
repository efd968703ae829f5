//! The setup page's HTML: the form (the boot file's settings as fields) and the progress
//! page that follows the box until it is live. Same frame and stylesheet as perch's own
//! pages; the only script is the progress page's, from this origin.

use maud::{Markup, html};

use crate::firstboot::BOOT_FILE;
use crate::firstboot::form::SetupAnswers;

/// What the frame says the page belongs to.
const SERVER: &str = "perch.local";

/// The form, with what the owner typed (never the passwords or the code) and what was
/// wrong with it.
pub fn setup(typed: &SetupAnswers, error: Option<&str>, report: Option<&str>) -> Markup {
    let described = error.map(|_| "error");
    crate::web::pages::shell(
        "Set up",
        SERVER,
        "card",
        html! {
            h1 { "Set up your Personal Data Server" }
            p { "This box will hold your Bluesky account: your posts, likes, follows and pictures, on hardware you own." }
            @if let Some(e) = error {
                p id="error" class="notice error" role="alert" { (e) }
            }
            form id="setup-form" method="post" action="/setup" {
                label for="code" { "Setup code" }
                input id="code" name="code" type="text" required autocomplete="off"
                    autocapitalize="characters" spellcheck="false" aria-describedby="code-hint";
                p id="code-hint" class="hint" {
                    "In " strong { "perch-setup.txt" } " on the card's boot partition (the drive called PERCHBOOT), and on the screen if one is plugged in. It proves you hold the box."
                }
                label for="hostname" { "Hostname" }
                input id="hostname" name="hostname" type="text" required value=(typed.hostname)
                    placeholder="pds.example.com" autocomplete="off" spellcheck="false"
                    aria-describedby=[described];
                p class="hint" { "Your server's DNS name. Its A record must point at your router, and the router must forward TCP ports 80 and 443 to this box." }
                label for="handle" { "Handle (optional)" }
                input id="handle" name="handle" type="text" value=(typed.handle)
                    placeholder="alice.example.com" autocomplete="off" spellcheck="false";
                p class="hint" { "Empty: the hostname itself (one name, one certificate)." }
                label for="password" { "Password (at least " (crate::account::MIN_PASSWORD_CHARS) " characters)" }
                input id="password" name="password" type="password" required
                    minlength=(crate::account::MIN_PASSWORD_CHARS) autocomplete="new-password";
                label for="password2" { "The password again" }
                input id="password2" name="password_again" type="password" required
                    autocomplete="new-password";
                label for="email" { "Email" }
                input id="email" name="email" type="email" value=(typed.email) autocomplete="email";
                p class="hint" { "For your account and Let's Encrypt's certificate notices." }
                label for="ssh" { "SSH public key (optional)" }
                textarea id="ssh" name="ssh_key" rows="3" spellcheck="false"
                    placeholder="ssh-ed25519 AAAA… you@laptop" { (typed.ssh_keys) }
                p class="hint" { "SSH stays off without one; with it you can log in as root." }
                details {
                    summary { "More settings" }
                    label for="more" { "perch settings, one " code { "key = value" } " per line" }
                    textarea id="more" name="more" rows="4" spellcheck="false"
                        placeholder="backup_dir = \"/mnt/usb/perch-backups\"" { (typed.more) }
                    p class="hint" { "As under " code { "[perch]" } " in " (BOOT_FILE) "; see " code { "man perch" } "." }
                }
                div class="actions" {
                    button type="submit" class="primary" { "Set up" }
                }
            }
            p class="hint" {
                "Or edit " strong { (BOOT_FILE) } " on the card's boot partition from any computer and boot again: it has the same settings, and Wi-Fi."
            }
            @if let Some(r) = report {
                details {
                    summary { "What the last boot reported" }
                    pre class="report" { (r) }
                }
            }
        },
    )
}

/// The steps to a live box. The script fills them in from `/readyz`, answered first by this
/// page's server and, once the box is set up, by perch itself on the same address.
pub fn progress(hostname: &str) -> Markup {
    crate::web::pages::shell(
        "Setting up",
        SERVER,
        "card",
        html! {
            h1 { "Setting up " (hostname) }
            ol class="steps" id="steps" data-hostname=(hostname) {
                li id="step-account" { "Your account, its keys and its DID" span class="state" { "Waiting…" } }
                li id="step-start" { "perch starts" span class="state" { "Waiting…" } }
                li id="step-cert" { "The HTTPS certificate" span class="state" { "Waiting…" } }
                li id="step-relay" { "The network finds your server" span class="state" { "Waiting…" } }
            }
            p id="reason" class="hint" aria-live="polite" {}
            p id="live" class="notice" hidden {
                "Your server is live. Sign in to the Bluesky app with your handle and password (choose "
                strong { "Custom hosting provider" } ": " code { "https://" (hostname) } "), and see your box at "
                a href={ "https://" (hostname) "/account" } { "https://" (hostname) "/account" } "."
            }
            p id="again" hidden { a href="/" { "Back to the settings" } }
            noscript {
                p { "This page follows the setup with a small script. Without it, open " a href="/readyz" { "/readyz" } " from time to time: it says what the box is doing." }
            }
            script src="/setup.js" defer {}
        },
    )
}

/// A plain page for a refusal that has no form to go back to.
pub fn message(title: &str, text: &str) -> Markup {
    crate::web::pages::shell(
        title,
        SERVER,
        "card",
        html! {
            h1 { (title) }
            p role="alert" { (text) }
            p { a href="/" { "Back to the settings" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_keeps_what_was_typed_but_never_a_secret() {
        let typed = SetupAnswers {
            hostname: "pds.example.com".into(),
            password: "hunter2hunter2".into(),
            password_again: "hunter2hunter2".into(),
            more: "tls = \"off\"</textarea><script>".into(),
            ..SetupAnswers::default()
        };
        let page = setup(&typed, Some("Password: <b>"), Some("report & more")).into_string();
        assert!(page.contains("value=\"pds.example.com\""));
        assert!(!page.contains("hunter2"));
        assert!(page.contains("Password: &lt;b&gt;"));
        assert!(page.contains("&lt;/textarea&gt;&lt;script&gt;"));
        assert!(page.contains("report &amp; more"));
    }

    #[test]
    fn progress_names_the_server_and_loads_its_script() {
        let page = progress("pds.example.com").into_string();
        assert!(page.contains("data-hostname=\"pds.example.com\""));
        assert!(page.contains("src=\"/setup.js\""));
        assert!(page.contains("https://pds.example.com/account"));
    }
}
