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
use super::pending::{claim_of, Inbound, Pending, StreamPlan};
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
    messages: &[Inbound<'_>],
    held_since: &[Option<i64>],
    now_ms: i64,
    streams: &mut BTreeMap<String, Vec<Pending<'_>>>,
    report: &mut DeliveryReport,
) {
    let max_wait_ms = carrier.max_wait_ms();
    if !carrier.keeps() || max_wait_ms <= 0 {
        return;
    }
    streams.retain(|_, pending| {
        let owner = messages[pending[0].message].id;
        let alone = pending.iter().all(|p| messages[p.message].id == owner);
        let since = pending
            .iter()
            .map(|p| held_since[p.message])
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
    pub records: usize,
    /// Streams whose records had waited long enough: put in calls that are not full.
    pub waited_out: usize,
    pub messages: usize,
    pub released: usize,
    /// Records put at once because their claims could not be released.
    pub release_failed: usize,
    /// Messages of held records that could not be sent: they come back.
    pub unsent: BTreeSet<String>,
    pub error: Option<String>,
}

/// Holds back the batches that are not full, in streams whose records have not waited too
/// long: releases their claims, then sends them to the hold queue.
pub(crate) async fn hold_back<C: Carrier, L: DeliveredLedger>(
    carrier: &C,
    ledger: &L,
    messages: &[Inbound<'_>],
    held_since: &[Option<i64>],
    now_ms: i64,
    planned: &mut [StreamPlan<'_, '_>],
) -> Held {
    let mut held = Held::default();
    let max_wait_ms = carrier.max_wait_ms();
    if max_wait_ms <= 0 {
        return held;
    }
    let mut bodies = Vec::new();
    for sp in planned.iter_mut() {
        match seal_tail(sp, held_since, now_ms, max_wait_ms) {
            Tail::None => {}
            Tail::WaitedOut => held.waited_out += 1,
            Tail::Sealed(sealed, records) => {
                bodies.extend(sealed);
                held.records += records;
            }
        }
    }
    if bodies.is_empty() {
        return held;
    }
    release_then_send(carrier, ledger, messages, planned, bodies, &mut held).await;
    held
}

/// What became of a stream's batches that are not full.
enum Tail {
    /// Every batch is full, or a record is too large for a held message: nothing held.
    None,
    /// Its records have waited long enough: put now.
    WaitedOut,
    /// Held: the messages that carry them, and how many records.
    Sealed(Vec<HeldMessage>, usize),
}

/// Seals the records of a stream's batches that are not full into held messages, and marks
/// those batches held.
fn seal_tail(
    sp: &mut StreamPlan<'_, '_>,
    held_since: &[Option<i64>],
    now_ms: i64,
    max_wait_ms: i64,
) -> Tail {
    let tail: Vec<usize> = (0..sp.plan.batches.len())
        .filter(|&b| !sp.plan.full[b])
        .collect();
    if tail.is_empty() {
        return Tail::None;
    }
    let records: Vec<(&str, usize)> = tail
        .iter()
        .flat_map(|&b| &sp.plan.batches[b])
        .map(|&j| (sp.fresh_events[j].message, sp.pending_of(j).message))
        .collect();
    // Since when the tail's records have been waiting: the earliest hold, or now.
    let since = records
        .iter()
        .filter_map(|&(_, m)| held_since[m])
        .min()
        .unwrap_or(now_ms);
    if now_ms - since >= max_wait_ms {
        return Tail::WaitedOut;
    }
    // Each record keeps the time it was first held (its message's, or now), so that records
    // joining older ones are not put early on their account.
    let packer = |first_held| {
        MessagePacker::waiting_since(sp.stream, DEFAULT_MESSAGE_BYTES, Some(first_held))
    };
    let max_record_bytes = packer(since).max_record_bytes();
    if records.iter().any(|(raw, _)| raw.len() > max_record_bytes) {
        return Tail::None;
    }
    let mut packers: BTreeMap<i64, MessagePacker> = BTreeMap::new();
    let mut plain = Vec::new();
    for &(raw, m) in &records {
        let first_held = held_since[m].unwrap_or(now_ms);
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
    sp.held = tail;
    Tail::Sealed(sealed, records.len())
}

/// Releases the claims of the held records, then sends their messages. Released first: a new
/// message may be received, and claim its records, at once. If releasing fails nothing is
/// held back: the records are put now (still ours, or partly released: at worst doubled by a
/// copy that claimed them meanwhile).
async fn release_then_send<C: Carrier, L: DeliveredLedger>(
    carrier: &C,
    ledger: &L,
    messages: &[Inbound<'_>],
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
        held.records = 0;
        for sp in planned.iter_mut() {
            sp.held.clear();
        }
        return;
    }
    held.released = claims.len();
    let sent = bodies.len();
    if let Err(e) = carrier.send(bodies).await {
        // Neither put nor surely sent: their messages come back and claim them again (a copy
        // that was sent and came first delivers them instead).
        held.error = Some(format!("sending them to the queue failed: {e}"));
        held.records = 0;
        held.unsent = planned
            .iter()
            .flat_map(|sp| sp.held_records().map(|p| messages[p.message].id.to_owned()))
            .collect();
        return;
    }
    held.messages = sent;
}
