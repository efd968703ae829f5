//! The rules for the answers `perch init` asks for (hostname, handle, email, password),
//! shared by `init`, the boot file and the setup page so all three refuse the same things
//! with the same words. Each returns the value as it will be used (trimmed, lower-case).

use crate::syntax::{is_disallowed_tld, normalize_handle, validate_handle};

/// The server's DNS name: a handle-shaped name under a domain a CA will certify.
pub fn hostname(h: &str) -> Result<String, String> {
    let h = normalize_handle(h.trim());
    if let Err(e) = validate_handle(&h) {
        return Err(format!(
            "{h:?} is not a DNS name like pds.example.com ({})",
            e.message
        ));
    }
    if is_disallowed_tld(&h) {
        return Err(format!(
            "{h:?} cannot have a public certificate; use a name under a real domain"
        ));
    }
    Ok(h)
}

pub fn handle(h: &str) -> Result<String, String> {
    let h = normalize_handle(h.trim());
    validate_handle(&h)
        .map(|()| h.clone())
        .map_err(|e| format!("{h:?} is not a valid handle ({})", e.message))
}

pub fn email(e: &str) -> Result<String, String> {
    let e = e.trim();
    // The account's address: the same rule as for every address perch mails.
    if crate::mail::is_valid_address(e) {
        Ok(e.to_owned())
    } else {
        Err(format!("{e:?} is not an email address"))
    }
}

pub fn password(p: &str) -> Result<(), String> {
    crate::account::check_password_rule(p).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalized_or_refused() {
        assert_eq!(hostname(" PDS.Example.com ").unwrap(), "pds.example.com");
        assert!(hostname("localhost").is_err());
        assert!(hostname("pds.example.com:443").is_err());
        assert!(hostname("pds.local").is_err());
        assert!(handle("alice.test").is_ok());
        assert!(handle("no spaces.example.com").is_err());
        assert!(email("me@example.com").is_ok());
        assert!(email("me").is_err());
        assert!(password("short").is_err());
        assert!(password("long enough").is_ok());
    }
}
