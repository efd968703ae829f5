//! The media type of an upload, read from its first bytes.
//!
//! Clients do not always say what they upload: the Python SDK sends
//! `application/octet-stream` or `*/*` for a PNG, and the app then refuses
//! the blob as an image. The reference PDS runs the `file-type` package over
//! every upload and stores what it finds, falling back to the declared type;
//! this does the same for the types people post (images, audio, video, PDF)
//! with the same MIME strings, from magic numbers alone. Signatures that
//! `file-type` accepts on two or three bytes (BMP's `BM`, QuickTime's
//! `free` at offset 4) also check a structural field here, so a text file
//! starting `BM…` or `I'm free…` is not taken for a picture or a film.

/// How much of an upload is kept for sniffing. PNG is the only format whose
/// answer can lie further in (an `acTL` chunk after a large colour profile
/// makes it APNG); past this the PNG is taken as a still image.
pub const SNIFF_LEN: usize = 16 * 1024;

/// The media type `head` (the first bytes of a blob of `total` bytes) shows,
/// or `None` when it matches no signature known here.
pub fn sniff(head: &[u8], total: u64) -> Option<&'static str> {
    let at = |off: usize, sig: &[u8]| head.get(off..off + sig.len()) == Some(sig);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return png(head);
    }
    if at(0, &[0xff, 0xd8, 0xff]) {
        // JPEG-LS uses the JPEG start marker with an SOF55 segment.
        return Some(if at(3, &[0xf7]) {
            "image/jls"
        } else {
            "image/jpeg"
        });
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") {
        return if at(8, b"WEBP") {
            Some("image/webp")
        } else if at(8, b"WAVE") {
            Some("audio/wav")
        } else if at(8, b"AVI") {
            Some("video/vnd.avi")
        } else {
            None
        };
    }
    if at(4, b"ftyp") && head.get(8).is_some_and(|b| b & 0x60 != 0) {
        return head.get(8..12).map(iso_brand);
    }
    if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        return match ebml_doc_type(head) {
            Some(b"webm") => Some("video/webm"),
            Some(b"matroska") => Some("video/matroska"),
            _ => None,
        };
    }
    if at(0, b"OggS") {
        return Some(ogg(head));
    }
    if at(0, b"fLaC") {
        return Some("audio/flac");
    }
    if at(0, b"ID3") {
        // An ID3v2 tag leads MP3 files (its length can run past the head).
        return Some("audio/mpeg");
    }
    if at(0, b"%PDF") {
        return Some("application/pdf");
    }
    if at(0, &[0xff, 0x0a]) || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some("image/jxl");
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return Some("image/tiff");
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Some("audio/aiff");
    }
    if at(0, b"MThd") && at(4, &[0, 0, 0, 6]) {
        return Some("audio/midi");
    }
    if at(0, b"BM") && bmp(head) {
        return Some("image/bmp");
    }
    if quicktime(head, total) {
        return Some("video/quicktime");
    }
    mpeg_audio(head)
}

/// PNG or APNG: an `acTL` chunk before the first `IDAT` makes it animated.
/// The first chunk must be a 13-byte `IHDR` (or Apple's `CgBI`).
fn png(head: &[u8]) -> Option<&'static str> {
    let mut i = 8;
    let mut first = true;
    for _ in 0..512 {
        let (Some(len), Some(kind)) = (head.get(i..i + 4), head.get(i + 4..i + 8)) else {
            break; // past what was kept: a PNG all the same
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if first {
            match kind {
                b"IHDR" if len == 13 => {}
                b"CgBI" => {}
                _ => return None,
            }
            first = false;
        }
        match kind {
            b"IDAT" => break,
            b"acTL" => return Some("image/apng"),
            _ => {}
        }
        i = i.saturating_add(12).saturating_add(len);
    }
    Some("image/png")
}

/// ISO base media (`ftyp`) major brands, as `file-type` names them.
fn iso_brand(brand: &[u8]) -> &'static str {
    let b: Vec<u8> = brand
        .iter()
        .map(|&c| if c == 0 { b' ' } else { c })
        .collect();
    let brand = std::str::from_utf8(&b).unwrap_or("").trim();
    match brand {
        "avif" | "avis" => "image/avif",
        "mif1" => "image/heif",
        "msf1" => "image/heif-sequence",
        "heic" | "heix" => "image/heic",
        "hevc" | "hevx" => "image/heic-sequence",
        "qt" => "video/quicktime",
        "M4V" | "M4VH" | "M4VP" => "video/x-m4v",
        "M4B" | "F4A" | "F4B" => "audio/mp4",
        "M4A" => "audio/x-m4a",
        "crx" => "image/x-canon-cr3",
        b if b.starts_with("3g2") => "video/3gpp2",
        b if b.starts_with("3g") => "video/3gpp",
        _ => "video/mp4",
    }
}

