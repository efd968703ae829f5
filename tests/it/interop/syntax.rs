//! Runs every line of the atproto interop syntax vectors through the validators.
//!
//! Vectors live outside the repo: `$ATPROTO_INTEROP_DIR/syntax/`, defaulting to
//! `../shared/interop` next to the crate. Reading rules (see the vectors' SOURCE.md): split on
//! '\n', drop a trailing '\r', skip empty lines and lines starting with '#', never trim.

use perch::syntax::{
    SyntaxError, validate_at_identifier, validate_at_uri, validate_cid_string, validate_datetime,
    validate_did, validate_handle, validate_language, validate_nsid, validate_record_key,
    validate_tid, validate_uri,
};

type Validator = fn(&str) -> Result<(), SyntaxError>;

/// (file name, validator, expected to be accepted)
const CASES: &[(&str, Validator, bool)] = &[
    (
        "atidentifier_syntax_valid.txt",
        validate_at_identifier,
        true,
    ),
    (
        "atidentifier_syntax_invalid.txt",
        validate_at_identifier,
        false,
    ),
    ("aturi_syntax_valid.txt", validate_at_uri, true),
    ("aturi_syntax_invalid.txt", validate_at_uri, false),
    ("cid_syntax_valid.txt", validate_cid_string, true),
    ("cid_syntax_invalid.txt", validate_cid_string, false),
    ("datetime_syntax_valid.txt", validate_datetime, true),
    ("datetime_syntax_invalid.txt", validate_datetime, false),
    ("datetime_parse_invalid.txt", validate_datetime, false),
    ("did_syntax_valid.txt", validate_did, true),
    ("did_syntax_invalid.txt", validate_did, false),
    ("handle_syntax_valid.txt", validate_handle, true),
    ("handle_syntax_invalid.txt", validate_handle, false),
    ("language_syntax_valid.txt", validate_language, true),
    ("language_syntax_invalid.txt", validate_language, false),
    ("language_parse_invalid.txt", validate_language, false),
    ("nsid_syntax_valid.txt", validate_nsid, true),
    ("nsid_syntax_invalid.txt", validate_nsid, false),
    ("recordkey_syntax_valid.txt", validate_record_key, true),
    ("recordkey_syntax_invalid.txt", validate_record_key, false),
    ("tid_syntax_valid.txt", validate_tid, true),
    ("tid_syntax_invalid.txt", validate_tid, false),
    ("uri_syntax_valid.txt", validate_uri, true),
    ("uri_syntax_invalid.txt", validate_uri, false),
];

/// Test values of one vector file, with 1-based line numbers.
fn vector_lines(text: &str) -> Vec<(usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// Long lines are shortened in failure output; the line number identifies them exactly.
fn shown(line: &str) -> String {
    let mut s: String = line.chars().take(80).collect();
    if s.len() < line.len() {
        s.push_str(&format!("... ({} bytes)", line.len()));
    }
    s
}

#[test]
fn interop_syntax_vectors() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let dir = dir.join("syntax");

    let mut failures = Vec::new();
    for &(file, validate, expect_valid) in CASES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let lines = vector_lines(&text);
        assert!(!lines.is_empty(), "{file}: no test lines found");
        for &(n, line) in &lines {
            match (validate(line), expect_valid) {
                (Ok(()), false) => {
                    failures.push(format!("{file}:{n}: accepted {:?}", shown(line)));
                }
                (Err(e), true) => {
                    failures.push(format!("{file}:{n}: rejected {:?}: {e}", shown(line)));
                }
                _ => {}
            }
        }
        println!("{file}: {} lines checked", lines.len());
    }
    assert!(
        failures.is_empty(),
        "{} vector line(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every vector file in the directory must be covered by a case above, so new upstream files
/// are not silently ignored.
#[test]
fn every_vector_file_is_covered() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let dir = dir.join("syntax");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".txt") {
            assert!(
                CASES.iter().any(|(f, _, _)| *f == name),
                "vector file {name} has no validator mapping"
            );
        }
    }
}

#[test]
fn reader_rules() {
    let lines = vector_lines("# c\n\n a \r\nb\r\n#x\nc");
    assert_eq!(lines, vec![(3, " a "), (4, "b"), (6, "c")]);
}
