//! The deliver function: trail delivery to CloudWatch Logs. It reads the delivery queue and
//! writes each record to the trail log group, in the stream CloudTrail would use, reporting
//! every message not confirmed delivered as a batch-item failure so SQS brings it back.

pub mod payload;

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use trailwatch::deliver::limits::is_valid_retention;
use trailwatch::deliver::message::open_held;
use trailwatch::deliver::{
    deliver_messages_once, Carrier, CarryError, Claim, ClaimOutcome, DeliveredLedger,
    DeliveryMessage, DeliveryReport, DeliverySettings, HeldMessage, Inbound, InvocationOnly,
    LedgerError, LedgerReport, NoCarry,
};
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::dedup::DynamoDbLedger;
use trailwatch_aws::function::{batch_response, HandlerError, Invocation};
use trailwatch_aws::metrics::Emf;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_aws::{client, required_env, ConfigError};

pub use payload::{DeliverPayload, DeliverResponse, DirectReport};

pub const LOG_GROUP_ENV: &str = "TRAILWATCH_LOG_GROUP";
pub const RETENTION_ENV: &str = "TRAILWATCH_RETENTION_DAYS";
/// The table remembering delivered eventIDs across invocations (the stack's state table).
/// Unset: duplicates are dropped within an invocation only.
pub const DEDUP_TABLE_ENV: &str = "TRAILWATCH_DEDUP_TABLE";
/// CloudTrail's log groups are created with 90 days unless told otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// The hold queue (its URL; a FIFO queue, one message group per stream): where records of a
/// call that is not full wait for more of their stream. Unset: every call is put at once.
pub const HOLD_QUEUE_ENV: &str = "TRAILWATCH_HOLD_QUEUE_URL";
/// How long a record may wait for a fuller call, in seconds (0: never held back).
pub const MAX_WAIT_ENV: &str = "TRAILWATCH_MAX_WAIT_SECONDS";
/// CloudTrail itself takes about 5 minutes to deliver a record to CloudWatch Logs; holding
/// one back for at most two more fills the calls of every busy stream.
pub const DEFAULT_MAX_WAIT_SECONDS: u32 = 120;

pub struct DeliverContext {
    pub sink: CloudWatchLogs,
    pub retention_days: u32,
    pub hold: Option<HoldBack>,
}

/// The hold queue as the place where records wait for a fuller call: each message goes to
/// its stream's message group, so the tails of a stream meet one invocation at a time.
pub struct HoldBack {
    pub sqs: SqsSender,
    pub queue_url: String,
    pub max_wait_ms: i64,
}

impl Carrier for HoldBack {
    fn max_wait_ms(&self) -> i64 {
        self.max_wait_ms
    }

    async fn send(&self, held: Vec<HeldMessage>) -> Result<(), CarryError> {
        let messages: Vec<(String, String)> =
            held.into_iter().map(|m| (m.stream, m.body)).collect();
        self.sqs
            .send_grouped(&self.queue_url, &messages)
            .await
            .map(drop)
            .map_err(CarryError::new)
    }

    fn keeps(&self) -> bool {
        true
    }
}

/// How long a held message that came back alone stays invisible at most before it comes back
/// (its stream's group waits behind it meanwhile). Shorter keeps latency and each record's
/// last wait closer to the limit; longer means fewer receives.
pub const KEEP_SECONDS: i64 = 20;

