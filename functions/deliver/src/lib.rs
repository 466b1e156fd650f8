//! The deliver function: trail delivery to CloudWatch Logs. It reads the delivery queue and
//! writes each record to the trail log group, in the stream CloudTrail would use, reporting
//! every message not confirmed delivered as a batch-item failure so SQS brings it back.

pub mod context;
pub mod payload;

use std::collections::BTreeMap;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use trailwatch::deliver::ledger::DEFAULT_RUN_LEASE_MS;
use trailwatch::deliver::message::open_held;
use trailwatch::deliver::{
    deliver_messages_once, DeliveredLedger, DeliveryMessage, DeliveryReport, DeliverySettings,
    Inbound, InvocationOnly, LedgerReport, NoCarry, Rejection,
};
use trailwatch_aws::function::{batch_response, HandlerError, Invocation};
use trailwatch_aws::metrics::Emf;

pub use context::{
    DeliverContext, HoldBack, Ledger, CLAIM_LEASE_ENV, DEDUP_TABLE_ENV, DEFAULT_MAX_WAIT_SECONDS,
    DEFAULT_RETENTION_DAYS, HOLD_QUEUE_ENV, KEEP_SECONDS, LOG_GROUP_ENV, MAX_WAIT_ENV,
    RETENTION_ENV,
};
pub use payload::{DeliverPayload, DeliverResponse, DirectReport};

/// Handles an invocation: an SQS batch (the messages to bring back are its batch-item
/// failures), or a delivery message invoked directly (an error unless all of it was handled,
/// so that the invoker tries again).
pub async fn handle<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    event: LambdaEvent<DeliverPayload>,
) -> Result<DeliverResponse, HandlerError> {
    let deadline_ms = Some(event.context.deadline).filter(|&d| d > 0);
    let deadline_ms = deadline_ms.map(|d| d as i64);
    match event.payload {
        DeliverPayload::Queue(batch) => Ok(DeliverResponse::Batch(
            deliver_until(context, ledger, batch, deadline_ms)
                .await
                .response,
        )),
        DeliverPayload::Message(body) => {
            check_message(body.get())?;
            let message = Inbound {
                id: &event.context.request_id,
                body: body.get(),
            };
            let done = deliver_inbound(context, ledger, &[message], deadline_ms).await;
            if done.report.retry.is_empty() {
                Ok(DeliverResponse::Delivered(DirectReport {
                    records_received: done.report.records_received,
                    delivered: done.report.delivered,
                    duplicates: done.report.duplicates,
                    set_aside: done.report.set_aside.len(),
                }))
            } else {
                Err(HandlerError::failed(
                    NOT_DELIVERED,
                    not_delivered(&done.report),
                ))
            }
        }
    }
}

/// A directly invoked payload that is not a delivery message is refused as such (in a queue
/// it would be set aside and brought back to reach the dead-letter queue).
fn check_message(body: &str) -> Result<(), HandlerError> {
    let opened = open_held(body).map_err(|e| HandlerError::payload(e.to_string()))?;
    for inner in &opened {
        DeliveryMessage::parse(inner).map_err(|e| HandlerError::payload(e.to_string()))?;
    }
    Ok(())
}

/// `errorType` of a delivery message invoked directly that must be invoked again.
pub const NOT_DELIVERED: &str = "trailwatch.NotDelivered";

/// Why a directly invoked message must come back: the first reason logged.
fn not_delivered(report: &DeliveryReport) -> String {
    let first = report.set_aside.first().map(|a| a.reason.as_str());
    format!(
        "{} of {} records not delivered yet ({})",
        report.records_received - report.delivered - report.duplicates,
        report.records_received,
        first.unwrap_or("a call failed or CloudWatch Logs will accept them later")
    )
}

/// Handles a batch with the planner's in-invocation dedupe only.
pub async fn handle_batch(context: &DeliverContext, event: SqsEvent) -> SqsBatchResponse {
    deliver(context, &InvocationOnly, event).await.response
}

