//! UTC timestamps as CloudTrail writes them (`2023-07-10T11:47:39Z`): epoch milliseconds,
//! whole minutes and the reverse formatting. The calendar is the `time` crate's (already in
//! the tree through the AWS SDK): it refuses what is not a date (`2024-02-30`) or not a time
//! (second 60). Reading the fixed layout by position stays here, with the variants exports
//! write.

use time::error::ComponentRange;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Why an `eventTime` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{text}' is not a UTC time of the form YYYY-MM-DDTHH:MM:SS[.fff]Z{}",
    .calendar.map(|c| format!(" ({c})")).unwrap_or_default()
)]
pub struct EventTimeError {
    pub text: String,
    /// What the calendar refused, when the layout was right.
    #[source]
    pub calendar: Option<ComponentRange>,
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
/// refused rather than guessed, and so are dates and times the calendar does not have.
pub fn parse_event_time(text: &str) -> Result<i64, EventTimeError> {
    let error = |calendar| EventTimeError {
        text: text.chars().take(64).collect(),
        calendar,
    };
    let fields = Fields::read(text.as_bytes()).ok_or_else(|| error(None))?;
    fields.epoch_ms().map_err(|e| error(Some(e)))
}

/// The numbers of a time in CloudTrail's layout, read by position; whether they make a date
/// and a time is the calendar's to say.
struct Fields {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    millis: u16,
}

impl Fields {
    fn read(b: &[u8]) -> Option<Fields> {
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u16> {
            b[range].iter().try_fold(0u16, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
            })
        };
        let two = |at: usize| num(at..at + 2).map(|n| n as u8);
        let mut rest = &b[19..];
        let mut millis = 0u16;
        if let Some((&b'.', fraction)) = rest.split_first() {
            let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            for (i, &c) in fraction[..digits].iter().take(3).enumerate() {
                millis += u16::from(c - b'0') * [100, 10, 1][i];
            }
            rest = &fraction[digits..];
        }
        if !rest.is_empty() && rest != b"Z" && rest != b"+00:00" {
            return None;
        }
        Some(Fields {
            year: i32::from(num(0..4)?),
            month: two(5)?,
            day: two(8)?,
            hour: two(11)?,
            minute: two(14)?,
            second: two(17)?,
            millis,
        })
    }

    fn epoch_ms(&self) -> Result<i64, ComponentRange> {
        let date = Date::from_calendar_date(self.year, Month::try_from(self.month)?, self.day)?;
        let time = Time::from_hms_milli(self.hour, self.minute, self.second, self.millis)?;
        let at = PrimitiveDateTime::new(date, time).assume_utc();
        Ok(at.unix_timestamp() * 1000 + i64::from(self.millis))
    }
}

/// Formats epoch milliseconds as CloudTrail does: `YYYY-MM-DDTHH:MM:SSZ` (whole seconds;
/// outside years 1..=9999, the nearest of them).
pub fn format_event_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let at = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 {
        PrimitiveDateTime::MIN.assume_utc()
    } else {
        PrimitiveDateTime::MAX.assume_utc()
    });
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
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
    fn dates_and_times_the_calendar_does_not_have_are_refused_with_the_reason() {
        for bad in [
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T12:00:00Z",
            "2024-01-00T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-01-01T24:00:00Z",
            "2024-00-10T00:00:00Z",
        ] {
            let error = parse_event_time(bad).unwrap_err();
            assert!(error.calendar.is_some(), "{bad}: {error}");
            assert!(error.to_string().contains(bad), "{error}");
        }
        // The last day of each month, leap years by the Gregorian rule.
        for good in [
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2024-04-30T23:59:59Z",
            "2024-12-31T23:59:59.999Z",
        ] {
            assert!(parse_event_time(good).is_ok(), "{good}");
        }
        assert!(parse_event_time("1900-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn formatting_inverts_parsing() {
        for t in [
            "1999-12-31T23:59:59Z",
            "2023-07-10T11:47:39Z",
            "2100-03-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(format_event_time(parse_event_time(t).unwrap()), t);
        }
        assert_eq!(format_event_time(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_event_time(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