impl DeliverContext {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let group = required_env(LOG_GROUP_ENV)?;
        const RETENTION: &str = "a retention CloudWatch Logs accepts";
        let retention_days = match env_number(RETENTION_ENV, RETENTION)? {
            Some(days) if is_valid_retention(days) => days,
            Some(days) => {
                return Err(ConfigError::Invalid {
                    name: RETENTION_ENV.into(),
                    value: days.to_string(),
                    expected: RETENTION,
                })
            }
            None => DEFAULT_RETENTION_DAYS,
        };
        let max_wait_seconds = env_number(MAX_WAIT_ENV, "a whole number of seconds")?
            .unwrap_or(DEFAULT_MAX_WAIT_SECONDS);
        let hold = match std::env::var(HOLD_QUEUE_ENV) {
            Ok(queue_url) if !queue_url.is_empty() && max_wait_seconds > 0 => Some(HoldBack {
                sqs: SqsSender::new(client(sdk)),
                queue_url,
                max_wait_ms: i64::from(max_wait_seconds) * 1000,
            }),
            _ => {
                tracing::warn!(
                    "{HOLD_QUEUE_ENV} is not set or {MAX_WAIT_ENV} is 0: calls that are not full are put at once"
                );
                None
            }
        };
        Ok(DeliverContext {
            hold,
            sink: CloudWatchLogs::new(client(sdk), group, Some(retention_days)),
            retention_days,
        })
    }
}

/// An environment variable holding a whole number; `None` when it is unset or empty.
fn env_number(name: &str, expected: &'static str) -> Result<Option<u32>, ConfigError> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            name: name.into(),
            value: text,
            expected,
        }),
        _ => Ok(None),
    }
}

/// Handles an invocation: an SQS batch (the messages to bring back are its batch-item
/// failures), or a delivery message invoked directly (an error unless all of it was handled,
/// so that the invoker tries again).
pub async fn handle<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    event: LambdaEvent<DeliverPayload>,
) -> Result<DeliverResponse, HandlerError> {
    match event.payload {
        DeliverPayload::Queue(batch) => Ok(DeliverResponse::Batch(
            deliver(context, ledger, batch).await.response,
        )),
        DeliverPayload::Message(body) => {
            check_message(body.get())?;
            let message = Inbound {
                id: &event.context.request_id,
                body: body.get(),
            };
            let done = deliver_inbound(context, ledger, &[message]).await;
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
    let inbound: Vec<Inbound<'_>> = event
        .records
        .iter()
        .map(|m| Inbound {
            id: m.message_id.as_deref().unwrap_or_default(),
            body: m.body.as_deref().unwrap_or_default(),
        })
        .collect();
    let done = deliver_inbound(context, ledger, &inbound).await;
    if let Some(hold) = &context.hold {
        keep_in_queue(hold, &event, &done.report.kept).await;
    }
    done
}

/// Delivers received messages through the context's sink and hold queue.
async fn deliver_inbound<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    inbound: &[Inbound<'_>],
) -> Delivered {
    let invocation = Invocation::start();
    let settings = DeliverySettings {
        retention_days: Some(context.retention_days),
        ..DeliverySettings::at(trailwatch::time::now_ms())
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
}

fn log_report(report: &DeliveryReport, ledger: &LedgerReport) {
    if let Some(reason) = &report.hold_back_error {
        tracing::warn!(reason = %reason, "records not held back (sending them to the queue failed): put at once");
    }
    for aside in &report.set_aside {
        tracing::error!(
            message_id = %aside.message_id,
            record_index = ?aside.record_index,
            event_id = ?aside.event_id,
            reason = %aside.reason,
            "record set aside"
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

/// Where deliveries are remembered across invocations.
pub enum Ledger {
    DynamoDb(DynamoDbLedger),
    InvocationOnly,
}

impl Ledger {
    /// The DynamoDB ledger when `TRAILWATCH_DEDUP_TABLE` names a table, else in-invocation
    /// dedupe only; says which at cold start.
    pub fn from_env(sdk: &SdkConfig) -> Self {
        match std::env::var(DEDUP_TABLE_ENV) {
            Ok(table) if !table.is_empty() => {
                tracing::info!(table = %table, "duplicates dropped across invocations");
                Ledger::DynamoDb(DynamoDbLedger::new(client(sdk), table))
            }
            _ => {
                tracing::warn!(
                    "{DEDUP_TABLE_ENV} is not set: duplicates are dropped within an invocation only"
                );
                Ledger::InvocationOnly
            }
        }
    }
}

impl DeliveredLedger for Ledger {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.claim(claims).await,
            Ledger::InvocationOnly => InvocationOnly.claim(claims).await,
        }
    }

    async fn confirm(&self, delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.confirm(delivered).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.release(claims).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }
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
