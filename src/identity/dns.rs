//! A minimal DNS TXT lookup for `_atproto.<handle>` over UDP to the system
//! resolver (the first `nameserver` of /etc/resolv.conf). Just enough of
//! RFC 1035 for one question and TXT answers, parsed defensively: every
//! length and pointer is bounds-checked, and compression loops are capped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::net::UdpSocket;

const TIMEOUT: Duration = Duration::from_secs(3);
const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("no DNS resolver configured")]
    NoResolver,
    #[error("bad name")]
    BadName,
    #[error("DNS lookup failed: {0}")]
    Io(String),
    #[error("DNS lookup timed out")]
    Timeout,
    #[error("malformed DNS response")]
    Malformed,
}

/// The first nameserver in /etc/resolv.conf.
pub fn system_resolver() -> Result<SocketAddr, DnsError> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").map_err(|_| DnsError::NoResolver)?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or(DnsError::NoResolver)
}

/// The TXT strings at `name` (each record's strings joined).
pub async fn txt(resolver: SocketAddr, name: &str) -> Result<Vec<String>, DnsError> {
    let id = (OsRng.next_u32() & 0xffff) as u16;
    let query = build_query(id, name)?;
    let bind = if resolver.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| DnsError::Io(e.to_string()))?;
    sock.connect(resolver)
        .await
        .map_err(|e| DnsError::Io(e.to_string()))?;
    sock.send(&query)
        .await
        .map_err(|e| DnsError::Io(e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| DnsError::Timeout)?
            .map_err(|e| DnsError::Io(e.to_string()))?;
        // Ignore stray datagrams that do not answer our question.
        if let Ok(r) = parse_response(&buf[..n], id) {
            return Ok(r);
        }
    }
}

fn build_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    if name.len() > 253 {
        return Err(DnsError::BadName);
    }
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(DnsError::BadName);
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_TXT.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, DnsError> {
    b.get(i..i + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(DnsError::Malformed)
}

/// Index just past the (possibly compressed) name starting at `i`.
fn skip_name(b: &[u8], mut i: usize) -> Result<usize, DnsError> {
    for _ in 0..128 {
        let len = *b.get(i).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xc0 == 0xc0 => return Ok(i + 2),
            l if l & 0xc0 == 0 => i += 1 + l as usize,
            _ => return Err(DnsError::Malformed),
        }
    }
    Err(DnsError::Malformed)
}

fn parse_response(b: &[u8], id: u16) -> Result<Vec<String>, DnsError> {
    if u16_at(b, 0)? != id {
        return Err(DnsError::Malformed);
    }
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed); // not a response
    }
    let rcode = flags & 0x000f;
    let (qd, an) = (u16_at(b, 4)?, u16_at(b, 6)?);
    if rcode == 3 {
        return Ok(Vec::new()); // NXDOMAIN: no records
    }
    if rcode != 0 {
        return Err(DnsError::Io(format!("resolver answered rcode {rcode}")));
    }
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(b, i)?;
        let (rtype, rclass, rdlen) = (u16_at(b, i)?, u16_at(b, i + 2)?, u16_at(b, i + 8)? as usize);
        let rdata = b.get(i + 10..i + 10 + rdlen).ok_or(DnsError::Malformed)?;
        i += 10 + rdlen;
        if rtype != TYPE_TXT || rclass != CLASS_IN {
            continue; // e.g. a CNAME on the way
        }
        let mut text = Vec::new();
        let mut j = 0;
        while j < rdata.len() {
            let l = rdata[j] as usize;
            text.extend_from_slice(rdata.get(j + 1..j + 1 + l).ok_or(DnsError::Malformed)?);
            j += 1 + l;
        }
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with the given TXT records (each split into
    /// strings) and a CNAME first, using name compression.
    fn answer(query: &[u8], records: &[&[&str]], rcode: u8) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] = 0x81;
        r[3] = 0x80 | rcode;
        let n = records.len() as u16 + 1;
        r[6..8].copy_from_slice(&n.to_be_bytes());
        // CNAME pointing nowhere useful, to be skipped.
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        for rec in records {
            let mut rd = Vec::new();
            for s in *rec {
                rd.push(s.len() as u8);
                rd.extend_from_slice(s.as_bytes());
            }
            r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
            r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            r.extend_from_slice(&rd);
        }
        r
    }

    #[test]
    fn parses_txt_answers() {
        let q = build_query(7, "_atproto.alice.example.com").unwrap();
        let r = answer(&q, &[&["did=did:plc:abc"], &["v=spf1", " -all"]], 0);
        assert_eq!(
            parse_response(&r, 7).unwrap(),
            vec!["did=did:plc:abc", "v=spf1 -all"]
        );
        assert!(parse_response(&r, 8).is_err(), "wrong id");
        let nx = answer(&q, &[], 3);
        assert!(parse_response(&nx, 7).unwrap().is_empty());
    }

    #[test]
    fn hostile_responses_fail_cleanly() {
        let q = build_query(1, "a.example").unwrap();
        let good = answer(&q, &[&["did=did:web:a.example"]], 0);
        for cut in 0..good.len() {
            let _ = parse_response(&good[..cut], 1);
        }
        let mut lying = good.clone();
        let last = lying.len() - 22;
        lying[last] = 0xff; // an rdlength far past the end
        let _ = parse_response(&lying, 1);
        let mut loop_ptr = q.clone();
        loop_ptr[2] = 0x81;
        loop_ptr[7] = 1;
        loop_ptr.extend_from_slice(&[0x3f; 300]);
        assert!(parse_response(&loop_ptr, 1).is_err());
        assert_eq!(build_query(1, &"a".repeat(300)), Err(DnsError::BadName));
        assert_eq!(build_query(1, "a..b"), Err(DnsError::BadName));
    }

    #[tokio::test]
    async fn asks_a_resolver_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            let r = answer(&buf[..n], &[&["did=did:plc:xyz"]], 0);
            server.send_to(&r, peer).await.unwrap();
        });
        assert_eq!(
            txt(addr, "_atproto.bob.test").await.unwrap(),
            vec!["did=did:plc:xyz"]
        );
    }
}
