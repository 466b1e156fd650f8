//! The Insights function: counts the trail's records (CloudWatch Logs subscription batches)
//! into per-minute cells in the state table ([`count`]), evaluates the detector every minute
//! ([`evaluate`]), and forwards Insights records — its own and CloudTrail's, from the Insights
//! queue — to an EventBridge bus, under a custom source and CloudTrail's detail-type. The
//! select function's detections come on the same queue and go to the same bus after noise
//! control ([`detections`]).

pub mod count;
pub mod detections;
pub mod evaluate;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;

use aws_config::SdkConfig;
use aws_lambda_events::cloudwatch_logs::LogsEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::Error;
use serde::Deserialize;
use serde_json::Value;
use trailwatch::deliver::message::MessageError;
use trailwatch::deliver::DeliveryMessage;
use trailwatch::forward::{
    forward, validate_source, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE,
};
use trailwatch::insights::store::{load_snapshot, Snapshot};
use trailwatch::insights::InsightsConfig;
use trailwatch::record::Record;
use trailwatch::select::DETECTIONS_STREAM;
use trailwatch_aws::detection_windows::DynamoDbWindows;
use trailwatch_aws::eventbridge::EventBridgeBus;
use trailwatch_aws::insights_state::DynamoDbInsightsStore;
use trailwatch_aws::{required_env, ssm};

use crate::count::count_batch;
use crate::detections::{decide, DetectionError, Detections};
use crate::evaluate::{evaluate, EvaluateSettings};

pub const EVENT_BUS_ENV: &str = "TRAILWATCH_EVENT_BUS";
pub const EVENT_SOURCE_ENV: &str = "TRAILWATCH_EVENT_SOURCE";
pub const STATE_TABLE_ENV: &str = "TRAILWATCH_STATE_TABLE";

/// What forwarding needs (enough for the Insights queue).
pub struct InsightsContext {
    pub bus: EventBridgeBus,
    pub source: String,
    pub detections: Detections,
}

impl InsightsContext {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let source = std::env::var(EVENT_SOURCE_ENV).unwrap_or_else(|_| DEFAULT_SOURCE.into());
        validate_source(&source)?;
        // Suppression windows live in the state table; a context without one reports every
        // detection not excepted.
        let windows = std::env::var(STATE_TABLE_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(|table| DynamoDbWindows::new(trailwatch_aws::client(sdk), table));
        Ok(InsightsContext {
            bus: EventBridgeBus::new(trailwatch_aws::client(sdk), required_env(EVENT_BUS_ENV)?),
            source,
            detections: Detections {
                noise: Detections::noise_from_env()?,
                windows,
            },
        })
    }
}

/// What counting and evaluation need besides forwarding: the state table and the
/// configuration.
pub struct StateContext {
    pub store: DynamoDbInsightsStore,
    /// The trail configuration's `InsightSelectors` and `Trailwatch` extensions (watermark,
    /// detector settings); both Insight types on management events when absent.
    pub config: InsightsConfig,
    pub settings: EvaluateSettings,
}

