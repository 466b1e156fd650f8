//! UTC timestamps as CloudTrail writes them (`2023-07-10T11:47:39Z`), without a date library:
//! the pipeline only needs epoch milliseconds, whole minutes and the reverse formatting.

/// Why an `eventTime` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a UTC time of the form YYYY-MM-DDTHH:MM:SS[.fff]Z")]
pub struct EventTimeError {
    pub text: String,
}

/// Milliseconds since the epoch, now: the one clock the functions and the CLI read.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub const MS_PER_MINUTE: i64 = 60_000;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into epoch milliseconds. Also accepted, because
/// exports and SIEMs rewrite CloudTrail times that way: a space instead of `T`, `+00:00`
/// instead of `Z`, and no zone at all (CloudTrail times are always UTC). Other offsets are
/// refused rather than guessed.
pub fn parse_event_time(text: &str) -> Result<i64, EventTimeError> {
    parse(text.as_bytes()).ok_or_else(|| EventTimeError {
        text: text.chars().take(64).collect(),
    })
}

fn parse(b: &[u8]) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, &c) in fraction[..digits].iter().take(3).enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[digits..];
    }
    if !rest.is_empty() && rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * MS_PER_MINUTE + second * 1000 + millis)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since the epoch.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats epoch milliseconds as CloudTrail does: `YYYY-MM-DDTHH:MM:SSZ` (whole seconds).
pub fn format_event_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// A compact UTC time as in CloudTrail file names, `YYYYMMDDTHHmmZ` or `YYYYMMDDTHHmmssZ`,
/// as epoch milliseconds.
pub fn parse_compact_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let seconds = match b.len() {
        14 => "00",
        16 if digits(13..15) => &text[13..15],
        _ => return None,
    };
    if !digits(0..8) || b[8] != b'T' || !digits(9..13) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{seconds}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13]
    );
    parse_event_time(&iso).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudtrail_times_to_epoch_millis() {
        assert_eq!(parse_event_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_event_time("2023-07-10T11:47:39Z"),
            Ok(1_688_989_659_000)
        );
        assert_eq!(
            parse_event_time("2024-02-29T23:59:59.250Z"),
            Ok(1_709_251_199_250)
        );
        assert_eq!(
            parse_event_time("2024-02-29T23:59:59+00:00"),
            Ok(1_709_251_199_000)
        );
        for export in [
            "2024-02-29 23:59:59",
            "2024-02-29 23:59:59Z",
            "2024-02-29 23:59:59.000000000",
        ] {
            assert_eq!(parse_event_time(export), Ok(1_709_251_199_000), "{export}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_utc_time() {
        for bad in [
            "",
            "2023-07-10",
            "2023-13-10T11:47:39Z",
            "2023-07-10T11:47:39+02:00",
            "2023-07-10T11:47:39.Z",
            "2023-07-10T11:47",
            "redacted",
            "２023-07-10T11:47:39Z",
        ] {
            assert!(parse_event_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formatting_inverts_parsing() {
        for t in [
            "1999-12-31T23:59:59Z",
            "2023-07-10T11:47:39Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(format_event_time(parse_event_time(t).unwrap()), t);
        }
    }
}
