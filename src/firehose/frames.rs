//! Frames as sent on the WebSocket: a DAG-CBOR header (`{op, t}`) followed by the body.
//! A stored event body already carries its `seq`, so its frame is a fixed header per kind
//! and the stored bytes: nothing is decoded or re-encoded per subscriber.

use std::sync::OnceLock;

use crate::cbor::{self, Ipld};
use crate::ipld_map;

fn header(t: &str) -> Vec<u8> {
    cbor::encode(&ipld_map! {
        "t" => Ipld::String(t.into()),
        "op" => Ipld::Integer(1),
    })
}

/// The header of a message frame of type `#<kind>`, encoded once per kind.
fn message_header(kind: &str) -> std::borrow::Cow<'static, [u8]> {
    static KNOWN: OnceLock<[(&str, Vec<u8>); 5]> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        ["commit", "identity", "account", "sync", "info"].map(|k| (k, header(&format!("#{k}"))))
    });
    match known.iter().find(|(k, _)| *k == kind) {
        Some((_, h)) => std::borrow::Cow::Borrowed(h.as_slice()),
        None => std::borrow::Cow::Owned(header(&format!("#{kind}"))),
    }
}

/// A stored event of `kind` as a frame.
pub fn event(kind: &str, body: &[u8]) -> Vec<u8> {
    let head = message_header(kind);
    let mut f = Vec::with_capacity(head.len() + body.len());
    f.extend_from_slice(&head);
    f.extend_from_slice(body);
    f
}

/// An `#info` message (e.g. `OutdatedCursor`).
pub fn info(name: &str, message: &str) -> Vec<u8> {
    event(
        "info",
        &cbor::encode(&ipld_map! {
            "name" => Ipld::String(name.into()),
            "message" => Ipld::String(message.into()),
        }),
    )
}

/// An error frame (`op: -1`); the stream ends after it.
pub fn error(error: &str, message: &str) -> Vec<u8> {
    let mut f = cbor::encode(&ipld_map! { "op" => Ipld::Integer(-1) });
    f.extend(cbor::encode(&ipld_map! {
        "error" => Ipld::String(error.into()),
        "message" => Ipld::String(message.into()),
    }));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_the_header_then_the_stored_body() {
        let body = cbor::encode(&ipld_map! { "seq" => Ipld::Integer(7) });
        let f = event("commit", &body);
        let (h, rest) = f.split_at(message_header("commit").len());
        assert_eq!(
            cbor::decode(h).unwrap(),
            ipld_map! { "t" => Ipld::String("#commit".into()), "op" => Ipld::Integer(1) }
        );
        assert_eq!(rest, body.as_slice());
        let other = event("labels", &body);
        assert!(other.starts_with(&header("#labels")));
    }
}
