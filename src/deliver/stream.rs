//! Log stream names, as CloudTrail names them in CloudWatch Logs.

use crate::ingest::LogObjectKey;
use crate::record::Record;

/// `<account>_CloudTrail_<region>`; for an organization trail's member accounts
/// `<o-orgid>_<account>_CloudTrail_<region>` (CloudTrail documents the `<o-orgid>_` prefix
/// its role policy allows; the member-stream format after it is inferred).
///
/// The account is the record's `recipientAccountId` (the account this copy was delivered to),
/// else the account of the S3 key, else `userIdentity.accountId`; the region is `awsRegion`,
/// else the key's region. `None` when neither source names them.
pub fn stream_name(record: &Record<'_>, key: Option<&LogObjectKey<'_>>) -> Option<String> {
    let account = record
        .recipient_account_id()
        .or_else(|| key.and_then(|k| k.account_id))
        .or_else(|| {
            record
                .fields
                .user_identity
                .as_ref()
                .and_then(|u| u.account_id.as_deref())
        })?;
    let region = record.aws_region().or_else(|| key.and_then(|k| k.region))?;
    if !is_name_part(account) || !is_name_part(region) {
        return None;
    }
    Some(match key.and_then(|k| k.org_id) {
        Some(org) if is_name_part(org) => format!("{org}_{account}_CloudTrail_{region}"),
        _ => format!("{account}_CloudTrail_{region}"),
    })
}

/// Checks that `record` belongs to `stream`, the stream its delivery message names: the
/// deliver stage does not take a message's word for it (anyone able to send to the delivery
/// queue could otherwise write a record into another account's stream). The stream must be
/// `[<o-orgid>_]<account>_CloudTrail_<region>` with the record's `recipientAccountId` and
/// `awsRegion`. A record lacking one of them (select then took it from the file's key, which
/// the record does not carry) is checked on the part it has.
pub fn check_stream(stream: &str, record: &Record<'_>) -> Result<(), StreamError> {
    let not_a_stream = || StreamError::NotAStreamName(stream.to_owned());
    let (owner, region) = stream
        .rsplit_once("_CloudTrail_")
        .filter(|(_, region)| is_name_part(region))
        .ok_or_else(not_a_stream)?;
    let account = match owner.split_once('_') {
        Some((org, account)) if org.starts_with("o-") && is_name_part(org) => account,
        Some(_) => return Err(not_a_stream()),
        None => owner,
    };
    let mismatch = |field: &'static str, value: &str| {
        Err(StreamError::Mismatch {
            field,
            value: value.to_owned(),
            stream: stream.to_owned(),
        })
    };
    match (record.recipient_account_id(), record.aws_region()) {
        (Some(a), _) if a != account => mismatch("recipientAccountId", a),
        (_, Some(r)) if r != region => mismatch("awsRegion", r),
        _ if !is_name_part(account) => Err(not_a_stream()),
        _ => Ok(()),
    }
}

/// Why a record may not go to the stream its delivery message names.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{0:?} is not a CloudTrail log stream name")]
    NotAStreamName(String),
    #[error("the record's {field} is {value:?}: it does not belong to stream {stream:?}")]
    Mismatch {
        field: &'static str,
        value: String,
        stream: String,
    },
}

/// Account ids, regions and org ids are short and never contain CWL's forbidden ':' and '*'.
fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_object_key;

    #[test]
    fn names_the_stream_after_recipient_account_and_region() {
        let r = Record::parse(r#"{"recipientAccountId":"111122223333","awsRegion":"eu-west-1","userIdentity":{"accountId":"999"}}"#).unwrap();
        assert_eq!(
            stream_name(&r, None).unwrap(),
            "111122223333_CloudTrail_eu-west-1"
        );
    }

    #[test]
    fn organization_trail_streams_carry_the_org_prefix() {
        let key = parse_object_key(
            "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/2024/01/01/f.json.gz",
        );
        let r = Record::parse(r#"{"recipientAccountId":"111122223333","awsRegion":"us-east-1"}"#)
            .unwrap();
        assert_eq!(
            stream_name(&r, Some(&key)).unwrap(),
            "o-abc123_111122223333_CloudTrail_us-east-1"
        );
    }

    #[test]
    fn a_record_belongs_only_to_its_own_accounts_and_regions_stream() {
        let r = Record::parse(r#"{"recipientAccountId":"111122223333","awsRegion":"eu-west-1"}"#)
            .unwrap();
        assert_eq!(
            check_stream("111122223333_CloudTrail_eu-west-1", &r),
            Ok(())
        );
        assert_eq!(
            check_stream("o-abc123_111122223333_CloudTrail_eu-west-1", &r),
            Ok(())
        );
        for other in [
            "999988887777_CloudTrail_eu-west-1",
            "111122223333_CloudTrail_us-east-1",
            "o-abc123_999988887777_CloudTrail_eu-west-1",
            "x_111122223333_CloudTrail_eu-west-1",
            "111122223333_CloudTrail_",
            "audit",
        ] {
            let error = check_stream(other, &r).unwrap_err().to_string();
            assert!(error.contains(other), "{error}");
        }
        // Without recipientAccountId, select named the stream from the file's key.
        let keyed = Record::parse(r#"{"awsRegion":"eu-west-1"}"#).unwrap();
        assert_eq!(
            check_stream("222233334444_CloudTrail_eu-west-1", &keyed),
            Ok(())
        );
        assert!(check_stream("222233334444_CloudTrail_us-east-1", &keyed).is_err());
    }

    #[test]
    fn falls_back_to_the_object_key_then_refuses_unsafe_names() {
        let key =
            parse_object_key("AWSLogs/222233334444/CloudTrail/ap-south-1/2024/01/01/f.json.gz");
        let r = Record::parse(r#"{"eventID":"x"}"#).unwrap();
        assert_eq!(
            stream_name(&r, Some(&key)).unwrap(),
            "222233334444_CloudTrail_ap-south-1"
        );
        let bad = Record::parse(r#"{"recipientAccountId":"1:*","awsRegion":"us-east-1"}"#).unwrap();
        assert_eq!(stream_name(&bad, None), None);
    }
}
