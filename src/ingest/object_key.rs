//! CloudTrail's S3 object keys: what a key says about the file behind it.
//!
//! `[prefix/]AWSLogs/[o-orgid/]<account>/<CloudTrail|CloudTrail-Digest|CloudTrail-Insight>/<region>/YYYY/MM/DD/<file>`

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
}

/// Reads a key in CloudTrail's layout. Keys outside the layout (a local file, a copy under
/// another prefix) are classified by CloudTrail's file-name infixes, and default to log files.
pub fn parse_object_key(key: &str) -> LogObjectKey<'_> {
    let mut parsed = LogObjectKey {
        kind: kind_from_file_name(key.rsplit('/').next().unwrap_or(key)),
        org_id: None,
        account_id: None,
        region: None,
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

fn kind_from_file_name(name: &str) -> ObjectKind {
    if name.contains("_CloudTrail-Digest_") {
        ObjectKind::Digest
    } else if name.contains("_CloudTrail-Insight_") {
        ObjectKind::Insight
    } else {
        ObjectKind::LogFile
    }
}

/// Decodes an object key as S3 writes it into event notifications
/// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte).
pub fn decode_notification_key(key: &str) -> Result<String, String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape at byte {i} of key '{key}'"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("key '{key}' decodes to invalid UTF-8"))
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
        assert!(decode_notification_key("bad%2").is_err());
        assert!(decode_notification_key("bad%zz").is_err());
    }
}
