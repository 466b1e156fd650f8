//! One delivery run over the messages of an invocation, step by step: open held envelopes,
//! parse the messages, group their records per stream, begin each delivery in the ledger,
//! screen the records, claim what is ours, plan the calls again over it, hold back the calls
//! that are not full (and the records that wait for another delivery), put the rest, confirm
//! what landed for the messages that come back, and finish the deliveries that succeeded.
//! The ledger's protocol and its crash windows are described in [`super::ledger`], holding
//! back in [`super::hold`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::hold::{hold_back, keep_lone_holds, Carrier, Held, NoCarry};
use super::ledger::{
    Attempt, BeginOutcome, Claim, ClaimOutcome, DeliveredLedger, InvocationOnly, Leases,
    DEFAULT_CLAIM_LEASE_MS, DEFAULT_RUN_LEASE_MS,
};
use super::limits::BatchLimits;
use super::message::{open_held, DeliveryMessage};
use super::pending::{claim_of, Inbound, Pending, Received, StreamPlan};
use super::plan::{minimum_batches, plan_batches, LogEvent};
use super::report::{DeliveryReport, LedgerReport};
use super::sink::LogSink;
use super::stream::check_stream;
use crate::record::Record;

/// What a run plans with: the time it delivers at, the log group's retention, the limits of
/// a call, and how long the ledger's claims and holds last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    pub now_ms: i64,
    /// The log group's retention in days: older events would expire at once (rejected).
    pub retention_days: Option<u32>,
    pub limits: BatchLimits,
    /// See [`DEFAULT_CLAIM_LEASE_MS`].
    pub claim_lease_ms: i64,
    /// How long this run holds its deliveries: until its invocation's deadline, at most.
    pub run_lease_ms: i64,
}

impl DeliverySettings {
    /// Delivering at `now_ms` to a group without retention, with PutLogEvents' own limits and
    /// the default leases.
    pub fn at(now_ms: i64) -> Self {
        DeliverySettings {
            now_ms,
            retention_days: None,
            limits: BatchLimits::default(),
            claim_lease_ms: DEFAULT_CLAIM_LEASE_MS,
            run_lease_ms: DEFAULT_RUN_LEASE_MS,
        }
    }

    fn leases(&self) -> Leases {
        Leases {
            now_ms: self.now_ms,
            claim_ms: self.claim_lease_ms,
            run_ms: self.run_lease_ms,
        }
    }
}