/// An EBML variable-length integer at `i`: its value (with the length
/// marker kept for element IDs, removed for sizes) and its length.
fn vint(b: &[u8], i: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *b.get(i)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let rest = b.get(i + 1..i + len)?;
    let mut v = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xff >> len)
    };
    for &x in rest {
        v = v << 8 | u64::from(x);
    }
    Some((v, len))
}

/// The `DocType` of the EBML header that starts `head` (`webm`, `matroska`).
fn ebml_doc_type(head: &[u8]) -> Option<&[u8]> {
    let (_, id_len) = vint(head, 0, true)?;
    let (size, size_len) = vint(head, id_len, false)?;
    let start = id_len + size_len;
    let end = start
        .saturating_add(usize::try_from(size).ok()?)
        .min(head.len());
    let mut i = start;
    for _ in 0..256 {
        if i >= end {
            return None;
        }
        let (id, a) = vint(head, i, true)?;
        let (len, b) = vint(head, i + a, false)?;
        let body = i + a + b;
        let len = usize::try_from(len).ok()?;
        if id == 0x4282 {
            if len > 64 {
                return None;
            }
            let t = head.get(body..body + len)?;
            return Some(t.split(|&c| c == 0).next().unwrap_or(t));
        }
        i = body.checked_add(len)?;
    }
    None
}

/// What an Ogg stream carries, from the first packet of its first page.
fn ogg(head: &[u8]) -> &'static str {
    let at = |sig: &[u8]| head.get(28..28 + sig.len()) == Some(sig);
    if at(b"OpusHead") {
        "audio/ogg; codecs=opus"
    } else if at(b"\x80theora") || at(b"\x01video\0") {
        "video/ogg"
    } else if at(b"\x7fFLAC") || at(b"Speex  ") || at(b"\x01vorbis") {
        "audio/ogg"
    } else {
        "application/ogg"
    }
}

