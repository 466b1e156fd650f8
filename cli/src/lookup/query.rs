//! What a lookup asks for, validated as LookupEvents validates its request: the lookup
//! attribute, the time range, the event category, and the page cursor (`NextToken`).

use std::cmp::Reverse;
use std::fmt;

use thiserror::Error;
use trailwatch::time::parse_event_time;

use crate::input::echo;

/// Why a lookup's request is refused, named after LookupEvents' exceptions.
#[derive(Debug, Error)]
pub enum QueryError {
    #[error("InvalidLookupAttributesException: AttributeKey '{key}' is not one of {}{}", AttributeKey::ALL.map(AttributeKey::as_str).join(", "), hint.map(|k| format!(" (keys are case-sensitive: did you mean {k}?)")).unwrap_or_default())]
    UnknownKey {
        key: String,
        hint: Option<AttributeKey>,
    },
    #[error("InvalidLookupAttributesException: '{0}' is not of the form AttributeKey=<key>,AttributeValue=<value>")]
    NotShorthand(String),
    #[error("InvalidLookupAttributesException: --lookup-attributes JSON must be [{{\"AttributeKey\":…,\"AttributeValue\":…}}]: {0}")]
    Json(#[source] serde_json::Error),
    #[error("InvalidLookupAttributesException: LookupEvents accepts at most one lookup attribute (the list can contain only one item); {0} were given")]
    TooMany(usize),
    #[error("InvalidLookupAttributesException: AttributeValue must be 1 to 2000 characters ('_', space, ',' and newline count as two); this one counts {0}")]
    ValueLength(usize),
    #[error("InvalidLookupAttributesException: ReadOnly takes true or false, not '{0}'")]
    ReadOnlyValue(String),
    #[error("InvalidLookupAttributesException: Insights events are looked up by EventId, EventName or EventSource, not {0}")]
    NotForInsights(AttributeKey),
    #[error("InvalidTimeRangeException: the start time ({start}) is after the end time ({end})")]
    TimeRange { start: String, end: String },
    #[error("InvalidNextTokenException: this NextToken was not written by trailwatch lookup")]
    ForeignToken,
    #[error("InvalidNextTokenException: the NextToken belongs to a lookup with other parameters; repeat it with the same --lookup-attributes, --start-time, --end-time, --event-category and --management-only")]
    OtherQueryToken,
}

/// A time `--start-time`/`--end-time` cannot read.
#[derive(Debug, Error)]
#[error("'{0}' is not a time: give UNIX seconds (1709687100) or an ISO-8601 date or date-time (2024-03-06, 2024-03-06T01:05:00Z, 2024-03-06T02:05:00+01:00)")]
pub struct TimeArgError(String);

/// LookupEvents' `AttributeKey` enum (botocore `LookupAttributeKey`), spelled as AWS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKey {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl AttributeKey {
    pub const ALL: [AttributeKey; 8] = [
        AttributeKey::EventId,
        AttributeKey::EventName,
        AttributeKey::ReadOnly,
        AttributeKey::Username,
        AttributeKey::ResourceType,
        AttributeKey::ResourceName,
        AttributeKey::EventSource,
        AttributeKey::AccessKeyId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttributeKey::EventId => "EventId",
            AttributeKey::EventName => "EventName",
            AttributeKey::ReadOnly => "ReadOnly",
            AttributeKey::Username => "Username",
            AttributeKey::ResourceType => "ResourceType",
            AttributeKey::ResourceName => "ResourceName",
            AttributeKey::EventSource => "EventSource",
            AttributeKey::AccessKeyId => "AccessKeyId",
        }
    }

    /// The keys LookupEvents supports for Insights events (API reference, LookupEvents).
    pub fn supported_for_insights(self) -> bool {
        matches!(
            self,
            AttributeKey::EventId | AttributeKey::EventName | AttributeKey::EventSource
        )
    }

    fn parse(text: &str) -> Result<Self, QueryError> {
        if let Some(key) = Self::ALL.into_iter().find(|k| k.as_str() == text) {
            return Ok(key);
        }
        Err(QueryError::UnknownKey {
            key: echo(text).into_owned(),
            hint: Self::ALL
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(text)),
        })
    }
}

