//! Sending messages between stages with SQS, in batches, with nothing left unsent silently.

use std::time::Duration;

use aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use trailwatch::deliver::limits::{PACKED_MESSAGE_BYTES, SQS_MAX_BATCH_MESSAGES};
use trailwatch::retry::RetryPolicy;

use crate::{describe, is_transient};

/// Attempts for a batch (its entries SQS reports as failed inside a successful call, or the whole
/// call when it fails transiently after the SDK's own retries), with full-jitter backoff.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
};

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} messages could not be sent to {queue}: {reason}")]
pub struct SendError {
    pub queue: String,
    pub failed: usize,
    pub total: usize,
    pub reason: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

#[derive(Clone)]
pub struct SqsSender {
    client: Client,
}

/// What a send did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub calls: usize,
    pub retries: usize,
}

impl SqsSender {
    pub fn new(client: Client) -> Self {
        SqsSender { client }
    }

    /// Sends every body to the standard queue `queue_url` with SendMessageBatch (≤ 10 messages
    /// and ≤ 256 KiB a call, a larger body alone), retrying entries SQS reports as failed.
    /// Errors only if some body is not sent.
    pub async fn send_all(
        &self,
        queue_url: &str,
        bodies: &[String],
    ) -> Result<SendStats, SendError> {
        self.send(queue_url, bodies, |entry, _| entry).await
    }

    /// Sends each `(group, body)` to the FIFO queue `queue_url`, in message group `group`, as
    /// [`SqsSender::send_all`] sends. Each message gets a random deduplication id of its own,
    /// kept when its send is retried: a retry whose first attempt landed (its answer lost)
    /// is dropped by SQS as a duplicate, while the same body sent again later (records held
    /// again unchanged) is a new message, as it must be.
    pub async fn send_grouped(
        &self,
        queue_url: &str,
        messages: &[(String, String)],
    ) -> Result<SendStats, SendError> {
        let dedup: Vec<String> = messages
            .iter()
            .map(|_| format!("{:032x}", fastrand::u128(..)))
            .collect();
        let bodies: Vec<&str> = messages.iter().map(|(_, body)| body.as_str()).collect();
        self.send(queue_url, &bodies, |entry, i| {
            entry
                .message_group_id(&messages[i].0)
                .message_deduplication_id(&dedup[i])
        })
        .await
    }

    /// Makes received messages invisible for the given seconds each (ChangeMessageVisibility,
    /// ≤ 10 a call). Returns how many could not be changed (they come back when their
    /// visibility timeout ends instead) and the first reason.
    pub async fn hide(&self, queue_url: &str, receipts: &[(&str, i32)]) -> (usize, Option<String>) {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        let (mut failed, mut reason) = (0, None);
        for chunk in receipts.chunks(SQS_MAX_BATCH_MESSAGES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (receipt, seconds))| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .visibility_timeout(*seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            match self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    failed += output.failed().len();
                    if let Some(f) = output.failed().first() {
                        reason.get_or_insert(format!(
                            "{}: {}",
                            f.code(),
                            f.message().unwrap_or("")
                        ));
                    }
                }
                Err(e) => {
                    failed += chunk.len();
                    reason.get_or_insert(describe(&e));
                }
            }
        }
        (failed, reason)
    }

    async fn send<B: AsRef<str>>(
        &self,
        queue_url: &str,
        bodies: &[B],
        entry: impl Fn(EntryBuilder, usize) -> EntryBuilder,
    ) -> Result<SendStats, SendError> {
        let mut stats = SendStats::default();
        let refused = |failed, reason, source| SendError {
            queue: queue_url.to_owned(),
            failed,
            total: bodies.len(),
            reason,
            source,
        };
        for group in batches(bodies) {
            let mut pending: Vec<usize> = group;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                stats.calls += 1;
                let reason = match self.call(queue_url, bodies, &pending, &entry).await {
                    Call::Again(again, reason) => {
                        pending = again;
                        reason
                    }
                    Call::Refused(failed, reason, source) => {
                        return Err(refused(failed, reason, source))
                    }
                };
                if pending.is_empty() {
                    break;
                }
                if !RETRY.allows_after(attempt) {
                    return Err(refused(pending.len(), reason, None));
                }
                stats.retries += 1;
                tokio::time::sleep(RETRY.delay(attempt)).await;
            }
        }
        Ok(stats)
    }

    /// One SendMessageBatch call of the `pending` bodies.
    async fn call<B: AsRef<str>>(
        &self,
        queue_url: &str,
        bodies: &[B],
        pending: &[usize],
        entry: &impl Fn(EntryBuilder, usize) -> EntryBuilder,
    ) -> Call {
        let entries: Vec<SendMessageBatchRequestEntry> = pending
            .iter()
            .map(|&i| {
                let builder = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(bodies[i].as_ref());
                entry(builder, i).build().expect("id and body are set")
            })
            .collect();
        let sent = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(output) => {
                let (mut again, mut reason) = (Vec::new(), String::new());
                for f in output.failed() {
                    let why = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                    if f.sender_fault() {
                        return Call::Refused(output.failed().len(), why, None);
                    }
                    again.extend(f.id().parse::<usize>().ok());
                    if reason.is_empty() {
                        reason = why;
                    }
                }
                Call::Again(again, reason)
            }
            // The SDK already retried throttling and transient faults; a call that still
            // fails transiently is tried again here, so that one unlucky send does not fail
            // a message whose log file took many sends (the whole file would be read again).
            Err(e) if is_transient(&e) => Call::Again(pending.to_vec(), describe(&e)),
            Err(e) => Call::Refused(pending.len(), describe(&e), Some(Box::new(e))),
        }
    }
}

type EntryBuilder = SendMessageBatchRequestEntryBuilder;

/// What one SendMessageBatch call left to do.
enum Call {
    /// The entries to send again (SQS failed them, or the whole call failed transiently; none
    /// when all were sent), and the first reason.
    Again(Vec<usize>, String),
    /// A failure sending again cannot fix: how many entries, why, and the SDK's error.
    Refused(usize, String, Option<BoxError>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Groups bodies (by index) into SendMessageBatch calls within the count and size limits.
fn batches<B: AsRef<str>>(bodies: &[B]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        let body = body.as_ref();
        let full =
            current.len() == SQS_MAX_BATCH_MESSAGES || bytes + body.len() > PACKED_MESSAGE_BYTES;
        if full && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += body.len();
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_obey_count_and_size_limits() {
        // Every body fits one message (the packer guarantees it); calls never carry an empty batch.
        let bodies: Vec<String> = (0..25)
            .map(|i| "x".repeat(1 + (i * 37_000) % PACKED_MESSAGE_BYTES))
            .collect();
        let groups = batches(&bodies);
        let mut seen: Vec<usize> = Vec::new();
        for g in &groups {
            assert!(!g.is_empty() && g.len() <= SQS_MAX_BATCH_MESSAGES);
            assert!(g.iter().map(|&i| bodies[i].len()).sum::<usize>() <= PACKED_MESSAGE_BYTES);
            seen.extend(g.iter().copied());
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }
}
