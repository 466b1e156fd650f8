//! The message the select stage sends the deliver stage: records for one log stream, exactly
//! as received, packed up to the SQS message limit.
//!
//! `{"v":1,"id":"<delivery id>","stream":"<name>","records":[<record>,<record>]}`
//!
//! The delivery id (32 hex digits, new for every message packed) names the delivery that
//! owns the records' claims in the ledger (see `deliver::ledger`): it travels with the body,
//! so a message SQS redelivers, or a dead-letter queue redrive sends again under a new
//! message id, is still the same delivery. Messages without one (from before it) are owned
//! by their SQS message id.
//!
//! A message the deliver stage sends back to the queue with records it holds for a fuller
//! call (see `deliver::hold`) also says since when its records have been held back:
//! `{"v":1,"id":"<delivery id>","stream":"<name>","since":<epoch ms>,"records":[...]}`.
//!
//! Held-back messages travel compressed: the bodies of one stream's held records, as a JSON
//! array, gzipped and base64-encoded in one envelope (see [`seal_held`] and [`open_held`]),
//! `{"gz":"<base64>","v":1,"stream":"<name>"}`, so that one SQS message carries a whole
//! call's worth of records instead of a quarter of it.
//!
//! Records are embedded verbatim (never re-serialised), so the deliver stage writes the bytes
//! CloudTrail wrote. A record too large to deliver is replaced by a marked stub (see [`stub`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::limits::{
    CWL_MAX_EVENT_BYTES, PACKED_MESSAGE_BYTES, PUT_LOG_EVENTS_EVENT_OVERHEAD,
    PUT_LOG_EVENTS_MAX_BYTES, SQS_MAX_MESSAGE_BYTES,
};
use crate::record::Record;

pub const MESSAGE_VERSION: u32 = 1;

/// A delivery message as read by the deliver stage.
#[derive(Debug, Deserialize)]
pub struct DeliveryMessage<'a> {
    pub v: u32,
    /// The delivery that owns its records' claims (absent in messages from before ids).
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    /// Since when the records of a held-back message have been held back (the earliest).
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(borrow)]
    pub records: Vec<&'a RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("delivery message is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("delivery message version {0} is not supported (expected {MESSAGE_VERSION})")]
    Version(u32),
    #[error("delivery id '{0}' is not 1 to {MAX_ID_BYTES} letters, digits, '-' or '_'")]
    Id(String),
}

/// The longest delivery id accepted (trailwatch writes 32 hex digits).
pub const MAX_ID_BYTES: usize = 64;

/// A new delivery id: 128 random bits as 32 hex digits.
pub fn new_delivery_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

impl<'a> DeliveryMessage<'a> {
    pub fn parse(body: &'a str) -> Result<Self, MessageError> {
        let message: DeliveryMessage<'a> = serde_json::from_str(body)?;
        if message.v != MESSAGE_VERSION {
            return Err(MessageError::Version(message.v));
        }
        if let Some(id) = &message.id {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(allowed) {
                return Err(MessageError::Id(id.chars().take(MAX_ID_BYTES).collect()));
            }
        }
        Ok(message)
    }
}

/// Each message carries at most 1/4 of a PutLogEvents call's byte budget (record bytes + 26
/// per record), so four full messages of a stream fill one call.
pub const MESSAGES_PER_PUT_LOG_EVENTS: usize = 4;
const DELIVERY_COST_PER_MESSAGE: usize = PUT_LOG_EVENTS_MAX_BYTES / MESSAGES_PER_PUT_LOG_EVENTS;

/// Packs records of one destination into message bodies no larger than `max_bytes`, whose
/// records cost at most a quarter of a PutLogEvents call, each with a delivery id of its own.
/// A record too large for that travels alone, in a message of up to SQS's 1 MiB.
#[derive(Debug)]
pub struct MessagePacker {
    /// The header before the delivery id, and after it up to the records.
    head: String,
    tail: String,
    body: String,
    records: usize,
    /// PutLogEvents bytes of the records in `body`: their length plus 26 each.
    cost: usize,
    max_bytes: usize,
    /// The largest message a record too large for `max_bytes` travels in, alone.
    max_alone_bytes: usize,
}