impl StateContext {
    /// Reads the table and the configuration (inline or from SSM); a bad configuration fails
    /// the cold start with the reason.
    pub async fn from_env(sdk: &SdkConfig, source: &str) -> Result<Self, Error> {
        let config_text = ssm::trail_config_text(sdk).await?;
        let config = InsightsConfig::from_json(&config_text)
            .map_err(|e| format!("Insights configuration: {e}"))?;
        Ok(StateContext {
            store: DynamoDbInsightsStore::new(
                trailwatch_aws::client(sdk),
                required_env(STATE_TABLE_ENV)?,
            ),
            config,
            settings: EvaluateSettings::new(source),
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

/// `{"trailwatchSnapshot": <snapshot>}`, a direct invocation (≤ 6 MB): per-key states computed
/// by a local replay of past log files, loaded so that a new deployment need not wait 7 days
/// for its baselines. `None` for every other payload.
pub fn snapshot_payload(payload: &Value) -> Result<Option<Snapshot>, Error> {
    match payload.get("trailwatchSnapshot") {
        Some(snapshot) => Ok(Some(Snapshot::deserialize(snapshot)?)),
        None => Ok(None),
    }
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

/// Forwarding only: counting and evaluation fail (no state table).
pub async fn handle(context: &InsightsContext, payload: Value) -> Result<Value, Error> {
    handle_with_state(context, None, payload).await
}

/// Every invocation: the Insights queue, the log subscription and the schedule.
pub async fn handle_with_state(
    context: &InsightsContext,
    state: Option<&StateContext>,
    payload: Value,
) -> Result<Value, Error> {
    let needs_state = || {
        state
            .ok_or("counting and evaluation need the Insights state table (TRAILWATCH_STATE_TABLE)")
    };
    if let Some(snapshot) = snapshot_payload(&payload)? {
        return load_snapshot_payload(needs_state()?, &snapshot).await;
    }
    match InsightsInvocation::from_payload(payload)? {
        InsightsInvocation::Queue(event) => {
            Ok(serde_json::to_value(forward_batch(context, &event).await)?)
        }
        InsightsInvocation::Logs(event) => {
            let state = needs_state()?;
            // An error fails the invocation: Lambda retries the batch, which is counted once.
            let report = count_batch(&state.store, &state.config, &event).await?;
            tracing::info!(
                batch_id = %report.batch_id,
                log_events = report.log_events,
                unreadable = report.unreadable,
                cells = report.cells,
                parts_written = report.parts_written,
                parts_already_counted = report.parts_already_counted,
                late_cells = report.late_cells,
                "batch counted"
            );
            Ok(serde_json::to_value(report)?)
        }
        InsightsInvocation::Schedule(event) => {
            let state = needs_state()?;
            let now_ms = event
                .time
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(wall_clock_ms);
            let owner = format!(
                "{}-{}-{}",
                event.id.as_deref().unwrap_or("schedule"),
                std::process::id(),
                wall_clock_ms()
            );
            let report = evaluate(
                &state.store,
                &context.bus,
                &state.config,
                &state.settings,
                now_ms,
                &owner,
            )
            .await?;
            tracing::info!(
                leased = report.leased,
                closed_after = ?report.closed_after,
                closed_through = ?report.closed_through,
                cells = report.cells,
                keys_loaded = report.keys_loaded,
                keys_saved = report.keys_saved,
                open_insights = report.open_insights,
                starts = report.starts,
                ends = report.ends,
                "minutes evaluated"
            );
            Ok(serde_json::to_value(report)?)
        }
    }
}

async fn load_snapshot_payload(state: &StateContext, snapshot: &Snapshot) -> Result<Value, Error> {
    let owner = format!("snapshot-{}-{}", std::process::id(), wall_clock_ms());
    let keys = load_snapshot(
        &state.store,
        snapshot,
        &owner,
        wall_clock_ms(),
        state.settings.lease_ms,
    )
    .await?;
    tracing::info!(
        keys,
        closed_through = snapshot.closed_through,
        "snapshot loaded"
    );
    Ok(serde_json::json!({
        "keysLoaded": keys,
        "closedThrough": snapshot.closed_through,
    }))
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

/// Why a message of the Insights queue was not forwarded (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("not a delivery message: {0}")]
    Message(#[from] MessageError),
    #[error(transparent)]
    Detection(#[from] DetectionError),
    #[error("{failed} of {total} records not forwarded (first: record {index}: {reason})")]
    NotAccepted {
        failed: usize,
        total: usize,
        index: usize,
        reason: String,
    },
}

async fn forward_message(context: &InsightsContext, body: &str) -> Result<(), ForwardError> {
    let message = DeliveryMessage::parse(body)?;
    let entries = if message.stream == DETECTIONS_STREAM {
        let decided = decide(&context.detections, &context.source, &message).await?;
        tracing::info!(
            detections = message.records.len(),
            reported = decided.entries.len(),
            held = decided.held,
            excepted = decided.excepted,
            "detections decided"
        );
        decided.entries
    } else {
        insight_entries(&context.source, &message)
    };
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
        "forwarded"
    );
    match report.failed.first() {
        None => Ok(()),
        Some((index, reason)) => Err(ForwardError::NotAccepted {
            failed: report.failed.len(),
            total: entries.len(),
            index: *index,
            reason: reason.clone(),
        }),
    }
}

/// Insights records as entries: detail = the record, unchanged.
fn insight_entries(source: &str, message: &DeliveryMessage<'_>) -> Vec<Entry> {
    message
        .records
        .iter()
        .map(|raw| {
            let time = Record::parse(raw.get())
                .ok()
                .and_then(|r| r.fields.event_time.map(|t| t.into_owned()));
            Entry::insight(source, raw.get(), time.as_deref())
        })
        .collect()
}

#[cfg(test)]
mod tests;
