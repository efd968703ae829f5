//! The Lexicon catalog's permission-set example.

use perch::lexicon::permission_set::{expand, parse};

#[test]
fn the_catalog_permission_set_parses_and_grants_only_its_namespace() {
    let Some(dir) = super::interop_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("lexicon/catalog/permission-set.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let set = parse("example.lexicon.permissionset", &doc).unwrap();
    assert_eq!(set.title.as_deref(), Some("Example for Moderation"));
    assert_eq!(set.permissions.len(), 6);
    // Every collection and method it names lies outside `example.lexicon.*`, where a set
    // may grant; and `lxm: ["*"]` would reach beyond it.
    assert!(expand(&set, Some("did:web:x.example#y")).is_empty());
}
