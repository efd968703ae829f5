//! XRPC query strings: percent-decoding and the typed parameter readers
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch::xrpc::XrpcRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let Ok(req) = XrpcRequest::new(
        "com.atproto.repo.listRecords".into(),
        hyper::Method::GET,
        Some(q),
        hyper::HeaderMap::new(),
        peer,
        None,
    ) else {
        return;
    };
    for name in [
        "repo",
        "collection",
        "cursor",
        "limit",
        "reverse",
        "did",
        "cid",
    ] {
        let _ = req.param(name);
        let _ = req.params(name);
        let _ = req.required(name);
        let _ = req.bool_param(name, false);
    }
    let _ = req.int_param("limit", 1, 100, 50);
});
