//! The queues: finding them, peeking at a dead-letter queue, and moving its messages.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use thiserror::Error;

use super::Outcome;

/// SQS's largest batch (ReceiveMessage, SendMessageBatch, DeleteMessageBatch).
const BATCH: usize = 10;
/// How long a received message stays hidden while it is moved or listed. A listing keeps every
/// message hidden until it has seen them all (so none is counted twice), then shows them again.
const HIDE_SECONDS: i32 = 300;
/// Long polling asks every SQS server, so an empty answer means the queue is empty (of
/// visible messages).
const WAIT_SECONDS: i32 = 1;

/// An SQS call that failed, named.
#[derive(Debug, Error)]
pub enum SqsError {
    #[error("queue {queue}: {operation}")]
    Call {
        queue: String,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("queue {0} is the dead-letter queue of no queue: give --to")]
    NoSource(String),
    #[error("queue {queue} is the dead-letter queue of {} queues ({}): give --to", sources.len(), sources.join(", "))]
    SeveralSources { queue: String, sources: Vec<String> },
    #[error("queue {from} is {} but {to} is not: a message group cannot be kept", if *from_fifo { "FIFO" } else { "standard" })]
    KindMismatch {
        from: String,
        to: String,
        from_fifo: bool,
    },
}

fn call<E>(queue: &Queue, operation: &'static str) -> impl FnOnce(SdkError<E>) -> SqsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    call_on(&queue.url, operation)
}

fn call_on<E>(queue: &str, operation: &'static str) -> impl FnOnce(SdkError<E>) -> SqsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let queue = queue.to_owned();
    move |e| SqsError::Call {
        queue,
        operation,
        source: Box::new(e),
    }
}

/// A queue and what redriving needs to know of it.
#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub name: String,
    pub fifo: bool,
    /// How long the queue keeps a message, in seconds.
    pub retention_seconds: i64,
    pub visible: i64,
    pub in_flight: i64,
}

pub struct Queues {
    client: aws_sdk_sqs::Client,
}

