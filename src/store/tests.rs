use super::*;
use crate::cid;
use rusqlite::params;

fn temp_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("perch.sqlite")).unwrap();
    (dir, store)
}

#[test]
fn opens_in_wal_with_full_sync_and_migrates_once() {
    let (dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let mode: String = w
        .raw()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = w
        .raw()
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
    let v: i64 = w
        .raw()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::VERSION);
    drop(w);
    // Reopening does not re-run migrations.
    Store::open(&dir.path().join("perch.sqlite")).unwrap();
}

#[test]
fn refuses_a_newer_schema() {
    let (dir, store) = temp_store();
    store
        .open_writer()
        .unwrap()
        .raw()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    assert!(matches!(
        Store::open(&dir.path().join("perch.sqlite")),
        Err(StoreError::TooNew(999, _))
    ));
}

#[test]
fn blocks_records_and_events_round_trip() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let c = cid::for_cbor(b"\xa0");
    repo::put_block(&w, &c, "rev1", b"\xa0").unwrap();
    repo::put_block(&w, &c, "rev2", b"\xa0").unwrap();
    assert_eq!(repo::get_block(&w, &c).unwrap().unwrap(), b"\xa0");
    assert_eq!(repo::block_count(&w).unwrap(), 1);
    // A block written again counts as written by the later rev (so a
    // since-diff includes it), never moved back by an older one.
    let since = |rev: &str| {
        let mut n = 0;
        repo::blocks_since_page(&w, rev, None, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
        n
    };
    assert_eq!(since("rev1"), 1);
    repo::put_block(&w, &c, "rev0", b"\xa0").unwrap();
    assert_eq!(since("rev1"), 1);
    for k in ["a", "b", "c"] {
        repo::put_record(&w, "app.bsky.feed.post", k, &c, "rev1").unwrap();
    }
    // Paged: page after page in (rev, cid) order, nothing lost when a block not yet
    // reached moves to a later rev between pages.
    let blocks: Vec<_> = (0..5u8)
        .map(|i| (cid::for_cbor(&[0x61, b'a' + i]), vec![0x61, b'a' + i]))
        .collect();
    for (i, (c, b)) in blocks.iter().enumerate() {
        repo::put_block(&w, c, &format!("rev{}", 3 + i % 2), b).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut got = 0;
        cursor = repo::blocks_since_page(&w, "rev2", cursor.as_ref(), &mut |c, _| {
            seen.push(c);
            got += 1;
            got < 2
        })
        .unwrap();
        if seen.len() == 2 {
            // Everything not yet given is rewritten by a later commit.
            for (c, b) in &blocks {
                if !seen.contains(c) {
                    repo::put_block(&w, c, "rev9", b).unwrap();
                }
            }
        }
        if cursor.is_none() {
            break;
        }
    }
    for (c, _) in &blocks {
        assert!(seen.contains(c), "{c} was lost between pages");
    }
    assert_eq!(seen.len(), blocks.len());
    let plan: String = w
        .query_row(
            "EXPLAIN QUERY PLAN SELECT rev, cid, data FROM block WHERE rev > ?1 AND (rev, cid) > (?2, ?3) ORDER BY rev, cid",
            params!["a", "b", b"c".to_vec()],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("block_rev"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    let page = repo::list_records(&w, "app.bsky.feed.post", None, 2, false).unwrap();
    assert_eq!(
        page.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["c", "b"]
    );
    let page = repo::list_records(&w, "app.bsky.feed.post", Some("b"), 2, false).unwrap();
    assert_eq!(page.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["a"]);
    let page = repo::list_records(&w, "app.bsky.feed.post", Some("a"), 5, true).unwrap();
    assert_eq!(
        page.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["b", "c"]
    );
    let s1 = append_event(&w, "commit", "t", b"x").unwrap();
    let s2 = append_event(&w, "commit", "t", b"y").unwrap();
    assert!(s2 > s1);
    // Readers see committed writes.
    let seen = store
        .read_blocking(|r| repo::events_after(r, s1, 10))
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"y");
}

#[test]
fn many_blocks_at_once_come_in_the_order_asked() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    // More than two statements' worth, of sizes around the cap.
    let blocks: Vec<(cid::Cid, Vec<u8>)> = (0..150u32)
        .map(|i| {
            let b = vec![0x40 | (i % 20) as u8; 1 + (i as usize * 7) % 300];
            let b = [vec![0x58, b.len() as u8], b].concat();
            (cid::for_raw(&b), b)
        })
        .collect();
    for (c, b) in &blocks {
        repo::put_block(&w, c, "rev1", b).unwrap();
    }
    let absent = cid::for_raw(b"not stored");
    // Reversed, with an absent CID and repeats (identical records share a CID).
    let mut asked: Vec<cid::Cid> = blocks.iter().rev().map(|(c, _)| *c).collect();
    asked.insert(70, absent);
    asked.push(blocks[3].0);
    asked.push(blocks[3].0);
    let cap = 200;
    let got = repo::get_blocks(&w, &asked, cap).unwrap();
    assert_eq!(got.len(), asked.len());
    let by_cid: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    let mut held = 0;
    for (c, g) in asked.iter().zip(&got) {
        match by_cid.get(c) {
            Some(b) if b.len() <= cap => {
                assert_eq!(g.as_deref(), Some(b.as_slice()), "{c}");
                held += 1;
            }
            // Absent, or longer than the cap: left to a lookup of its own.
            _ => assert!(g.is_none(), "{c}"),
        }
    }
    assert!(held > 100 && held < asked.len() - 10, "{held}");
    assert!(repo::get_blocks(&w, &[], cap).unwrap().is_empty());
}