/// What one invocation did: the response for Lambda and the reports behind it.
#[derive(Debug)]
pub struct Delivered {
    pub response: SqsBatchResponse,
    pub report: DeliveryReport,
    pub ledger: LedgerReport,
}

/// Delivers an SQS batch, remembering deliveries in `ledger` across invocations; logs the
/// report and prints the invocation's metrics (EMF). Held messages that came back alone are
/// kept invisible in the hold queue meanwhile.
pub async fn deliver<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    event: SqsEvent,
) -> Delivered {
    deliver_until(context, ledger, event, None).await
}

/// [`deliver`], in an invocation that ends at `deadline_ms` (epoch ms) when known.
pub async fn deliver_until<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    event: SqsEvent,
    deadline_ms: Option<i64>,
) -> Delivered {
    let inbound: Vec<Inbound<'_>> = event
        .records
        .iter()
        .map(|m| Inbound {
            id: m.message_id.as_deref().unwrap_or_default(),
            body: m.body.as_deref().unwrap_or_default(),
        })
        .collect();
    let done = deliver_inbound(context, ledger, &inbound, deadline_ms).await;
    if let Some(hold) = &context.hold {
        keep_in_queue(hold, &event, &done.report.kept).await;
    }
    done
}

/// How long past its deadline an invocation may still be holding its deliveries (the
/// runtime's own margin to stop it).
const RUN_LEASE_MARGIN_MS: i64 = 10_000;

/// Delivers received messages through the context's sink and hold queue, holding their
/// deliveries until the invocation's deadline (and a margin) when it is known.
async fn deliver_inbound<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    inbound: &[Inbound<'_>],
    deadline_ms: Option<i64>,
) -> Delivered {
    let invocation = Invocation::start();
    let now_ms = trailwatch::time::now_ms();
    let settings = DeliverySettings {
        retention_days: Some(context.retention_days),
        claim_lease_ms: context.claim_lease_ms,
        run_lease_ms: deadline_ms.map_or(DEFAULT_RUN_LEASE_MS, |d| {
            (d - now_ms).max(0) + RUN_LEASE_MARGIN_MS
        }),
        ..DeliverySettings::at(now_ms)
    };
    let (report, ledger_report) = match &context.hold {
        Some(hold) => deliver_messages_once(&context.sink, ledger, hold, inbound, &settings).await,
        None => deliver_messages_once(&context.sink, ledger, &NoCarry, inbound, &settings).await,
    };
    log_report(&report, &ledger_report);
    invocation.publish(emf(&report, &ledger_report));
    Delivered {
        response: batch_response(report.retry.iter().cloned()),
        report,
        ledger: ledger_report,
    }
}

/// Held messages that came back alone stay invisible in the hold queue until their records
/// may wait no longer, or [`KEEP_SECONDS`]; meanwhile the rest of their stream's group gathers
/// behind them. A change that fails only means the message comes back when the queue's
/// visibility timeout ends, and is put then if its records waited long enough.
async fn keep_in_queue(hold: &HoldBack, event: &SqsEvent, kept: &BTreeMap<String, i64>) {
    let receipts: Vec<(&str, i32)> = event
        .records
        .iter()
        .filter_map(|m| {
            let left_ms = kept.get(m.message_id.as_deref()?)?;
            let seconds = (left_ms + 999) / 1000;
            Some((
                m.receipt_handle.as_deref()?,
                seconds.clamp(1, KEEP_SECONDS) as i32,
            ))
        })
        .collect();
    if receipts.is_empty() {
        return;
    }
    let (failed, reason) = hold.sqs.hide(&hold.queue_url, &receipts).await;
    if failed > 0 {
        tracing::warn!(failed, reason = ?reason, "held messages not kept invisible: they come back at the end of the visibility timeout");
    }
}

