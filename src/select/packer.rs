//! Packing the records of one stream into messages, each message's records delivered close
//! together in time.

use crate::deliver::message::MessagePacker;
use crate::time::{MS_PER_HOUR, MS_PER_MINUTE};

/// When CloudTrail delivers a record after its call, on average: "CloudTrail typically
/// delivers logs within an average of about 15 minutes of an API call" (CloudTrail User Guide,
/// "How CloudTrail works"). A record's delivery time when its object's name carries no delivery
/// stamp is its `eventTime` plus this.
pub const TYPICAL_DELIVERY_DELAY_MS: i64 = 15 * MS_PER_MINUTE;

/// The records of one message were delivered within this span of each other, so that the
/// deliver stage, putting them at about the time the newest arrived, puts every one of them
/// at a time CloudWatch Logs accepts it (within 14 days of its timestamp), whatever stretch
/// of time the input covers. An hour keeps a short replay's messages as full as before.
pub const MESSAGE_DELIVERY_SPAN_MS: i64 = MS_PER_HOUR;

/// A message completed by a packer, and when the newest of its records was delivered.
pub(super) struct Packed {
    pub body: String,
    pub delivered_ms: i64,
}

/// One stream's packer, and the delivery times of the records of the message it fills.
pub(super) struct StreamPacker {
    pub stream: String,
    packer: MessagePacker,
    /// Oldest and newest delivery time of the records in the message being filled.
    delivered: Option<(i64, i64)>,
}

impl StreamPacker {
    pub fn new(stream: &str, max_message_bytes: usize) -> Self {
        StreamPacker {
            stream: stream.to_owned(),
            packer: MessagePacker::new(stream, max_message_bytes),
            delivered: None,
        }
    }

    /// The largest record that fits in a message of its own.
    pub fn max_record_bytes(&self) -> usize {
        self.packer.max_record_bytes()
    }

    /// Adds a record delivered at `delivered_ms`; returns the message it completes: the
    /// current one, when the record fits in it by neither size nor delivery time.
    pub fn push(&mut self, raw: &str, delivered_ms: i64) -> Option<Packed> {
        let filling = self.delivered;
        let too_far_apart = filling.is_some_and(|(oldest, newest)| {
            newest.max(delivered_ms) - oldest.min(delivered_ms) > MESSAGE_DELIVERY_SPAN_MS
        });
        let completed = if too_far_apart {
            self.packer.take()
        } else {
            self.packer.push(raw)
        };
        if too_far_apart {
            self.packer.push(raw);
        }
        if completed.is_some() {
            self.delivered = None;
        }
        self.delivered = Some(match self.delivered {
            Some((oldest, newest)) => (oldest.min(delivered_ms), newest.max(delivered_ms)),
            None => (delivered_ms, delivered_ms),
        });
        completed.map(|body| Packed {
            body,
            delivered_ms: filling.map_or(delivered_ms, |(_, newest)| newest),
        })
    }

    /// The message being filled, if it has records.
    pub fn take(&mut self) -> Option<Packed> {
        let (_, newest) = self.delivered.take()?;
        self.packer.take().map(|body| Packed {
            body,
            delivered_ms: newest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::DeliveryMessage;

    fn records(body: &str) -> usize {
        DeliveryMessage::parse(body).unwrap().records.len()
    }

    #[test]
    fn a_message_holds_records_delivered_within_the_span_only() {
        let mut packer = StreamPacker::new("1_CloudTrail_r", 256 * 1024);
        let hour = MESSAGE_DELIVERY_SPAN_MS;
        assert!(packer.push("{}", 10 * hour).is_none());
        assert!(packer.push("{}", 10 * hour + hour / 2).is_none());
        // Out of order but inside the span: the span grows backwards.
        assert!(packer.push("{}", 10 * hour - hour / 2).is_none());
        let completed = packer
            .push("{}", 11 * hour)
            .expect("too far from the oldest");
        assert_eq!(records(&completed.body), 3);
        assert_eq!(completed.delivered_ms, 10 * hour + hour / 2);
        let last = packer.take().expect("the record that did not fit");
        assert_eq!((records(&last.body), last.delivered_ms), (1, 11 * hour));
        assert!(packer.take().is_none());
    }

    #[test]
    fn a_full_message_is_completed_by_size_with_its_own_newest_time() {
        let mut packer = StreamPacker::new("1_CloudTrail_r", 1000);
        let record = format!("{{\"x\":\"{}\"}}", "a".repeat(300));
        let mut completed = Vec::new();
        for t in 0..10 {
            completed.extend(packer.push(&record, t));
        }
        assert!(!completed.is_empty());
        let first = &completed[0];
        assert_eq!(first.delivered_ms, records(&first.body) as i64 - 1);
    }
}