/// Delivers the records of `messages` with repeated eventIDs dropped within this invocation;
/// [`deliver_messages_once`] with a ledger drops them across invocations and retries too.
pub async fn deliver_messages<S: LogSink>(
    sink: &S,
    messages: &[Inbound<'_>],
    settings: &DeliverySettings,
) -> DeliveryReport {
    deliver_messages_once(sink, &InvocationOnly, &NoCarry, messages, settings)
        .await
        .0
}

/// Delivers the records of `received` through `sink`, each eventID once across invocations
/// as far as `ledger` remembers, holding calls that are not full back through `carrier`.
/// Reports which messages must come back (a batch that was not confirmed, an event that may
/// be accepted later) and which records were set aside for good, with the reason.
pub async fn deliver_messages_once<S: LogSink, L: DeliveredLedger, C: Carrier>(
    sink: &S,
    ledger: &L,
    carrier: &C,
    received: &[Inbound<'_>],
    settings: &DeliverySettings,
) -> (DeliveryReport, LedgerReport) {
    let mut report = DeliveryReport::default();
    let mut ledger_report = LedgerReport::default();
    let leases = settings.leases();
    let opened = open_envelopes(received, &mut report);
    let parsed = parse_messages(&opened, &mut report);
    let messages = received_messages(&opened, &parsed);
    let mut streams = group_by_stream(&messages, &parsed, &mut report);
    keep_lone_holds(
        carrier,
        &messages,
        settings.now_ms,
        &mut streams,
        &mut report,
    );
    let going = begin(
        ledger,
        &messages,
        &mut streams,
        &leases,
        &mut report,
        &mut ledger_report,
    )
    .await;
    let mut planned: Vec<StreamPlan<'_, '_>> = Vec::with_capacity(streams.len());
    for (stream, pending) in &streams {
        let accepted = screen(pending, &messages, settings, &mut report);
        let claiming = Claiming {
            stream,
            pending,
            messages: &messages,
            leases: &leases,
        };
        let claimed = claim(
            ledger,
            &claiming,
            &accepted,
            &mut report,
            &mut ledger_report,
        );
        planned.push(plan_fresh(
            stream,
            pending,
            claimed.await,
            settings,
            &mut report,
        ));
    }
    let held = hold_back(carrier, ledger, &messages, settings.now_ms, &mut planned).await;
    add_held(&mut report, &mut ledger_report, held);
    report.waiting += planned.iter().map(|sp| sp.waiting.len()).sum::<usize>();
    let delivered = put_planned(sink, &planned, &messages, &settings.limits, &mut report).await;
    ledger_report.minimum_put_calls = delivered.minimum_put_calls;
    let returning = Returning {
        messages: &messages,
        streams: &streams,
        report: &report,
        leases: &leases,
    };
    confirm_returning(ledger, &returning, &delivered.claims, &mut ledger_report).await;
    finish(ledger, &returning, &going, &mut ledger_report).await;
    (report, ledger_report)
}

/// Step 1: held-back envelopes opened. Each body sealed in one is a message of its own,
/// carried by the SQS message that carried the envelope; an envelope that does not open is
/// set aside.
fn open_envelopes<'a>(
    received: &[Inbound<'a>],
    report: &mut DeliveryReport,
) -> Vec<(&'a str, Cow<'a, str>)> {
    let mut opened = Vec::with_capacity(received.len());
    for m in received {
        match open_held(m.body) {
            Ok(bodies) => opened.extend(bodies.into_iter().map(|body| (m.id, body))),
            Err(e) => report.set_aside_message(m.id, e),
        }
    }
    opened
}

/// Step 2: each message parsed; one that is not a delivery message is set aside.
fn parse_messages<'a>(
    opened: &'a [(&'a str, Cow<'a, str>)],
    report: &mut DeliveryReport,
) -> Vec<Option<DeliveryMessage<'a>>> {
    opened
        .iter()
        .map(|(id, body)| match DeliveryMessage::parse(body) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                report.set_aside_message(id, e);
                None
            }
        })
        .collect()
}

/// The run's messages: each owned by the delivery its body names, else by the SQS message
/// that carried it (messages from before delivery ids).
fn received_messages<'a>(
    opened: &'a [(&'a str, Cow<'a, str>)],
    parsed: &'a [Option<DeliveryMessage<'a>>],
) -> Vec<Received<'a>> {
    opened
        .iter()
        .zip(parsed)
        .map(|(&(message_id, _), parsed)| Received {
            message_id,
            owner: parsed
                .as_ref()
                .and_then(|p| p.id.as_deref())
                .unwrap_or(message_id),
            since: parsed.as_ref().and_then(|p| p.since),
        })
        .collect()
}