impl fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lookup attribute: events whose `key` equals `value` exactly (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub key: AttributeKey,
    pub value: String,
}

/// What to look up. Every bound is inclusive, as LookupEvents' StartTime/EndTime are.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub attribute: Option<Attribute>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// `--event-category insight`: Insights events only (without it: no Insights events).
    pub insight: bool,
    /// `--management-only`: management events only, as Event history holds.
    pub management_only: bool,
}

impl Query {
    /// A fingerprint of the parameters a `NextToken` is bound to (LookupEvents: "the token
    /// must be passed in with the same parameters as the previous call").
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        if let Some(a) = &self.attribute {
            h.write(a.key.as_str().as_bytes());
            h.write(&[0]);
            h.write(a.value.as_bytes());
        }
        h.write(&[0xff]);
        h.write(&self.start_ms.unwrap_or(i64::MIN).to_le_bytes());
        h.write(&self.end_ms.unwrap_or(i64::MAX).to_le_bytes());
        h.write(&[u8::from(self.insight), u8::from(self.management_only)]);
        h.finish()
    }
}

/// Parses the values given to `--lookup-attributes`, in the AWS CLI's shorthand
/// (`AttributeKey=EventName,AttributeValue=DeleteBucket`, either order, the value may be
/// quoted) or its JSON form (`[{"AttributeKey":"EventName","AttributeValue":"DeleteBucket"}]`).
/// LookupEvents accepts at most one attribute.
pub fn parse_attributes(values: &[String]) -> Result<Option<Attribute>, QueryError> {
    let mut attributes = Vec::new();
    for value in values {
        let trimmed = value.trim_start();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            attributes.extend(parse_json_attributes(value)?);
        } else {
            attributes.push(parse_shorthand(value)?);
        }
    }
    if attributes.len() > 1 {
        return Err(QueryError::TooMany(attributes.len()));
    }
    let Some(attribute) = attributes.pop() else {
        return Ok(None);
    };
    check_value(&attribute)?;
    Ok(Some(attribute))
}

/// Whether a `--lookup-attributes` value is meant as an attribute (clap hands a positional
/// folder written after the option to the option, since it takes several values). Anything
/// with `=` is, so that a malformed attribute is reported as one, not as a missing folder.
pub fn looks_like_attribute(value: &str) -> bool {
    let t = value.trim_start();
    t.starts_with('[') || t.starts_with('{') || t.contains('=')
}

fn parse_shorthand(text: &str) -> Result<Attribute, QueryError> {
    let bad = || QueryError::NotShorthand(echo(text).into_owned());
    // The value is taken verbatim up to the end (or up to ",AttributeKey=" when the key comes
    // last), so values that contain commas work when the value is written last.
    let (key, value) = if let Some(rest) = text.strip_prefix("AttributeKey=") {
        let (key, value) = rest.split_once(",AttributeValue=").ok_or_else(bad)?;
        (key, value)
    } else if let Some(rest) = text.strip_prefix("AttributeValue=") {
        let (value, key) = rest.rsplit_once(",AttributeKey=").ok_or_else(bad)?;
        (key, value)
    } else {
        return Err(bad());
    };
    Ok(Attribute {
        key: AttributeKey::parse(unquote(key.trim()))?,
        value: unquote(value).to_owned(),
    })
}

fn unquote(text: &str) -> &str {
    for q in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(q) && text.ends_with(q) {
            return &text[1..text.len() - 1];
        }
    }
    text
}

fn parse_json_attributes(text: &str) -> Result<Vec<Attribute>, QueryError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Json {
        #[serde(rename = "AttributeKey")]
        key: String,
        #[serde(rename = "AttributeValue")]
        value: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Json>),
        One(Json),
    }
    let parsed: OneOrMany = serde_json::from_str(text).map_err(QueryError::Json)?;
    let list = match parsed {
        OneOrMany::Many(list) => list,
        OneOrMany::One(one) => vec![one],
    };
    list.into_iter()
        .map(|j| {
            Ok(Attribute {
                key: AttributeKey::parse(&j.key)?,
                value: j.value,
            })
        })
        .collect()
}

