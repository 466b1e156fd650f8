//! The deliver function: trail delivery to CloudWatch Logs. It reads the delivery queue and
//! writes each record to the trail log group, in the stream CloudTrail would use, reporting
//! every message not confirmed delivered as a batch-item failure so SQS brings it back.

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{tracing, Error};
use trailwatch::deliver::limits::is_valid_retention;
use trailwatch::deliver::{deliver_messages, BatchLimits, DeliveryReport, Inbound};
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::required_env;

pub const LOG_GROUP_ENV: &str = "TRAILWATCH_LOG_GROUP";
pub const RETENTION_ENV: &str = "TRAILWATCH_RETENTION_DAYS";
/// CloudTrail's log groups are created with 90 days unless told otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

pub struct DeliverContext {
    pub sink: CloudWatchLogs,
    pub retention_days: u32,
}

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
        Ok(DeliverContext {
            sink: CloudWatchLogs::new(
                aws_sdk_cloudwatchlogs::Client::new(sdk),
                group,
                Some(retention_days),
            ),
            retention_days,
        })
    }
}

pub async fn handle(context: &DeliverContext, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let report = deliver_messages(
        &context.sink,
        &inbound,
        now_ms,
        Some(context.retention_days),
        &BatchLimits::default(),
    )
    .await;
    log_report(&report);
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
    Ok(response)
}

fn log_report(report: &DeliveryReport) {
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
        put_calls = report.put_calls,
        failed_calls = report.failed_calls,
        rejected = ?report.rejected,
        retry_messages = report.retry.len(),
        "deliver done"
    );
}
