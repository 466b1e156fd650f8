//! A CloudTrail record as the Sigma evaluator reads it.
//!
//! Most rules ask for fields the record model has already read (`eventName`, `userIdentity.type`,
//! `userAgent`, …): those are answered from [`Record::fields`] at no cost. Anything else
//! (`requestParameters.x`, `sourceIPAddress`, `userIdentity.sessionContext…`) comes from the
//! record's text, parsed only when a rule asks and only the top-level member it asks for, so a
//! record that reaches no such item is never parsed a second time.
//!
//! Values are presented as a SIEM that stores CloudTrail's JSON would: an object asked for as a
//! whole (`requestParameters|contains: 'Suspended'`, as SigmaHQ's rules are written) is its JSON
//! text, so string modifiers apply to it instead of never matching.

use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::{Event, EventValue, JsonEvent};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::record::Record;

/// One record under evaluation; built per record, cheap until a rule reads past the model.
pub struct RecordEvent<'r, 'a> {
    record: &'r Record<'a>,
    members: OnceCell<Vec<Member<'a>>>,
    /// The whole record parsed, for keyword rules and `to_json` only.
    whole: OnceCell<JsonEvent<'static>>,
}

/// A top-level member of the record: its key, its exact text, and its value once asked for.
struct Member<'a> {
    key: Cow<'a, str>,
    raw: &'a RawValue,
    value: OnceCell<Value>,
}

impl<'r, 'a> RecordEvent<'r, 'a> {
    pub fn new(record: &'r Record<'a>) -> Self {
        RecordEvent {
            record,
            members: OnceCell::new(),
            whole: OnceCell::new(),
        }
    }

    pub fn record(&self) -> &'r Record<'a> {
        self.record
    }

    /// A string field (any path) as text, for the detection's summary fields.
    pub fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.get_field(path)? {
            EventValue::Str(s) => Some(s),
            other => other.as_str().map(|s| Cow::Owned(s.into_owned())),
        }
    }

    /// Fields the record model already holds; `None` when the path is not one of them.
    fn modelled(&self, path: &str) -> Option<Option<EventValue<'_>>> {
        let f = &self.record.fields;
        let text = |v: &'r Option<Cow<'a, str>>| v.as_deref().map(borrowed);
        let identity = f.user_identity.as_ref();
        Some(match path {
            "eventVersion" => text(&f.event_version),
            "eventTime" => text(&f.event_time),
            "eventSource" => text(&f.event_source),
            "eventName" => text(&f.event_name),
            "awsRegion" => text(&f.aws_region),
            "eventID" => text(&f.event_id),
            "eventType" => text(&f.event_type),
            "eventCategory" => text(&f.event_category),
            "recipientAccountId" => text(&f.recipient_account_id),
            "errorCode" => text(&f.error_code),
            "userAgent" => text(&f.user_agent),
            "userIdentity.type" => identity.and_then(|u| u.identity_type.as_deref().map(borrowed)),
            "userIdentity.arn" => identity.and_then(|u| u.arn.as_deref().map(borrowed)),
            "userIdentity.accountId" => {
                identity.and_then(|u| u.account_id.as_deref().map(borrowed))
            }
            "userIdentity.invokedBy" => {
                identity.and_then(|u| u.invoked_by.as_deref().map(borrowed))
            }
            _ => return None,
        })
    }

    fn members(&self) -> &[Member<'a>] {
        self.members.get_or_init(|| {
            let mut de = serde_json::Deserializer::from_str(self.record.raw());
            // The record model read this text as an object already; a failure here cannot
            // happen short of a bug, and then no field beyond the model is found.
            de.deserialize_map(MembersVisitor).unwrap_or_default()
        })
    }

    fn whole(&self) -> &JsonEvent<'static> {
        self.whole.get_or_init(|| {
            JsonEvent::owned(serde_json::from_str(self.record.raw()).unwrap_or(Value::Null))
        })
    }
}

fn borrowed(s: &str) -> EventValue<'_> {
    EventValue::Str(Cow::Borrowed(s))
}

impl Event for RecordEvent<'_, '_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some(value) = self.modelled(path) {
            return value;
        }
        if path.contains(['[', '\\']) {
            // Indexes and escaped dots: the evaluator's own path reader, over the whole record.
            return self.whole().get_field(path).map(object_as_text);
        }
        let members = self.members();
        if let Some(member) = members.iter().find(|m| m.key == path) {
            return Some(member.as_whole());
        }
        let (root, rest) = path.split_once('.')?;
        let member = members.iter().find(|m| m.key == root)?;
        let segments: Vec<&str> = rest.split('.').collect();
        let mut found = Vec::new();
        collect(member.value(), &segments, &mut found);
        match found.len() {
            0 => None,
            1 => found.pop(),
            _ => Some(EventValue::Array(found)),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.whole().any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.whole().all_string_values()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.whole().visit_string_values(visit)
    }

    fn to_json(&self) -> Value {
        self.whole().to_json()
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        Some(
            self.members()
                .iter()
                .map(|m| Cow::Borrowed(m.key.as_ref()))
                .collect(),
        )
    }
}

