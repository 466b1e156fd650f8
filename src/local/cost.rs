//! The AWS calls the deployed pipeline would make for what a replay did, counted as the
//! functions make them and as AWS bills them: one GetObject per log file, SendMessageBatch
//! calls grouped as `trailwatch_aws::sqs` groups them, PutLogEvents calls from the deliver
//! planner, the dedup ledger's conditional PutItem per delivered record
//! (`src/deliver/ledger.rs`), PutEvents calls and entries for Insights records.

use crate::deliver::limits::{PACKED_MESSAGE_BYTES, SQS_MAX_BATCH_MESSAGES};
use crate::select::{Destination, Outgoing};

/// SQS bills every 64 KB chunk of a request's payload as one request.
pub const SQS_BILLING_CHUNK_BYTES: usize = 64 * 1024;
/// EventBridge bills every 64 KB chunk of an entry as one event.
pub const PUT_EVENTS_BILLING_CHUNK_BYTES: usize = 64 * 1024;

/// The AWS calls the deployed pipeline would have made for the same input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AwsCalls {
    /// S3 GetObject: one per log file the select function reads (digests are not read).
    pub s3_get_object: usize,
    /// SQS SendMessageBatch calls (≤ 10 messages, ≤ 256 KiB each), both queues.
    pub sqs_send_message_batch: usize,
    pub sqs_messages: usize,
    /// SQS requests as billed: every 64 KB chunk of a call's payload counts as one.
    pub sqs_billed_requests: usize,
    pub put_log_events: usize,
    /// Events accepted by the log group.
    pub cwl_events: usize,
    /// Bytes ingested by CloudWatch Logs: message bytes + 26 per event.
    pub cwl_ingested_bytes: u64,
    /// The deliver function's dedup ledger: one conditional PutItem per delivered record with
    /// an eventID (its claim), plus confirms of records whose message goes back to SQS.
    pub dynamodb_put_item: usize,
    pub put_events_calls: usize,
    pub put_events_entries: usize,
    /// EventBridge events as billed: every 64 KB chunk of an entry counts as one.
    pub put_events_billed: usize,
}

impl AwsCalls {
    /// Counts the SendMessageBatch calls a function makes to send `messages` (each queue's
    /// messages grouped as `trailwatch_aws::sqs` groups them).
    pub fn count_sends(&mut self, messages: &[Outgoing]) {
        // Detections travel on the Insights queue, with the Insights records.
        let delivery = |m: &&Outgoing| m.destination == Destination::Delivery;
        for to_delivery in [true, false] {
            let sizes: Vec<usize> = messages
                .iter()
                .filter(|m| delivery(m) == to_delivery)
                .map(|m| m.body.len())
                .collect();
            self.sqs_messages += sizes.len();
            for payload in send_message_batch_payloads(&sizes) {
                self.sqs_send_message_batch += 1;
                self.sqs_billed_requests += payload.div_ceil(SQS_BILLING_CHUNK_BYTES).max(1);
            }
        }
    }

    /// Counts one PutEvents call's entries, of these sizes, as billed.
    pub fn count_put_events_entries(&mut self, sizes: impl IntoIterator<Item = usize>) {
        for size in sizes {
            self.put_events_entries += 1;
            self.put_events_billed += size.div_ceil(PUT_EVENTS_BILLING_CHUNK_BYTES).max(1);
        }
    }
}

/// The payload bytes of each SendMessageBatch call for messages of these sizes, in order: at
/// most [`SQS_MAX_BATCH_MESSAGES`] messages and [`PACKED_MESSAGE_BYTES`] per call.
pub fn send_message_batch_payloads(sizes: &[usize]) -> Vec<usize> {
    let mut calls = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for &size in sizes {
        if count > 0 && (count == SQS_MAX_BATCH_MESSAGES || bytes + size > PACKED_MESSAGE_BYTES) {
            calls.push(bytes);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size;
    }
    if count > 0 {
        calls.push(bytes);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_message_batch_calls_obey_the_count_and_size_limits() {
        assert_eq!(send_message_batch_payloads(&[]), Vec::<usize>::new());
        assert_eq!(send_message_batch_payloads(&[10; 25]), [100, 100, 50]);
        assert_eq!(
            send_message_batch_payloads(&[200_000, 100_000, 62_144]),
            [200_000, 162_144]
        );
    }

    #[test]
    fn each_queue_is_sent_to_in_its_own_calls_and_billed_by_64_kb() {
        let message = |destination, len| Outgoing {
            destination,
            body: "x".repeat(len),
            delivered_ms: 0,
        };
        let mut calls = AwsCalls::default();
        calls.count_sends(&[
            message(Destination::Delivery, 100_000),
            message(Destination::Insights, 10),
            message(Destination::Delivery, 10),
        ]);
        assert_eq!(calls.sqs_messages, 3);
        assert_eq!(calls.sqs_send_message_batch, 2);
        assert_eq!(calls.sqs_billed_requests, 2 + 1);
        calls.count_put_events_entries([10, 70_000]);
        assert_eq!((calls.put_events_entries, calls.put_events_billed), (2, 3));
    }
}
