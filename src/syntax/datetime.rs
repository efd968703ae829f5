//! Lexicon `datetime`: RFC 3339 profile `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
//!
//! Validation is both syntactic and semantic: a string is only valid if it names a real
//! instant whose UTC year lies in 0000..=9999. That is why validation and parsing share one
//! code path.

use super::{SyntaxError, require_ascii};

const K: &str = "datetime";

/// Far longer than any sensible timestamp (the vectors go up to 34 characters); only here so
/// hostile input cannot make us scan megabytes of fraction digits.
const MAX_LEN: usize = 64;

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// Days from 1970-01-01 to the given proleptic Gregorian date (negative before 1970).
///
/// Works in 400-year eras (146097 days each) counted from a year that starts on March 1st,
/// so the leap day is the last day of the shifted year and needs no special case.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    // Subtracting the leap days seen so far turns the day count into a plain 365-day count.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are small and positive by construction; the fallbacks are unreachable.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Earliest and latest accepted instants, in microseconds (0000-01-01 .. 9999-12-31 UTC).
fn micros_range() -> (i64, i64) {
    let min = days_from_civil(0, 1, 1) * SECONDS_PER_DAY * MICROS_PER_SECOND;
    let max = days_from_civil(10_000, 1, 1) * SECONDS_PER_DAY * MICROS_PER_SECOND - 1;
    (min, max)
}

/// Reads `n` ASCII digits at `pos`, or `None` if any of them is not a digit.
fn digits(b: &[u8], pos: usize, n: usize) -> Option<u32> {
    let chunk = b.get(pos..pos + n)?;
    chunk.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn expect_byte(b: &[u8], pos: usize, want: u8, what: &str) -> Result<(), SyntaxError> {
    if b.get(pos) == Some(&want) {
        Ok(())
    } else {
        Err(SyntaxError::new(
            K,
            format!("expected '{}' {what}", char::from(want)),
        ))
    }
}

fn field(b: &[u8], pos: usize, n: usize, what: &str) -> Result<u32, SyntaxError> {
    digits(b, pos, n)
        .ok_or_else(|| SyntaxError::new(K, format!("{what} must be exactly {n} digits")))
}

/// Parses a datetime and returns microseconds since the Unix epoch (UTC). Digits beyond
/// microsecond precision are truncated.
pub fn parse_datetime_micros(s: &str) -> Result<i64, SyntaxError> {
    let fail = |m: &str| Err(SyntaxError::new(K, m));
    require_ascii(K, s)?;
    if s.len() > MAX_LEN {
        return fail("datetime is too long");
    }
    let b = s.as_bytes();

    let year = field(b, 0, 4, "year")?;
    expect_byte(b, 4, b'-', "after the year")?;
    let month = field(b, 5, 2, "month")?;
    expect_byte(b, 7, b'-', "after the month")?;
    let day = field(b, 8, 2, "day")?;
    // Lower-case 't', ' ' and '_' are all tolerated somewhere; the Lexicon profile is strict.
    expect_byte(b, 10, b'T', "between date and time")?;
    let hour = field(b, 11, 2, "hour")?;
    expect_byte(b, 13, b':', "after the hour")?;
    let minute = field(b, 14, 2, "minute")?;
    expect_byte(b, 16, b':', "after the minute")?;
    let second = field(b, 17, 2, "second")?;

    let mut pos = 19;
    let mut frac_micros: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return fail("fractional seconds need at least one digit");
        }
        for i in 0..6 {
            let d = b
                .get(start + i)
                .filter(|_| start + i < pos)
                .map_or(0, |&c| c - b'0');
            frac_micros = frac_micros * 10 + i64::from(d);
        }
    }

    let offset_minutes: i64 = match b.get(pos) {
        Some(b'Z') => {
            pos += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = field(b, pos + 1, 2, "offset hour")?;
            expect_byte(b, pos + 3, b':', "in the offset")?;
            let om = field(b, pos + 4, 2, "offset minute")?;
            pos += 6;
            if oh > 23 || om > 59 {
                return fail("timezone offset is out of range");
            }
            // RFC 3339 uses -00:00 to mean "offset unknown", which a timestamp may not be.
            if sign == b'-' && oh == 0 && om == 0 {
                return fail("timezone offset -00:00 is not allowed; use Z or +00:00");
            }
            let m = i64::from(oh * 60 + om);
            if sign == b'-' { -m } else { m }
        }
        _ => return fail("timezone is required: 'Z' or +HH:MM / -HH:MM"),
    };
    if pos != b.len() {
        return fail("unexpected characters after the timezone");
    }

    let year = i64::from(year);
    if !(1..=12).contains(&month) {
        return fail("month must be 01-12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return fail("day does not exist in that month");
    }
    if hour > 23 {
        return fail("hour must be 00-23");
    }
    if minute > 59 {
        return fail("minute must be 00-59");
    }
    // Leap seconds (:60) are rejected too: Unix time cannot represent them.
    if second > 59 {
        return fail("second must be 00-59");
    }

    let local_seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second);
    let utc_seconds = local_seconds - offset_minutes * 60;
    let micros = utc_seconds * MICROS_PER_SECOND + frac_micros;
    let (min, max) = micros_range();
    if micros < min || micros > max {
        return fail("datetime falls outside years 0000-9999 once converted to UTC");
    }
    Ok(micros)
}