impl Queues {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Queues { client }
    }

    /// The queue named by `url_or_name`, with its attributes.
    pub async fn describe(&self, url_or_name: &str) -> Result<Queue, SqsError> {
        let url = if url_or_name.contains("://") {
            url_or_name.to_owned()
        } else {
            self.client
                .get_queue_url()
                .queue_name(url_or_name)
                .send()
                .await
                .map_err(call_on(url_or_name, "GetQueueUrl"))?
                .queue_url
                .unwrap_or_default()
        };
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(call_on(&url, "GetQueueAttributes"))?
            .attributes
            .unwrap_or_default();
        let number = |name: QueueAttributeName| -> i64 {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        Ok(Queue {
            name: url.rsplit('/').next().unwrap_or(&url).to_owned(),
            fifo: attributes
                .get(&QueueAttributeName::FifoQueue)
                .is_some_and(|v| v == "true"),
            retention_seconds: number(QueueAttributeName::MessageRetentionPeriod),
            visible: number(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            url,
        })
    }

    /// The one queue whose redrive policy names `dlq`.
    pub async fn source_of(&self, dlq: &Queue) -> Result<Queue, SqsError> {
        let sources = self
            .client
            .list_dead_letter_source_queues()
            .queue_url(&dlq.url)
            .send()
            .await
            .map_err(call(dlq, "ListDeadLetterSourceQueues"))?
            .queue_urls;
        match sources.as_slice() {
            [] => Err(SqsError::NoSource(dlq.name.clone())),
            [one] => self.describe(one).await,
            _ => Err(SqsError::SeveralSources {
                queue: dlq.name.clone(),
                sources,
            }),
        }
    }

    /// Up to `limit` messages, hidden for [`HIDE_SECONDS`]; none when the queue is empty.
    pub async fn receive(&self, queue: &Queue, limit: usize) -> Result<Vec<Message>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(limit.min(BATCH) as i32)
            .visibility_timeout(HIDE_SECONDS)
            .wait_time_seconds(WAIT_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(call(queue, "ReceiveMessage"))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Every message (up to `limit`), each once, then visible again as before.
    pub async fn peek(&self, queue: &Queue, limit: usize) -> Result<Vec<Message>, SqsError> {
        let mut seen = HashSet::new();
        let mut messages = Vec::new();
        while messages.len() < limit {
            let batch = self.receive(queue, limit - messages.len()).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if seen.insert(m.message_id.clone()) {
                    messages.push(m);
                }
            }
        }
        for m in &messages {
            if let Some(handle) = &m.receipt_handle {
                self.client
                    .change_message_visibility()
                    .queue_url(&queue.url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(call(queue, "ChangeMessageVisibility"))?;
            }
        }
        Ok(messages)
    }

    /// Moves up to `limit` messages from `from` to `to`; what could not be moved stays in
    /// `from` (visible again after [`HIDE_SECONDS`]) and is reported on `err`.
    pub async fn move_messages(
        &self,
        from: &Queue,
        to: &Queue,
        limit: usize,
        err: &mut dyn Write,
    ) -> Result<Outcome, SqsError> {
        if from.fifo != to.fifo {
            return Err(SqsError::KindMismatch {
                from: from.name.clone(),
                to: to.name.clone(),
                from_fifo: from.fifo,
            });
        }
        let mut outcome = Outcome::default();
        while outcome.received < limit {
            let batch = self.receive(from, limit - outcome.received).await?;
            if batch.is_empty() {
                break;
            }
            outcome.received += batch.len();
            let sent = self.send(to, &batch, err).await?;
            self.delete(from, sent.iter().map(|&i| &batch[i])).await?;
            outcome.redriven += sent.len();
            outcome.failed += batch.len() - sent.len();
        }
        Ok(outcome)
    }

    /// Sends copies of `batch` to `to`; returns the indexes of those it took.
    async fn send(
        &self,
        to: &Queue,
        batch: &[Message],
        err: &mut dyn Write,
    ) -> Result<Vec<usize>, SqsError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, m)| copy_of(i, m, to.fifo))
            .collect::<Vec<_>>();
        let out = self
            .client
            .send_message_batch()
            .queue_url(&to.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(call(to, "SendMessageBatch"))?;
        for failed in &out.failed {
            let _ = writeln!(
                err,
                "trailwatch redrive: message {} not sent to {}: {} {}",
                batch_message_id(batch, &failed.id),
                to.name,
                failed.code,
                failed.message.as_deref().unwrap_or("")
            );
        }
        Ok(out
            .successful
            .iter()
            .filter_map(|s| s.id.parse().ok())
            .collect())
    }

    /// Deletes `messages` (received from `queue`).
    pub async fn delete<'m>(
        &self,
        queue: &Queue,
        messages: impl Iterator<Item = &'m Message>,
    ) -> Result<(), SqsError> {
        let entries: Vec<_> = messages
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(call(queue, "DeleteMessageBatch"))?;
        // A message not deleted comes back after HIDE_SECONDS and is given back twice: the
        // stages take a message twice safely, and its copy is deduplicated on a FIFO queue.
        if let Some(failed) = out.failed.first() {
            return Err(SqsError::Call {
                queue: queue.url.clone(),
                operation: "DeleteMessageBatch",
                source: format!(
                    "{}: {}",
                    failed.code,
                    failed.message.as_deref().unwrap_or("")
                )
                .into(),
            });
        }
        Ok(())
    }
}

fn batch_message_id<'a>(batch: &'a [Message], entry_id: &str) -> &'a str {
    entry_id
        .parse::<usize>()
        .ok()
        .and_then(|i| batch.get(i))
        .and_then(|m| m.message_id.as_deref())
        .unwrap_or("?")
}

/// A new message with `m`'s body and message attributes; on a FIFO queue in `m`'s message
/// group, deduplicated by `m`'s id.
fn copy_of(index: usize, m: &Message, fifo: bool) -> SendMessageBatchRequestEntry {
    let system = m.attributes.as_ref();
    let group = system.and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId));
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(m.body.clone().unwrap_or_default())
        .set_message_attributes(m.message_attributes.clone().filter(|a| !a.is_empty()));
    if fifo {
        entry = entry
            .set_message_group_id(group.cloned())
            .message_deduplication_id(format!(
                "redrive-{}",
                m.message_id.as_deref().unwrap_or_default()
            ));
    }
    entry
        .build()
        .expect("the id and the body, all a batch entry requires, are set")
}

/// A message's system attribute as a number.
pub fn system_number(m: &Message, name: MessageSystemAttributeName) -> Option<i64> {
    m.attributes
        .as_ref()
        .and_then(|a: &HashMap<_, String>| a.get(&name))
        .and_then(|v| v.parse().ok())
}
