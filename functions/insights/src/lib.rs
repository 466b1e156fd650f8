//! The Insights function: forwards Insights records (CloudTrail's own, from the Insights
//! queue) to an EventBridge bus, under a custom source and CloudTrail's detail-type.

use aws_config::SdkConfig;
use aws_lambda_events::cloudwatch_logs::LogsEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{tracing, Error};
use serde_json::Value;
use trailwatch::deliver::DeliveryMessage;
use trailwatch::forward::{
    forward, validate_source, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE,
};
use trailwatch::record::Record;
use trailwatch_aws::eventbridge::EventBridgeBus;
use trailwatch_aws::required_env;

pub const EVENT_BUS_ENV: &str = "TRAILWATCH_EVENT_BUS";
pub const EVENT_SOURCE_ENV: &str = "TRAILWATCH_EVENT_SOURCE";

pub struct InsightsContext {
    pub bus: EventBridgeBus,
    pub source: String,
}

impl InsightsContext {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let source = std::env::var(EVENT_SOURCE_ENV).unwrap_or_else(|_| DEFAULT_SOURCE.into());
        validate_source(&source)?;
        Ok(InsightsContext {
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                required_env(EVENT_BUS_ENV)?,
            ),
            source,
        })
    }
}

/// What the Insights function can be invoked with.
#[derive(Debug)]
pub enum InsightsInvocation {
    /// A batch from the Insights queue: CloudTrail's own Insights records, to forward.
    Queue(SqsEvent),
    /// A CloudWatch Logs subscription batch from the trail log group: records to count.
    Logs(LogsEvent),
    /// The evaluation schedule: close minutes and evaluate the detector.
    Schedule(EventBridgeEvent),
}

impl InsightsInvocation {
    pub fn from_payload(payload: Value) -> Result<Self, Error> {
        if payload["Records"][0]["eventSource"] == "aws:sqs" {
            Ok(InsightsInvocation::Queue(serde_json::from_value(payload)?))
        } else if payload.get("awslogs").is_some() {
            // The awslogs deserializer borrows while decoding: it needs text, not a Value.
            Ok(InsightsInvocation::Logs(serde_json::from_str(
                &payload.to_string(),
            )?))
        } else if payload.get("detail-type").is_some() {
            Ok(InsightsInvocation::Schedule(serde_json::from_value(
                payload,
            )?))
        } else {
            Err(format!(
                "unrecognised invocation: expected an SQS batch, a CloudWatch Logs subscription \
                 or a scheduled event, got keys {:?}",
                payload.as_object().map(|o| o.keys().collect::<Vec<_>>())
            )
            .into())
        }
    }
}

pub async fn handle(context: &InsightsContext, payload: Value) -> Result<Value, Error> {
    match InsightsInvocation::from_payload(payload)? {
        InsightsInvocation::Queue(event) => {
            Ok(serde_json::to_value(forward_batch(context, &event).await)?)
        }
        InsightsInvocation::Logs(_) | InsightsInvocation::Schedule(_) => Err(
            "counting and evaluation need the Insights state table (TRAILWATCH_STATE_TABLE)".into(),
        ),
    }
}

pub async fn forward_batch(context: &InsightsContext, event: &SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for message in &event.records {
        let id = message.message_id.clone().unwrap_or_default();
        if let Err(reason) = forward_message(context, message.body.as_deref().unwrap_or("")).await {
            tracing::error!(message_id = %id, reason = %reason, "insights message will be retried");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

async fn forward_message(context: &InsightsContext, body: &str) -> Result<(), String> {
    let message = DeliveryMessage::parse(body).map_err(|e| e.to_string())?;
    let entries: Vec<Entry> = message
        .records
        .iter()
        .map(|raw| {
            let time = Record::parse(raw.get())
                .ok()
                .and_then(|r| r.fields.event_time.map(|t| t.into_owned()));
            Entry::insight(&context.source, raw.get(), time.as_deref())
        })
        .collect();
    let report = forward(
        &context.bus,
        &entries,
        &PutEventsLimits::default(),
        &RetryPolicy::default(),
        tokio::time::sleep,
    )
    .await;
    tracing::info!(
        forwarded = report.accepted.len(),
        failed = report.failed.len(),
        calls = report.calls,
        retries = report.retries,
        "insights forwarded"
    );
    match report.failed.first() {
        None => Ok(()),
        Some((i, reason)) => Err(format!(
            "{} of {} records not forwarded (first: record {i}: {reason})",
            report.failed.len(),
            entries.len()
        )),
    }
}
