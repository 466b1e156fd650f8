//! Every AWS limit delivery obeys, as a named constant with where it comes from.

use crate::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};

/// PutLogEvents: at most 10,000 events per call (InputLogEvents max 10000).
pub const PUT_LOG_EVENTS_MAX_EVENTS: usize = 10_000;
/// PutLogEvents: at most 1,048,576 bytes per call, counting message bytes + 26 per event.
pub const PUT_LOG_EVENTS_MAX_BYTES: usize = 1_048_576;
/// PutLogEvents: the per-event overhead counted against the batch size.
pub const PUT_LOG_EVENTS_EVENT_OVERHEAD: usize = 26;
/// PutLogEvents: the events of one call may not span more than 24 hours.
pub const PUT_LOG_EVENTS_MAX_SPAN_MS: i64 = 24 * MS_PER_HOUR;
/// PutLogEvents: events more than 14 days old are rejected.
pub const PUT_LOG_EVENTS_MAX_AGE_MS: i64 = 14 * MS_PER_DAY;
/// PutLogEvents: events more than 2 hours in the future are rejected.
pub const PUT_LOG_EVENTS_MAX_FUTURE_MS: i64 = 2 * MS_PER_HOUR;
/// How far beyond those 2 hours a record is still tried again later rather than set aside:
/// 15 minutes, half a delivery message's retry life in the stack (5 receives, 365 s apart),
/// so that a record this far ahead is accepted while its message still comes back. One
/// further ahead would only wait for the dead-letter queue.
pub const FUTURE_TOLERANCE_MS: i64 = 15 * MS_PER_MINUTE;
/// CloudWatch Logs: one event is at most 1 MB ("Each log event can be no larger than 1 MB",
/// PutLogEvents API reference, https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html;
/// 256 KB until mid-2025). CloudTrail itself sends nothing over 256 KB to CloudWatch Logs;
/// trailwatch delivers records up to this limit whole and a stub only for larger ones.
pub const CWL_MAX_EVENT_BYTES: usize = 1_048_576;
/// CloudTrail's own limit for events it sends to CloudWatch Logs (larger ones it drops).
pub const CLOUDTRAIL_CWL_MAX_EVENT_BYTES: usize = 256 * 1024;
/// SQS: a message body is at most 1 MiB since August 2025
/// (https://aws.amazon.com/about-aws/whats-new/2025/08/amazon-sqs-max-payload-size-1mib/; the
/// queue's `MaximumMessageSize`). Only a record too large for a packed message travels in a
/// message this large, alone.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;
/// What trailwatch packs a message between stages to, and sends per SendMessageBatch call:
/// 256 KiB, a quarter of a PutLogEvents call (and SQS's limit until August 2025).
pub const PACKED_MESSAGE_BYTES: usize = 262_144;
/// SQS: SendMessageBatch takes at most 10 messages.
pub const SQS_MAX_BATCH_MESSAGES: usize = 10;
/// CloudWatch Logs: the retention values PutRetentionPolicy accepts.
pub const CWL_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// CloudWatch Logs: stream names are 1–512 characters without ':' or '*'.
pub const CWL_MAX_STREAM_NAME: usize = 512;

/// The limits a batch plan obeys; production values by default, tiny ones in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub event_overhead: usize,
    pub max_span_ms: i64,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_events: PUT_LOG_EVENTS_MAX_EVENTS,
            max_bytes: PUT_LOG_EVENTS_MAX_BYTES,
            event_overhead: PUT_LOG_EVENTS_EVENT_OVERHEAD,
            max_span_ms: PUT_LOG_EVENTS_MAX_SPAN_MS,
        }
    }
}

/// Whether `days` is a retention CloudWatch Logs accepts.
pub fn is_valid_retention(days: u32) -> bool {
    CWL_RETENTION_DAYS.contains(&days)
}