impl Member<'_> {
    fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(self.raw.get()).unwrap_or(Value::Null))
    }

    /// The member asked for by its own name: objects as their exact text, without parsing.
    fn as_whole(&self) -> EventValue<'_> {
        if self.raw.get().starts_with('{') {
            borrowed(self.raw.get())
        } else {
            leaf(self.value())
        }
    }
}

/// Follows `segments` from `value`; an array on the way is crossed member by member (Sigma's
/// any-member reading), and every value found at the end is collected.
fn collect<'v>(value: &'v Value, segments: &[&str], found: &mut Vec<EventValue<'v>>) {
    match (segments.split_first(), value) {
        (None, _) => found.push(leaf(value)),
        (Some(_), Value::Array(items)) => {
            for item in items {
                collect(item, segments, found);
            }
        }
        (Some((key, rest)), Value::Object(map)) => {
            if let Some(child) = map.get(*key) {
                collect(child, rest, found);
            }
        }
        (Some(_), _) => {}
    }
}

fn leaf(value: &Value) -> EventValue<'_> {
    match value {
        Value::Object(_) => EventValue::Str(Cow::Owned(value.to_string())),
        Value::Array(items) => EventValue::Array(items.iter().map(leaf).collect()),
        other => EventValue::from(other),
    }
}

fn object_as_text(value: EventValue<'_>) -> EventValue<'_> {
    match value {
        EventValue::Map(_) => EventValue::Str(Cow::Owned(value.to_json().to_string())),
        EventValue::Array(items) => {
            EventValue::Array(items.into_iter().map(object_as_text).collect())
        }
        other => other,
    }
}

/// Reads the record's top-level members without parsing their values.
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(24));
        while let Some(Key(key)) = map.next_key()? {
            let raw: &'de RawValue = map.next_value()?;
            members.push(Member {
                key,
                raw,
                value: OnceCell::new(),
            });
        }
        Ok(members)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = r#"{"eventName":"PutBucketVersioning","eventSource":"s3.amazonaws.com","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"type":"Role"}}},"requestParameters":{"bucketName":"b","VersioningConfiguration":{"Status":"Suspended"}},"resources":[{"ARN":"arn:aws:s3:::b"},{"ARN":"arn:aws:s3:::c"}],"responseElements":null,"readOnly":false}"#;

    #[test]
    fn modelled_fields_come_from_the_record_model_without_a_second_parse() {
        let record = Record::parse(RAW).unwrap();
        let event = RecordEvent::new(&record);
        assert_eq!(
            event.text("eventName").as_deref(),
            Some("PutBucketVersioning")
        );
        assert_eq!(
            event.text("userIdentity.type").as_deref(),
            Some("AssumedRole")
        );
        assert!(event.members.get().is_none() && event.whole.get().is_none());
    }

    #[test]
    fn other_fields_are_read_from_the_text_member_by_member() {
        let record = Record::parse(RAW).unwrap();
        let event = RecordEvent::new(&record);
        assert_eq!(
            event
                .text("userIdentity.sessionContext.sessionIssuer.type")
                .as_deref(),
            Some("Role")
        );
        assert_eq!(
            event
                .text("requestParameters.VersioningConfiguration.Status")
                .as_deref(),
            Some("Suspended")
        );
        assert_eq!(event.get_field("responseElements"), Some(EventValue::Null));
        assert_eq!(event.get_field("readOnly"), Some(EventValue::Bool(false)));
        assert_eq!(event.get_field("requestParameters.missing"), None);
        assert_eq!(event.get_field("additionalEventData.MFAUsed"), None);
        let parsed: Vec<&str> = event
            .members()
            .iter()
            .filter(|m| m.value.get().is_some())
            .map(|m| m.key.as_ref())
            .collect();
        assert_eq!(
            parsed,
            [
                "userIdentity",
                "requestParameters",
                "responseElements",
                "readOnly"
            ]
        );
        assert!(event.whole.get().is_none());
    }

    #[test]
    fn an_object_asked_for_as_a_whole_is_its_exact_text() {
        let record = Record::parse(RAW).unwrap();
        let event = RecordEvent::new(&record);
        assert_eq!(
            event.text("requestParameters").as_deref(),
            Some(r#"{"bucketName":"b","VersioningConfiguration":{"Status":"Suspended"}}"#)
        );
    }

    #[test]
    fn arrays_on_the_path_are_crossed_member_by_member() {
        let record = Record::parse(RAW).unwrap();
        let event = RecordEvent::new(&record);
        assert_eq!(
            event.get_field("resources.ARN"),
            Some(EventValue::Array(vec![
                borrowed("arn:aws:s3:::b"),
                borrowed("arn:aws:s3:::c")
            ]))
        );
        assert_eq!(
            event.text("resources[1].ARN").as_deref(),
            Some("arn:aws:s3:::c")
        );
    }
}