/// Step 3: each record read (its time and eventID) and grouped by stream; a record without a
/// readable time, or not of the stream its message names (see [`check_stream`]), is set aside.
fn group_by_stream<'a>(
    messages: &[Received<'a>],
    parsed: &[Option<DeliveryMessage<'a>>],
    report: &mut DeliveryReport,
) -> BTreeMap<String, Vec<Pending<'a>>> {
    let mut streams: BTreeMap<String, Vec<Pending<'a>>> = BTreeMap::new();
    for (m, message) in parsed.iter().enumerate() {
        let Some(message) = message else { continue };
        for (record_index, raw) in message.records.iter().enumerate() {
            report.records_received += 1;
            let record = Record::parse(raw.get()).and_then(|record| {
                let checked = check_stream(&message.stream, &record);
                Ok((record.event_time_ms()?, record.event_id_ref(), checked))
            });
            match record {
                Ok((_, event_id, Err(why))) => {
                    *report.rejected.entry("wrong_stream").or_default() += 1;
                    report.set_aside_record(messages[m].message_id, record_index, event_id, why)
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
                Err(e) => {
                    let id = messages[m].message_id;
                    report.set_aside_record(id, record_index, None, e)
                }
            }
        }
    }
    streams
}

/// Step 4: every delivery with records to deliver begun for this attempt. The records of a
/// delivery that is done, or held by a copy in flight, are dropped as duplicates; those of
/// one the ledger cannot answer for come back with their message. Returns, per message,
/// whether its delivery goes on.
async fn begin<L: DeliveredLedger>(
    ledger: &L,
    messages: &[Received<'_>],
    streams: &mut BTreeMap<String, Vec<Pending<'_>>>,
    leases: &Leases,
    report: &mut DeliveryReport,
    ledger_report: &mut LedgerReport,
) -> Vec<bool> {
    let mut wanted: Vec<usize> = streams.values().flatten().map(|p| p.message).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let attempts: Vec<Attempt<'_>> = wanted
        .iter()
        .map(|&m| Attempt {
            delivery: messages[m].owner,
            attempt: messages[m].message_id,
        })
        .collect();
    let outcomes = ledger.begin(&attempts, leases).await;
    ledger_report.began += attempts.len();
    let mut outcome_of = vec![BeginOutcome::Go; messages.len()];
    for (position, &m) in wanted.iter().enumerate() {
        outcome_of[m] = outcomes
            .get(position)
            .copied()
            .unwrap_or(BeginOutcome::Unavailable);
        if outcome_of[m] == BeginOutcome::Unavailable {
            report.retry.insert(messages[m].message_id.to_owned());
        }
    }
    for pending in streams.values_mut() {
        pending.retain(|p| match outcome_of[p.message] {
            BeginOutcome::Go => true,
            BeginOutcome::Done | BeginOutcome::Busy => {
                ledger_report.copies += 1;
                report.duplicates += 1;
                false
            }
            BeginOutcome::Unavailable => {
                ledger_report.unavailable += 1;
                false
            }
        });
    }
    streams.retain(|_, pending| !pending.is_empty());
    // Messages without records to deliver never began: there is nothing of theirs to finish.
    let began: Vec<bool> = (0..messages.len())
        .map(|m| wanted.binary_search(&m).is_ok() && outcome_of[m] == BeginOutcome::Go)
        .collect();
    began
}

/// Step 5: a stream's records screened against CloudWatch Logs' limits; returns the indices
/// (into `pending`) of those it would accept, repeated eventIDs included.
fn screen(
    pending: &[Pending<'_>],
    messages: &[Received<'_>],
    settings: &DeliverySettings,
    report: &mut DeliveryReport,
) -> Vec<usize> {
    let events: Vec<LogEvent<'_>> = pending.iter().map(|p| p.event).collect();
    let screened = plan_batches(
        &events,
        settings.now_ms,
        settings.retention_days,
        &settings.limits,
    );
    for &(i, rejection) in &screened.rejected {
        let p = &pending[i];
        let id = messages[p.message].message_id;
        report.reject(id, p.record_index, p.event.event_id, rejection);
    }
    // Every copy of an eventID repeated in this invocation is claimed for its own delivery:
    // the copy whose delivery already holds the claim (an earlier attempt that failed) must
    // win it, or dropping the other copies could drop the record for good. Copies that win
    // for the same delivery are dropped when what is ours is planned again.
    let mut accepted = screened.batches.concat();
    accepted.extend_from_slice(&screened.duplicates);
    accepted
}

/// A stream's records, with the messages that carry them, as the ledger sees them.
struct Claiming<'r, 'a> {
    stream: &'r str,
    pending: &'r [Pending<'a>],
    messages: &'r [Received<'a>],
    leases: &'r Leases,
}

/// What claiming a stream's records left: the indices (into `pending`) of those that are ours
/// to deliver, and of those that wait for another delivery.
struct Claimed {
    fresh: Vec<usize>,
    waiting: Vec<usize>,
}

/// Step 6: the accepted records with an eventID claimed in the ledger (records without one
/// are never claimed).
async fn claim<L: DeliveredLedger>(
    ledger: &L,
    claiming: &Claiming<'_, '_>,
    accepted: &[usize],
    report: &mut DeliveryReport,
    ledger_report: &mut LedgerReport,
) -> Claimed {
    let Claiming {
        stream,
        pending,
        messages,
        leases,
    } = *claiming;
    let (claimed, fresh): (Vec<usize>, Vec<usize>) = accepted
        .iter()
        .partition(|&&i| pending[i].event.event_id.is_some());
    let claims: Vec<Claim<'_>> = claimed
        .iter()
        .map(|&i| claim_of(stream, messages, &pending[i]))
        .collect();
    let outcomes = ledger.claim(&claims, leases).await;
    ledger_report.claimed += claims.len();
    let mut result = Claimed {
        fresh,
        waiting: Vec::new(),
    };
    for (position, &i) in claimed.iter().enumerate() {
        let outcome = outcomes.get(position).copied();
        match outcome.unwrap_or(ClaimOutcome::Unavailable) {
            ClaimOutcome::Ours => result.fresh.push(i),
            ClaimOutcome::Taken => {
                ledger_report.taken += 1;
                report.duplicates += 1;
            }
            ClaimOutcome::Waiting => result.waiting.push(i),
            ClaimOutcome::Unavailable => {
                ledger_report.unavailable += 1;
                report
                    .retry
                    .insert(messages[pending[i].message].message_id.to_owned());
            }
        }
    }
    result
}

/// Step 7: the calls planned again over what is ours, so dropped duplicates leave no
/// half-empty batches.
fn plan_fresh<'s, 'a>(
    stream: &'s str,
    pending: &'s [Pending<'a>],
    claimed: Claimed,
    settings: &DeliverySettings,
    report: &mut DeliveryReport,
) -> StreamPlan<'s, 'a> {
    let fresh_events: Vec<LogEvent<'a>> = claimed.fresh.iter().map(|&i| pending[i].event).collect();
    let plan = plan_batches(
        &fresh_events,
        settings.now_ms,
        settings.retention_days,
        &settings.limits,
    );
    report.duplicates += plan.duplicates.len();
    debug_assert!(plan.rejected.is_empty());
    // A record waiting for another delivery that is ours here too (its owner's copy came in
    // this same batch) is delivered by that copy.
    let ours: std::collections::HashSet<&str> =
        fresh_events.iter().filter_map(|e| e.event_id).collect();
    let mut waiting = claimed.waiting;
    waiting.retain(|&i| {
        let delivered_here = pending[i]
            .event
            .event_id
            .is_some_and(|id| ours.contains(id));
        report.duplicates += usize::from(delivered_here);
        !delivered_here
    });
    StreamPlan {
        stream,
        pending,
        fresh: claimed.fresh,
        fresh_events,
        plan,
        held: Vec::new(),
        waiting,
        waiting_sent: false,
    }
}

/// Step 8's outcome (see [`hold_back`]) added to the reports.
fn add_held(report: &mut DeliveryReport, ledger_report: &mut LedgerReport, held: Held) {
    report.held_back += held.records;
    report.held_back_messages += held.messages;
    report.waited_out += held.waited_out;
    report.hold_back_error = held.error;
    report.retry.extend(held.unsent);
    ledger_report.released += held.released;
    ledger_report.release_failures = held.release_failed;
}

/// What the puts delivered: (stream, index into that stream's pending) of every claimed
/// record that landed, and the fewest calls the limits allow for what was put.
#[derive(Default)]
struct Delivered<'s> {
    claims: Vec<(&'s str, usize)>,
    minimum_put_calls: usize,
}

/// Step 9: every batch not held back put, in order.
async fn put_planned<'s, S: LogSink>(
    sink: &S,
    planned: &[StreamPlan<'s, '_>],
    messages: &[Received<'_>],
    limits: &BatchLimits,
    report: &mut DeliveryReport,
) -> Delivered<'s> {
    let mut delivered = Delivered::default();
    for sp in planned {
        let put: Vec<LogEvent<'_>> = sp
            .put_batches()
            .flat_map(|(batch, _)| batch.iter().map(|&j| sp.fresh_events[j]))
            .collect();
        delivered.minimum_put_calls += minimum_batches(&put, limits);
        for (batch, full) in sp.put_batches() {
            report.put_calls += 1;
            report.partial_calls += usize::from(!full);
            put_batch(sink, sp, batch, messages, report, &mut delivered).await;
        }
    }
    delivered
}