/// LookupAttributeValue: 1–2000 characters, where `_`, space, `,` and newline count as two
/// (botocore's LookupAttribute documentation). ReadOnly takes `true` or `false`: what AWS
/// does with another value is not documented, so rather than return nothing we refuse it.
fn check_value(attribute: &Attribute) -> Result<(), QueryError> {
    let cost: usize = attribute
        .value
        .chars()
        .map(|c| {
            if matches!(c, '_' | ' ' | ',' | '\n') {
                2
            } else {
                1
            }
        })
        .sum();
    if attribute.value.is_empty() || cost > 2000 {
        return Err(QueryError::ValueLength(cost));
    }
    if attribute.key == AttributeKey::ReadOnly
        && !matches!(attribute.value.as_str(), "true" | "false")
    {
        return Err(QueryError::ReadOnlyValue(
            echo(&attribute.value).into_owned(),
        ));
    }
    Ok(())
}

/// Parses `--start-time` / `--end-time`: UNIX seconds (`1422317782`, `1422317782.5`, as
/// LookupEvents takes them) or an ISO-8601 date or date-time (`2024-03-06`,
/// `2024-03-06T01:05`, `2024-03-06T01:05:00Z`, `2024-03-06 01:05:00+02:00`). Times without a
/// zone are UTC (CloudTrail's times are UTC); a date alone means its midnight.
pub fn parse_time_arg(text: &str) -> Result<i64, TimeArgError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad_time(text))?;
        return Ok((secs * 1000.0).round() as i64);
    }
    // ISO-8601 times are ASCII; the positions below are byte positions.
    if !t.is_ascii() {
        return Err(bad_time(text));
    }
    let mut t = t.to_owned();
    if t.len() == 10 {
        t.push_str("T00:00:00");
    } else if t.len() == 16 {
        t.push_str(":00");
    } else if t.len() > 16 && t.as_bytes()[16] != b':' {
        // YYYY-MM-DDTHH:MM followed by a zone.
        t.insert_str(16, ":00");
    }
    // A numeric offset other than +00:00 is applied here; parse_event_time takes Z/+00:00.
    let (base, offset_ms) = split_offset(&t).ok_or_else(|| bad_time(text))?;
    let ms = parse_event_time(base).map_err(|_| bad_time(text))?;
    Ok(ms - offset_ms)
}

fn split_offset(t: &str) -> Option<(&str, i64)> {
    if t.len() > 19 {
        let tail = &t[t.len().saturating_sub(6)..];
        let b = tail.as_bytes();
        if b.len() == 6 && (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let h: i64 = tail[1..3].parse().ok()?;
            let m: i64 = tail[4..6].parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if b[0] == b'-' { -1 } else { 1 };
            return Some((&t[..t.len() - 6], sign * (h * 60 + m) * 60_000));
        }
    }
    Some((t, 0))
}

fn bad_time(text: &str) -> TimeArgError {
    TimeArgError(echo(text).into_owned())
}

/// The order of Event history: newest first. Events of the same second are ordered by
/// eventID, then by a hash of the record's text (two different records may share an eventID
/// in damaged input), so that every run orders them the same way and a cursor is exact.
pub type SortKey = (Reverse<i64>, String, u64);

pub fn sort_key(time_ms: i64, event_id: &str, raw: &str) -> SortKey {
    let mut h = Fnv::new();
    h.write(raw.as_bytes());
    (Reverse(time_ms), event_id.to_owned(), h.finish())
}

/// `NextToken`: the position after the last event returned, bound to the query's parameters.
/// Hex of `tw1|<fingerprint>|<time ms>|<record hash>|<eventID>`; opaque to users.
pub fn encode_token(query: &Query, last: &SortKey) -> String {
    let text = format!(
        "tw1|{:016x}|{}|{:016x}|{}",
        query.fingerprint(),
        last.0 .0,
        last.2,
        last.1
    );
    hex::encode(text)
}