const FOOTER: &str = "]}";
/// The length of a delivery id from [`new_delivery_id`].
const ID_BYTES: usize = 32;

impl MessagePacker {
    pub fn new(stream: &str, max_bytes: usize) -> Self {
        Self::waiting_since(stream, max_bytes, None)
    }

    /// A packer whose messages say their records have been held back since `since` (epoch ms).
    pub fn waiting_since(stream: &str, max_bytes: usize, since: Option<i64>) -> Self {
        #[derive(Serialize)]
        struct Header<'a> {
            stream: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            since: Option<i64>,
        }
        let header = serde_json::to_string(&Header { stream, since })
            .expect("a struct of strings serialises");
        // `{"stream":…}` becomes `","stream":…,"records":[`, after the id.
        let tail = format!("\",{},\"records\":[", &header[1..header.len() - 1]);
        let mut packer = MessagePacker {
            head: format!("{{\"v\":{MESSAGE_VERSION},\"id\":\""),
            tail,
            body: String::new(),
            records: 0,
            cost: 0,
            max_bytes,
            max_alone_bytes: SQS_MAX_MESSAGE_BYTES,
        };
        packer.start(String::new());
        packer
    }

    /// The same packer with messages of a record alone up to `bytes` (tests use tiny ones).
    pub fn alone_up_to(mut self, bytes: usize) -> Self {
        self.max_alone_bytes = bytes;
        self
    }

    fn header_len(&self) -> usize {
        self.head.len() + ID_BYTES + self.tail.len()
    }

    /// The largest record packed with others.
    fn max_packed_record_bytes(&self) -> usize {
        (self.max_bytes - self.header_len() - FOOTER.len())
            .min(DELIVERY_COST_PER_MESSAGE - PUT_LOG_EVENTS_EVENT_OVERHEAD)
    }

    /// The largest record a message carries (alone, when it is larger than a packed message
    /// takes): what one CloudWatch Logs event and one PutLogEvents call can hold.
    pub fn max_record_bytes(&self) -> usize {
        (self.max_alone_bytes - self.header_len() - FOOTER.len())
            .max(self.max_packed_record_bytes())
            .min(CWL_MAX_EVENT_BYTES)
            .min(PUT_LOG_EVENTS_MAX_BYTES - PUT_LOG_EVENTS_EVENT_OVERHEAD)
    }

    /// Adds a record; returns a completed message when the record did not fit in the current one.
    /// The caller guarantees `raw.len() <= max_record_bytes()` (see [`fit_record`]).
    pub fn push(&mut self, raw: &str) -> Option<String> {
        debug_assert!(raw.len() <= self.max_record_bytes());
        let separator = usize::from(self.records > 0);
        let cost = raw.len() + PUT_LOG_EVENTS_EVENT_OVERHEAD;
        // A record larger than a packed message takes, and whatever follows it, start a new
        // message: it travels alone.
        let completed = if self.body.len() + separator + raw.len() + FOOTER.len() > self.max_bytes
            || self.cost + cost > DELIVERY_COST_PER_MESSAGE
        {
            // More records follow: the next message starts at its full size instead of growing
            // (and copying itself) to it again.
            self.take_into(String::with_capacity(self.max_bytes))
        } else {
            None
        };
        if self.records > 0 {
            self.body.push(',');
        }
        self.body.push_str(raw);
        self.records += 1;
        self.cost += cost;
        completed
    }

    /// The message being filled, if it has records.
    pub fn take(&mut self) -> Option<String> {
        self.take_into(String::new())
    }

    /// Completes the message being filled and starts the next one in `next`.
    fn take_into(&mut self, next: String) -> Option<String> {
        if self.records == 0 {
            return None;
        }
        let mut body = self.start(next);
        body.push_str(FOOTER);
        self.records = 0;
        self.cost = 0;
        Some(body)
    }

    /// Starts a message with a new delivery id in `next`; returns the one it replaces.
    fn start(&mut self, mut next: String) -> String {
        next.push_str(&self.head);
        next.push_str(&new_delivery_id());
        next.push_str(&self.tail);
        std::mem::replace(&mut self.body, next)
    }
}

