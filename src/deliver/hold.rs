//! Holding back: the records of a call that is not full wait in a queue for more of their
//! stream, in new messages saying since when they have been held back.
//!
//! An invocation sees a few messages of each stream (Lambda hands it at most 6 MB), so the
//! last call of every stream would be partly filled. Holding those records back until they
//! meet more of the stream fills the calls: PutLogEvents calls near the fewest the whole
//! input allows. In the stack the hold queue is a FIFO queue with one message group per stream:
//! a group is handed to one invocation at a time, so every tail of a stream, whichever
//! concurrent invocation held it back, meets the others there instead of each bouncing in a
//! different invocation. The price is an SQS round trip for the held records (and, with a
//! ledger, releasing their claims and claiming them again) and their latency, never beyond
//! [`Carrier::max_wait_ms`].
//!
//! Nothing is lost: the claims of held records are released *before* the new messages are
//! sent — released after, a new message received at once would find its records still
//! claimed and drop them, and the release would then leave nobody to deliver them. A failed
//! send brings the original messages back, to claim their records again (a copy that was sent
//! anyway and came first delivers them instead); a failed release holds nothing back: the
//! records are put at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use super::ledger::{Claim, DeliveredLedger};
use super::message::{seal_held, MessagePacker, DEFAULT_MESSAGE_BYTES};
use super::pending::{claim_of, Pending, Received, StreamPlan};
use super::report::DeliveryReport;

/// Why held records may not have reached the queue.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CarryError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl CarryError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        CarryError(source.into())
    }
}

/// Where the records of a call that is not full go to wait for more of their stream: the hold
/// queue (see the module comment).
pub trait Carrier {
    /// How long a record may be held back for a fuller call, counted from when it was first
    /// held back; 0 holds nothing back.
    fn max_wait_ms(&self) -> i64;

    /// Sends the messages to the hold queue; an error when any of them may not have been sent.
    fn send(&self, held: Vec<HeldMessage>) -> impl Future<Output = Result<(), CarryError>> + Send;

    /// Whether a held message that comes back alone — nothing else of its stream in the
    /// batch — may stay in the queue a while longer instead of being sent again (see
    /// [`DeliveryReport::kept`]). In a FIFO queue the rest of its message group then gathers
    /// behind it, and it comes back with all of it.
    fn keeps(&self) -> bool {
        false
    }
}

/// A message of one stream's held-back records: an envelope sealed by [`seal_held`] (or, when
/// its records do not compress, a plain message).
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

    async fn send(&self, _held: Vec<HeldMessage>) -> Result<(), CarryError> {
        Ok(())
    }
}

/// Leaves in the queue, a while longer, each held message that came back with nothing of its
/// stream to join it, while its records may still wait (see [`Carrier::keeps`]): its records
/// are neither claimed nor put, its message is retried, and its stream is dropped from this
/// run.
pub(crate) fn keep_lone_holds<C: Carrier>(
    carrier: &C,
    messages: &[Received<'_>],
    now_ms: i64,
    streams: &mut BTreeMap<String, Vec<Pending<'_>>>,
    report: &mut DeliveryReport,
) {
    let max_wait_ms = carrier.max_wait_ms();
    if !carrier.keeps() || max_wait_ms <= 0 {
        return;
    }
    streams.retain(|_, pending| {
        let owner = messages[pending[0].message].message_id;
        let alone = pending
            .iter()
            .all(|p| messages[p.message].message_id == owner);
        let since = pending
            .iter()
            .map(|p| messages[p.message].since)
            .min()
            .flatten();
        match since {
            Some(since) if alone && now_ms - since < max_wait_ms => {
                report.retry.insert(owner.to_owned());
                report
                    .kept
                    .insert(owner.to_owned(), since + max_wait_ms - now_ms);
                false
            }
            _ => true,
        }
    });
}

/// What holding back did.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Records of calls that are not full, held back.
    pub records: usize,
    /// Streams whose records had waited long enough: put in calls that are not full.
    pub waited_out: usize,
    pub messages: usize,
    pub released: usize,
    /// Records put at once because their claims could not be released.
    pub release_failed: usize,
    /// Messages whose records could not be sent to wait: they come back.
    pub unsent: BTreeSet<String>,
    pub error: Option<String>,
}