#[test]
fn record_pages_read_in_index_order_and_compile_once() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let c = cid::for_raw(b"r");
    for k in ["a", "b", "c", "d"] {
        repo::put_record(&w, "app.bsky.feed.post", k, &c, "rev1").unwrap();
    }
    // `take(limit)` is only a LIMIT if no sort stands between the index and the rows.
    for sql in repo::LIST_SQL {
        let mut st = w.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        for i in 1..=st.parameter_count() {
            st.raw_bind_parameter(i, "x").unwrap();
        }
        let mut rows = st.raw_query();
        let mut plan = String::new();
        while let Some(r) = rows.next().unwrap() {
            plan.push_str(&r.get::<_, String>(3).unwrap());
        }
        assert!(plan.contains("PRIMARY KEY"), "{sql}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
    }
    // Every page is the first `limit` keys past the cursor in the asked order.
    for limit in [1, 2, 3, 5] {
        for reverse in [false, true] {
            for cursor in [None, Some("b")] {
                let mut keys = vec!["a", "b", "c", "d"];
                if !reverse {
                    keys.reverse();
                }
                let want: Vec<&str> = keys
                    .into_iter()
                    .filter(|k| match cursor {
                        Some(c) if reverse => *k > c,
                        Some(c) => *k < c,
                        None => true,
                    })
                    .take(limit as usize)
                    .collect();
                let page =
                    repo::list_records(&w, "app.bsky.feed.post", cursor, limit, reverse).unwrap();
                let got: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(
                    got, want,
                    "limit {limit} reverse {reverse} cursor {cursor:?}"
                );
            }
        }
    }
    for sql in repo::LIST_SQL {
        let st = w.prepare_cached(sql).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{sql}"
        );
    }
}

#[test]
fn seq_never_reused_after_trimming() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let s1 = append_event(&w, "commit", "t", b"x").unwrap();
    w.execute("DELETE FROM event", []).unwrap();
    let s2 = append_event(&w, "commit", "t", b"y").unwrap();
    assert!(s2 > s1);
}

