//! The CloudTrail record as the pipeline sees it.
//!
//! A record is kept as the exact bytes CloudTrail wrote (`raw`), so that what we deliver is
//! byte-for-byte what we received, and a borrowed view of the few fields that selection,
//! delivery and Insights read (`fields`). Fields we do not name are not lost: they stay in `raw`.
//! Every field is optional here because CloudTrail marks most of them optional and older
//! event versions lack the newer ones; which ones a stage *needs* is that stage's business.

use std::borrow::Cow;

use serde::Deserialize;

use crate::time::{parse_event_time, EventTimeError};

/// One CloudTrail record: exact bytes plus the fields the pipeline reads.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    raw: &'a str,
    pub fields: RecordFields<'a>,
}

/// The fields the pipeline reads, borrowed from the record's bytes where JSON escaping allows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordFields<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub aws_region: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str", rename = "eventID")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub event_category: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "flexible_bool")]
    pub read_only: Option<bool>,
    #[serde(default, deserialize_with = "flexible_bool")]
    pub management_event: Option<bool>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub recipient_account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "flexible_str")]
    pub session_credential_from_console: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub vpc_endpoint_id: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "borrowed_str",
        rename = "sharedEventID"
    )]
    pub shared_event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_identity: Option<UserIdentity<'a>>,
    #[serde(borrow)]
    pub tls_details: Option<TlsDetails<'a>>,
    #[serde(borrow, default, deserialize_with = "resources")]
    pub resources: Option<Vec<Resource<'a>>>,
    #[serde(borrow)]
    pub insight_details: Option<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str", rename = "type")]
    pub identity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub arn: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub invoked_by: Option<Cow<'a, str>>,
}

/// `tlsDetails` (from eventVersion 1.08; absent when an AWS service called on the caller's
/// behalf): only the endpoint the client asked for is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsDetails<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub client_provided_host_header: Option<Cow<'a, str>>,
}

/// An entry of `resources`: CloudTrail spells the ARN key upper-case.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resource<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str", rename = "ARN")]
    pub arn: Option<Cow<'a, str>>,
    /// Instead of `ARN` in bucket-level S3 data events (`ListObjects`, `HeadBucket`,
    /// `DeleteObjects`, …): the `AWS::S3::Object` entry names the objects the call concerns by
    /// their common prefix, e.g. `arn:aws:s3:::bucket/`.
    #[serde(
        borrow,
        default,
        deserialize_with = "borrowed_str",
        rename = "ARNPrefix"
    )]
    pub arn_prefix: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "borrowed_str",
        rename = "accountId"
    )]
    pub account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str", rename = "type")]
    pub resource_type: Option<Cow<'a, str>>,
}

// Real records pass through exports and SIEM pipelines that rewrite a few types: booleans as
// "true"/"false" strings, `sessionCredentialFromConsole` as a boolean, stray non-object entries
// in `resources`. These readers accept both spellings so such records are still processed;
// the raw bytes, which are what gets delivered, are untouched either way.

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean or \"true\"/\"false\"")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                _ if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
                _ if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Reads an optional string field borrowing it from the record's text. serde's derive borrows
/// a bare `Cow<str>` but not one inside `Option`, which it always copies: without this, every
/// string field of every record would be allocated. Errors are the derive's ("expected a
/// string"); strings with JSON escapes are unescaped into an owned copy as before.
fn borrowed_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    struct Optional;
    impl<'de> serde::de::Visitor<'de> for Optional {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("option")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Text).map(Some)
        }
    }
    d.deserialize_option(Optional)
}

fn flexible_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a boolean")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn resources<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Resource<'de>>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Slot<'a> {
        Resource(#[serde(borrow)] Resource<'a>),
        Other(serde::de::IgnoredAny),
    }
    let slots: Option<Vec<Slot<'de>>> = Option::deserialize(d)?;
    Ok(slots.map(|slots| {
        slots
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Resource(r) => Some(r),
                Slot::Other(_) => None,
            })
            .collect()
    }))
}

/// Why a record could not be read. The caller adds where it was (file, index).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is not a JSON object of CloudTrail fields: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record has no eventTime")]
    MissingEventTime,
    #[error("record has a bad eventTime: {0}")]
    EventTime(#[from] EventTimeError),
}

impl RecordError {
    /// What is wrong, in a few words without the particulars (for counts by kind).
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::Json(_) => "fields of the wrong type",
            RecordError::MissingEventTime => "no eventTime",
            RecordError::EventTime(_) => "bad eventTime",
        }
    }
}

/// The category of a record, from `eventCategory` or derived for records older than 1.07.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventCategory {
    Management,
    Data,
    NetworkActivity,
    Insight,
    /// A category string we do not know (Lake-only categories, or something new).
    Other,
}

impl EventCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            EventCategory::Management => "Management",
            EventCategory::Data => "Data",
            EventCategory::NetworkActivity => "NetworkActivity",
            EventCategory::Insight => "Insight",
            EventCategory::Other => "Other",
        }
    }
}

