//! One delivery run over the messages of an invocation, step by step: open held envelopes,
//! parse the messages, screen their records per stream, claim what is ours in the ledger,
//! plan the calls again over it, hold back the calls that are not full, put the rest, and
//! confirm what landed for the messages that come back. The ledger's protocol and its crash
//! windows are described in [`super::ledger`], holding back in [`super::hold`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::hold::{hold_back, keep_lone_holds, Carrier, Held, NoCarry};
use super::ledger::{Claim, ClaimOutcome, DeliveredLedger, InvocationOnly};
use super::limits::BatchLimits;
use super::message::{open_held, DeliveryMessage};
use super::pending::{claim_of, Inbound, Pending, StreamPlan};
use super::plan::{minimum_batches, plan_batches, LogEvent};
use super::report::{DeliveryReport, LedgerReport};
use super::sink::LogSink;
use crate::record::Record;

/// What a run plans with: the time it delivers at, the log group's retention, the limits of
/// a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    pub now_ms: i64,
    /// The log group's retention in days: older events would expire at once (rejected).
    pub retention_days: Option<u32>,
    pub limits: BatchLimits,
}

impl DeliverySettings {
    /// Delivering at `now_ms` to a group without retention, with PutLogEvents' own limits.
    pub fn at(now_ms: i64) -> Self {
        DeliverySettings {
            now_ms,
            retention_days: None,
            limits: BatchLimits::default(),
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
    let opened = open_envelopes(received, &mut report);
    let messages: Vec<Inbound<'_>> = opened
        .iter()
        .map(|(id, body)| Inbound { id, body })
        .collect();
    let parsed = parse_messages(&messages, &mut report);
    let mut streams = group_by_stream(&messages, &parsed, &mut report);
    // Per message: since when its records have been held back, if they have.
    let held_since: Vec<Option<i64>> = parsed
        .iter()
        .map(|parsed| parsed.as_ref().and_then(|p| p.since))
        .collect();
    keep_lone_holds(
        carrier,
        &messages,
        &held_since,
        settings.now_ms,
        &mut streams,
        &mut report,
    );
    let mut planned: Vec<StreamPlan<'_, '_>> = Vec::with_capacity(streams.len());
    for (stream, pending) in &streams {
        let accepted = screen(pending, &messages, settings, &mut report);
        let claiming = Claiming {
            stream,
            pending,
            messages: &messages,
        };
        let fresh = claim(
            ledger,
            &claiming,
            &accepted,
            &mut report,
            &mut ledger_report,
        )
        .await;
        planned.push(plan_fresh(stream, pending, fresh, settings, &mut report));
    }
    let held = hold_back(
        carrier,
        ledger,
        &messages,
        &held_since,
        settings.now_ms,
        &mut planned,
    )
    .await;
    add_held(&mut report, &mut ledger_report, held);
    let delivered = put_planned(sink, &planned, &messages, &settings.limits, &mut report).await;
    ledger_report.minimum_put_calls = delivered.minimum_put_calls;
    let returning = Returning {
        messages: &messages,
        streams: &streams,
        report: &report,
    };
    confirm_returning(ledger, &returning, &delivered.claims, &mut ledger_report).await;
    (report, ledger_report)
}

/// Step 1: held-back envelopes opened. Each body sealed in one is a message of its own, owned
/// by the SQS message that carried it; an envelope that does not open is set aside.
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
    messages: &[Inbound<'a>],
    report: &mut DeliveryReport,
) -> Vec<Option<DeliveryMessage<'a>>> {
    messages
        .iter()
        .map(|m| match DeliveryMessage::parse(m.body) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                report.set_aside_message(m.id, e);
                None
            }
        })
        .collect()
}

/// Step 3: each record read (its time and eventID) and grouped by stream; a record without a
/// readable time is set aside.
fn group_by_stream<'a>(
    messages: &[Inbound<'a>],
    parsed: &[Option<DeliveryMessage<'a>>],
    report: &mut DeliveryReport,
) -> BTreeMap<String, Vec<Pending<'a>>> {
    let mut streams: BTreeMap<String, Vec<Pending<'a>>> = BTreeMap::new();
    for (m, message) in parsed.iter().enumerate() {
        let Some(message) = message else { continue };
        for (record_index, raw) in message.records.iter().enumerate() {
            report.records_received += 1;
            let record = Record::parse(raw.get())
                .and_then(|record| Ok((record.event_time_ms()?, record.event_id_ref())));
            match record {
                Ok((timestamp_ms, event_id)) => streams
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
                Err(e) => report.set_aside_record(messages[m].id, record_index, None, e),
            }
        }
    }
    streams
}