/// One call: what CloudWatch Logs accepted is delivered, what it rejected is reported by
/// reason; a failed call brings every message of the batch back.
async fn put_batch<'s, S: LogSink>(
    sink: &S,
    sp: &StreamPlan<'s, '_>,
    batch: &[usize],
    messages: &[Received<'_>],
    report: &mut DeliveryReport,
    delivered: &mut Delivered<'s>,
) {
    let events: Vec<LogEvent<'_>> = batch.iter().map(|&j| sp.fresh_events[j]).collect();
    match sink.put_batch(sp.stream, &events).await {
        Ok(rejected) => {
            for (position, &j) in batch.iter().enumerate() {
                let p = sp.pending_of(j);
                if let Some(rejection) = rejected.of(position) {
                    let id = messages[p.message].message_id;
                    report.reject(id, p.record_index, p.event.event_id, rejection);
                    continue;
                }
                report.delivered += 1;
                *report
                    .delivered_per_stream
                    .entry(sp.stream.to_owned())
                    .or_default() += 1;
                if p.event.event_id.is_some() {
                    delivered.claims.push((sp.stream, sp.fresh[j]));
                }
            }
        }
        Err(e) => {
            report.failed_calls += 1;
            for &j in batch {
                let id = messages[sp.pending_of(j).message].message_id;
                report.retry.insert(id.to_owned());
            }
            if !e.retryable {
                let first = messages[sp.pending_of(batch[0]).message].message_id;
                let reason = format!("PutLogEvents to {} failed: {e}", sp.stream);
                report.set_aside_message(first, reason);
            }
        }
    }
}

