//! The structure ARCHITECTURE.md promises, checked on every `cargo test` (in the spirit of
//! rust-analyzer's tidy test): SQL and `rusqlite` only in `store`, each top-level module
//! importing only its own layer or the ones below, no import cycle between modules except
//! through the composition root `app`, `cli` imported by nobody, and no file under `src/`
//! longer than `MAX_LINES`. A failure names the file and line and says which rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// The layers of ARCHITECTURE.md's table. A module may import modules of its own layer and
/// the layers below; `app` (the composition root) may import anything but `cli`, and only
/// layer 4 may import it.
const LAYERS: &[(u8, &[&str])] = &[
    (0, &["cbor", "cid", "tid", "syntax", "crypto", "clock"]),
    (1, &["repo", "lexicon"]),
    (
        2,
        &[
            "store", "blobs", "health", "keys", "fsutil", "identity", "net", "mail", "auth",
            "addr", "hasher", "config", "metrics", "progress",
        ],
    ),
    (
        3,
        &[
            "writer",
            "firehose",
            "account",
            "uploads",
            "migrate",
            "federation",
            "tls",
            "notify",
            "backup",
            "firstboot",
            "oauth",
        ],
    ),
    (4, &["xrpc", "api", "web", "http", "cli"]),
];
const ROOT: &str = "app";

/// Statements that begin SQL text in a string literal.
const SQL_STARTS: &[&str] = &[
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "DELETE FROM",
    "CREATE TABLE",
    "CREATE INDEX",
    "CREATE UNIQUE",
    "DROP ",
    "ALTER TABLE",
    "PRAGMA ",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT ",
    "RELEASE ",
    "VACUUM",
    "WITH ",
];

struct Source {
    /// Path relative to `src/`.
    rel: String,
    /// The top-level module it belongs to (`lib`/`main` for the crate roots).
    module: String,
    /// Lines with comments removed (string literals kept).
    code: Vec<String>,
    lines: usize,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources() -> Vec<Source> {
    let root = src_dir();
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                module,
                lines: text.lines().count(),
                code: text.lines().map(strip_comment).collect(),
                rel,
            }
        })
        .collect()
}

/// The line without its `//` comment; a `//` inside a string literal is not one.
fn strip_comment(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            // A char literal holding a quote must not open a string.
            b'\'' if !in_string && bytes.get(i + 1) == Some(&b'"') => i += 2,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return line[..i].to_owned(),
            _ => {}
        }
        i += 1;
    }
    line.to_owned()
}

/// Every `crate::<module>` a line names.
fn crate_paths(line: &str) -> impl Iterator<Item = &str> + '_ {
    line.match_indices("crate::").filter_map(move |(i, _)| {
        // `perch::crate::` does not occur; a preceding identifier char means another path.
        if i > 0 {
            let before = line.as_bytes()[i - 1];
            if before.is_ascii_alphanumeric() || before == b'_' {
                return None;
            }
        }
        let rest = &line[i + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        Some(&rest[..end])
    })
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(_, mods)| mods.contains(&module))
        .map(|(l, _)| *l)
}

