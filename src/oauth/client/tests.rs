use serde_json::json;

use super::*;

fn web_doc() -> Value {
    json!({
        "client_id": "https://app.example.com/client-metadata.json",
        "client_name": "Example",
        "client_uri": "https://app.example.com",
        "redirect_uris": ["https://app.example.com/callback"],
        "scope": "atproto transition:generic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "web",
        "token_endpoint_auth_method": "none",
        "dpop_bound_access_tokens": true
    })
}

type Edit = Box<dyn Fn(&mut Value)>;

const ID: &str = "https://app.example.com/client-metadata.json";

#[test]
fn a_good_public_web_client() {
    let c = validate(ID, &web_doc(), false).unwrap();
    assert_eq!(c.name.as_deref(), Some("Example"));
    assert!(!c.confidential && c.refresh_tokens && !c.loopback);
    assert!(c.allows_redirect("https://app.example.com/callback"));
    assert!(!c.allows_redirect("https://app.example.com/callback2"));
    assert_eq!(c.host(), "app.example.com");
}

#[test]
fn strict_validation_names_the_fault() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "differs",
            Box::new(|d| d["client_id"] = json!("https://other.example/x")),
        ),
        (
            "dpop_bound",
            Box::new(|d| d["dpop_bound_access_tokens"] = json!(false)),
        ),
        (
            "token_endpoint_auth_method",
            Box::new(|d| {
                d.as_object_mut()
                    .unwrap()
                    .remove("token_endpoint_auth_method");
            }),
        ),
        (
            "atproto",
            Box::new(|d| d["scope"] = json!("transition:generic")),
        ),
        (
            "redirect_uris",
            Box::new(|d| d["redirect_uris"] = json!([])),
        ),
        (
            "host",
            Box::new(|d| d["redirect_uris"] = json!(["https://evil.example/cb"])),
        ),
        (
            "https",
            Box::new(|d| d["redirect_uris"] = json!(["http://app.example.com/cb"])),
        ),
        (
            "grant",
            Box::new(|d| d["grant_types"] = json!(["authorization_code", "password"])),
        ),
        (
            "public client",
            Box::new(|d| d["jwks"] = json!({"keys": []})),
        ),
        (
            "client_uri",
            Box::new(|d| d["client_uri"] = json!("https://evil.example")),
        ),
        (
            "application_type",
            Box::new(|d| d["application_type"] = json!("desktop")),
        ),
        (
            "confidential",
            Box::new(|d| d["token_endpoint_auth_method"] = json!("private_key_jwt")),
        ),
    ];
    for (want, edit) in cases {
        let mut d = web_doc();
        edit(&mut d);
        let e = validate(ID, &d, false).unwrap_err();
        assert_eq!(e.error, "invalid_client_metadata", "{want}");
        assert!(e.description.contains(want), "{want}: {}", e.description);
    }
}

#[test]
fn native_apps_use_the_reversed_host_or_loopback() {
    let mut d = web_doc();
    d["application_type"] = json!("native");
    d["redirect_uris"] = json!(["com.example.app:/callback", "http://127.0.0.1/cb"]);
    assert!(validate(ID, &d, false).is_ok());
    d["redirect_uris"] = json!(["com.example.app://callback"]);
    assert!(validate(ID, &d, false).is_err());
    d["redirect_uris"] = json!(["com.evil.app:/callback"]);
    assert!(validate(ID, &d, false).is_err());
}

#[test]
fn client_ids_must_be_plain_https_urls_outside_tests() {
    assert!(check_client_id(ID, false).is_ok());
    for bad in [
        "http://app.example.com/c.json",
        "https://app.example.com:8443/c.json",
        "https://127.0.0.1/c.json",
        "https://[::1]/c.json",
        "https://user@app.example.com/c.json",
        "https://APP.example.com/c.json",
        "https://app.example.com/c.json#x",
        "not a url",
    ] {
        assert!(check_client_id(bad, false).is_err(), "{bad}");
    }
    assert!(check_client_id("http://127.0.0.1:8080/c.json", true).is_ok());
}

#[test]
fn the_loopback_client_is_synthesised() {
    let c = loopback_client(
        "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&scope=atproto%20transition%3Ageneric",
    )
    .unwrap();
    assert!(c.loopback && !c.confidential);
    assert_eq!(c.scope, "atproto transition:generic");
    // The port is not compared; the path is.
    assert!(c.allows_redirect("http://127.0.0.1:51234/callback"));
    assert!(!c.allows_redirect("http://127.0.0.1:51234/other"));
    assert!(!c.allows_redirect("http://localhost:51234/callback"));
    let d = loopback_client("http://localhost").unwrap();
    assert_eq!(d.scope, "atproto");
    assert!(d.allows_redirect("http://[::1]:4000/"));
    for bad in [
        "http://localhost:8080",
        "http://localhost/path",
        "http://localhost?redirect_uri=https%3A%2F%2Fevil.example%2F",
        "http://localhost?redirect_uri=http%3A%2F%2Flocalhost%2F",
        "http://localhost?scope=transition%3Ageneric",
        "http://localhost?foo=bar",
    ] {
        assert!(loopback_client(bad).is_err(), "{bad}");
    }
}

#[test]
fn cache_lifetimes_follow_cache_control() {
    let h = |v: &str| {
        let mut m = hyper::HeaderMap::new();
        m.insert(hyper::header::CACHE_CONTROL, v.parse().unwrap());
        m
    };
    assert_eq!(ttl(&hyper::HeaderMap::new()), DEFAULT_TTL);
    assert_eq!(ttl(&h("public, max-age=120")), Duration::from_secs(120));
    assert_eq!(ttl(&h("max-age=999999")), MAX_TTL);
    assert_eq!(ttl(&h("no-store")), Duration::ZERO);
}