/// Syntax plus semantic validation (real calendar date, UTC year within 0000..=9999).
pub fn validate_datetime(s: &str) -> Result<(), SyntaxError> {
    parse_datetime_micros(s).map(|_| ())
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.sssZ`, the preferred atproto form.
///
/// Instants outside 0000..=9999 are clamped to the nearest representable one, so that the
/// output always passes [`validate_datetime`]; real timestamps never get near the bounds.
pub fn format_datetime_millis(unix_millis: i64) -> String {
    let (min_us, max_us) = micros_range();
    let ms = unix_millis.clamp(min_us / 1000, max_us / 1000);
    let days = ms.div_euclid(MILLIS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Formats UNIX seconds as an Internet Message Format date (RFC 5322 section 3.3) in UTC,
/// e.g. `Fri, 04 Dec 2026 16:20:39 +0000`, for mail headers.
pub fn format_rfc5322(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month as usize).saturating_sub(1).min(11)],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_dates() {
        assert_eq!(format_rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            format_rfc5322(1_796_401_239),
            "Fri, 04 Dec 2026 16:20:39 +0000"
        );
        assert_eq!(
            format_rfc5322(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn known_instants() {
        let p = |s| parse_datetime_micros(s).unwrap();
        assert_eq!(p("1970-01-01T00:00:00Z"), 0);
        assert_eq!(p("2023-11-14T22:13:20.000Z"), 1_700_000_000_000_000);
        assert_eq!(p("2023-11-15T03:43:20+05:30"), 1_700_000_000_000_000);
        assert_eq!(p("2023-11-14T14:13:20-08:00"), 1_700_000_000_000_000);
        assert_eq!(p("1969-12-31T23:59:59.999999Z"), -1);
        assert_eq!(p("1970-01-01T00:00:00.1234567Z"), 123_456);
        assert_eq!(p("2000-02-29T00:00:00Z"), 951_782_400_000_000);
        assert_eq!(p("0000-01-01T00:00:00Z"), -62_167_219_200_000_000);
        assert_eq!(p("9999-12-31T23:59:59.999999Z"), 253_402_300_799_999_999);
    }

    #[test]
    fn semantic_rejections() {
        for s in [
            "1900-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-01-01T23:59:60Z",
            "9999-12-31T23:59:59-00:01",
            "2023-01-01T00:00:00+24:00",
            "2023-01-01T00:00:00+00:60",
        ] {
            assert!(parse_datetime_micros(s).is_err(), "{s}");
        }
        assert!(parse_datetime_micros("2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn format_round_trips() {
        assert_eq!(format_datetime_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_datetime_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_datetime_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_datetime_millis(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_datetime_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
        // Walk a wide range of days, including leap years and century boundaries.
        let mut ms: i64 = -62_167_219_200_000;
        while ms < 253_402_300_799_000 {
            let s = format_datetime_millis(ms);
            assert_eq!(parse_datetime_micros(&s), Ok(ms * 1000), "{s}");
            ms += 86_400_000 * 7 + 3_723_004;
        }
    }
}
