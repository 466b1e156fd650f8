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

/// Where the records of a call that is not full go to wait for more of their stream: back to
/// the delivery queue, in new messages saying since when they have been held back.
///
/// An invocation sees a few messages of each stream (Lambda hands it at most 6 MB), so the
/// last call of every stream would be partly filled. Holding those records back until a later
/// invocation brings more of the stream fills the calls: PutLogEvents calls near the fewest
/// the whole input allows. The price is an SQS round trip for the held records (and, with a
/// ledger, releasing their claims and claiming them again) and their latency: a tail is held
/// again only while records seen for the first time, or held at different times, join it,
/// and never beyond `max_wait_ms`.
///
/// Nothing is lost: the claims of held records are released only after the new messages are
/// sent; if sending fails the records are put at once; if releasing fails their messages come
/// back (the held copies find the claims taken and drop them).
pub trait Carrier {
    /// How long a record may be held back for a fuller call, counted from when it was first
    /// held back; 0 holds nothing back.
    fn max_wait_ms(&self) -> i64;

    /// Sends the bodies to the delivery queue; an error when any of them may not have been sent.
    fn send(&self, bodies: Vec<String>) -> impl Future<Output = Result<(), String>> + Send;
}

/// Holds nothing back: every call is put in the invocation that planned it.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCarry;

impl Carrier for NoCarry {
    fn max_wait_ms(&self) -> i64 {
        0
    }

    async fn send(&self, _bodies: Vec<String>) -> Result<(), String> {
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
    /// Records sent back to the queue to wait for a fuller call, and the messages that carry them.
    pub held_back: usize,
    pub held_back_messages: usize,
    /// Why records could not be held back (they were put at once instead).
    pub hold_back_error: Option<String>,
    /// Streams whose held-back records had waited long enough to be put in a call that is not
    /// full.
    pub waited_out: usize,
    /// Streams whose held-back records came back with nothing new to join them: put in calls
    /// that are not full.
    pub came_back_alone: usize,
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
