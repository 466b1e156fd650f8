//! The deliver function: trail delivery to CloudWatch Logs. It reads the delivery queue and
//! writes each record to the trail log group, in the stream CloudTrail would use, reporting
//! every message not confirmed delivered as a batch-item failure so SQS brings it back.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::Error;
use trailwatch::deliver::ledger::LedgerError;
use trailwatch::deliver::limits::is_valid_retention;
use trailwatch::deliver::{
    deliver_messages_once, Carrier, CarryError, Claim, ClaimOutcome, DeliveredLedger,
    DeliveryReport, DeliverySettings, HeldMessage, Inbound, InvocationOnly, LedgerReport, NoCarry,
};
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::dedup::DynamoDbLedger;
use trailwatch_aws::metrics::{self, CountAttempts, Emf, SdkCounts};
use trailwatch_aws::required_env;
use trailwatch_aws::sqs::SqsSender;

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
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let group = required_env(LOG_GROUP_ENV)?;
        let retention_days = match std::env::var(RETENTION_ENV) {
            Ok(text) if !text.is_empty() => text
                .parse::<u32>()
                .ok()
                .filter(|d| is_valid_retention(*d))
                .ok_or_else(|| {
                    format!("{RETENTION_ENV}={text} is not a retention CloudWatch Logs accepts")
                })?,
            _ => DEFAULT_RETENTION_DAYS,
        };
        let max_wait_seconds = match std::env::var(MAX_WAIT_ENV) {
            Ok(text) if !text.is_empty() => text
                .parse::<u32>()
                .map_err(|_| format!("{MAX_WAIT_ENV}={text} is not a whole number of seconds"))?,
            _ => DEFAULT_MAX_WAIT_SECONDS,
        };
        let hold = match std::env::var(HOLD_QUEUE_ENV) {
            Ok(queue_url) if !queue_url.is_empty() && max_wait_seconds > 0 => Some(HoldBack {
                sqs: SqsSender::new(aws_sdk_sqs::Client::from_conf(
                    aws_sdk_sqs::config::Builder::from(sdk)
                        .interceptor(CountAttempts)
                        .build(),
                )),
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
            sink: CloudWatchLogs::new(
                aws_sdk_cloudwatchlogs::Client::from_conf(
                    aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                        .interceptor(CountAttempts)
                        .build(),
                ),
                group,
                Some(retention_days),
            ),
            retention_days,
        })
    }
}

/// Handles a batch with the planner's in-invocation dedupe only.
pub async fn handle(context: &DeliverContext, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
    Ok(deliver(context, &InvocationOnly, event).await.response)
}

/// What one invocation did: the response for Lambda and the reports behind it.
#[derive(Debug)]
pub struct Delivered {
    pub response: SqsBatchResponse,
    pub report: DeliveryReport,
    pub ledger: LedgerReport,
}

/// Delivers a batch, remembering deliveries in `ledger` across invocations; logs the report
/// and prints the invocation's metrics (EMF).
pub async fn deliver<L: DeliveredLedger>(
    context: &DeliverContext,
    ledger: &L,
    event: SqsEvent,
) -> Delivered {
    let ids: Vec<String> = event
        .records
        .iter()
        .map(|m| m.message_id.clone().unwrap_or_default())
        .collect();
    let inbound: Vec<Inbound<'_>> = event
        .records
        .iter()
        .zip(&ids)
        .map(|(m, id)| Inbound {
            id,
            body: m.body.as_deref().unwrap_or(""),
        })
        .collect();
    let now_ms = metrics::now_ms();
    let sdk_before = SdkCounts::now();
    let (report, ledger_report) = match &context.hold {
        Some(hold) => {
            let done = deliver_now(context, ledger, hold, &inbound, now_ms).await;
            keep_in_queue(hold, &event, &done.0.kept).await;
            done
        }
        None => deliver_now(context, ledger, &NoCarry, &inbound, now_ms).await,
    };
    let sdk_retries = SdkCounts::now().retries_since(&sdk_before);
    log_report(&report, &ledger_report);
    println!(
        "{}",
        emf(&report, &ledger_report)
            .count("SdkRetries", sdk_retries)
            .to_line(now_ms)
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .retry
        .iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
            failure
        })
        .collect();
    Delivered {
        response,
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

async fn deliver_now<L: DeliveredLedger, C: Carrier>(
    context: &DeliverContext,
    ledger: &L,
    carrier: &C,
    inbound: &[Inbound<'_>],
    now_ms: i64,
) -> (DeliveryReport, LedgerReport) {
    let settings = DeliverySettings {
        retention_days: Some(context.retention_days),
        ..DeliverySettings::at(now_ms)
    };
    deliver_messages_once(&context.sink, ledger, carrier, inbound, &settings).await
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
                Ledger::DynamoDb(DynamoDbLedger::new(
                    aws_sdk_dynamodb::Client::from_conf(
                        aws_sdk_dynamodb::config::Builder::from(sdk)
                            .interceptor(CountAttempts)
                            .build(),
                    ),
                    table,
                ))
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