/// Default packing limit for messages between stages.
pub const DEFAULT_MESSAGE_BYTES: usize = PACKED_MESSAGE_BYTES;

/// How a held envelope starts (and a plain message never does).
const HELD_PREFIX: &str = "{\"gz\":\"";
/// The most an envelope may hold once opened: far above what sealing puts in one (about a
/// call's worth of records), low enough that a forged envelope cannot exhaust memory.
pub const MAX_OPENED_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("held-back envelope is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("held-back envelope is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("held-back envelope does not decompress: {0}")]
    Gzip(std::io::Error),
    #[error("held-back envelope opens to more than {MAX_OPENED_BYTES} bytes")]
    TooLarge,
}

/// Seals the message bodies of one stream (from [`MessagePacker`]) into as few envelopes of at
/// most `max_bytes` as fit. A body whose envelope alone would be larger (records that do not
/// compress) is sent as it is.
pub fn seal_held(stream: &str, bodies: &[String], max_bytes: usize) -> Vec<String> {
    use base64::Engine;
    use std::io::Write;
    if bodies.is_empty() {
        return Vec::new();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut write = || -> std::io::Result<Vec<u8>> {
        gz.write_all(b"[")?;
        for (i, body) in bodies.iter().enumerate() {
            if i > 0 {
                gz.write_all(b",")?;
            }
            gz.write_all(body.as_bytes())?;
        }
        gz.write_all(b"]")?;
        gz.try_finish()?;
        Ok(std::mem::take(gz.get_mut()))
    };
    let compressed = write().expect("writing to memory does not fail");
    let mut envelope = String::with_capacity(HELD_PREFIX.len() + compressed.len() * 4 / 3 + 64);
    envelope.push_str(HELD_PREFIX);
    base64::engine::general_purpose::STANDARD.encode_string(&compressed, &mut envelope);
    envelope.push_str("\",\"v\":1,\"stream\":");
    envelope.push_str(&serde_json::to_string(stream).expect("a string serialises"));
    envelope.push('}');
    if envelope.len() <= max_bytes {
        return vec![envelope];
    }
    if bodies.len() == 1 {
        return bodies.to_vec();
    }
    let (first, second) = bodies.split_at(bodies.len() / 2);
    let mut sealed = seal_held(stream, first, max_bytes);
    sealed.extend(seal_held(stream, second, max_bytes));
    sealed
}

/// The message bodies a received body stands for: those sealed in it when it is a held
/// envelope, else the body itself.
pub fn open_held(body: &str) -> Result<Vec<Cow<'_, str>>, HeldError> {
    use base64::Engine;
    use std::io::Read;
    if !body.starts_with(HELD_PREFIX) {
        return Ok(vec![Cow::Borrowed(body)]);
    }
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        gz: &'a str,
    }
    let envelope: Envelope<'_> = serde_json::from_str(body)?;
    let compressed = base64::engine::general_purpose::STANDARD.decode(envelope.gz)?;
    let mut opened = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(MAX_OPENED_BYTES as u64 + 1)
        .read_to_string(&mut opened)
        .map_err(HeldError::Gzip)?;
    if opened.len() > MAX_OPENED_BYTES {
        return Err(HeldError::TooLarge);
    }
    let bodies: Vec<&RawValue> = serde_json::from_str(&opened)?;
    Ok(bodies
        .into_iter()
        .map(|b| Cow::Owned(b.get().to_owned()))
        .collect())
}

/// Where the full copy of a stubbed record lives.
#[derive(Debug, Clone, Copy)]
pub struct RecordLocation<'a> {
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub index: usize,
}

/// The record as it will be delivered: itself when deliverable, else a stub.
pub fn fit_record<'r>(
    record: &Record<'r>,
    location: RecordLocation<'_>,
    max_bytes: usize,
) -> Cow<'r, str> {
    let limit = max_bytes.min(CWL_MAX_EVENT_BYTES);
    if record.raw().len() <= limit {
        Cow::Borrowed(record.raw())
    } else {
        Cow::Owned(stub(record, location))
    }
}