/// Module → (imported module → first place it is imported).
fn import_graph(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, String>> {
    let modules: BTreeSet<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in sources {
        if s.module == "lib" || s.module == "main" {
            continue;
        }
        for (n, line) in s.code.iter().enumerate() {
            for target in crate_paths(line) {
                if target != s.module && modules.contains(target) {
                    graph
                        .entry(s.module.clone())
                        .or_default()
                        .entry(target.to_owned())
                        .or_insert_with(|| format!("src/{}:{}", s.rel, n + 1));
                }
            }
        }
    }
    graph
}

#[test]
fn sql_and_rusqlite_stay_in_store() {
    let mut found = Vec::new();
    for s in sources() {
        if s.rel.starts_with("store/") || s.rel == "store.rs" {
            continue;
        }
        for (n, line) in s.code.iter().enumerate() {
            if line.contains("rusqlite") {
                found.push(format!("src/{}:{}: rusqlite outside store", s.rel, n + 1));
            }
            for (i, _) in line.match_indices('"') {
                let text = line[i + 1..].trim_start();
                if let Some(kw) = SQL_STARTS.iter().find(|k| text.starts_with(*k)) {
                    found.push(format!(
                        "src/{}:{}: SQL text ({}) outside store",
                        s.rel,
                        n + 1,
                        kw.trim()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

#[test]
fn modules_import_only_their_layer_and_below() {
    let sources = sources();
    let mut found = Vec::new();
    for s in &sources {
        let m = s.module.as_str();
        if !matches!(m, "lib" | "main" | ROOT) && layer_of(m).is_none() {
            found.push(format!(
                "src/{}: module `{m}` is in no layer: place it in LAYERS (and ARCHITECTURE.md)",
                s.rel
            ));
        }
    }
    for (from, targets) in import_graph(&sources) {
        for (to, at) in targets {
            let allowed = match (from.as_str(), to.as_str()) {
                (_, "cli") => from == "cli",
                (ROOT, _) => true,
                (_, ROOT) => layer_of(&from) == Some(4),
                _ => match (layer_of(&from), layer_of(&to)) {
                    (Some(a), Some(b)) => b <= a,
                    _ => true, // reported above
                },
            };
            if !allowed {
                found.push(format!("{at}: `{from}` imports `{to}`, which is above it"));
            }
        }
    }
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

#[test]
fn no_import_cycle_outside_the_composition_root() {
    let graph = import_graph(&sources());
    // A cycle exists iff some module reaches itself without passing through `app`.
    let mut found = Vec::new();
    for start in graph.keys().filter(|m| m.as_str() != ROOT) {
        let mut path = vec![start.clone()];
        if let Some(cycle) = reach(&graph, start, start, &mut path, &mut BTreeSet::new()) {
            found.push(cycle.join(" -> "));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

fn reach(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    goal: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in graph.get(at).into_iter().flat_map(|t| t.keys()) {
        if next == ROOT {
            continue;
        }
        if next == goal {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = reach(graph, goal, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|s| s.lines > MAX_LINES)
        .map(|s| format!("src/{}: {} lines (at most {MAX_LINES})", s.rel, s.lines))
        .collect();
    assert!(
        long.is_empty(),
        "split these by responsibility:\n{}",
        long.join("\n")
    );
}

/// The checks themselves: each rule fires on a line that breaks it.
#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(
        strip_comment(r#"let u = "https://x"; // crate::cli"#),
        r#"let u = "https://x"; "#
    );
    assert_eq!(strip_comment("let q = '\"'; // c"), "let q = '\"'; ");
    let line = "use crate::store::{Db}; crate::app::App; notcrate::cli";
    assert_eq!(crate_paths(line).collect::<Vec<_>>(), ["store", "app"]);
    assert_eq!(layer_of("store"), Some(2));
    assert_eq!(layer_of("api"), Some(4));
    assert_eq!(layer_of("nonesuch"), None);
    let graph: BTreeMap<String, BTreeMap<String, String>> = [
        ("a", vec!["b"]),
        ("b", vec!["app"]),
        ("app", vec!["a"]),
        ("c", vec!["d"]),
        ("d", vec!["c"]),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            k.to_owned(),
            v.into_iter()
                .map(|t| (t.to_owned(), String::new()))
                .collect(),
        )
    })
    .collect();
    let mut path = vec!["a".to_owned()];
    assert_eq!(
        reach(&graph, "a", "a", &mut path, &mut BTreeSet::new()),
        None
    );
    let mut path = vec!["c".to_owned()];
    assert_eq!(
        reach(&graph, "c", "c", &mut path, &mut BTreeSet::new()),
        Some(vec!["c".to_owned(), "d".to_owned(), "c".to_owned()])
    );
}
