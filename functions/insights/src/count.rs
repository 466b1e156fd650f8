//! Counting: a CloudWatch Logs subscription batch (the trail log group's records) becomes
//! per-(series key, minute) cells, written once to the state store.
//!
//! Idempotency and concurrency (see `trailwatch::insights::store`): the batch id is a hash of
//! the batch's log event ids, each part of the batch is written in one transaction with its
//! marker, and items of different batches never overlap, so concurrent invocations add up and
//! a redelivered batch (Lambda retries asynchronous invocations with the same payload) is a
//! no-op.
//!
//! Crash windows: before a part's transaction commits, nothing of it is visible and the retry
//! writes it; after, the retry finds the marker. A batch whose invocation fails every retry is
//! lost to the detector (Lambda's asynchronous retries are bounded): configure an on-failure
//! destination for the function to keep them.

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use serde::Serialize;
use trailwatch::insights::store::{batch_id, batch_parts, CellStore, PartOutcome, StoreError};
use trailwatch::insights::{InsightsConfig, MinuteAggregator};
use trailwatch::record::Record;

/// CloudWatch Logs sends this message type to check a new subscription; it holds no records.
pub const CONTROL_MESSAGE: &str = "CONTROL_MESSAGE";

/// What a counting invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountReport {
    pub batch_id: String,
    pub log_events: usize,
    /// Log events that are not a readable CloudTrail record (logged with their id).
    pub unreadable: usize,
    /// (key, minute) increments made by the records.
    pub counted: u64,
    pub cells: usize,
    pub parts_written: usize,
    /// Parts an earlier delivery of the same batch had written.
    pub parts_already_counted: usize,
    /// Cells of minutes already being evaluated: stored as late data (baseline only).
    pub late_cells: usize,
}

/// Counts a subscription batch into `store`.
pub async fn count_batch<S: CellStore>(
    store: &S,
    config: &InsightsConfig,
    event: &LogsEvent,
) -> Result<CountReport, StoreError> {
    let data = &event.aws_logs.data;
    let mut report = CountReport {
        batch_id: batch_id(
            &data.log_group,
            &data.log_stream,
            data.log_events.iter().map(|e| e.id.as_str()),
        ),
        log_events: data.log_events.len(),
        ..CountReport::default()
    };
    if data.message_type == CONTROL_MESSAGE {
        return Ok(report);
    }
    let mut aggregator = MinuteAggregator::new(config);
    for entry in &data.log_events {
        match Record::parse(&entry.message) {
            Ok(record) => {
                aggregator.observe(&record);
            }
            Err(e) => {
                report.unreadable += 1;
                tracing::warn!(
                    log_group = %data.log_group,
                    log_stream = %data.log_stream,
                    log_event_id = %entry.id,
                    reason = %e,
                    "log event is not a CloudTrail record; not counted"
                );
            }
        }
    }
    report.counted = aggregator.stats().counted;
    let parts = batch_parts(aggregator.cells().collect());
    report.cells = parts.iter().map(|p| p.cells.len()).sum();
    for part in &parts {
        match store.put_part(&report.batch_id, part).await? {
            PartOutcome::Written { late_cells } => {
                report.parts_written += 1;
                report.late_cells += late_cells;
            }
            PartOutcome::AlreadyCounted => report.parts_already_counted += 1,
        }
    }
    Ok(report)
}
