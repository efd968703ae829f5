//! Just enough DER to read a certificate's serial number and validity window: renewal is
//! timed from the certificate itself, so short-lived test certificates renew on their own
//! schedule and a restored old certificate is renewed at once.

/// The leaf certificate facts renewal and `perch doctor` need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    pub fn lifetime_secs(&self) -> i64 {
        (self.not_after - self.not_before).max(0)
    }
}

/// One DER element: tag and contents; returns the rest of the input.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// Reads serial and validity from a DER certificate.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (mut tag, mut value, mut rest) = element(tbs)?;
    if tag == VERSION {
        (tag, value, rest) = element(rest)?;
    }
    if tag != INTEGER {
        return None;
    }
    let serial = value.iter().map(|b| format!("{b:02x}")).collect();
    let (_signature_alg, _, rest) = element(rest)?;
    let (_issuer, _, rest) = element(rest)?;
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (t1, v1, rest) = element(validity)?;
    let (t2, v2, _) = element(rest)?;
    Some(CertInfo {
        serial,
        not_before: time(t1, v1)?,
        not_after: time(t2, v2)?,
    })
}

/// `YYYYMMDDHHMMSSZ` as Unix seconds.
pub fn generalized_time(s: &str) -> Option<i64> {
    time(GENERALIZED_TIME, s.as_bytes())
}

/// `YYMMDDHHMMSSZ` (UTCTime, RFC 5280 years 1950–2049) or `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rcgen_certificate_validity() {
        let mut params = rcgen::CertificateParams::new(vec!["pds.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = cert_info(cert.der()).unwrap();
        assert_eq!(info.serial, "01ab");
        assert_eq!(info.not_before, 1_709_164_800); // 2024-02-29T00:00:00Z
        assert_eq!(info.not_after, 2_556_143_999 + 1); // 2051-01-01T00:00:00Z
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in [0, 1, 5, 40, der.len() / 2] {
            assert_eq!(cert_info(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(cert_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(cert_info(b"not der at all"), None);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(UTC_TIME, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(time(UTC_TIME, b"501301000000Z"), None);
    }
}