/// A marked, truncated stand-in for a record too large to deliver (larger than CloudWatch
/// Logs' event limit; CloudTrail drops what is over 256 KB):
/// the identifying fields, the original size, and where the full record is.
pub fn stub(record: &Record<'_>, location: RecordLocation<'_>) -> String {
    let f = &record.fields;
    let stub = serde_json::json!({
        "trailwatchTruncated": true,
        "originalBytes": record.raw().len(),
        "eventVersion": f.event_version,
        "eventID": f.event_id,
        "eventTime": f.event_time,
        "eventSource": f.event_source,
        "eventName": f.event_name,
        "awsRegion": f.aws_region,
        "recipientAccountId": f.recipient_account_id,
        "userIdentity": {"arn": record.user_identity_arn()},
        "errorCode": f.error_code,
        "eventCategory": record.category().as_str(),
        "fullRecord": {
            "bucket": location.bucket,
            "key": location.key,
            "recordIndex": location.index,
        },
    });
    stub.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_messages_round_trip_records_verbatim() {
        let mut packer = MessagePacker::new("1_CloudTrail_us-east-1", 200);
        let records = [
            r#"{"eventID":"a", "x" : 1}"#,
            r#"{"eventID":"b","y":[1,2]}"#,
        ];
        let mut bodies: Vec<String> = records.iter().filter_map(|r| packer.push(r)).collect();
        bodies.extend(packer.take());
        assert_eq!(bodies.len(), 1);
        let message = DeliveryMessage::parse(&bodies[0]).unwrap();
        assert_eq!(message.stream, "1_CloudTrail_us-east-1");
        assert_eq!(message.since, None);
        let got: Vec<&str> = message.records.iter().map(|r| r.get()).collect();
        assert_eq!(got, records);
        let mut held = MessagePacker::waiting_since("s", 200, Some(1_700_000_000_123));
        assert!(held.push(records[0]).is_none());
        let body = held.take().unwrap();
        let message = DeliveryMessage::parse(&body).unwrap();
        assert_eq!(message.since, Some(1_700_000_000_123));
        assert_eq!(message.records[0].get(), records[0]);
    }

    #[test]
    fn no_message_exceeds_the_limit_and_none_is_lost() {
        let limit = 300;
        let mut packer = MessagePacker::new("s", limit);
        let records: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"eventID":"{i}","pad":"{}"}}"#, "x".repeat(i % 37)))
            .collect();
        let mut bodies: Vec<String> = records.iter().filter_map(|r| packer.push(r)).collect();
        bodies.extend(packer.take());
        let mut seen = Vec::new();
        for body in &bodies {
            assert!(body.len() <= limit, "{} > {limit}", body.len());
            let m = DeliveryMessage::parse(body).unwrap();
            seen.extend(m.records.iter().map(|r| r.get().to_owned()));
        }
        assert_eq!(seen, records);
    }

    #[test]
    fn four_full_messages_of_a_stream_fill_one_put_log_events_call() {
        let mut packer = MessagePacker::new("1_CloudTrail_us-east-1", DEFAULT_MESSAGE_BYTES);
        let records: Vec<String> = (0..2_000)
            .map(|i| {
                format!(
                    r#"{{"eventID":"{i}","pad":"{}"}}"#,
                    "x".repeat(300 + i % 900)
                )
            })
            .collect();
        let bodies: Vec<String> = records.iter().filter_map(|r| packer.push(r)).collect();
        assert!(bodies.len() >= MESSAGES_PER_PUT_LOG_EVENTS);
        for four in bodies.chunks_exact(MESSAGES_PER_PUT_LOG_EVENTS) {
            let cost: usize = four
                .iter()
                .flat_map(|b| DeliveryMessage::parse(b).unwrap().records)
                .map(|r| r.get().len() + PUT_LOG_EVENTS_EVENT_OVERHEAD)
                .sum();
            assert!(cost <= PUT_LOG_EVENTS_MAX_BYTES, "{cost}");
            // Full: within one record of a quarter call each.
            assert!(cost > PUT_LOG_EVENTS_MAX_BYTES - 4 * 1_300, "{cost}");
        }
    }

    fn big_record(id: &str, pad: usize) -> String {
        format!(
            r#"{{"eventID":"{id}","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","userIdentity":{{"arn":"arn:aws:iam::1:user/u"}},"errorCode":"X","requestParameters":{{"p":"{}"}}}}"#,
            "y".repeat(pad)
        )
    }

    #[test]
    fn records_beyond_cloudwatch_logs_event_limit_become_stubs_that_point_at_the_original() {
        let big = big_record("e1", CWL_MAX_EVENT_BYTES);
        let record = Record::parse(&big).unwrap();
        let location = RecordLocation {
            bucket: Some("b"),
            key: Some("k.json.gz"),
            index: 7,
        };
        let packer = MessagePacker::new("s", DEFAULT_MESSAGE_BYTES);
        let fitted = fit_record(&record, location, packer.max_record_bytes());
        let stub: serde_json::Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(stub["trailwatchTruncated"], true);
        assert_eq!(stub["eventID"], "e1");
        assert_eq!(stub["userIdentity"]["arn"], "arn:aws:iam::1:user/u");
        assert_eq!(stub["errorCode"], "X");
        assert_eq!(stub["fullRecord"]["key"], "k.json.gz");
        assert_eq!(stub["fullRecord"]["recordIndex"], 7);
        assert_eq!(stub["originalBytes"], big.len());
        let small = Record::parse(r#"{"eventID":"s"}"#).unwrap();
        assert!(matches!(
            fit_record(&small, location, 1000),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_record_between_256_kb_and_the_event_limit_travels_whole_and_alone() {
        // Larger than CloudTrail ever sends to CloudWatch Logs, within what CWL takes.
        let big = big_record("big", 300 * 1024);
        let record = Record::parse(&big).unwrap();
        let mut packer = MessagePacker::new("s", DEFAULT_MESSAGE_BYTES);
        let location = RecordLocation {
            bucket: None,
            key: None,
            index: 0,
        };
        let fitted = fit_record(&record, location, packer.max_record_bytes());
        assert!(matches!(fitted, Cow::Borrowed(_)), "delivered whole");
        let small = big_record("small", 10);
        let mut bodies: Vec<String> = [&small, &big, &small]
            .iter()
            .filter_map(|r| packer.push(r))
            .collect();
        bodies.extend(packer.take());
        let records: Vec<usize> = bodies
            .iter()
            .map(|b| DeliveryMessage::parse(b).unwrap().records.len())
            .collect();
        assert_eq!(records, [1, 1, 1], "the big record alone");
        assert!(bodies[1].len() > PACKED_MESSAGE_BYTES && bodies[1].len() <= SQS_MAX_MESSAGE_BYTES);
        assert!(bodies[0].len() <= PACKED_MESSAGE_BYTES && bodies[2].len() <= PACKED_MESSAGE_BYTES);
    }

    #[test]
    fn at_tiny_limits_a_record_too_large_to_pack_travels_alone_and_one_too_large_for_that_is_stubbed(
    ) {
        let mut packer = MessagePacker::new("s", 200).alone_up_to(600);
        let header = 200 - packer.max_packed_record_bytes() - FOOTER.len();
        assert_eq!(packer.max_record_bytes(), 600 - header - FOOTER.len());
        let record = |n: usize| format!(r#"{{"eventID":"{n}","p":"{}"}}"#, "z".repeat(n));
        let (small, alone) = (record(10), record(300));
        assert!(alone.len() > packer.max_packed_record_bytes());
        assert!(alone.len() <= packer.max_record_bytes());
        let mut bodies: Vec<String> = [&small, &alone, &small, &small]
            .iter()
            .filter_map(|r| packer.push(r))
            .collect();
        bodies.extend(packer.take());
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| DeliveryMessage::parse(b).unwrap().records.len())
            .collect();
        assert_eq!(sizes, [1, 1, 2]);
        assert!(bodies.iter().all(|b| b.len() <= 600));
        assert!(bodies[1].len() > 200);
        let too_big = record(700);
        let too_big = Record::parse(&too_big).unwrap();
        let location = RecordLocation {
            bucket: None,
            key: None,
            index: 3,
        };
        assert!(matches!(
            fit_record(&too_big, location, packer.max_record_bytes()),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn every_packed_message_carries_a_delivery_id_of_its_own() {
        let mut packer = MessagePacker::new("s", 100);
        let mut bodies: Vec<String> = (0..6)
            .filter_map(|i| packer.push(&format!(r#"{{"eventID":"{i}"}}"#)))
            .collect();
        bodies.extend(packer.take());
        assert!(bodies.len() > 2, "{bodies:?}");
        let ids: std::collections::BTreeSet<String> = bodies
            .iter()
            .map(|b| DeliveryMessage::parse(b).unwrap().id.unwrap().into_owned())
            .collect();
        assert_eq!(ids.len(), bodies.len());
        assert!(ids.iter().all(|id| id.len() == 32));
        // Messages from before ids are still read; a forged id is refused.
        let old = r#"{"v":1,"stream":"s","records":[{}]}"#;
        assert_eq!(DeliveryMessage::parse(old).unwrap().id, None);
        let forged = r#"{"v":1,"id":"a b","stream":"s","records":[]}"#;
        assert!(matches!(
            DeliveryMessage::parse(forged),
            Err(MessageError::Id(_))
        ));
    }

    fn bodies_of(stream: &str, records: usize, pad: usize) -> Vec<String> {
        let mut packer = MessagePacker::waiting_since(stream, PACKED_MESSAGE_BYTES, Some(7));
        let mut bodies = Vec::new();
        for i in 0..records {
            let record = format!(
                r#"{{"eventID":"e{i}","requestParameters":"{}"}}"#,
                "ab".repeat(pad)
            );
            bodies.extend(packer.push(&record));
        }
        bodies.extend(packer.take());
        bodies
    }

    #[test]
    fn held_bodies_sealed_in_envelopes_open_to_the_same_bodies() {
        let bodies = bodies_of("1_CloudTrail_r", 900, 500);
        assert_eq!(bodies.len(), 4, "about a call's worth of records");
        let sealed = seal_held("1_CloudTrail_r", &bodies, PACKED_MESSAGE_BYTES);
        assert_eq!(sealed.len(), 1, "one envelope carries them all");
        assert!(sealed[0].len() <= PACKED_MESSAGE_BYTES);
        let opened: Vec<String> = sealed
            .iter()
            .flat_map(|e| open_held(e).unwrap())
            .map(Cow::into_owned)
            .collect();
        assert_eq!(opened, bodies);
        // A plain message opens to itself.
        assert_eq!(open_held(&bodies[0]).unwrap(), [bodies[0].as_str()]);
    }

    #[test]
    fn envelopes_stay_within_the_limit_and_records_that_do_not_compress_go_plain() {
        let bodies = bodies_of("s", 900, 500);
        // The four bodies seal to about 20 KB together, 10 KB each.
        let sealed = seal_held("s", &bodies, 15_000);
        let sizes: Vec<usize> = sealed.iter().map(String::len).collect();
        assert!(
            sealed.len() > 1 && sizes.iter().all(|&n| n <= 15_000),
            "{sizes:?}"
        );
        let opened: Vec<String> = sealed
            .iter()
            .flat_map(|e| open_held(e).unwrap())
            .map(Cow::into_owned)
            .collect();
        assert_eq!(opened, bodies, "split, none lost, in order");
        // Too little room for any envelope: the bodies travel as they are.
        assert_eq!(seal_held("s", &bodies, 100), bodies);
    }

    #[test]
    fn a_broken_envelope_is_an_error_naming_what_is_wrong() {
        let cases = [
            (r#"{"gz":"not base64!","v":1}"#, "not valid base64"),
            (r#"{"gz":"aGVsbG8=","v":1}"#, "does not decompress"),
            (r#"{"gz":"AAAA""#, "is not valid"),
        ];
        for (body, want) in cases {
            let e = open_held(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        // A small envelope that would open to more than the guard allows.
        use base64::Engine;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; MAX_OPENED_BYTES + 1]).unwrap();
        let bomb = format!(
            r#"{{"gz":"{}","v":1}}"#,
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        );
        assert!(bomb.len() < 100_000);
        assert!(matches!(open_held(&bomb), Err(HeldError::TooLarge)));
    }
}
