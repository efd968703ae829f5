//! App passwords: generated secrets in the `xxxx-xxxx-xxxx-xxxx` form that start
//! sessions without account-management rights. Stored hashed like the main password.

use rand_core::CryptoRngCore;

use super::AuthError;

/// Symbols used: lower-case ASCII letters and digits (36). Unambiguous to type on a
/// phone keyboard without shift, and what `looks_like_app_password` accepts.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const GROUPS: usize = 4;
const GROUP_LEN: usize = 4;
/// Total length including the three dashes.
pub const APP_PASSWORD_LEN: usize = GROUPS * GROUP_LEN + GROUPS - 1;
/// Entropy of a generated app password: 16 symbols drawn uniformly from 36, so
/// 16 × log2(36) = 16 × 5.17 ≈ 82.7 bits (floored here), above the 80-bit target.
pub const APP_PASSWORD_ENTROPY_BITS: u32 = 82;
/// Longest app-password name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 100;

/// Largest multiple of 36 that fits in a byte: bytes at or above it are redrawn so
/// every symbol is exactly equally likely (no modulo bias).
const REJECT_FROM: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;

/// A fresh app password, e.g. `k3f9-a0zq-7mwx-p2rt`.
pub fn generate(rng: &mut impl CryptoRngCore) -> String {
    let mut out = String::with_capacity(APP_PASSWORD_LEN);
    let mut buf = [0u8; 32];
    let mut used = buf.len();
    let mut symbols = 0;
    while symbols < GROUPS * GROUP_LEN {
        if used == buf.len() {
            rng.fill_bytes(&mut buf);
            used = 0;
        }
        let b = buf[used];
        used += 1;
        if b >= REJECT_FROM {
            continue;
        }
        if symbols > 0 && symbols % GROUP_LEN == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
        symbols += 1;
    }
    out
}

/// True if `s` has the exact generated form: four groups of four lower-case letters or
/// digits joined by `-`. Login uses it to decide which credential table to check.
pub fn looks_like_app_password(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == APP_PASSWORD_LEN
        && bytes.iter().enumerate().all(|(i, &b)| {
            if i % (GROUP_LEN + 1) == GROUP_LEN {
                b == b'-'
            } else {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }
        })
}

/// Validates an app-password name and returns it trimmed, which is the form to store
/// and to compare (so `"phone"` and `" phone "` are the same name). Rules: 1 to 100
/// characters after trimming, no control characters (names are shown in lists and
/// logs, where newlines or escapes would mislead).
pub fn validate_app_password_name(name: &str) -> Result<&str, AuthError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(AuthError::InvalidName("name is empty"));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::InvalidName("name is longer than 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(AuthError::InvalidName("name contains control characters"));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use std::collections::HashSet;

    #[test]
    fn format_and_uniqueness() {
        let mut seen = HashSet::new();
        let mut symbol_counts = [0usize; 36];
        for _ in 0..1000 {
            let p = generate(&mut OsRng);
            assert!(looks_like_app_password(&p), "{p}");
            for b in p.bytes().filter(|&b| b != b'-') {
                let i = ALPHABET.iter().position(|&a| a == b).expect("in alphabet");
                symbol_counts[i] += 1;
            }
            assert!(seen.insert(p), "duplicate app password");
        }
        // 16,000 symbols over 36 (≈444 each): every symbol must appear, or the
        // generator is not using the whole alphabet.
        assert!(symbol_counts.iter().all(|&c| c > 200), "{symbol_counts:?}");
    }

    #[test]
    fn entropy_constant_matches_alphabet() {
        let bits = (GROUPS * GROUP_LEN) as f64 * (ALPHABET.len() as f64).log2();
        assert!(bits >= 80.0);
        assert_eq!(bits.floor() as u32, APP_PASSWORD_ENTROPY_BITS);
        assert_eq!(REJECT_FROM, 252);
    }

    #[test]
    fn recogniser() {
        assert!(looks_like_app_password("abcd-efgh-0123-wxyz"));
        for s in [
            "",
            "abcd-efgh-0123-wxy",
            "abcd-efgh-0123-wxyz-",
            "abcdefgh0123wxyz",
            "abcd_efgh_0123_wxyz",
            "ABCD-efgh-0123-wxyz",
            "abcd-efgh-0123-wxy!",
            "abcd-efgh--0123-wxy",
            "abcdé-fgh-0123-wxy",
            " abcd-efgh-0123-wxy",
        ] {
            assert!(!looks_like_app_password(s), "{s:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(validate_app_password_name("  my phone "), Ok("my phone"));
        assert_eq!(validate_app_password_name("x"), Ok("x"));
        let hundred = "é".repeat(100);
        assert_eq!(validate_app_password_name(&hundred), Ok(hundred.as_str()));
        for bad in ["", "   ", "\t\n", "a\nb", "bell\u{7}"] {
            assert!(validate_app_password_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_app_password_name(&"a".repeat(101)).is_err());
        // Surrounding whitespace does not count toward the limit.
        let padded = format!("  {}  ", "a".repeat(100));
        assert!(validate_app_password_name(&padded).is_ok());
    }
}