#[test]
fn blob_references() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let meta = blobs::BlobMeta {
        cid: "bafkreiabc".into(),
        mime_type: "image/png".into(),
        size: 10,
        created_at: 100,
    };
    blobs::insert_blob(&w, &meta).unwrap();
    assert_eq!(blobs::unreferenced_before(&w, 200).unwrap(), ["bafkreiabc"]);
    blobs::add_record_blob(&w, "bafkreiabc", "app.bsky.feed.post/1").unwrap();
    blobs::add_record_blob(&w, "bafkreiabc", "app.bsky.feed.post/2").unwrap();
    assert!(blobs::unreferenced_before(&w, 200).unwrap().is_empty());
    assert_eq!(
        blobs::list_blobs(&w, None, None, 10).unwrap(),
        ["bafkreiabc"]
    );
    assert_eq!(
        blobs::remove_record_blobs(&w, "app.bsky.feed.post/1").unwrap(),
        ["bafkreiabc"]
    );
    assert!(!blobs::delete_if_unreferenced(&w, "bafkreiabc").unwrap());
    blobs::remove_record_blobs(&w, "app.bsky.feed.post/2").unwrap();
    assert!(blobs::delete_if_unreferenced(&w, "bafkreiabc").unwrap());
    assert!(blobs::get_blob(&w, "bafkreiabc").unwrap().is_none());
    blobs::add_record_blob(&w, "bafkreimissing", "app.bsky.feed.post/3").unwrap();
    assert_eq!(
        blobs::list_missing_blobs(&w, None, 10).unwrap(),
        [(
            "bafkreimissing".to_string(),
            "app.bsky.feed.post/3".to_string()
        )]
    );
}

#[test]
fn an_uploaded_blob_has_one_type_and_bytes_beat_declarations() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let meta = |mime: &str| blobs::BlobMeta {
        cid: "bafkreiupload".into(),
        mime_type: mime.into(),
        size: 10,
        created_at: 100,
    };
    // Declared types: the first stays.
    let put = |mime: &str, sniffed: bool| blobs::insert_upload(&w, &meta(mime), sniffed).unwrap();
    assert_eq!(
        put("application/octet-stream", false),
        "application/octet-stream"
    );
    assert_eq!(put("text/plain", false), "application/octet-stream");
    // A type read from the bytes replaces a declared one (a row from before sniffing).
    assert_eq!(put("image/png", true), "image/png");
    assert_eq!(put("application/octet-stream", false), "image/png");
    assert_eq!(
        blobs::get_blob(&w, "bafkreiupload")
            .unwrap()
            .unwrap()
            .mime_type,
        "image/png"
    );
}

#[test]
fn trimming_and_bumping_never_reuse_seqs() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let s1 = append_event(&w, "commit", "2020-01-01T00:00:00.000Z", b"old").unwrap();
    let s2 = append_event(&w, "commit", "2030-01-01T00:00:00.000Z", b"new").unwrap();
    assert_eq!(
        repo::trim_events_before(&w, "2025-01-01T00:00:00.000Z").unwrap(),
        1
    );
    assert_eq!(repo::events_after(&w, 0, 10).unwrap()[0].seq, s2);
    repo::bump_seq(&w, 1000).unwrap();
    let s3 = append_event(&w, "commit", "2030-01-01T00:00:00.000Z", b"x").unwrap();
    assert_eq!(s3, 1000);
    // Bumping backwards is a no-op.
    repo::bump_seq(&w, 5).unwrap();
    let s4 = append_event(&w, "commit", "2030-01-01T00:00:00.000Z", b"y").unwrap();
    assert!(s4 > s3 && s3 > s1);
}

#[test]
fn highest_seq_counts_trimmed_and_bumped_seqs() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    assert_eq!(repo::highest_seq(&w).unwrap(), 0);
    append_event(&w, "commit", "2020-01-01T00:00:00.000Z", b"a").unwrap();
    let s = append_event(&w, "commit", "2020-01-01T00:00:00.000Z", b"b").unwrap();
    repo::trim_events_before(&w, "2030-01-01T00:00:00.000Z").unwrap();
    assert_eq!(repo::last_seq(&w).unwrap(), None);
    assert_eq!(repo::highest_seq(&w).unwrap(), s);
    repo::bump_seq(&w, 50).unwrap();
    assert_eq!(repo::highest_seq(&w).unwrap(), 49);
}