/// A Windows bitmap: `BM`, reserved zero bytes, and a known DIB header size.
fn bmp(head: &[u8]) -> bool {
    let Some(h) = head.get(0..18) else {
        return false;
    };
    let dib = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
    h[6..10] == [0, 0, 0, 0] && matches!(dib, 12 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// A QuickTime movie without `ftyp`: its first box is `free`, `mdat`,
/// `moov` or `wide`, with a size that fits the file (0 and 1 are the
/// "to the end" and 64-bit forms).
fn quicktime(head: &[u8], total: u64) -> bool {
    let Some(h) = head.get(0..8) else {
        return false;
    };
    let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    matches!(&h[4..8], b"free" | b"mdat" | b"moov" | b"wide")
        && (size <= 1 || (8..=total).contains(&size))
}

/// An MPEG audio frame header (MP3, MP2, MP1) or an ADTS (AAC) header at
/// the start, with the reserved values `file-type` rejects.
fn mpeg_audio(head: &[u8]) -> Option<&'static str> {
    let h = head.get(0..4)?;
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    if h[1] & 0x16 == 0x10 {
        return Some("audio/aac");
    }
    // A UTF-16 LE byte-order mark looks like an MPEG-1 Layer I header.
    if h[1] == 0xfe || h[1] & 0x18 == 0x08 || h[2] & 0xf0 == 0xf0 || h[2] & 0x0c == 0x0c {
        return None;
    }
    (h[1] & 0x06 != 0).then_some("audio/mpeg")
}

/// The declared `Content-Type` as a bare lower-case `type/subtype`, or
/// `None` when it says nothing (absent, empty, `*/*`, or not a media type).
pub fn declared(content_type: Option<&str>) -> Option<String> {
    let t = content_type?
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match t.split_once('/') {
        Some((a, b)) if token(a) && token(b) => Some(t),
        _ => None,
    }
}

/// The type to store for a blob: what its bytes show (`sniffed`), else what
/// the client declared, else `application/octet-stream` (the reference's
/// order). The flag says the type came from the bytes.
pub fn blob_type(sniffed: Option<&str>, content_type: Option<&str>) -> (String, bool) {
    match sniffed {
        Some(t) => (t.to_owned(), true),
        None => (
            declared(content_type).unwrap_or_else(|| "application/octet-stream".into()),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0; 4]); // CRC, not checked
        c
    }

    fn png_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        p.extend(chunk(b"IHDR", &[0; 13]));
        for c in chunks {
            p.extend_from_slice(c);
        }
        p
    }

    fn s(b: &[u8]) -> Option<&'static str> {
        sniff(b, b.len() as u64)
    }

    #[test]
    fn images() {
        assert_eq!(s(&png_with(&[chunk(b"IDAT", b"x")])), Some("image/png"));
        let apng = png_with(&[chunk(b"acTL", &[0; 8]), chunk(b"IDAT", b"x")]);
        assert_eq!(s(&apng), Some("image/apng"));
        // acTL after the image data is not an animation.
        let late = png_with(&[chunk(b"IDAT", b"x"), chunk(b"acTL", &[0; 8])]);
        assert_eq!(s(&late), Some("image/png"));
        // A large profile before the data: past the head, still a PNG.
        let big = png_with(&[chunk(b"iCCP", &vec![0; 40_000])]);
        assert_eq!(s(&big[..SNIFF_LEN]), Some("image/png"));
        // A chunk length that points far away does not panic.
        let mut wild = png_with(&[]);
        wild.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, b't', b'E', b'X', b't']);
        assert_eq!(s(&wild), Some("image/png"));
        // The signature with no IHDR first is not a PNG.
        let mut bad = b"\x89PNG\r\n\x1a\n".to_vec();
        bad.extend(chunk(b"IDAT", b"x"));
        assert_eq!(s(&bad), None);
        assert_eq!(s(b"\x89PNG\r\n\x1a\n"), Some("image/png"));

        assert_eq!(
            s(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J']),
            Some("image/jpeg")
        );
        assert_eq!(s(&[0xff, 0xd8, 0xff, 0xe1]), Some("image/jpeg"));
        assert_eq!(s(&[0xff, 0xd8, 0xff, 0xf7]), Some("image/jls"));
        assert_eq!(s(b"GIF89a\x01\x00"), Some("image/gif"));
        assert_eq!(s(b"GIF87a"), Some("image/gif"));
        assert_eq!(s(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(s(b"\0\0\0\x1cftypavif\0\0\0\0"), Some("image/avif"));
        assert_eq!(s(b"\0\0\0\x18ftypheic\0\0\0\0"), Some("image/heic"));
        assert_eq!(s(b"\0\0\0\x18ftypmif1\0\0\0\0"), Some("image/heif"));
        assert_eq!(s(b"II*\0\x08\0\0\0"), Some("image/tiff"));
        assert_eq!(s(b"MM\0*\0\0\0\x08"), Some("image/tiff"));
        assert_eq!(s(b"\0\0\0\x0cJXL \r\n\x87\n"), Some("image/jxl"));
        let mut bmp = b"BM\x46\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp.extend_from_slice(&[0; 40]);
        assert_eq!(s(&bmp), Some("image/bmp"));
    }

    #[test]
    fn video_and_audio() {
        assert_eq!(s(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some("video/mp4"));
        assert_eq!(s(b"\0\0\0\x20ftypmp42\0\0\0\0"), Some("video/mp4"));
        assert_eq!(s(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some("video/quicktime"));
        assert_eq!(s(b"\0\0\0\x14ftypM4A \0\0\0\0"), Some("audio/x-m4a"));
        assert_eq!(s(b"\0\0\0\x14ftyp3gp5\0\0\0\0"), Some("video/3gpp"));
        assert_eq!(s(b"\0\0\0\x08wide\0\0\0\x10mdat"), Some("video/quicktime"));
        // WebM: EBML header whose DocType (0x4282) is "webm".
        let webm = [
            0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42,
            0x82, 0x84, b'w', b'e', b'b', b'm', 0x42, 0x87, 0x81, 0x04,
        ];
        assert_eq!(s(&webm), Some("video/webm"));
        let mut mkv = webm.to_vec();
        mkv.splice(
            15..20,
            [0x88, b'm', b'a', b't', b'r', b'o', b's', b'k', b'a'],
        );
        mkv[4] = 0xa3;
        assert_eq!(s(&mkv), Some("video/matroska"));
        assert_eq!(s(&[0x1a, 0x45, 0xdf, 0xa3, 0x01]), None);
        assert_eq!(s(b"RIFF\x24\0\0\0WAVEfmt "), Some("audio/wav"));
        assert_eq!(s(b"RIFF\x24\0\0\0AVI LIST"), Some("video/vnd.avi"));
        assert_eq!(s(b"RIFF\x24\0\0\0XXXX"), None);
        assert_eq!(s(b"ID3\x04\0\0\0\0\0\x0a"), Some("audio/mpeg"));
        assert_eq!(s(&[0xff, 0xfb, 0x90, 0x64]), Some("audio/mpeg"));
        assert_eq!(s(&[0xff, 0xf1, 0x50, 0x80]), Some("audio/aac"));
        assert_eq!(s(b"fLaC\0\0\0\x22"), Some("audio/flac"));
        let mut ogg = b"OggS".to_vec();
        ogg.resize(28, 0);
        let opus = [ogg.clone(), b"OpusHead".to_vec()].concat();
        assert_eq!(s(&opus), Some("audio/ogg; codecs=opus"));
        let vorbis = [ogg.clone(), b"\x01vorbis\0".to_vec()].concat();
        assert_eq!(s(&vorbis), Some("audio/ogg"));
        let theora = [ogg.clone(), b"\x80theora\0".to_vec()].concat();
        assert_eq!(s(&theora), Some("video/ogg"));
        assert_eq!(s(&ogg), Some("application/ogg"));
        assert_eq!(s(b"FORM\0\0\0\x10AIFFCOMM"), Some("audio/aiff"));
        assert_eq!(s(b"MThd\0\0\0\x06\0\x01"), Some("audio/midi"));
        assert_eq!(s(b"%PDF-1.7\n"), Some("application/pdf"));
    }

    #[test]
    fn text_and_short_inputs_are_not_mistaken() {
        for b in [
            &b""[..],
            b"\x89PN",
            b"\xff\xd8",
            b"GIF",
            b"RIFF",
            b"hello world",
            b"{\"a\":1}",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"BMW make cars, not bitmaps",
            b"I'm free to do what I want",
            b"abcdmoov",
            b"\xff\xfeh\0i\0", // UTF-16 LE text
            b"\xef\xbb\xbfhello",
            b"PK\x03\x04",
            b"\0\0\0\x20ftyp",
            b"\0\0\0\x20ftyp\0\0\0\0",
        ] {
            assert_eq!(s(b), None, "{b:?}");
        }
        // A QuickTime box size larger than the file is not a movie.
        assert_eq!(sniff(b"\0\0\x10\0free", 100), None);
        // Every prefix of every signature is handled without a panic.
        let mut all = png_with(&[chunk(b"acTL", &[0; 8])]);
        all.extend_from_slice(b"\x1a\x45\xdf\xa3\xff\xff\xff\xff");
        for i in 0..all.len() {
            let _ = s(&all[..i]);
            let _ = s(&all[i..]);
        }
        for b in 0..=255u8 {
            let _ = s(&[0x1a, 0x45, 0xdf, 0xa3, b, b, b, b, b, b, b, b]);
            let _ = s(&[0xff, b, b, b]);
        }
    }

    #[test]
    fn declared_types() {
        assert_eq!(
            declared(Some("image/PNG; q=1")).as_deref(),
            Some("image/png")
        );
        assert_eq!(declared(Some("video/mp4")).as_deref(), Some("video/mp4"));
        for d in [
            None,
            Some(""),
            Some("*/*"),
            Some("image/*"),
            Some("nonsense"),
            Some("a/b/c"),
            Some("/png"),
            Some(" ; x"),
            Some("text/html\r\nx: y"),
        ] {
            assert_eq!(declared(d), None, "{d:?}");
        }
    }

    #[test]
    fn the_bytes_win_then_the_declaration_then_octet_stream() {
        let png = png_with(&[chunk(b"IDAT", b"x")]);
        let sniffed = s(&png);
        for ct in [
            None,
            Some("application/octet-stream"),
            Some("*/*"),
            Some("image/jpeg"),
        ] {
            assert_eq!(
                blob_type(sniffed, ct),
                ("image/png".to_owned(), true),
                "{ct:?}"
            );
        }
        assert_eq!(
            blob_type(s(b"hello"), Some("text/plain; charset=utf-8")),
            ("text/plain".to_owned(), false)
        );
        for ct in [None, Some("*/*"), Some("")] {
            assert_eq!(
                blob_type(s(b"hello"), ct),
                ("application/octet-stream".to_owned(), false)
            );
        }
    }
}