/// Holds back the batches that are not full, in streams whose records have not waited too
/// long, and the records that wait for another delivery: releases the claims of the former,
/// then sends them all to the hold queue. Without a queue to hold them in, the waiting
/// records' messages come back.
pub(crate) async fn hold_back<C: Carrier, L: DeliveredLedger>(
    carrier: &C,
    ledger: &L,
    messages: &[Received<'_>],
    now_ms: i64,
    planned: &mut [StreamPlan<'_, '_>],
) -> Held {
    let mut held = Held::default();
    let max_wait_ms = carrier.max_wait_ms();
    let mut bodies = Vec::new();
    for sp in planned.iter_mut() {
        let tail = if max_wait_ms > 0 {
            tail_to_hold(sp, messages, now_ms, max_wait_ms)
        } else {
            Vec::new()
        };
        if max_wait_ms > 0 && tail.is_empty() && sp.plan.full.iter().any(|full| !full) {
            held.waited_out += 1;
        }
        let waiting = max_wait_ms > 0 && !sp.waiting.is_empty();
        if let Some(sealed) = seal(sp, messages, &tail, waiting, now_ms) {
            held.records += tail
                .iter()
                .map(|&b| sp.plan.batches[b].len())
                .sum::<usize>();
            bodies.extend(sealed);
            sp.held = tail;
            sp.waiting_sent = waiting;
        }
        if !sp.waiting_sent {
            held.unsent.extend(
                sp.waiting_records()
                    .map(|p| messages[p.message].message_id.to_owned()),
            );
        }
    }
    if bodies.is_empty() {
        return held;
    }
    release_then_send(carrier, ledger, messages, planned, bodies, &mut held).await;
    held
}

/// The batches of a stream that are not full, unless its records have waited long enough
/// (then they are put now).
fn tail_to_hold(
    sp: &StreamPlan<'_, '_>,
    messages: &[Received<'_>],
    now_ms: i64,
    max_wait_ms: i64,
) -> Vec<usize> {
    let tail: Vec<usize> = (0..sp.plan.batches.len())
        .filter(|&b| !sp.plan.full[b])
        .collect();
    // Since when the tail's records have been waiting: the earliest hold, or now.
    let since = tail
        .iter()
        .flat_map(|&b| &sp.plan.batches[b])
        .filter_map(|&j| messages[sp.pending_of(j).message].since)
        .min()
        .unwrap_or(now_ms);
    if now_ms - since >= max_wait_ms {
        return Vec::new();
    }
    tail
}

/// Seals the records of the `tail` batches, and the waiting records when `waiting`, into held
/// messages; `None` when there is nothing to hold, or a record too large for a held message
/// (then nothing of the stream is held).
fn seal(
    sp: &StreamPlan<'_, '_>,
    messages: &[Received<'_>],
    tail: &[usize],
    waiting: bool,
    now_ms: i64,
) -> Option<Vec<HeldMessage>> {
    // Each record keeps the time it was first held (its message's, or now), so that records
    // joining older ones are not put early on their account; a waiting record starts anew.
    let mut records: Vec<(&str, i64)> = tail
        .iter()
        .flat_map(|&b| &sp.plan.batches[b])
        .map(|&j| {
            let p = sp.pending_of(j);
            (p.event.message, messages[p.message].since.unwrap_or(now_ms))
        })
        .collect();
    if waiting {
        records.extend(sp.waiting_records().map(|p| (p.event.message, now_ms)));
    }
    let packer = |first_held| {
        MessagePacker::waiting_since(sp.stream, DEFAULT_MESSAGE_BYTES, Some(first_held))
    };
    let max_record_bytes = packer(now_ms).max_record_bytes();
    if records.is_empty() || records.iter().any(|(raw, _)| raw.len() > max_record_bytes) {
        return None;
    }
    let mut packers: BTreeMap<i64, MessagePacker> = BTreeMap::new();
    let mut plain = Vec::new();
    for &(raw, first_held) in &records {
        plain.extend(
            packers
                .entry(first_held)
                .or_insert_with(|| packer(first_held))
                .push(raw),
        );
    }
    plain.extend(packers.values_mut().filter_map(MessagePacker::take));
    let sealed = seal_held(sp.stream, &plain, DEFAULT_MESSAGE_BYTES)
        .into_iter()
        .map(|body| HeldMessage {
            stream: sp.stream.to_owned(),
            body,
        })
        .collect();
    Some(sealed)
}

/// Releases the claims of the held records, then sends their messages. Released first: a new
/// message may be received, and claim its records, at once. If releasing fails nothing is
/// held back: the records are put now (still ours, or partly released: at worst doubled by a
/// copy that claimed them meanwhile), and the waiting records' messages come back.
async fn release_then_send<C: Carrier, L: DeliveredLedger>(
    carrier: &C,
    ledger: &L,
    messages: &[Received<'_>],
    planned: &mut [StreamPlan<'_, '_>],
    bodies: Vec<HeldMessage>,
    held: &mut Held,
) {
    let claims: Vec<Claim<'_>> = planned
        .iter()
        .flat_map(|sp| {
            sp.held_records()
                .filter(|p| p.event.event_id.is_some())
                .map(|p| claim_of(sp.stream, messages, p))
        })
        .collect();
    if let Err(e) = ledger.release(&claims).await {
        held.error = Some(format!("releasing their claims failed: {e}"));
        held.release_failed = claims.len();
        for sp in planned.iter_mut() {
            sp.held.clear();
        }
        give_up(messages, planned, held);
        return;
    }
    held.released = claims.len();
    let sent = bodies.len();
    if let Err(e) = carrier.send(bodies).await {
        // Neither put nor surely sent: their messages come back and claim them again (a copy
        // that was sent and came first delivers them instead).
        held.error = Some(format!("sending them to the queue failed: {e}"));
        held.unsent.extend(planned.iter().flat_map(|sp| {
            sp.held_records()
                .map(|p| messages[p.message].message_id.to_owned())
        }));
        give_up(messages, planned, held);
        return;
    }
    held.messages = sent;
}

/// Nothing was sent to wait after all: the waiting records' messages come back.
fn give_up(messages: &[Received<'_>], planned: &mut [StreamPlan<'_, '_>], held: &mut Held) {
    held.records = 0;
    for sp in planned.iter_mut().filter(|sp| sp.waiting_sent) {
        held.unsent.extend(
            sp.waiting_records()
                .map(|p| messages[p.message].message_id.to_owned()),
        );
        sp.waiting_sent = false;
    }
}