#[test]
fn online_backup_copies_a_consistent_private_single_file() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    append_event(&w, "commit", "2030-01-01T00:00:00.000Z", b"a").unwrap();
    // An open write transaction in the server does not block the copy,
    // and its uncommitted row is not in it.
    w.execute_batch("BEGIN").unwrap();
    append_event(&w, "commit", "2030-01-01T00:00:00.000Z", b"b").unwrap();
    let dst = dir.path().join("copy.sqlite");
    let facts = snapshot::online_backup(&dir.path().join("perch.sqlite"), &dst).unwrap();
    w.execute_batch("COMMIT").unwrap();
    assert_eq!(facts.seq, 1);
    assert_eq!(facts.did, None);
    assert_eq!(facts.schema_version, schema::VERSION);
    let mode = std::fs::metadata(&dst).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let copy = Db::new(Connection::open(&dst).unwrap());
    let jm: String = copy
        .raw()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(jm, "delete", "one self-contained file");
    assert_eq!(snapshot::quick_check(&copy).unwrap(), "ok");
    assert_eq!(repo::highest_seq(&copy).unwrap(), 1);
    // It never overwrites.
    assert!(snapshot::online_backup(&dir.path().join("perch.sqlite"), &dst).is_err());
}

#[test]
fn list_blobs_since_a_rev_names_blobs_of_later_records_only() {
    let (_dir, store) = temp_store();
    let w = store.open_writer().unwrap();
    let cid = |n: u8| crate::cid::for_raw(&[n]);
    // Two posts at two revs; the old blob is also used by a later record.
    for (rkey, rev, blobs_of) in [
        ("a", "3jzfcijpj2z2a", &[1u8, 2][..]),
        ("b", "3jzfcijpj2z2c", &[2u8, 3][..]),
    ] {
        repo::put_record(&w, "app.bsky.feed.post", rkey, &cid(100), rev).unwrap();
        for n in blobs_of {
            let path = format!("app.bsky.feed.post/{rkey}");
            blobs::add_record_blob(&w, &cid(*n).to_string(), &path).unwrap();
        }
    }
    let mut all: Vec<String> = [1, 2, 3].map(|n| cid(n).to_string()).to_vec();
    all.sort();
    let mut later: Vec<String> = [2, 3].map(|n| cid(n).to_string()).to_vec();
    later.sort();
    assert_eq!(blobs::list_blobs(&w, None, None, 10).unwrap(), all);
    assert_eq!(
        blobs::list_blobs(&w, Some("3jzfcijpj2z2b"), None, 10).unwrap(),
        later
    );
    assert_eq!(
        blobs::list_blobs(&w, Some("3jzfcijpj2z2a"), None, 10).unwrap(),
        later
    );
    assert!(
        blobs::list_blobs(&w, Some("3jzfcijpj2z2c"), None, 10)
            .unwrap()
            .is_empty()
    );
    // Paged by CID.
    let first = blobs::list_blobs(&w, Some("3jzfcijpj2z2b"), None, 1).unwrap();
    assert_eq!(first, later[..1]);
    assert_eq!(
        blobs::list_blobs(&w, Some("3jzfcijpj2z2b"), Some(&first[0]), 10).unwrap(),
        later[1..]
    );
}

#[test]
fn storage_failures_are_told_from_other_errors() {
    let sqlite = |code| {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    };
    assert!(sqlite(rusqlite::ffi::SQLITE_IOERR_FSYNC).is_storage_failure());
    assert!(sqlite(rusqlite::ffi::SQLITE_FULL).is_storage_failure());
    assert!(!sqlite(rusqlite::ffi::SQLITE_BUSY).is_storage_failure());
    assert!(!StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows).is_storage_failure());
    assert!(!StoreError::Conflict("x".into()).is_storage_failure());
}

/// Appends an event the way the firehose does: the next seq, then the row.
fn append_event(w: &Db, kind: &str, time: &str, body: &[u8]) -> Result<i64, StoreError> {
    let seq = repo::next_seq(w)?;
    repo::insert_event(w, seq, kind, time, body)?;
    Ok(seq)
}
