//! Deliver: selected records into a CloudWatch Logs log group, one stream per account and
//! region, within every PutLogEvents limit, with nothing lost.
//!
//! [`deliver_messages`] takes the messages of one invocation, plans batches per stream
//! ([`plan`]), writes them through a [`LogSink`] (holding calls that are not full back for
//! more records when given a [`Carrier`]), and reports which messages must come back (a batch
//! that was not confirmed, an event that may be accepted later) and which records were set
//! aside for good, with the reason.

pub mod ledger;
pub mod limits;
pub mod message;
pub mod plan;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

pub use ledger::{
    deliver_messages_once, Claim, ClaimOutcome, DeliveredLedger, InvocationOnly, LedgerReport,
    MemoryLedger,
};
pub use limits::BatchLimits;
pub use message::{DeliveryMessage, MessagePacker, RecordLocation};
pub use plan::{plan_batches, LogEvent, Plan, Rejection};
pub use stream::stream_name;

/// What CloudWatch Logs reported as not accepted in a successful call, with exclusive end
/// indices into the batch (`tooOldLogEventEndIndex` and `expiredLogEventEndIndex` are exclusive
/// ends, `tooNewLogEventStartIndex` an inclusive start). Adapters normalise to this.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectedRanges {
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
    pub expired_end: Option<usize>,
}

impl RejectedRanges {
    /// The rejection of the event at `index` of the batch, if any.
    pub fn of(&self, index: usize) -> Option<Rejection> {
        if self.too_old_end.is_some_and(|end| index < end) {
            Some(Rejection::TooOld)
        } else if self.expired_end.is_some_and(|end| index < end) {
            Some(Rejection::Expired)
        } else if self.too_new_start.is_some_and(|start| index >= start) {
            Some(Rejection::TooNew)
        } else {
            None
        }
    }
}

/// A failed write, and whether trying again could succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub retryable: bool,
    pub message: String,
}

/// Where delivered events go: CloudWatch Logs in Lambda, files in the local CLI.
pub trait LogSink {
    /// Writes one planned batch (sorted, within limits) to `stream`, creating the group and
    /// stream when missing.
    fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> impl Future<Output = Result<RejectedRanges, SinkError>> + Send;
}

/// A message received by the deliver stage.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub id: &'a str,
    pub body: &'a str,
}

/// Where the records of a call that is not full go to wait for more of their stream: to a
/// queue of held records, in new messages saying since when they have been held back.
///
/// An invocation sees a few messages of each stream (Lambda hands it at most 6 MB), so the
/// last call of every stream would be partly filled. Holding those records back until they
/// meet more of the stream fills the calls: PutLogEvents calls near the fewest the whole
/// input allows. In the stack the hold queue is a FIFO queue with one message group per stream:
/// a group is handed to one invocation at a time, so every tail of a stream, whichever
/// concurrent invocation held it back, meets the others there instead of each bouncing in a
/// different invocation. The price is an SQS round trip for the held records (and, with a
/// ledger, releasing their claims and claiming them again) and their latency, never beyond
/// `max_wait_ms`.
///
/// Nothing is lost: the claims of held records are released before the new messages are
/// sent (see `deliver::ledger`); if sending fails their messages come back, if releasing fails
/// the records are put at once.
pub trait Carrier {
    /// How long a record may be held back for a fuller call, counted from when it was first
    /// held back; 0 holds nothing back.
    fn max_wait_ms(&self) -> i64;

    /// Sends the messages to the hold queue; an error when any of them may not have been sent.
    fn send(&self, held: Vec<HeldMessage>) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether a held message that comes back alone — nothing else of its stream in the
    /// batch — may stay in the queue a while longer instead of being sent again (see
    /// [`DeliveryReport::kept`]). In a FIFO queue the rest of its message group then gathers
    /// behind it, and it comes back with all of it.
    fn keeps(&self) -> bool {
        false
    }
}

/// A message of one stream's held-back records: an envelope sealed by
/// [`message::seal_held`] (or, when its records do not compress, a plain message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// The stream of its records (the message group in a FIFO hold queue).
    pub stream: String,
    pub body: String,
}

/// Holds nothing back: every call is put in the invocation that planned it.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCarry;

impl Carrier for NoCarry {
    fn max_wait_ms(&self) -> i64 {
        0
    }

    async fn send(&self, _held: Vec<HeldMessage>) -> Result<(), String> {
        Ok(())
    }
}

/// A record or message set aside for good, with why and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub message_id: String,
    /// Index of the record in the message, when the problem is one record.
    pub record_index: Option<usize>,
    pub event_id: Option<String>,
    pub reason: String,
}

/// What one delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages SQS must redeliver (batch-item failures).
    pub retry: BTreeSet<String>,
    pub set_aside: Vec<SetAside>,
    pub records_received: usize,
    pub delivered: usize,
    pub delivered_per_stream: BTreeMap<String, usize>,
    pub duplicates: usize,
    /// Records sent to the hold queue to wait for a fuller call, and the messages that carry
    /// them.
    pub held_back: usize,
    pub held_back_messages: usize,
    /// Why records could not be held back (put at once when their claims could not be
    /// released; their messages come back when they could not be sent).
    pub hold_back_error: Option<String>,
    /// Streams whose held-back records had waited long enough to be put in a call that is not
    /// full.
    pub waited_out: usize,
    /// Held messages that came back alone and stay in the queue a while longer (also in
    /// `retry`), with how long their records may still wait, ms: the caller makes each
    /// invisible again for at most that long.
    pub kept: BTreeMap<String, i64>,
    pub put_calls: usize,
    /// Calls put that are not full (the last of a stream, or closed by the 24-hour span).
    pub partial_calls: usize,
    pub failed_calls: usize,
    /// Rejections by reason (before the call and as reported by CloudWatch Logs).
    pub rejected: BTreeMap<&'static str, usize>,
}

struct Pending<'a> {
    message: usize,
    record_index: usize,
    event: LogEvent<'a>,
}

/// Delivers the records of `messages`, planning with `limits` at time `now_ms`, with repeated
/// eventIDs dropped within this invocation; [`ledger::deliver_messages_once`] with a ledger
/// drops them across invocations and retries too.
pub async fn deliver_messages<S: LogSink>(
    sink: &S,
    messages: &[Inbound<'_>],
    now_ms: i64,
    retention_days: Option<u32>,
    limits: &BatchLimits,
) -> DeliveryReport {
    let once = ledger::deliver_messages_once(
        sink,
        &ledger::InvocationOnly,
        &NoCarry,
        messages,
        now_ms,
        retention_days,
        limits,
    );
    once.await.0
}

fn reject(report: &mut DeliveryReport, messages: &[Inbound<'_>], p: &Pending<'_>, why: Rejection) {
    *report.rejected.entry(why.as_str()).or_default() += 1;
    let id = messages[p.message].id;
    if why.is_retryable() {
        report.retry.insert(id.to_owned());
    } else {
        set_aside(
            report,
            id,
            p.record_index,
            p.event.event_id,
            format!("CloudWatch Logs does not accept it: {}", why.as_str()),
        );
    }
}

fn set_aside(
    report: &mut DeliveryReport,
    message_id: &str,
    record_index: usize,
    event_id: Option<&str>,
    reason: impl ToString,
) {
    report.set_aside.push(SetAside {
        message_id: message_id.to_owned(),
        record_index: Some(record_index),
        event_id: event_id.map(str::to_owned),
        reason: reason.to_string(),
    });
}