/// The run as it ends: its messages and records, which messages come back, and when.
struct Returning<'r, 'a> {
    messages: &'r [Received<'a>],
    streams: &'r BTreeMap<String, Vec<Pending<'a>>>,
    report: &'r DeliveryReport,
    leases: &'r Leases,
}

/// Step 10: what landed confirmed, for the messages that come back (their redelivery skips
/// it); the deliveries that succeed entirely are finished instead.
async fn confirm_returning<L: DeliveredLedger>(
    ledger: &L,
    run: &Returning<'_, '_>,
    delivered: &[(&str, usize)],
    ledger_report: &mut LedgerReport,
) {
    let to_confirm: Vec<Claim<'_>> = delivered
        .iter()
        .map(|&(stream, i)| (stream, &run.streams[stream][i]))
        .filter(|(_, p)| {
            run.report
                .retry
                .contains(run.messages[p.message].message_id)
        })
        .map(|(stream, p)| claim_of(stream, run.messages, p))
        .collect();
    if to_confirm.is_empty() {
        return;
    }
    match ledger.confirm(&to_confirm, run.leases).await {
        Ok(()) => ledger_report.confirmed += to_confirm.len(),
        Err(_) => ledger_report.confirm_failures += to_confirm.len(),
    }
}

/// Step 11: every delivery that went on and whose message does not come back is finished
/// (all it claimed landed, or waits in a new delivery); the others are let go, so that their
/// message, back or redriven, goes on at once.
async fn finish<L: DeliveredLedger>(
    ledger: &L,
    run: &Returning<'_, '_>,
    going: &[bool],
    ledger_report: &mut LedgerReport,
) {
    let (mut done, mut back) = (BTreeSet::new(), BTreeSet::new());
    for (m, _) in run.messages.iter().zip(going).filter(|(_, &going)| going) {
        if run.report.retry.contains(m.message_id) {
            back.insert((m.owner, m.message_id));
        } else {
            done.insert(m.owner);
        }
    }
    let done: Vec<&str> = done.into_iter().collect();
    if !done.is_empty() {
        match ledger.finish(&done, run.leases).await {
            Ok(()) => ledger_report.finished += done.len(),
            Err(_) => ledger_report.finish_failures += done.len(),
        }
    }
    let back: Vec<Attempt<'_>> = back
        .into_iter()
        .map(|(delivery, attempt)| Attempt { delivery, attempt })
        .collect();
    // A failure only means a copy finds the delivery held until this attempt's lease ends.
    if back.is_empty() {
        return;
    }
    match ledger.let_go(&back).await {
        Ok(()) => ledger_report.let_go += back.len(),
        Err(_) => ledger_report.let_go_failures += back.len(),
    }
}

#[cfg(test)]
mod tests;
