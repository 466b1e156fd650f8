//! What the deliver function can be invoked with, and what it answers.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// What the deliver function can be invoked with.
#[derive(Debug)]
pub enum DeliverPayload {
    /// A batch from the delivery queue or the hold queue (its two SQS triggers).
    Queue(SqsEvent),
    /// One delivery message invoked directly (`cargo lambda invoke --data-file`, a message
    /// taken from a dead-letter queue by hand): `{"v":1,"stream":…,"records":[…]}` or a held
    /// envelope, kept verbatim.
    Message(Box<RawValue>),
}

/// Untagged, by hand: `#[serde(untagged)]` buffers the payload and could not keep a direct
/// message's records verbatim. An object with `Records` is an SQS batch, anything else a
/// delivery message (read, and refused with the reason, by the delivery run).
impl<'de> Deserialize<'de> for DeliverPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "Records")]
            records: Option<serde::de::IgnoredAny>,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let probe: Probe = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        if probe.records.is_some() {
            let event = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
            Ok(DeliverPayload::Queue(event))
        } else {
            Ok(DeliverPayload::Message(raw))
        }
    }
}

/// The deliver function's answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DeliverResponse {
    /// To an SQS batch: the messages that must come back.
    Batch(SqsBatchResponse),
    /// To a delivery message invoked directly, once all of it was delivered (or dropped as a
    /// duplicate, or set aside with a logged reason).
    Delivered(DirectReport),
}

/// What a direct invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectReport {
    pub records_received: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub set_aside: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_batch_and_a_direct_message_are_told_apart_and_the_message_kept_verbatim() {
        let batch = r#"{"Records":[{"messageId":"m1","body":"{}","eventSource":"aws:sqs"}]}"#;
        match serde_json::from_str::<DeliverPayload>(batch).unwrap() {
            DeliverPayload::Queue(event) => assert_eq!(event.records.len(), 1),
            other => panic!("{other:?}"),
        }
        let message = r#"{"v":1,"stream":"1_CloudTrail_r","records":[{"b" : 1,"a":2}]}"#;
        match serde_json::from_str::<DeliverPayload>(message).unwrap() {
            DeliverPayload::Message(raw) => assert_eq!(raw.get(), message),
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<DeliverPayload>(r#"{"Records":7}"#).is_err());
    }
}
