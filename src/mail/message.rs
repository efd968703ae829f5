//! A plain-text message as it goes over SMTP: checked addresses, the headers a mail
//! provider wants to see (Date, Message-ID, From/To), 7-bit text with CRLF line ends.

use rand_core::{OsRng, RngCore};

/// The longest address SMTP carries (RFC 5321 section 4.5.3.1.3, less the brackets).
const MAX_ADDRESS: usize = 254;

/// Whether `addr` is an address perch will write to: one `@`, a local part of the plain
/// characters of RFC 5322's dot-atom, a domain of DNS labels with a dot. Quoted local parts
/// and address literals are refused: nobody needs them for a PDS account, and everything
/// that could end an SMTP command line or a header (CR, LF, `<`, `>`, spaces) is excluded.
pub fn is_valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    addr.len() <= MAX_ADDRESS && local_ok && domain_ok
}

/// A message ready to be handed to the relay.
#[derive(Clone, Debug)]
pub struct Message {
    pub from: String,
    pub to: String,
    /// The whole message: headers, blank line, body; CRLF line ends, not yet dot-stuffed.
    pub data: String,
}

/// Composes a message. `subject` and `body` are perch's own text; anything outside printable
/// ASCII is replaced so the message stays 7-bit and headers stay one line.
pub fn compose(from: &str, to: &str, hostname: &str, subject: &str, body: &str) -> Message {
    let mut id = [0u8; 12];
    OsRng.fill_bytes(&mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let header_text = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    let mut data = String::with_capacity(body.len() + 512);
    for (name, value) in [
        (
            "Date",
            crate::syntax::format_rfc5322(crate::clock::unix_secs()),
        ),
        ("From", format!("perch <{from}>")),
        ("To", format!("<{to}>")),
        ("Subject", header_text(subject)),
        ("Message-ID", format!("<{id}@{hostname}>")),
        ("MIME-Version", "1.0".to_owned()),
        ("Content-Type", "text/plain; charset=us-ascii".to_owned()),
        ("Content-Transfer-Encoding", "7bit".to_owned()),
        ("Auto-Submitted", "auto-generated".to_owned()),
    ] {
        data.push_str(name);
        data.push_str(": ");
        data.push_str(&value);
        data.push_str("\r\n");
    }
    data.push_str("\r\n");
    for line in body.lines() {
        let line: String = line
            .chars()
            .map(|c| {
                if c == '\t' || c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        data.push_str(&line);
        data.push_str("\r\n");
    }
    Message {
        from: from.to_owned(),
        to: to.to_owned(),
        data,
    }
}

/// The DATA section's bytes: lines starting with `.` get another (RFC 5321 section 4.5.2),
/// then the `.` line that ends it.
pub fn dot_stuffed(data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["me@example.com", "a.b+c@sub.example.co.uk", "x_y-z@e-x.io"] {
            assert!(is_valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "me",
            "@example.com",
            "me@",
            "me@localhost",
            "me@exa mple.com",
            "me @example.com",
            "me@example.com\r\nRCPT TO:<x@y.z>",
            "<me@example.com>",
            "a..b@example.com",
            ".a@example.com",
            "me@-example.com",
            "me@example..com",
            "\"quoted\"@example.com",
            "me@[127.0.0.1]",
        ] {
            assert!(!is_valid_address(bad), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(!is_valid_address(&long));
    }

    #[test]
    fn composed_messages_are_seven_bit_crlf_with_the_headers() {
        let m = compose(
            "perch@pds.example.com",
            "me@example.com",
            "pds.example.com",
            "Your code\r\nBcc: x@y.z",
            "Hello,\n.leading dot\ncafé\n",
        );
        assert!(m.data.is_ascii());
        assert!(m.data.contains("From: perch <perch@pds.example.com>\r\n"));
        assert!(m.data.contains("To: <me@example.com>\r\n"));
        assert!(m.data.contains("Subject: Your code??Bcc: x@y.z\r\n"));
        assert!(m.data.contains("@pds.example.com>\r\n"));
        assert!(!m.data.contains("\nBcc"));
        assert!(
            m.data
                .contains("\r\n\r\nHello,\r\n.leading dot\r\ncaf?\r\n")
        );
        assert!(!m.data.replace("\r\n", "").contains('\n'));
        let wire = dot_stuffed(&m.data);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("\r\n..leading dot\r\n"));
        assert!(wire.ends_with("caf?\r\n.\r\n"));
    }
}
