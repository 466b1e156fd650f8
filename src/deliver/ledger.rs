//! Each eventID reaches its stream once across invocations, retries and duplicate files.
//!
//! Across invocations a [`DeliveredLedger`] remembers, per `(stream, eventID)`, which delivery
//! message *owns* the record and whether its delivery was confirmed. [`deliver_messages_once`]
//! uses it so:
//!
//! 1. **Claim before the put.** Every accepted event is claimed for its message (the SQS
//!    message id, which stays the same when SQS redelivers the message) — every copy of an
//!    eventID repeated within the invocation too, each for its own message, so that the copy
//!    whose message holds the claim wins it; repeats are dropped only among what is ours. A
//!    claim succeeds when nobody holds the key, or when the same message holds it unconfirmed
//!    (its own earlier, unfinished attempt). A key held by another message, or already
//!    confirmed, is a duplicate and is dropped: the owner either delivered it or is itself
//!    coming back.
//! 2. **Put** the fresh events (re-planned, so the batches are as full as the limits allow) —
//!    or, for a stream's calls that are not full, **hold them back** (see [`Carrier`]):
//!    **release** their claims, then send their records to the hold queue in a new message,
//!    which claims them when it is delivered. A held message that comes back alone may stay
//!    in the queue instead ([`Carrier::keeps`]): nothing of it is claimed meanwhile.
//! 3. **Confirm after the put**, only for records of messages that go back to SQS (some other
//!    record of theirs was not delivered): their redelivery then skips what already landed.
//!    Messages that succeed entirely are deleted by SQS and never come back, so confirming
//!    their records would double the write cost for nothing.
//!
//! Why claim *before* the put: marking only after a successful put leaves two writers of the
//! same eventID (two files, two concurrent invocations) free to both put it; claiming first
//! makes the ledger's conditional write the arbiter. Why ownership and not a plain "seen"
//! mark: a crash (timeout, out of memory) between claim and put would otherwise lose the
//! record for good — with ownership, the redelivered message reclaims its own keys and puts
//! them. The remaining windows only ever duplicate, never lose:
//! - crash between a successful put and the confirm (or a failed confirm): the redelivered
//!   message re-puts that batch;
//! - a PutLogEvents that CloudWatch Logs applied but whose response was lost (timeout, reset)
//!   is retried by the SDK and lands twice — no ledger can see that;
//! - a message SQS delivers twice after it succeeded (visibility timeout passed while it ran);
//! - a held-back message sent twice (a send applied whose answer was lost, in a queue that
//!   does not deduplicate) whose copies are delivered one after the other's release;
//! - a failed release (the records are put at once) while a copy claims them.
//!
//! Holding back never loses a record: its claim is released *before* the new message is
//! sent — released after, a new message received at once would find its records still
//! claimed and drop them, and the release would then leave nobody to deliver them. A failed
//! send brings the original messages back, to claim their records again (a copy that was sent
//! anyway and came first delivers them instead); a failed release holds nothing back.
//!
//! When the ledger cannot answer, the records are not put and their message comes back
//! (nothing lost, nothing doubled). Records without an eventID are delivered unclaimed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;

use super::message::{open_held, seal_held, DEFAULT_MESSAGE_BYTES};
use super::plan::minimum_batches;
use super::stream;
use super::{
    plan_batches, reject, set_aside, BatchLimits, Carrier, DeliveryMessage, DeliveryReport,
    HeldMessage, Inbound, LogEvent, LogSink, MessagePacker, Pending, Plan, SetAside,
};
use crate::record::Record;

/// One record to claim: the stream it goes to, its eventID, the message that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub stream: &'a str,
    pub event_id: &'a str,
    pub owner: &'a str,
}

/// What the ledger said about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to deliver (new, or our own unconfirmed claim).
    Ours,
    /// Held by another message or already delivered: a duplicate.
    Taken,
    /// The ledger could not answer: do not deliver now, bring the message back.
    Unavailable,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LedgerError {
    pub message: String,
}