/// The invocation's metrics in embedded metric format.
pub fn emf(report: &DeliveryReport, ledger: &LedgerReport) -> Emf {
    Emf::new("deliver")
        .count("RecordsReceived", report.records_received)
        .count("Delivered", report.delivered)
        .count("DuplicatesDropped", report.duplicates)
        .count("DuplicatesAcrossInvocations", ledger.taken)
        .count("CopiesDropped", ledger.copies)
        .count("WaitingForOwner", report.waiting)
        .count("HeldBack", report.held_back)
        .count("HeldBackMessages", report.held_back_messages)
        .counts_by("Rejected", report.rejected.iter().map(|(k, v)| (*k, *v)))
        .count("SetAside", report.set_aside.len())
        .count("PutLogEventsCalls", report.put_calls)
        .count("PutLogEventsNotFull", report.partial_calls)
        .count("HeldBackWaitedOut", report.waited_out)
        .count("HeldBackKept", report.kept.len())
        .count("PutLogEventsFailed", report.failed_calls)
        .count("MessagesRetried", report.retry.len())
        .count("LedgerUnavailable", ledger.unavailable)
        .count("LedgerConfirmFailures", ledger.confirm_failures)
        .count("LedgerReleaseFailures", ledger.release_failures)
        .count("LedgerFinishFailures", ledger.finish_failures)
}

/// Records set aside that are logged one by one in an invocation; the rest are counted in
/// one line per reason (a backfill of old files can set aside thousands).
pub const SET_ASIDE_LOGGED: usize = 20;

fn log_report(report: &DeliveryReport, ledger: &LedgerReport) {
    if let Some(reason) = &report.hold_back_error {
        tracing::warn!(reason = %reason, "records not held back (sending them to the queue failed): put at once");
    }
    for aside in report.set_aside.iter().take(SET_ASIDE_LOGGED) {
        tracing::error!(
            message_id = %aside.message_id,
            record_index = ?aside.record_index,
            event_id = ?aside.event_id,
            reason = %aside.reason,
            "record set aside"
        );
    }
    let mut more: BTreeMap<&str, usize> = BTreeMap::new();
    for aside in report.set_aside.iter().skip(SET_ASIDE_LOGGED) {
        *more.entry(aside.reason.as_str()).or_default() += 1;
    }
    for (reason, count) in more {
        tracing::error!(count, reason = %reason, "more records set aside");
    }
    if let Some(&too_old) = report.rejected.get(Rejection::TooOld.as_str()) {
        tracing::warn!(
            too_old,
            "records older than 14 days set aside: CloudWatch Logs refuses them. A backfill of \
             old log files into the trail bucket cannot reach the log group; `trailwatch \
             replay` writes them to files"
        );
    }
    tracing::info!(
        records_received = report.records_received,
        delivered = report.delivered,
        duplicates = report.duplicates,
        held_back = report.held_back,
        kept = report.kept.len(),
        put_calls = report.put_calls,
        failed_calls = report.failed_calls,
        rejected = ?report.rejected,
        retry_messages = report.retry.len(),
        ledger_taken = ledger.taken,
        ledger_unavailable = ledger.unavailable,
        ledger_confirmed = ledger.confirmed,
        ledger_confirm_failures = ledger.confirm_failures,
        "deliver done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_say_what_was_held_and_why_calls_were_put_not_full() {
        let report = DeliveryReport {
            put_calls: 5,
            partial_calls: 3,
            waited_out: 1,
            kept: [("m".to_owned(), 5_000), ("n".to_owned(), 1)].into(),
            ..DeliveryReport::default()
        };
        let line: serde_json::Value =
            serde_json::from_str(&emf(&report, &LedgerReport::default()).to_line(0)).unwrap();
        assert_eq!(line["PutLogEventsNotFull"], 3);
        assert_eq!(line["HeldBackWaitedOut"], 1);
        assert_eq!(line["HeldBackKept"], 2);
    }
}
