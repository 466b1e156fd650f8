//! CloudTrail's S3 object keys: what a key says about the file behind it.
//!
//! `[prefix/]AWSLogs/[o-orgid/]<account>/<CloudTrail|CloudTrail-Digest|CloudTrail-Insight>/<region>/YYYY/MM/DD/<file>`

use crate::time::parse_compact_time;

/// What kind of object a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A log file of management, data or network-activity records.
    LogFile,
    /// An hourly digest for log-file validation: not records, skipped.
    Digest,
    /// A file of CloudTrail's own Insights records.
    Insight,
}

/// The parts of a CloudTrail object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogObjectKey<'a> {
    pub kind: ObjectKind,
    /// `o-…` for an organization trail.
    pub org_id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub region: Option<&'a str>,
    /// When CloudTrail delivered the file (epoch ms), from the `YYYYMMDDTHHmmZ` stamp of its
    /// name: `<account>_CloudTrail[-Insight]_<region>_<stamp>_<unique>.json.gz`.
    pub delivered_ms: Option<i64>,
}

/// Reads a key in CloudTrail's layout. Keys outside the layout (a local file, a copy under
/// another prefix) are classified by CloudTrail's file-name infixes, and default to log files.
pub fn parse_object_key(key: &str) -> LogObjectKey<'_> {
    let name = key.rsplit(['/', '\\']).next().unwrap_or(key);
    let mut parsed = LogObjectKey {
        kind: kind_from_file_name(name),
        org_id: None,
        account_id: None,
        region: None,
        delivered_ms: delivery_stamp(name),
    };
    let Some(pos) = key.find("AWSLogs/") else {
        return parsed;
    };
    let mut parts = key[pos + "AWSLogs/".len()..].split('/');
    let mut next = parts.next();
    if let Some(org) = next.filter(|p| p.starts_with("o-")) {
        parsed.org_id = Some(org);
        next = parts.next();
    }
    parsed.account_id = next.filter(|p| !p.is_empty());
    match parts.next() {
        Some("CloudTrail") => parsed.kind = ObjectKind::LogFile,
        Some("CloudTrail-Digest") => parsed.kind = ObjectKind::Digest,
        Some("CloudTrail-Insight") => parsed.kind = ObjectKind::Insight,
        _ => return parsed,
    }
    parsed.region = parts.next().filter(|p| !p.is_empty());
    parsed
}

/// The delivery stamp of a log or Insights file name (digest names carry seconds and the trail
/// name there, and are not read).
fn delivery_stamp(name: &str) -> Option<i64> {
    let stamp = name.split('_').nth(3)?;
    parse_compact_time(stamp).filter(|_| stamp.len() == 14)
}

fn kind_from_file_name(name: &str) -> ObjectKind {
    if name.contains("_CloudTrail-Digest_") {
        ObjectKind::Digest
    } else if name.contains("_CloudTrail-Insight_") {
        ObjectKind::Insight
    } else {
        ObjectKind::LogFile
    }
}

/// Why an object key from an S3 event notification could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    #[error("bad percent-escape at byte {at} of key '{key}'")]
    BadEscape { key: String, at: usize },
    #[error("key '{key}' decodes to invalid UTF-8")]
    NotUtf8 {
        key: String,
        source: std::str::Utf8Error,
    },
}

/// Decodes an object key as S3 writes it into event notifications
/// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; a `+` in the key itself
/// arrives as `%2B`). S3 never writes a broken escape, so one is an error, not a literal `%`.
pub fn decode_notification_key(key: &str) -> Result<String, KeyDecodeError> {
    let bytes = key.as_bytes();
    let bad_escape = bytes.iter().enumerate().find(|&(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if let Some((at, _)) = bad_escape {
        return Err(KeyDecodeError::BadEscape {
            key: key.to_owned(),
            at,
        });
    }
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|source| KeyDecodeError::NotUtf8 {
            key: key.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_account_region_and_kind_of_a_trail_key() {
        let k = parse_object_key(
            "logs/AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/01/111122223333_CloudTrail_us-east-2_20150801T0210Z_Mu0KsOhtH1ar15ZZ.json.gz",
        );
        assert_eq!(k.kind, ObjectKind::LogFile);
        assert_eq!(k.org_id, None);
        assert_eq!(k.account_id, Some("111122223333"));
        assert_eq!(k.region, Some("us-east-2"));
        assert_eq!(
            k.delivered_ms,
            crate::time::parse_event_time("2015-08-01T02:10:00Z").ok()
        );
        assert_eq!(parse_object_key("copy/logs.json.gz").delivered_ms, None);
    }

    #[test]
    fn reads_organization_trail_keys() {
        let k = parse_object_key(
            "AWSLogs/o-exampleorgid/111122223333/CloudTrail/eu-west-1/2024/01/01/x.json.gz",
        );
        assert_eq!(k.org_id, Some("o-exampleorgid"));
        assert_eq!(k.account_id, Some("111122223333"));
        assert_eq!(k.region, Some("eu-west-1"));
    }

    #[test]
    fn recognises_digest_and_insight_files() {
        assert_eq!(
            parse_object_key("AWSLogs/1/CloudTrail-Digest/us-east-1/2024/01/01/d.json.gz").kind,
            ObjectKind::Digest
        );
        assert_eq!(
            parse_object_key("AWSLogs/1/CloudTrail-Insight/ca-central-1/2020/09/23/i.json.gz").kind,
            ObjectKind::Insight
        );
        assert_eq!(
            parse_object_key(
                "copies/123_CloudTrail-Digest_us-east-1_t_us-east-1_20240101T000000Z.json.gz"
            )
            .kind,
            ObjectKind::Digest
        );
    }

    #[test]
    fn decodes_keys_as_s3_encodes_them_in_notifications() {
        assert_eq!(
            decode_notification_key("my+prefix/AWSLogs/a%3Db/x%2By.json.gz").unwrap(),
            "my prefix/AWSLogs/a=b/x+y.json.gz"
        );
        assert!(matches!(
            decode_notification_key("bad%2"),
            Err(KeyDecodeError::BadEscape { at: 3, .. })
        ));
        assert!(decode_notification_key("bad%zz").is_err());
        assert!(matches!(
            decode_notification_key("latin%E9"),
            Err(KeyDecodeError::NotUtf8 { .. })
        ));
        assert_eq!(
            decode_notification_key("caf%C3%A9%2B").unwrap(),
            "caf\u{e9}+"
        );
    }
}