impl<'a> Record<'a> {
    /// Reads the fields of one record from its exact JSON text.
    pub fn parse(raw: &'a str) -> Result<Self, RecordError> {
        let fields: RecordFields<'a> = serde_json::from_str(raw)?;
        Ok(Record { raw, fields })
    }

    /// The record exactly as received.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn event_id(&self) -> Option<&str> {
        self.fields.event_id.as_deref()
    }

    /// The eventID borrowed from the record's text (GUIDs never need JSON escapes; an escaped
    /// one is not borrowable and yields `None`).
    pub fn event_id_ref(&self) -> Option<&'a str> {
        match &self.fields.event_id {
            Some(Cow::Borrowed(id)) => Some(id),
            _ => None,
        }
    }

    pub fn event_source(&self) -> Option<&str> {
        self.fields.event_source.as_deref()
    }

    pub fn event_name(&self) -> Option<&str> {
        self.fields.event_name.as_deref()
    }

    pub fn aws_region(&self) -> Option<&str> {
        self.fields.aws_region.as_deref()
    }

    pub fn recipient_account_id(&self) -> Option<&str> {
        self.fields.recipient_account_id.as_deref()
    }

    pub fn error_code(&self) -> Option<&str> {
        self.fields.error_code.as_deref()
    }

    pub fn user_identity_arn(&self) -> Option<&str> {
        self.fields.user_identity.as_ref()?.arn.as_deref()
    }

    /// `eventTime` as milliseconds since the Unix epoch (the CloudWatch Logs timestamp).
    pub fn event_time_ms(&self) -> Result<i64, RecordError> {
        let text = self
            .fields
            .event_time
            .as_deref()
            .ok_or(RecordError::MissingEventTime)?;
        Ok(parse_event_time(text)?)
    }

    pub fn is_insight(&self) -> bool {
        self.category() == EventCategory::Insight
    }

    /// The event category. Records from eventVersion 1.07 on carry `eventCategory`; for older
    /// ones CloudTrail's documented rules are applied: Insights records are recognised by
    /// `eventType`, network activity by `AwsVpceEvent`, and otherwise `managementEvent`
    /// (present from 1.06) decides; without it, the data-event APIs of the time are recognised
    /// by resource type and name, and everything else is a management event.
    pub fn category(&self) -> EventCategory {
        if let Some(category) = self.fields.event_category.as_deref() {
            return match category {
                "Management" => EventCategory::Management,
                "Data" => EventCategory::Data,
                "NetworkActivity" => EventCategory::NetworkActivity,
                "Insight" => EventCategory::Insight,
                _ => EventCategory::Other,
            };
        }
        match self.fields.event_type.as_deref() {
            Some("AwsCloudTrailInsight") => return EventCategory::Insight,
            Some("AwsVpceEvent") => return EventCategory::NetworkActivity,
            _ => {}
        }
        if self.fields.insight_details.is_some() {
            return EventCategory::Insight;
        }
        match self.fields.management_event {
            Some(true) => EventCategory::Management,
            Some(false) => EventCategory::Data,
            None if self.has_data_resource() => EventCategory::Data,
            None => EventCategory::Management,
        }
    }

    /// Pre-1.06 records carry no `managementEvent`; the data-event APIs of that era (S3
    /// object-level, Lambda Invoke, DynamoDB item-level) are recognised by name and resource.
    fn has_data_resource(&self) -> bool {
        const DYNAMODB_ITEM_APIS: [&str; 10] = [
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "Scan",
            "BatchGetItem",
            "BatchWriteItem",
            "TransactGetItems",
            "TransactWriteItems",
        ];
        let name = self.event_name().unwrap_or("");
        self.fields
            .resources
            .iter()
            .flatten()
            .any(|r| match r.resource_type.as_deref() {
                Some("AWS::S3::Object") => true,
                Some("AWS::Lambda::Function") => name == "Invoke",
                Some("AWS::DynamoDB::Table") => DYNAMODB_ITEM_APIS.contains(&name),
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_fields_borrow_from_the_record_text_unless_escaped() {
        let raw = r#"{"eventID":"e-1","eventSource":"s3.amazonaws.com","userAgent":"a\"b","userIdentity":{"arn":"arn:aws:iam::1:user/u"},"resources":[{"ARN":"arn:x","type":"AWS::S3::Object"}]}"#;
        let record = Record::parse(raw).unwrap();
        assert_eq!(record.event_id_ref(), Some("e-1"));
        assert!(matches!(record.fields.event_source, Some(Cow::Borrowed(_))));
        assert!(matches!(record.fields.user_agent, Some(Cow::Owned(ref s)) if s == "a\"b"));
        let identity = record.fields.user_identity.as_ref().unwrap();
        assert!(matches!(identity.arn, Some(Cow::Borrowed(_))));
        let resources = record.fields.resources.as_ref().unwrap();
        assert!(matches!(resources[0].arn, Some(Cow::Borrowed("arn:x"))));
    }

    #[test]
    fn a_string_field_of_another_type_is_still_an_error_and_null_is_absent() {
        let error = Record::parse(r#"{"eventSource":5}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected a string"), "{error}");
        let record = Record::parse(r#"{"eventSource":null}"#).unwrap();
        assert!(record.fields.event_source.is_none());
    }
}