/// The memory of what was delivered where, shared by all invocations.
pub trait DeliveredLedger {
    /// Claims each record for its owner; one outcome per claim, in order.
    fn claim(&self, claims: &[Claim<'_>]) -> impl Future<Output = Vec<ClaimOutcome>> + Send;

    /// Records that these claims were delivered, so their owners' redeliveries skip them.
    fn confirm(
        &self,
        delivered: &[Claim<'_>],
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Gives up claims that are still the owner's and unconfirmed (their records were sent
    /// back to the queue in a new message, which claims them when it is delivered). A claim
    /// that is no longer the owner's counts as released.
    fn release(&self, claims: &[Claim<'_>])
        -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// No memory beyond the invocation (the planner's dedupe): every claim is ours.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvocationOnly;

impl DeliveredLedger for InvocationOnly {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        vec![ClaimOutcome::Ours; claims.len()]
    }

    async fn confirm(&self, _delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn release(&self, _claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    owner: String,
    confirmed: bool,
}

/// The ledger in memory: for the local CLI (one process) and tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MemoryLedger {
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeliveredLedger for MemoryLedger {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        claims
            .iter()
            .map(|c| {
                let key = (c.stream.to_owned(), c.event_id.to_owned());
                match entries.get(&key) {
                    Some(e) if e.confirmed || e.owner != c.owner => ClaimOutcome::Taken,
                    Some(_) => ClaimOutcome::Ours,
                    None => {
                        entries.insert(
                            key,
                            Entry {
                                owner: c.owner.to_owned(),
                                confirmed: false,
                            },
                        );
                        ClaimOutcome::Ours
                    }
                }
            })
            .collect()
    }

    async fn confirm(&self, delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for c in delivered {
            entries.insert(
                (c.stream.to_owned(), c.event_id.to_owned()),
                Entry {
                    owner: c.owner.to_owned(),
                    confirmed: true,
                },
            );
        }
        Ok(())
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for c in claims {
            let key = (c.stream.to_owned(), c.event_id.to_owned());
            if entries
                .get(&key)
                .is_some_and(|e| e.owner == c.owner && !e.confirmed)
            {
                entries.remove(&key);
            }
        }
        Ok(())
    }
}

/// What the ledger did in one delivery run (on top of the [`DeliveryReport`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    pub claimed: usize,
    /// Records another message owns or that were already delivered (also in `duplicates`).
    pub taken: usize,
    /// Records not delivered because the ledger could not answer (their messages retry).
    pub unavailable: usize,
    pub confirmed: usize,
    /// Confirm writes that failed: at worst, duplicates when the message comes back.
    pub confirm_failures: usize,
    /// Claims given up for records held back (sent to the hold queue).
    pub released: usize,
    /// Records not held back, but put at once, because their claims could not be released.
    pub release_failures: usize,
    /// The fewest PutLogEvents calls the limits allow for the records put (per stream; see
    /// [`minimum_batches`]), to compare `put_calls` with.
    pub minimum_put_calls: usize,
}

/// [`super::deliver_messages`] with a ledger across invocations (see the module comment).
pub async fn deliver_messages_once<S: LogSink, L: DeliveredLedger, C: Carrier>(
    sink: &S,
    ledger: &L,
    carrier: &C,
    received: &[Inbound<'_>],
    now_ms: i64,
    retention_days: Option<u32>,
    limits: &BatchLimits,
) -> (DeliveryReport, LedgerReport) {
    let mut report = DeliveryReport::default();
    let mut ledger_report = LedgerReport::default();
    // Held-back envelopes opened: each body sealed in one is a message of its own, owned by the
    // SQS message that carried it.
    let mut opened: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(received.len());
    for m in received {
        match open_held(m.body) {
            Ok(bodies) => opened.extend(bodies.into_iter().map(|body| (m.id, body))),
            Err(e) => {
                report.retry.insert(m.id.to_owned());
                report.set_aside.push(SetAside {
                    message_id: m.id.to_owned(),
                    record_index: None,
                    event_id: None,
                    reason: e.to_string(),
                });
            }
        }
    }
    let messages: &[Inbound<'_>] = &opened
        .iter()
        .map(|(id, body)| Inbound { id, body })
        .collect::<Vec<_>>();
    let parsed: Vec<Option<DeliveryMessage<'_>>> = messages
        .iter()
        .map(|m| match DeliveryMessage::parse(m.body) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                report.retry.insert(m.id.to_owned());
                report.set_aside.push(SetAside {
                    message_id: m.id.to_owned(),
                    record_index: None,
                    event_id: None,
                    reason: e.to_string(),
                });
                None
            }
        })
        .collect();
    let mut streams: BTreeMap<String, Vec<Pending<'_>>> = BTreeMap::new();
    for (m, message) in parsed.iter().enumerate() {
        let Some(message) = message else { continue };
        for (record_index, raw) in message.records.iter().enumerate() {
            report.records_received += 1;
            let record = Record::parse(raw.get()).and_then(|record| {
                let checked = stream::check_stream(&message.stream, &record);
                Ok((record.event_time_ms()?, record.event_id_ref(), checked))
            });
            match record {
                Ok((_, event_id, Err(why))) => {
                    *report.rejected.entry("wrong_stream").or_default() += 1;
                    set_aside(&mut report, messages[m].id, record_index, event_id, why)
                }
                Ok((timestamp_ms, event_id, Ok(()))) => streams
                    .entry(message.stream.to_string())
                    .or_default()
                    .push(Pending {
                        message: m,
                        record_index,
                        event: LogEvent {
                            timestamp_ms,
                            message: raw.get(),
                            event_id,
                        },
                    }),
                Err(e) => set_aside(&mut report, messages[m].id, record_index, None, e),
            }
        }
    }

    // Per message: since when its records have been held back, if they have.
    let held_since: Vec<Option<i64>> = parsed
        .iter()
        .map(|parsed| parsed.as_ref().and_then(|p| p.since))
        .collect();
    keep_lone_holds(
        carrier,
        messages,
        &held_since,
        now_ms,
        &mut streams,
        &mut report,
    );
    // Per stream: what is ours to deliver (claimed), planned into calls.
    let mut planned: Vec<StreamPlan<'_, '_>> = Vec::with_capacity(streams.len());
    for (stream, pending) in &streams {
        let events: Vec<LogEvent<'_>> = pending.iter().map(|p| p.event).collect();
        let screened = plan_batches(&events, now_ms, retention_days, limits);
        for &(i, rejection) in &screened.rejected {
            reject(&mut report, messages, &pending[i], rejection);
        }
        // Every copy of an eventID repeated in this invocation is claimed for its own message:
        // the copy whose message already holds the claim (an earlier attempt that failed) must
        // win it, or dropping the other copies could drop the record for good. Copies that
        // win for the same message are dropped when what is ours is planned again.
        let mut accepted: Vec<usize> = screened.batches.concat();
        accepted.extend_from_slice(&screened.duplicates);
        let claimed: Vec<usize> = accepted
            .iter()
            .copied()
            .filter(|&i| events[i].event_id.is_some())
            .collect();
        let claims: Vec<Claim<'_>> = claimed
            .iter()
            .map(|&i| claim_of(stream, messages, &pending[i]))
            .collect();
        let outcomes = ledger.claim(&claims).await;
        ledger_report.claimed += claims.len();
        let mut fresh: Vec<usize> = accepted
            .iter()
            .copied()
            .filter(|&i| events[i].event_id.is_none())
            .collect();
        for (position, &i) in claimed.iter().enumerate() {
            match outcomes
                .get(position)
                .copied()
                .unwrap_or(ClaimOutcome::Unavailable)
            {
                ClaimOutcome::Ours => fresh.push(i),
                ClaimOutcome::Taken => {
                    ledger_report.taken += 1;
                    report.duplicates += 1;
                }
                ClaimOutcome::Unavailable => {
                    ledger_report.unavailable += 1;
                    report
                        .retry
                        .insert(messages[pending[i].message].id.to_owned());
                }
            }
        }
        // Re-planned over what is ours, so dropped duplicates leave no half-empty batches.
        let fresh_events: Vec<LogEvent<'_>> = fresh.iter().map(|&i| events[i]).collect();
        let plan = plan_batches(&fresh_events, now_ms, retention_days, limits);
        report.duplicates += plan.duplicates.len();
        debug_assert!(plan.rejected.is_empty());
        planned.push(StreamPlan {
            stream,
            pending,
            fresh,
            fresh_events,
            plan,
            held: Vec::new(),
        });
    }

    let held = hold_back(carrier, ledger, messages, &held_since, now_ms, &mut planned).await;
    report.held_back += held.records;
    report.held_back_messages += held.messages;
    report.waited_out += held.waited_out;
    ledger_report.released += held.released;
    report.hold_back_error = held.error;
    ledger_report.release_failures = held.release_failed;
    report.retry.extend(held.unsent);

    // (stream, index into that stream's pending) of every delivered claimed record.
    let mut delivered: Vec<(&str, usize)> = Vec::new();
    for sp in &planned {
        let (stream, pending) = (sp.stream, sp.pending);
        let put: Vec<LogEvent<'_>> = sp
            .put_batches()
            .flat_map(|(batch, _)| batch.iter().map(|&j| sp.fresh_events[j]))
            .collect();
        ledger_report.minimum_put_calls += minimum_batches(&put, limits);
        for (batch, full) in sp.put_batches() {
            let batch_events: Vec<LogEvent<'_>> =
                batch.iter().map(|&j| sp.fresh_events[j]).collect();
            report.put_calls += 1;
            report.partial_calls += usize::from(!full);
            match sink.put_batch(stream, &batch_events).await {
                Ok(rejected) => {
                    for (position, &j) in batch.iter().enumerate() {
                        let i = sp.fresh[j];
                        match rejected.of(position) {
                            Some(rejection) => {
                                reject(&mut report, messages, &pending[i], rejection)
                            }
                            None => {
                                report.delivered += 1;
                                *report
                                    .delivered_per_stream
                                    .entry(stream.to_owned())
                                    .or_default() += 1;
                                if pending[i].event.event_id.is_some() {
                                    delivered.push((stream, i));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    report.failed_calls += 1;
                    for &j in batch {
                        report
                            .retry
                            .insert(messages[pending[sp.fresh[j]].message].id.to_owned());
                    }
                    if !e.retryable {
                        report.set_aside.push(SetAside {
                            message_id: messages[pending[sp.fresh[batch[0]]].message].id.to_owned(),
                            record_index: None,
                            event_id: None,
                            reason: format!("PutLogEvents to {stream} failed: {e}"),
                        });
                    }
                }
            }
        }
    }

    let to_confirm: Vec<Claim<'_>> = delivered
        .iter()
        .map(|&(stream, i)| (stream, &streams[stream][i]))
        .filter(|(_, p)| report.retry.contains(messages[p.message].id))
        .map(|(stream, p)| claim_of(stream, messages, p))
        .collect();
    if !to_confirm.is_empty() {
        match ledger.confirm(&to_confirm).await {
            Ok(()) => ledger_report.confirmed += to_confirm.len(),
            Err(_) => ledger_report.confirm_failures += to_confirm.len(),
        }
    }
    (report, ledger_report)
}

/// Leaves in the queue, a while longer, each held message that came back with nothing of its
/// stream to join it, while its records may still wait (see [`Carrier::keeps`]): its records
/// are neither claimed nor put, its message is retried, and its stream is dropped from this
/// run.
fn keep_lone_holds<C: Carrier>(
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

/// Where one stream's records stand: what is ours, the plan, which batches are held back.
struct StreamPlan<'s, 'a> {
    stream: &'s str,
    pending: &'s [Pending<'a>],
    /// Indices into `pending` of the records that are ours to deliver.
    fresh: Vec<usize>,
    fresh_events: Vec<LogEvent<'a>>,
    plan: Plan,
    /// Batches of `plan` sent back to the queue to wait for a fuller call.
    held: Vec<usize>,
}

impl StreamPlan<'_, '_> {
    /// The batches to put now, and whether each is full.
    fn put_batches(&self) -> impl Iterator<Item = (&Vec<usize>, bool)> {
        self.plan
            .batches
            .iter()
            .zip(&self.plan.full)
            .enumerate()
            .filter(|(b, _)| !self.held.contains(b))
            .map(|(_, (batch, full))| (batch, *full))
    }
}

/// What holding back did.
#[derive(Debug, Default)]
struct Held {
    records: usize,
    /// Streams whose records had waited long enough: put in calls that are not full.
    waited_out: usize,
    messages: usize,
    released: usize,
    /// Records put at once because their claims could not be released.
    release_failed: usize,
    /// Messages of held records that could not be sent: they come back.
    unsent: BTreeSet<String>,
    error: Option<String>,
}

/// Holds back the batches that are not full, in streams whose records have not waited too
/// long: releases their claims, then sends them to the hold queue (see [`Carrier`]).
async fn hold_back<C: Carrier, L: DeliveredLedger>(
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
        let tail: Vec<usize> = (0..sp.plan.batches.len())
            .filter(|&b| !sp.plan.full[b])
            .collect();
        let records = || {
            tail.iter()
                .flat_map(|&b| &sp.plan.batches[b])
                .map(|&j| (sp.fresh_events[j], sp.pending[sp.fresh[j]].message))
        };
        if tail.is_empty() {
            continue;
        }
        // Since when the tail's records have been waiting: the earliest hold, or now.
        let since = records()
            .filter_map(|(_, m)| held_since[m])
            .min()
            .unwrap_or(now_ms);
        if now_ms - since >= max_wait_ms {
            held.waited_out += 1;
            continue;
        }
        // Each record keeps the time it was first held (its message's, or now), so that
        // records joining older ones are not put early on their account.
        let packer = |first_held| {
            MessagePacker::waiting_since(sp.stream, DEFAULT_MESSAGE_BYTES, Some(first_held))
        };
        let max_record_bytes = packer(since).max_record_bytes();
        if records().any(|(e, _)| e.message.len() > max_record_bytes) {
            continue;
        }
        let mut packers: BTreeMap<i64, MessagePacker> = BTreeMap::new();
        let mut plain = Vec::new();
        for (event, m) in records() {
            let first_held = held_since[m].unwrap_or(now_ms);
            plain.extend(
                packers
                    .entry(first_held)
                    .or_insert_with(|| packer(first_held))
                    .push(event.message),
            );
        }
        plain.extend(packers.values_mut().filter_map(MessagePacker::take));
        bodies.extend(
            seal_held(sp.stream, &plain, DEFAULT_MESSAGE_BYTES)
                .into_iter()
                .map(|body| HeldMessage {
                    stream: sp.stream.to_owned(),
                    body,
                }),
        );
        held.records += records().count();
        sp.held = tail;
    }
    if bodies.is_empty() {
        return held;
    }
    // Released before the new messages are sent: one may be received, and claim its records,
    // at once. If releasing fails nothing is held back: the records are put now (still ours,
    // or partly released: at worst doubled by a copy that claimed them meanwhile).
    let claims: Vec<Claim<'_>> = planned
        .iter()
        .flat_map(|sp| {
            sp.held
                .iter()
                .flat_map(|&b| &sp.plan.batches[b])
                .map(|&j| &sp.pending[sp.fresh[j]])
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
        return held;
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
            .flat_map(|sp| {
                sp.held
                    .iter()
                    .flat_map(|&b| &sp.plan.batches[b])
                    .map(|&j| messages[sp.pending[sp.fresh[j]].message].id.to_owned())
            })
            .collect();
        return held;
    }
    held.messages = sent;
    held
}

fn claim_of<'a>(stream: &'a str, messages: &[Inbound<'a>], p: &Pending<'a>) -> Claim<'a> {
    Claim {
        stream,
        event_id: p.event.event_id.unwrap_or_default(),
        owner: messages[p.message].id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::{NoCarry, RejectedRanges, SinkError};
    use crate::time::format_event_time;

    const NOW: i64 = 1_700_000_000_000;

    /// Collects what was put; fails the calls whose ordinal is listed.
    #[derive(Default)]
    struct Sink {
        put: Mutex<Vec<String>>,
        calls: Mutex<usize>,
        fail: Vec<usize>,
    }

    impl LogSink for Sink {
        async fn put_batch(
            &self,
            _stream: &str,
            events: &[LogEvent<'_>],
        ) -> Result<RejectedRanges, SinkError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            if self.fail.contains(&call) {
                return Err(SinkError {
                    retryable: true,
                    message: "injected".into(),
                });
            }
            let mut put = self.put.lock().unwrap();
            put.extend(events.iter().map(|e| e.message.to_owned()));
            Ok(RejectedRanges::default())
        }
    }

    fn record(id: &str, minute: i64) -> String {
        format!(
            r#"{{"eventID":"{id}","eventTime":"{}","recipientAccountId":"1","awsRegion":"r"}}"#,
            format_event_time(NOW - minute * 60_000)
        )
    }

    fn body(records: &[String]) -> String {
        format!(
            r#"{{"v":1,"stream":"1_CloudTrail_r","records":[{}]}}"#,
            records.join(",")
        )
    }

    async fn run<L: DeliveredLedger>(
        sink: &Sink,
        ledger: &L,
        messages: &[(&str, &str)],
        limits: &BatchLimits,
    ) -> (DeliveryReport, LedgerReport) {
        let inbound: Vec<Inbound<'_>> = messages
            .iter()
            .map(|&(id, body)| Inbound { id, body })
            .collect();
        deliver_messages_once(sink, ledger, &NoCarry, &inbound, NOW, None, limits).await
    }

    /// The futures here never wait on anything, so polling with a no-op waker completes them.
    fn block_on<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn a_record_in_two_messages_reaches_the_stream_once_across_invocations() {
        let ledger = MemoryLedger::default();
        let sink = Sink::default();
        let first = body(&[record("a", 5), record("b", 4)]);
        let second = body(&[record("b", 4), record("c", 3)]);
        let limits = BatchLimits::default();
        let (r1, _) = block_on(run(&sink, &ledger, &[("m1", &first)], &limits));
        let (r2, l2) = block_on(run(&sink, &ledger, &[("m2", &second)], &limits));
        assert_eq!((r1.delivered, r2.delivered, r2.duplicates), (2, 1, 1));
        assert_eq!(l2.taken, 1);
        assert_eq!(sink.put.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_redelivered_message_puts_only_what_did_not_land() {
        let ledger = MemoryLedger::default();
        // One event per batch: the second put fails.
        let limits = BatchLimits {
            max_events: 1,
            ..BatchLimits::default()
        };
        let sink = Sink {
            fail: vec![2],
            ..Sink::default()
        };
        let message = body(&[record("a", 5), record("b", 4), record("c", 3)]);
        let (first, l1) = block_on(run(&sink, &ledger, &[("m1", &message)], &limits));
        assert_eq!(first.retry.iter().collect::<Vec<_>>(), ["m1"]);
        assert_eq!(
            l1.confirmed, 2,
            "what landed is confirmed, since m1 comes back"
        );
        let (again, _) = block_on(run(&sink, &ledger, &[("m1", &message)], &limits));
        assert!(again.retry.is_empty());
        assert_eq!(again.delivered, 1);
        let mut put = sink.put.lock().unwrap().clone();
        put.sort();
        let mut want = vec![record("a", 5), record("b", 4), record("c", 3)];
        want.sort();
        assert_eq!(put, want, "each record exactly once");
    }

    #[test]
    fn a_claim_left_by_a_crash_is_taken_back_by_the_same_message_only() {
        let ledger = MemoryLedger::default();
        let claim = |owner| Claim {
            stream: "s",
            event_id: "e",
            owner,
        };
        assert_eq!(block_on(ledger.claim(&[claim("m1")])), [ClaimOutcome::Ours]);
        // m1 crashed before its put: its redelivery may still deliver, m2 may not.
        assert_eq!(
            block_on(ledger.claim(&[claim("m2")])),
            [ClaimOutcome::Taken]
        );
        assert_eq!(block_on(ledger.claim(&[claim("m1")])), [ClaimOutcome::Ours]);
        block_on(ledger.confirm(&[claim("m1")])).unwrap();
        assert_eq!(
            block_on(ledger.claim(&[claim("m1")])),
            [ClaimOutcome::Taken]
        );
    }

    struct Down;
    impl DeliveredLedger for Down {
        async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
            vec![ClaimOutcome::Unavailable; claims.len()]
        }
        async fn confirm(&self, _: &[Claim<'_>]) -> Result<(), LedgerError> {
            Err(LedgerError {
                message: "down".into(),
            })
        }
        async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
            self.confirm(claims).await
        }
    }

    #[test]
    fn when_the_ledger_cannot_answer_nothing_is_put_and_the_message_comes_back() {
        let sink = Sink::default();
        let message = body(&[record("a", 5)]);
        let (report, ledger) = block_on(run(
            &sink,
            &Down,
            &[("m1", &message)],
            &BatchLimits::default(),
        ));
        assert_eq!(report.delivered, 0);
        assert_eq!(ledger.unavailable, 1);
        assert!(report.retry.contains("m1"));
        assert!(sink.put.lock().unwrap().is_empty());
    }

    #[test]
    fn a_record_claimed_by_a_message_that_comes_back_is_not_lost_to_a_copy_in_another_message() {
        let ledger = MemoryLedger::default();
        let limits = BatchLimits::default();
        let failing = Sink {
            fail: vec![1],
            ..Sink::default()
        };
        let x = body(&[record("r", 5)]);
        let (first, _) = block_on(run(&failing, &ledger, &[("x", &x)], &limits));
        assert!(
            first.retry.contains("x"),
            "x holds r's claim and comes back"
        );
        // A CloudTrail duplicate of r in another file's message z, ahead of x in the batch.
        let sink = Sink::default();
        let z = body(&[record("r", 5), record("s", 4)]);
        let (again, l) = block_on(run(&sink, &ledger, &[("z", &z), ("x", &x)], &limits));
        assert!(again.retry.is_empty());
        assert_eq!((again.delivered, again.duplicates, l.taken), (2, 1, 1));
        let mut put = sink.put.lock().unwrap().clone();
        put.sort();
        assert_eq!(put, [record("r", 5), record("s", 4)], "r once, s once");
    }

    /// The delivery queue as the deliver stage sees it: what was sent back, or a failure.
    #[derive(Default)]
    struct Queue {
        sent: Mutex<Vec<String>>,
        max_wait_ms: i64,
        down: bool,
        keeps: bool,
    }

    impl Queue {
        /// A queue records may wait in for a minute.
        fn holding() -> Self {
            Queue {
                max_wait_ms: 60_000,
                ..Queue::default()
            }
        }
    }

    impl Carrier for Queue {
        fn max_wait_ms(&self) -> i64 {
            self.max_wait_ms
        }
        async fn send(&self, held: Vec<HeldMessage>) -> Result<(), String> {
            if self.down {
                return Err("queue down".into());
            }
            assert!(held.iter().all(|m| m.stream == "1_CloudTrail_r"));
            self.sent
                .lock()
                .unwrap()
                .extend(held.into_iter().map(|m| m.body));
            Ok(())
        }
        fn keeps(&self) -> bool {
            self.keeps
        }
    }

    /// A memory ledger that cannot release.
    #[derive(Default)]
    struct Sticky(MemoryLedger);

    impl DeliveredLedger for Sticky {
        async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
            self.0.claim(claims).await
        }
        async fn confirm(&self, delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
            self.0.confirm(delivered).await
        }
        async fn release(&self, _: &[Claim<'_>]) -> Result<(), LedgerError> {
            Err(LedgerError {
                message: "unavailable".into(),
            })
        }
    }

    const THREE_A_CALL: BatchLimits = BatchLimits {
        max_events: 3,
        max_bytes: 1_048_576,
        event_overhead: 26,
        max_span_ms: 24 * 3_600_000,
    };

    fn deliver_with<L: DeliveredLedger>(
        sink: &Sink,
        ledger: &L,
        queue: &Queue,
        messages: &[(&str, &str)],
    ) -> (DeliveryReport, LedgerReport) {
        let inbound: Vec<Inbound<'_>> = messages
            .iter()
            .map(|&(id, body)| Inbound { id, body })
            .collect();
        block_on(deliver_messages_once(
            sink,
            ledger,
            queue,
            &inbound,
            NOW,
            None,
            &THREE_A_CALL,
        ))
    }

    #[test]
    fn a_call_that_is_not_full_waits_in_the_queue_and_is_put_full_later() {
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let queue = Queue::holding();
        let first = body(&[
            record("a", 9),
            record("b", 8),
            record("c", 7),
            record("d", 6),
        ]);
        let (r1, l1) = deliver_with(&sink, &ledger, &queue, &[("m1", &first)]);
        assert_eq!((r1.put_calls, r1.delivered, r1.held_back), (1, 3, 1));
        assert!(
            r1.retry.is_empty(),
            "m1 is done: d travels in a new message"
        );
        assert_eq!(l1.released, 1);
        let held = queue.sent.lock().unwrap().pop().unwrap();
        let opened = open_held(&held).unwrap();
        assert_eq!(opened.len(), 1, "sealed in one envelope");
        let message = DeliveryMessage::parse(&opened[0]).unwrap();
        assert_eq!(message.since, Some(NOW), "held back since now");
        assert_eq!(message.records[0].get(), record("d", 6));

        // The held record meets two more of its stream: one full call.
        let second = body(&[record("e", 5), record("f", 4)]);
        let (r2, _) = deliver_with(&sink, &ledger, &queue, &[("held", &held), ("m2", &second)]);
        assert_eq!((r2.put_calls, r2.delivered, r2.held_back), (1, 3, 0));
        let mut put = sink.put.lock().unwrap().clone();
        put.sort();
        let want: Vec<String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, id)| record(id, 9 - i as i64))
            .collect();
        assert_eq!(put, want, "each record once");
    }

    #[test]
    fn records_that_waited_long_enough_are_put_in_a_call_that_is_not_full() {
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let queue = Queue::holding();
        // Waiting since a minute ago (a message held back before).
        let held = MessagePacker::waiting_since("1_CloudTrail_r", 10_000, Some(NOW - 60_000));
        let mut held = held;
        assert!(held.push(&record("a", 9)).is_none());
        let held = held.take().unwrap();
        let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
        assert_eq!((r.put_calls, r.delivered, r.held_back), (1, 1, 0));
        // Without a carrier nothing is held back.
        let fresh = body(&[record("b", 8)]);
        let (r, _) = deliver_with(&sink, &ledger, &Queue::default(), &[("m", &fresh)]);
        assert_eq!((r.put_calls, r.held_back), (1, 0));
        assert!(queue.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn a_held_tail_that_comes_back_alone_waits_until_its_time_is_up() {
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let queue = Queue::holding();
        let message = body(&[record("a", 9)]);
        let (r, _) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
        assert_eq!((r.put_calls, r.held_back), (0, 1));
        // Back alone: held again, still since its first hold, so more of its stream may join.
        let held = queue.sent.lock().unwrap().pop().unwrap();
        let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
        assert_eq!((r.put_calls, r.held_back, r.waited_out), (0, 1, 0));
        let again = queue.sent.lock().unwrap().pop().unwrap();
        assert_eq!(held, again, "the same records, held since the first time");
    }

    #[test]
    fn a_queue_that_keeps_leaves_a_lone_held_message_in_it_unclaimed_until_more_comes() {
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let queue = Queue {
            keeps: true,
            ..Queue::holding()
        };
        let message = body(&[record("a", 9)]);
        deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
        let held = queue.sent.lock().unwrap().pop().unwrap();
        // Back alone: it stays in the queue (retried), for what is left of its minute.
        let (r, l) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
        assert_eq!((r.put_calls, r.held_back, l.claimed), (0, 0, 0));
        assert_eq!(r.kept, [("h".to_owned(), 60_000)].into());
        assert!(r.retry.contains("h") && queue.sent.lock().unwrap().is_empty());
        assert!(ledger.is_empty(), "nothing claimed while it waits");
        // Back with more of its stream: they meet in one call.
        let more = body(&[record("b", 8), record("c", 7)]);
        let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held), ("n", &more)]);
        assert_eq!((r.put_calls, r.delivered), (1, 3));
        assert!(r.kept.is_empty() && r.retry.is_empty());
        // One that has waited long enough is put, kept or not.
        let mut old = MessagePacker::waiting_since("1_CloudTrail_r", 10_000, Some(NOW - 60_000));
        assert!(old.push(&record("d", 6)).is_none());
        let old = old.take().unwrap();
        let (r, _) = deliver_with(&sink, &ledger, &queue, &[("o", &old)]);
        assert_eq!((r.put_calls, r.waited_out), (1, 1));
        assert!(r.kept.is_empty());
    }

    #[test]
    fn records_that_cannot_be_sent_back_bring_their_message_back_to_claim_them_again() {
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let queue = Queue {
            down: true,
            ..Queue::holding()
        };
        let message = body(&[record("a", 9)]);
        let (r, l) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
        assert_eq!((r.put_calls, r.held_back, l.released), (0, 0, 1));
        assert_eq!(
            r.hold_back_error.as_deref(),
            Some("sending them to the queue failed: queue down")
        );
        assert!(r.retry.contains("m"), "m comes back");
        let (r, _) = deliver_with(&sink, &ledger, &Queue::default(), &[("m", &message)]);
        assert_eq!(r.delivered, 1);
        assert_eq!(*sink.put.lock().unwrap(), [record("a", 9)]);
    }

    #[test]
    fn a_held_message_received_at_once_finds_its_records_released() {
        // The hold queue hands the new message to another invocation before this one ends:
        // its claims must already be released, or it would drop them as taken.
        struct Instant<'a> {
            sink: &'a Sink,
            ledger: &'a MemoryLedger,
            delivered: Mutex<usize>,
        }
        impl Carrier for Instant<'_> {
            fn max_wait_ms(&self) -> i64 {
                60_000
            }
            async fn send(&self, held: Vec<HeldMessage>) -> Result<(), String> {
                for m in held {
                    let (r, _) =
                        deliver_with(self.sink, self.ledger, &Queue::default(), &[("n", &m.body)]);
                    *self.delivered.lock().unwrap() += r.delivered;
                }
                Ok(())
            }
        }
        let (sink, ledger) = (Sink::default(), MemoryLedger::default());
        let carrier = Instant {
            sink: &sink,
            ledger: &ledger,
            delivered: Mutex::new(0),
        };
        let message = body(&[record("a", 9)]);
        let inbound = [Inbound {
            id: "m",
            body: &message,
        }];
        let (r, _) = block_on(deliver_messages_once(
            &sink,
            &ledger,
            &carrier,
            &inbound,
            NOW,
            None,
            &THREE_A_CALL,
        ));
        assert_eq!((r.held_back, r.delivered), (1, 0));
        assert_eq!(
            *carrier.delivered.lock().unwrap(),
            1,
            "the held message delivered a"
        );
    }

    #[test]
    fn records_whose_claims_cannot_be_released_are_put_at_once() {
        let (sink, ledger) = (Sink::default(), Sticky::default());
        let queue = Queue::holding();
        let message = body(&[record("a", 9)]);
        let (r, l) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
        assert_eq!((r.delivered, r.held_back, l.release_failures), (1, 0, 1));
        assert!(r.retry.is_empty() && queue.sent.lock().unwrap().is_empty());
        assert_eq!(*sink.put.lock().unwrap(), [record("a", 9)]);
    }
}
