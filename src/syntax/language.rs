//! BCP-47 language tags (RFC 5646), checked strictly:
//!
//! * well-formed per the RFC 5646 §2.1 grammar, including grandfathered tags;
//! * no repeated variant subtag and no repeated extension singleton (§2.2.9 / §4.1),
//!   compared case-insensitively;
//! * the primary language subtag must be lower-case and may not be the reserved four-letter
//!   form. The RFC treats case as insignificant, but language_syntax_invalid.txt rejects `JA`
//!   and `jaja`, so we follow the vectors. The private-use prefix may be `x` or `X`.

use super::{SyntaxError, require_ascii};

const K: &str = "language";

/// RFC 5646 grandfathered tags (irregular and regular), in canonical case.
const GRANDFATHERED: [&str; 26] = [
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn all_alpha(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn all_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

fn is_private_use_marker(s: &str) -> bool {
    s.eq_ignore_ascii_case("x")
}

fn is_variant(s: &str) -> bool {
    match s.len() {
        5..=8 => true,
        4 => s.as_bytes().first().is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

fn fail<T>(m: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError::new(K, m))
}

pub fn validate_language(s: &str) -> Result<(), SyntaxError> {
    if s.is_empty() {
        return fail("language tag is empty");
    }
    require_ascii(K, s)?;
    let subtags: Vec<&str> = s.split('-').collect();
    for t in &subtags {
        if t.is_empty() {
            return fail("language tag has an empty subtag (leading, trailing or double '-')");
        }
        if t.len() > 8 {
            return fail(format!("subtag {t:?} is longer than 8 characters"));
        }
        if !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return fail(format!("subtag {t:?} may only contain letters and digits"));
        }
    }
    let Some((&primary, rest)) = subtags.split_first() else {
        return fail("language tag is empty");
    };

    if is_private_use_marker(primary) {
        if rest.is_empty() {
            return fail("private-use tag needs at least one subtag after 'x'");
        }
        return Ok(());
    }
    if !primary.bytes().all(|b| b.is_ascii_lowercase()) {
        return fail("primary language subtag must be lower-case letters");
    }
    if GRANDFATHERED.iter().any(|g| g.eq_ignore_ascii_case(s)) {
        return Ok(());
    }
    match primary.len() {
        2 | 3 | 5..=8 => {}
        4 => return fail("four-letter primary language subtags are reserved"),
        _ => return fail("primary language subtag must be 2-3 or 5-8 letters"),
    }

    let mut i = 0;
    let next = |i: usize| rest.get(i).copied();

    // Extended language subtags only follow a 2-3 letter ISO 639 code, at most three of them.
    if primary.len() <= 3 {
        let mut extlangs = 0;
        while extlangs < 3 && next(i).is_some_and(|t| t.len() == 3 && all_alpha(t)) {
            i += 1;
            extlangs += 1;
        }
    }
    if next(i).is_some_and(|t| t.len() == 4 && all_alpha(t)) {
        i += 1; // script
    }
    if next(i).is_some_and(|t| (t.len() == 2 && all_alpha(t)) || (t.len() == 3 && all_digit(t))) {
        i += 1; // region
    }

    let mut variants: Vec<String> = Vec::new();
    while let Some(t) = next(i).filter(|t| is_variant(t)) {
        variants.push(t.to_ascii_lowercase());
        i += 1;
    }
    // Sorting keeps the duplicate check O(n log n) however many variants are thrown at us.
    variants.sort_unstable();
    if let Some(w) = variants.windows(2).find(|w| w[0] == w[1]) {
        return fail(format!("variant subtag {:?} is repeated", w[0]));
    }

    let mut seen_singletons = [false; 36];
    while let Some(t) = next(i).filter(|t| t.len() == 1 && !is_private_use_marker(t)) {
        let slot = t
            .bytes()
            .next()
            .and_then(|b| char::from(b.to_ascii_lowercase()).to_digit(36))
            .map_or(0, |d| d as usize);
        if seen_singletons[slot] {
            return fail(format!("extension singleton {t:?} is repeated"));
        }
        seen_singletons[slot] = true;
        i += 1;
        let start = i;
        while next(i).is_some_and(|t| t.len() >= 2) {
            i += 1;
        }
        if i == start {
            return fail(format!(
                "extension {t:?} needs at least one subtag of 2-8 characters"
            ));
        }
    }

    if next(i).is_some_and(is_private_use_marker) {
        i += 1;
        if next(i).is_none() {
            return fail("private-use section needs at least one subtag after 'x'");
        }
        // Private-use subtags are free-form (1-8 alphanumerics, already checked above).
        i = rest.len();
    }

    match next(i) {
        None => Ok(()),
        Some(t) => fail(format!("unexpected subtag {t:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        for s in [
            "en",
            "zh-yue-HK",
            "zh-Hans-CN",
            "de-CH-1996",
            "x-whatever",
            "en-x-a-b-c",
            "i-klingon",
            "en-GB-oed",
            "sr-Latn-RS",
            "en-a-bbb-x-a-a",
            "hawaiian",
        ] {
            assert!(validate_language(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "x",
            "de-CH-",
            "i-bad-grandfathered",
            "en-a",
            "en-a-x-y",
            "en-US-US",
            "en-Latn-Latn",
            "toolonglang",
            "en-abc-def-ghi-jkl",
            "en-x",
            "EN-gb",
        ] {
            assert!(validate_language(s).is_err(), "{s}");
        }
    }
}
