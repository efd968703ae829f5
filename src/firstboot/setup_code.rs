//! The one-time code that lets the owner, and only the owner, set the box up from a
//! browser. It is made when the setup page starts and written where only someone holding
//! the box can read it: the card's boot partition (in `perch-setup.txt`) and the console.
//! A neighbour on the same Wi-Fi sees the page but not the code.
//!
//! 12 characters from 32 that cannot be mistaken for one another (no 0/O, no 1/I): 60 bits,
//! far beyond guessing at the few tries a minute the page allows.

use rand_core::{OsRng, RngCore};

const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const LEN: usize = 12;

/// Where the code's part of `perch-setup.txt` begins; everything from here on is the
/// page's, the rest is what first boot reported.
const MARKER: &str = "--- Set up from a browser ---";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupCode(String);

impl SetupCode {
    pub fn generate() -> SetupCode {
        let code = (0..LEN)
            // 32 divides 2^32: every character is equally likely.
            .map(|_| char::from(ALPHABET[(OsRng.next_u32() % 32) as usize]))
            .collect();
        SetupCode(code)
    }

    /// As shown to the owner: three groups of four.
    pub fn display(&self) -> String {
        let c = self.0.as_bytes();
        c.chunks(4)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Whether `typed` is this code, forgiving case, dashes and spaces.
    pub fn matches(&self, typed: &str) -> bool {
        let typed: String = typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        crate::crypto::same_secret(typed.as_bytes(), self.0.as_bytes())
    }
}

/// First boot's report with the code's section (replacing an older one) after it.
pub fn with_code(report: &str, code: &SetupCode) -> String {
    let report = without_code(report).trim_end();
    let gap = if report.is_empty() { "" } else { "\n\n" };
    format!(
        "{report}{gap}{MARKER}\n\
         On a computer or phone on the same network as this box, open http://perch.local\n\
         and enter this setup code with your settings:\n\n    {}\n\n\
         A new code is made each time the box starts, until it is set up.\n",
        code.display()
    )
}

/// The report without the code's section: what the page may show to anyone on the LAN.
pub fn without_code(text: &str) -> &str {
    match text.find(MARKER) {
        Some(i) => text[..i].trim_end(),
        None => text,
    }
}

/// The code written in a `perch-setup.txt`, as displayed (what a test reads off the card).
pub fn code_in(text: &str) -> Option<String> {
    let section = &text[text.find(MARKER)?..];
    section
        .lines()
        .map(str::trim)
        .find(|l| l.len() == LEN + 2 && l.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_differ_and_match_as_typed() {
        let a = SetupCode::generate();
        let b = SetupCode::generate();
        assert_ne!(a, b);
        let shown = a.display();
        assert_eq!(shown.len(), 14);
        assert!(a.matches(&shown));
        assert!(a.matches(&shown.to_lowercase().replace('-', " ")));
        assert!(!a.matches(&b.display()));
        assert!(!a.matches(""));
        assert!(!a.matches(&shown[..13]));
    }

    #[test]
    fn the_section_is_replaced_not_stacked_and_hidden_from_the_page() {
        let a = SetupCode::generate();
        let b = SetupCode::generate();
        let report = "2026-12-04T10:00:00.000Z\n\nperch.toml sets nothing yet.\n";
        let once = with_code(report, &a);
        assert_eq!(code_in(&once), Some(a.display()));
        let twice = with_code(&once, &b);
        assert_eq!(twice.matches(MARKER).count(), 1);
        assert_eq!(code_in(&twice), Some(b.display()));
        assert!(!twice.contains(&a.display()));
        let shown = without_code(&twice);
        assert!(shown.contains("sets nothing yet") && !shown.contains(&b.display()));
        // No report yet (no perch.toml on the card): the code alone.
        assert!(with_code("", &a).starts_with(MARKER));
        assert_eq!(code_in(report), None);
    }
}