/// Step 4: a stream's records screened against CloudWatch Logs' limits; returns the indices
/// (into `pending`) of those it would accept, repeated eventIDs included.
fn screen(
    pending: &[Pending<'_>],
    messages: &[Inbound<'_>],
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
        report.reject(
            messages[p.message].id,
            p.record_index,
            p.event.event_id,
            rejection,
        );
    }
    // Every copy of an eventID repeated in this invocation is claimed for its own message:
    // the copy whose message already holds the claim (an earlier attempt that failed) must
    // win it, or dropping the other copies could drop the record for good. Copies that win
    // for the same message are dropped when what is ours is planned again.
    let mut accepted = screened.batches.concat();
    accepted.extend_from_slice(&screened.duplicates);
    accepted
}

/// A stream's records, with the messages that carry them, as the ledger sees them.
struct Claiming<'r, 'a> {
    stream: &'r str,
    pending: &'r [Pending<'a>],
    messages: &'r [Inbound<'a>],
}

/// Step 5: the accepted records with an eventID claimed in the ledger; returns the indices
/// of those that are ours to deliver (records without an eventID are never claimed).
async fn claim<L: DeliveredLedger>(
    ledger: &L,
    claiming: &Claiming<'_, '_>,
    accepted: &[usize],
    report: &mut DeliveryReport,
    ledger_report: &mut LedgerReport,
) -> Vec<usize> {
    let Claiming {
        stream,
        pending,
        messages,
    } = *claiming;
    let (claimed, mut fresh): (Vec<usize>, Vec<usize>) = accepted
        .iter()
        .partition(|&&i| pending[i].event.event_id.is_some());
    let claims: Vec<Claim<'_>> = claimed
        .iter()
        .map(|&i| claim_of(stream, messages, &pending[i]))
        .collect();
    let outcomes = ledger.claim(&claims).await;
    ledger_report.claimed += claims.len();
    for (position, &i) in claimed.iter().enumerate() {
        let outcome = outcomes.get(position).copied();
        match outcome.unwrap_or(ClaimOutcome::Unavailable) {
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
    fresh
}

/// Step 6: the calls planned again over what is ours, so dropped duplicates leave no
/// half-empty batches.
fn plan_fresh<'s, 'a>(
    stream: &'s str,
    pending: &'s [Pending<'a>],
    fresh: Vec<usize>,
    settings: &DeliverySettings,
    report: &mut DeliveryReport,
) -> StreamPlan<'s, 'a> {
    let fresh_events: Vec<LogEvent<'a>> = fresh.iter().map(|&i| pending[i].event).collect();
    let plan = plan_batches(
        &fresh_events,
        settings.now_ms,
        settings.retention_days,
        &settings.limits,
    );
    report.duplicates += plan.duplicates.len();
    debug_assert!(plan.rejected.is_empty());
    StreamPlan {
        stream,
        pending,
        fresh,
        fresh_events,
        plan,
        held: Vec::new(),
    }
}

/// Step 7's outcome (see [`hold_back`]) added to the reports.
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

/// Step 8: every batch not held back put, in order.
async fn put_planned<'s, S: LogSink>(
    sink: &S,
    planned: &[StreamPlan<'s, '_>],
    messages: &[Inbound<'_>],
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
    messages: &[Inbound<'_>],
    report: &mut DeliveryReport,
    delivered: &mut Delivered<'s>,
) {
    let events: Vec<LogEvent<'_>> = batch.iter().map(|&j| sp.fresh_events[j]).collect();
    match sink.put_batch(sp.stream, &events).await {
        Ok(rejected) => {
            for (position, &j) in batch.iter().enumerate() {
                let p = sp.pending_of(j);
                if let Some(rejection) = rejected.of(position) {
                    let id = messages[p.message].id;
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
                report
                    .retry
                    .insert(messages[sp.pending_of(j).message].id.to_owned());
            }
            if !e.retryable {
                let first = messages[sp.pending_of(batch[0]).message].id;
                report
                    .set_aside_message(first, format!("PutLogEvents to {} failed: {e}", sp.stream));
            }
        }
    }
}

/// The run as it ends: its messages and records, and which messages come back.
struct Returning<'r, 'a> {
    messages: &'r [Inbound<'a>],
    streams: &'r BTreeMap<String, Vec<Pending<'a>>>,
    report: &'r DeliveryReport,
}

/// Step 9: what landed confirmed, for the messages that come back (their redelivery skips
/// it); messages that succeed entirely never come back, so theirs is not.
async fn confirm_returning<L: DeliveredLedger>(
    ledger: &L,
    run: &Returning<'_, '_>,
    delivered: &[(&str, usize)],
    ledger_report: &mut LedgerReport,
) {
    let to_confirm: Vec<Claim<'_>> = delivered
        .iter()
        .map(|&(stream, i)| (stream, &run.streams[stream][i]))
        .filter(|(_, p)| run.report.retry.contains(run.messages[p.message].id))
        .map(|(stream, p)| claim_of(stream, run.messages, p))
        .collect();
    if to_confirm.is_empty() {
        return;
    }
    match ledger.confirm(&to_confirm).await {
        Ok(()) => ledger_report.confirmed += to_confirm.len(),
        Err(_) => ledger_report.confirm_failures += to_confirm.len(),
    }
}

#[cfg(test)]
mod tests;
