//! What arrives at the select function: S3 event notifications (direct, via SQS, via SNS),
//! CloudTrail's own SNS notifications, EventBridge envelopes of CloudTrail events and of S3
//! "Object Created" events, and direct `{"Records":[...]}` invocations of CloudTrail records.
//! Each message becomes a list of work items: objects to read, or records carried inline.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::object_key::{decode_notification_key, KeyDecodeError};

/// The EventBridge detail-types under which CloudTrail publishes records. Both spellings of the
/// sign-in type are in use (the docs say "Signin", older rules and samples "Sign In").
pub const CLOUDTRAIL_DETAIL_TYPES: [&str; 7] = [
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Console Signin via CloudTrail",
    "AWS Console Action via CloudTrail",
    "AWS Service Event via CloudTrail",
    "AWS Insight via CloudTrail",
    // Reported by secondary sources for network-activity events (unconfirmed); accepting it
    // costs nothing and loses nothing if it is real.
    "AWS Network Activity Event via CloudTrail",
];

/// A unit of work found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkItem {
    /// An S3 object to read (key already URL-decoded).
    Object { bucket: String, key: String },
    /// One CloudTrail record carried inline (EventBridge `detail`, direct invocation), as received.
    Record(String),
    /// A message that is acknowledged and deliberately not processed, with the reason.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("message is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("message is not a notification trailwatch understands: {0}")]
    Unrecognised(String),
    #[error("message is not a notification trailwatch understands: {what}: {source}")]
    Malformed {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the object key in the S3 notification: {0}")]
    Key(#[from] KeyDecodeError),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Event")]
    s3_event: Option<String>,
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    sns_message: Option<String>,
    #[serde(rename = "s3Bucket")]
    cloudtrail_bucket: Option<String>,
    #[serde(rename = "s3ObjectKey")]
    cloudtrail_keys: Option<Vec<String>>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct S3NotificationRecord {
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
}

#[derive(Deserialize)]
struct ObjectCreatedDetail {
    bucket: S3Bucket,
    object: S3Object,
}

/// Reads one message body into work items.
pub fn parse_message(body: &str) -> Result<Vec<WorkItem>, NotificationError> {
    parse_nested(body, 0)
}

fn parse_nested(body: &str, depth: u8) -> Result<Vec<WorkItem>, NotificationError> {
    let envelope: Envelope = serde_json::from_str(body).map_err(NotificationError::NotJson)?;
    if envelope.s3_event.as_deref() == Some("s3:TestEvent") {
        return Ok(vec![WorkItem::Ignored("s3:TestEvent")]);
    }
    if let (Some("Notification"), Some(message)) = (
        envelope.sns_type.as_deref(),
        envelope.sns_message.as_deref(),
    ) {
        if depth > 0 {
            return Err(unrecognised("an SNS envelope inside an SNS envelope"));
        }
        return parse_nested(message, depth + 1);
    }
    if let Some(bucket) = envelope.cloudtrail_bucket {
        // CloudTrail's own SNS notification: keys are given as written, not URL-encoded.
        let keys = envelope
            .cloudtrail_keys
            .ok_or_else(|| unrecognised("s3Bucket without s3ObjectKey"))?;
        return Ok(keys
            .into_iter()
            .map(|key| WorkItem::Object {
                bucket: bucket.clone(),
                key,
            })
            .collect());
    }
    if let Some(detail_type) = envelope.detail_type.as_deref() {
        let detail = envelope
            .detail
            .ok_or_else(|| unrecognised("an EventBridge event without detail"))?;
        if CLOUDTRAIL_DETAIL_TYPES.contains(&detail_type) {
            return Ok(vec![WorkItem::Record(detail.get().to_owned())]);
        }
        if detail_type == "Object Created" {
            let d: ObjectCreatedDetail = serde_json::from_str(detail.get()).map_err(|source| {
                NotificationError::Malformed {
                    what: "S3 Object Created detail",
                    source,
                }
            })?;
            return Ok(vec![WorkItem::Object {
                bucket: d.bucket.name,
                key: d.object.key,
            }]);
        }
        return Err(unrecognised(&format!(
            "EventBridge detail-type '{detail_type}' is not a CloudTrail or S3 Object Created event"
        )));
    }
    if let Some(records) = envelope.records {
        return records.iter().map(|r| record_item(r)).collect();
    }
    Err(unrecognised(
        "no Records, SNS Message, s3Bucket or EventBridge detail",
    ))
}

/// An element of a `Records` array is either an S3 notification record or a CloudTrail record.
fn record_item(raw: &RawValue) -> Result<WorkItem, NotificationError> {
    let probe: S3NotificationRecord =
        serde_json::from_str(raw.get()).map_err(|source| NotificationError::Malformed {
            what: "Records element",
            source,
        })?;
    match (probe.event_source.as_deref(), probe.s3) {
        (Some("aws:s3"), Some(s3)) => {
            let name = probe.event_name.unwrap_or_default();
            if !name.starts_with("ObjectCreated:") {
                return Ok(WorkItem::Ignored("S3 event other than ObjectCreated"));
            }
            let key = decode_notification_key(&s3.object.key)?;
            Ok(WorkItem::Object {
                bucket: s3.bucket.name,
                key,
            })
        }
        (Some("aws:s3"), None) => Err(unrecognised("S3 notification record without s3")),
        _ => Ok(WorkItem::Record(raw.get().to_owned())),
    }
}

fn unrecognised(what: &str) -> NotificationError {
    NotificationError::Unrecognised(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> WorkItem {
        WorkItem::Object {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn s3_notification_yields_every_created_object_with_decoded_keys() {
        let body = r#"{"Records":[
          {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
           "s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs/1/CloudTrail/us-east-1/a+b%2Bc.json.gz","size":9}}},
          {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectRemoved:Delete",
           "s3":{"bucket":{"name":"trail"},"object":{"key":"x"}}}]}"#;
        assert_eq!(
            parse_message(body).unwrap(),
            vec![
                object("trail", "AWSLogs/1/CloudTrail/us-east-1/a b+c.json.gz"),
                WorkItem::Ignored("S3 event other than ObjectCreated")
            ]
        );
    }

    #[test]
    fn s3_test_event_is_acknowledged_and_ignored() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
        assert_eq!(
            parse_message(body).unwrap(),
            vec![WorkItem::Ignored("s3:TestEvent")]
        );
    }

    #[test]
    fn cloudtrail_sns_notification_lists_every_key() {
        let inner = r#"{"s3Bucket":"trail","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/a.json.gz","AWSLogs/1/CloudTrail/us-east-1/b c.json.gz"]}"#;
        let body = serde_json::json!({"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":inner}).to_string();
        assert_eq!(
            parse_message(&body).unwrap(),
            vec![
                object("trail", "AWSLogs/1/CloudTrail/us-east-1/a.json.gz"),
                object("trail", "AWSLogs/1/CloudTrail/us-east-1/b c.json.gz")
            ]
        );
    }

    #[test]
    fn s3_notification_wrapped_in_sns_is_unwrapped() {
        let inner = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"t"},"object":{"key":"k%20x"}}}]}"#;
        let body = serde_json::json!({"Type":"Notification","Message":inner}).to_string();
        assert_eq!(parse_message(&body).unwrap(), vec![object("t", "k x")]);
    }

    #[test]
    fn eventbridge_cloudtrail_event_carries_its_detail_verbatim() {
        for detail_type in CLOUDTRAIL_DETAIL_TYPES {
            let body = format!(
                r#"{{"version":"0","id":"1","detail-type":"{detail_type}","source":"aws.iam","detail":{{"eventID":"e1", "eventTime":"2024-01-01T00:00:00Z"}}}}"#
            );
            assert_eq!(
                parse_message(&body).unwrap(),
                vec![WorkItem::Record(
                    r#"{"eventID":"e1", "eventTime":"2024-01-01T00:00:00Z"}"#.into()
                )]
            );
        }
    }

    #[test]
    fn eventbridge_s3_object_created_names_the_object() {
        let body = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"t"},"object":{"key":"AWSLogs/k.json.gz"}}}"#;
        assert_eq!(
            parse_message(body).unwrap(),
            vec![object("t", "AWSLogs/k.json.gz")]
        );
    }

    #[test]
    fn direct_cloudtrail_records_are_taken_inline() {
        let body = r#"{"Records":[{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventID":"a"}]}"#;
        assert_eq!(
            parse_message(body).unwrap(),
            vec![WorkItem::Record(
                r#"{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventID":"a"}"#.into()
            )]
        );
    }

    #[test]
    fn unknown_shapes_are_errors_that_say_what_was_seen() {
        assert!(matches!(
            parse_message("not json"),
            Err(NotificationError::NotJson(_))
        ));
        let err = parse_message(
            r#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("EC2 Instance State-change"));
        assert!(parse_message(r#"{"hello":1}"#).is_err());
    }
}