pub fn decode_token(query: &Query, token: &str) -> Result<SortKey, QueryError> {
    let bad = || QueryError::ForeignToken;
    let bytes = hex::decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(5, '|');
    if parts.next() != Some("tw1") {
        return Err(bad());
    }
    let fingerprint = u64::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
    let time_ms: i64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let hash = u64::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
    let event_id = parts.next().ok_or_else(bad)?.to_owned();
    if fingerprint != query.fingerprint() {
        return Err(QueryError::OtherQueryToken);
    }
    Ok((Reverse(time_ms), event_id, hash))
}

/// FNV-1a, 64 bits: a stable hash (the same in every run and build), for cursors.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Result<Option<Attribute>, String> {
        parse_attributes(&[v.to_owned()]).map_err(|e| e.to_string())
    }

    #[test]
    fn shorthand_and_json_forms() {
        let a = one("AttributeKey=EventName,AttributeValue=DeleteBucket")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.key, a.value.as_str()),
            (AttributeKey::EventName, "DeleteBucket")
        );
        let a = one("AttributeValue=a,b,AttributeKey=ResourceName")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.key, a.value.as_str()),
            (AttributeKey::ResourceName, "a,b")
        );
        let a = one("AttributeKey=Username,AttributeValue=\"x y\"")
            .unwrap()
            .unwrap();
        assert_eq!(a.value, "x y");
        let a = one(r#"[{"AttributeKey":"ReadOnly","AttributeValue":"false"}]"#)
            .unwrap()
            .unwrap();
        assert_eq!((a.key, a.value.as_str()), (AttributeKey::ReadOnly, "false"));
    }

    #[test]
    fn lookup_events_rules() {
        assert!(one("AttributeKey=eventname,AttributeValue=x")
            .unwrap_err()
            .contains("did you mean EventName"));
        assert!(one("AttributeKey=EventName,AttributeValue=").is_err());
        assert!(one("AttributeKey=ReadOnly,AttributeValue=yes").is_err());
        assert!(one(&format!(
            "AttributeKey=EventName,AttributeValue={}",
            "a".repeat(2000)
        ))
        .is_ok());
        assert!(one(&format!(
            "AttributeKey=EventName,AttributeValue={}",
            "_".repeat(1001)
        ))
        .is_err());
        let two = parse_attributes(&[
            "AttributeKey=EventName,AttributeValue=a".into(),
            "AttributeKey=EventName,AttributeValue=b".into(),
        ]);
        assert!(two.unwrap_err().to_string().contains("at most one"));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_arg("1422317782").unwrap(), 1_422_317_782_000);
        assert_eq!(parse_time_arg("1422317782.5").unwrap(), 1_422_317_782_500);
        let t = parse_event_time("2024-03-06T01:05:00Z").unwrap();
        assert_eq!(parse_time_arg("2024-03-06T01:05:00Z").unwrap(), t);
        assert_eq!(parse_time_arg("2024-03-06T01:05").unwrap(), t);
        assert_eq!(parse_time_arg("2024-03-06T02:05:00+01:00").unwrap(), t);
        assert_eq!(parse_time_arg("2024-03-05T20:05:00-05:00").unwrap(), t);
        assert_eq!(
            parse_time_arg("2024-03-06").unwrap(),
            parse_event_time("2024-03-06T00:00:00Z").unwrap()
        );
        assert!(parse_time_arg("yesterday").is_err());
        assert!(parse_time_arg("03-06-2024").is_err());
        // Found by the lookup_query fuzz target: a multi-byte character where a time's parts
        // are cut.
        for text in [
            "2024-03-06T01:05é",
            "2024-03-06T01:0é:00+01:00",
            "2024-03-06T01:05:00+é:00",
        ] {
            assert!(parse_time_arg(text).is_err(), "{text}");
        }
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let q = Query {
            attribute: Some(Attribute {
                key: AttributeKey::EventName,
                value: "x".into(),
            }),
            ..Query::default()
        };
        let key = sort_key(1000, "id|with|bars", "{}");
        let token = encode_token(&q, &key);
        assert_eq!(decode_token(&q, &token).unwrap(), key);
        let other = Query::default();
        assert!(decode_token(&other, &token)
            .unwrap_err()
            .to_string()
            .contains("other parameters"));
        assert!(decode_token(&q, "zz").is_err());
    }
}
