use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn map_keys_sort_length_first() {
    let v = ipld_map! {
        "version" => Ipld::Integer(3), "did" => Ipld::Null, "data" => Ipld::Null,
        "rev" => Ipld::Null, "prev" => Ipld::Null, "sig" => Ipld::Null,
    };
    let bytes = encode(&v);
    let keys: Vec<_> = ["did", "rev", "sig", "data", "prev", "version"]
        .iter()
        .map(|k| {
            bytes
                .windows(k.len())
                .position(|w| w == k.as_bytes())
                .unwrap()
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}

#[test]
fn integers_use_shortest_heads() {
    for (i, h) in [
        (0i64, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (i64::MAX, "1b7fffffffffffffff"),
        (i64::MIN, "3b7fffffffffffffff"),
    ] {
        assert_eq!(encode(&Ipld::Integer(i)), hex(h), "{i}");
        assert_eq!(decode(&hex(h)).unwrap(), Ipld::Integer(i));
    }
}

#[test]
fn rejects_non_canonical_and_unsupported() {
    let cases = [
        ("1817", "non-minimal int"),
        ("190017", "non-minimal int 2"),
        ("5801ff", "non-minimal byte length"),
        ("9f00ff", "indefinite array"),
        ("bf6161 00ff", "indefinite map"),
        ("5f41ff ff", "indefinite bytes"),
        ("f93c00", "half float"),
        ("fa3f800000", "single float"),
        ("fb3ff0000000000000", "double float"),
        ("f7", "undefined"),
        ("f0", "simple 16"),
        ("f814", "two-byte simple false"),
        ("a2616200616100", "keys out of order"),
        ("a2616100616100", "duplicate keys"),
        ("a2626161006162 00", "longer key first"),
        ("a10100", "integer key"),
        ("c100", "tag 1"),
        ("d82a4100", "tag 42 too short"),
        ("d82a6161", "tag 42 over text"),
        ("0000", "trailing bytes"),
        ("", "empty input"),
        ("1bffffffffffffffff", "u64 beyond i64"),
        ("3bffffffffffffffff", "negative beyond i64"),
        ("62c328", "invalid utf-8"),
        ("1c", "reserved minor"),
    ];
    for (h, why) in cases {
        let bytes = hex(&h.replace(' ', ""));
        assert!(decode(&bytes).is_err(), "accepted {why}: {h}");
    }
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // Ten-byte inputs that declare gigantic strings, arrays and maps.
    for h in [
        "5bffffffffffffffff00",
        "7bffffffffffffffff00",
        "9bffffffffffffffff00",
        "bbffffffffffffffff00",
        "9a7fffffff0000000000",
    ] {
        assert!(decode(&hex(h)).is_err(), "{h}");
    }
}

#[test]
fn nesting_is_bounded() {
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x00);
    assert!(matches!(decode(&deep), Err(DecodeError::Limit(_, _))));
    let mut ok = vec![0x81u8; 31];
    ok.push(0x00);
    assert!(decode(&ok).is_ok());
}

#[test]
fn json_and_cbor_agree_on_nesting() {
    // What JSON takes, DAG-CBOR reads back; one level more, neither does.
    for depth in [MAX_DEPTH, MAX_DEPTH + 1] {
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut bytes = vec![0x81u8; depth];
        bytes.push(0x01);
        assert_eq!(from_json(&json).is_ok(), depth == MAX_DEPTH, "{depth}");
        assert_eq!(decode(&bytes).is_ok(), depth == MAX_DEPTH, "{depth}");
        if let Ok(v) = from_json(&json) {
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }
}

#[test]
fn links_round_trip_with_zero_prefix() {
    let c = crate::cid::for_cbor(b"\xa0");
    let bytes = encode(&Ipld::Link(c));
    assert_eq!(&bytes[..2], &[0xd8, 0x2a]);
    assert_eq!(bytes[2], 0x58);
    assert_eq!(bytes[3], 37);
    assert_eq!(bytes[4], 0);
    assert_eq!(decode(&bytes).unwrap(), Ipld::Link(c));
    let mut no_prefix = bytes.clone();
    no_prefix[4] = 1;
    assert!(decode(&no_prefix).is_err());
}

fn arb_ipld() -> impl Strategy<Value = Ipld> {
    let leaf = prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(Ipld::Integer),
        ".{0,12}".prop_map(Ipld::String),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Ipld::Bytes),
        any::<[u8; 8]>().prop_map(|b| Ipld::Link(crate::cid::for_raw(&b))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Ipld::List),
            proptest::collection::btree_map(".{0,6}", inner, 0..8).prop_map(Ipld::Map),
        ]
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(v in arb_ipld()) {
        let bytes = encode(&v);
        let back = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(encode(&back), bytes);
        // JSON form round-trips too.
        prop_assert_eq!(from_json(&to_json(&v)).unwrap(), v);
    }

    #[test]
    fn json_text_is_to_json_of_decode(v in arb_ipld(), pos in any::<usize>(), b in any::<u8>()) {
        let bytes = encode(&v);
        let mut text = Vec::new();
        to_json_text(&bytes, &mut text).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(parsed, to_json(&v));
        // Damaged bytes: refused exactly when decode refuses them, the same JSON otherwise.
        let mut bad = bytes.clone();
        let i = pos % bad.len();
        bad[i] = b;
        text.clear();
        match (decode(&bad), to_json_text(&bad, &mut text)) {
            (Ok(x), Ok(())) => {
                let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
                prop_assert_eq!(parsed, to_json(&x));
            }
            (Err(_), Err(_)) => {}
            (d, t) => prop_assert!(false, "decode {d:?} but transcode {t:?}"),
        }
    }

    #[test]
    fn json_strings_escape_as_serde_json(s in "\\PC*|[\\x00-\\x7f]{0,20}") {
        let mut out = Vec::new();
        json_string(&s, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
    }

    #[test]
    fn accepted_bytes_are_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Whatever random bytes the strict decoder accepts must re-encode
        // to exactly themselves.
        if let Ok(v) = decode(&bytes) {
            prop_assert_eq!(encode(&v), bytes);
        }
    }

    #[test]
    fn mutated_canonical_bytes_never_panic(v in arb_ipld(), pos in any::<usize>(), b in any::<u8>()) {
        let mut bytes = encode(&v);
        if !bytes.is_empty() {
            let i = pos % bytes.len();
            bytes[i] = b;
            if let Ok(x) = decode(&bytes) {
                prop_assert_eq!(encode(&x), bytes);
            }
        }
    }
}
