//! The select function: the ingest side of the trail. It reads CloudTrail log files named by
//! S3 notifications (and records carried by EventBridge), keeps what the trail's selectors
//! select, and sends it packed to the delivery queue; Insights records go to the Insights queue.

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::Error;
use serde_json::Value;
use trailwatch::deliver::message::DEFAULT_MESSAGE_BYTES;
use trailwatch::ingest::{parse_message, parse_object_key, ObjectKind, WorkItem};
use trailwatch::pipeline::{Destination, Origin, SelectRun, SEND_EVERY_MESSAGES};
use trailwatch::select::{Matcher, TrailConfig};
use trailwatch_aws::metrics::{self, Emf, SdkCounts};
use trailwatch_aws::s3::{ObjectError, S3Objects};
use trailwatch_aws::sqs::SqsSender;
use trailwatch_aws::{required_env, ssm};

pub const DELIVERY_QUEUE_ENV: &str = "TRAILWATCH_DELIVERY_QUEUE_URL";
pub const INSIGHTS_QUEUE_ENV: &str = "TRAILWATCH_INSIGHTS_QUEUE_URL";

/// What the function needs, built once at cold start.
pub struct SelectContext {
    pub s3: S3Objects,
    pub sqs: SqsSender,
    pub delivery_queue: String,
    pub insights_queue: String,
    pub matcher: Matcher,
}

impl SelectContext {
    /// Reads the queues and the trail configuration (inline JSON, or an SSM parameter); a bad
    /// configuration fails the cold start with the reason, before any message is taken.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let config_text = ssm::trail_config_text(sdk).await?;
        let config = TrailConfig::from_json(&config_text)
            .map_err(|e| format!("trail configuration: {e}"))?;
        Ok(SelectContext {
            s3: S3Objects::new(trailwatch_aws::client(sdk)),
            sqs: SqsSender::new(trailwatch_aws::client(sdk)),
            delivery_queue: required_env(DELIVERY_QUEUE_ENV)?,
            insights_queue: required_env(INSIGHTS_QUEUE_ENV)?,
            matcher: config.compile(),
        })
    }
}

/// What the select function can be invoked with.
#[derive(Debug)]
pub enum SelectInvocation {
    /// A batch from the ingest queue (S3, SNS or EventBridge notifications in the bodies).
    Queue(SqsEvent),
    /// `{"selectors": <trail configuration>, "events": [records]}`: decide each event, change
    /// nothing.
    DryRun(Value),
    /// A notification invoked directly (S3 event, EventBridge event, `{"Records":[...]}`).
    Direct(String),
}

impl SelectInvocation {
    pub fn from_payload(payload: Value) -> Result<Self, Error> {
        if payload["Records"][0]["eventSource"] == "aws:sqs" {
            return Ok(SelectInvocation::Queue(serde_json::from_value(payload)?));
        }
        if payload.get("selectors").is_some() {
            return Ok(SelectInvocation::DryRun(payload));
        }
        Ok(SelectInvocation::Direct(serde_json::to_string(&payload)?))
    }
}

/// Handles an SQS batch (partial failures reported per message), a dry run, or a single
/// notification invoked directly.
pub async fn handle(context: &SelectContext, payload: Value) -> Result<Value, Error> {
    match SelectInvocation::from_payload(payload)? {
        SelectInvocation::Queue(event) => {
            let mut failures = Vec::new();
            let mut totals = SelectTotals::default();
            let sdk_before = SdkCounts::now();
            for message in &event.records {
                let id = message.message_id.clone().unwrap_or_default();
                let body = message.body.as_deref().unwrap_or("");
                if let Err(e) = process_counted(context, body, &mut totals).await {
                    tracing::error!(message_id = %id, error = %e, "message will be retried");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    failures.push(failure);
                }
            }
            totals.messages_failed = failures.len();
            totals.sdk_retries = SdkCounts::now().retries_since(&sdk_before);
            println!("{}", totals.emf().to_line(metrics::now_ms()));
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failures;
            Ok(serde_json::to_value(response)?)
        }
        SelectInvocation::DryRun(request) => Ok(trailwatch::select::dry_run(&request)?),
        SelectInvocation::Direct(body) => {
            let mut totals = SelectTotals::default();
            let sdk_before = SdkCounts::now();
            let result = process_counted(context, &body, &mut totals).await;
            totals.messages_failed = usize::from(result.is_err());
            totals.sdk_retries = SdkCounts::now().retries_since(&sdk_before);
            println!("{}", totals.emf().to_line(metrics::now_ms()));
            result?;
            Ok(Value::Null)
        }
    }
}

/// A message that must come back (SQS redelivers it; after the redrive limit, the DLQ).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(String);

/// Processes one message: reads every object it names, selects, and sends the result.
/// Problems retrying cannot fix (a missing object, a corrupt file, a bad record) are logged
/// with bucket, key and record index and counted; the rest of the message is still processed.
pub async fn process(context: &SelectContext, body: &str) -> Result<(), Retry> {
    process_counted(context, body, &mut SelectTotals::default()).await
}

/// What one invocation did, summed over its messages, for its metrics.
#[derive(Debug, Default, Clone)]
pub struct SelectTotals {
    pub records_received: usize,
    pub selected: usize,
    pub duplicates: usize,
    pub insights: usize,
    pub stubbed: usize,
    pub unreadable: usize,
    pub dropped: std::collections::BTreeMap<&'static str, usize>,
    pub messages_sent: usize,
    pub send_calls: usize,
    pub send_retries: usize,
    pub messages_failed: usize,
    /// Digest files (`CloudTrail-Digest/`) named by notifications: not read, counted.
    pub digests_skipped: usize,
    /// Attempts the SDK retried (throttling, 5xx, timeouts, dropped connections).
    pub sdk_retries: usize,
}

impl SelectTotals {
    fn add(&mut self, c: &trailwatch::pipeline::SelectCounts) {
        self.records_received += c.records_read;
        self.selected += c.kept;
        self.duplicates += c.duplicates;
        self.insights += c.insights;
        self.stubbed += c.stubbed;
        self.unreadable += c.rejected;
        for (reason, n) in &c.dropped {
            *self.dropped.entry(reason).or_default() += n;
        }
    }

    /// The invocation's metrics in embedded metric format.
    pub fn emf(&self) -> Emf {
        Emf::new("select")
            .count("RecordsReceived", self.records_received)
            .count("Selected", self.selected)
            .count("DuplicatesDropped", self.duplicates)
            .count("Insights", self.insights)
            .count("Stubbed", self.stubbed)
            .count("RejectedUnreadable", self.unreadable)
            .counts_by("NotSelected", self.dropped.iter().map(|(k, v)| (*k, *v)))
            .count("MessagesSent", self.messages_sent)
            .count("SendMessageBatchCalls", self.send_calls)
            .count("SendRetries", self.send_retries)
            .count("MessagesFailed", self.messages_failed)
            .count("SdkRetries", self.sdk_retries)
            .count("DigestsSkipped", self.digests_skipped)
    }
}

/// [`process`], adding what it did to `totals`.
pub async fn process_counted(
    context: &SelectContext,
    body: &str,
    totals: &mut SelectTotals,
) -> Result<(), Retry> {
    let items = match parse_message(body) {
        Ok(items) => items,
        Err(e) => {
            // Not a notification we understand: retrying will not change that, and dropping it
            // would be silent, so it goes to the dead-letter queue via the redrive policy.
            return Err(Retry(e.to_string()));
        }
    };
    let mut run = SelectRun::new(&context.matcher, DEFAULT_MESSAGE_BYTES);
    let mut retry = None;
    for item in items {
        match item {
            WorkItem::Ignored(why) => {
                tracing::info!(reason = why, "message acknowledged and ignored")
            }
            WorkItem::Record(raw) => {
                let origin = Origin {
                    bucket: None,
                    key: "eventbridge",
                    parsed: parse_object_key(""),
                };
                run.record(&origin, 0, &raw);
            }
            WorkItem::Object { bucket, key } => {
                let origin = Origin {
                    bucket: Some(&bucket),
                    key: &key,
                    parsed: parse_object_key(&key),
                };
                if origin.parsed.kind == ObjectKind::Digest {
                    tracing::info!(bucket = %bucket, key = %key, "digest file skipped");
                    totals.digests_skipped += 1;
                    continue;
                }
                match read_object(context, &mut run, &origin, totals).await {
                    Ok(()) => {}
                    Err(ObjectRead::Object(e)) if e.is_retryable() => retry = Some(e.to_string()),
                    Err(ObjectRead::Object(e)) => run.problem(&origin, None, e),
                    Err(ObjectRead::Send(e)) => {
                        totals.add(&run.counts);
                        return Err(e);
                    }
                }
            }
        }
        if let Err(e) = send(context, &mut run, totals).await {
            totals.add(&run.counts);
            return Err(e);
        }
    }
    run.flush();
    let sent = send(context, &mut run, totals).await;
    totals.add(&run.counts);
    sent?;
    for problem in &run.problems {
        tracing::error!(problem = %problem, "record or file set aside");
    }
    let c = &run.counts;
    tracing::info!(
        records_read = c.records_read,
        kept = c.kept,
        duplicates = c.duplicates,
        insights = c.insights,
        rejected = c.rejected,
        stubbed = c.stubbed,
        messages = c.messages,
        dropped = ?c.dropped,
        "select done"
    );
    match retry {
        Some(reason) => Err(Retry(reason)),
        None => Ok(()),
    }
}

enum ObjectRead {
    Object(ObjectError),
    Send(Retry),
}

/// Reads one object into `run`, sending packed messages as they accumulate.
async fn read_object(
    context: &SelectContext,
    run: &mut SelectRun<'_>,
    origin: &Origin<'_>,
    totals: &mut SelectTotals,
) -> Result<(), ObjectRead> {
    let bucket = origin.bucket.unwrap_or_default();
    let mut object = context
        .s3
        .open(bucket, origin.key)
        .await
        .map_err(ObjectRead::Object)?;
    loop {
        let more = object
            .next_chunk(|item| match item.bytes {
                Ok(raw) => run.record(origin, item.index, raw),
                Err(problem) => {
                    run.counts.records_read += 1;
                    run.counts.rejected += 1;
                    run.problem(origin, Some(item.index), problem);
                }
            })
            .await
            .map_err(ObjectRead::Object)?;
        if run.outbox_len() >= SEND_EVERY_MESSAGES || !more {
            send(context, run, totals).await.map_err(ObjectRead::Send)?;
        }
        if !more {
            return Ok(());
        }
    }
}

async fn send(
    context: &SelectContext,
    run: &mut SelectRun<'_>,
    totals: &mut SelectTotals,
) -> Result<(), Retry> {
    let outbox = run.take_outbox();
    if outbox.is_empty() {
        return Ok(());
    }
    let (insights, delivery): (Vec<_>, Vec<_>) = outbox
        .into_iter()
        .partition(|m| m.destination == Destination::Insights);
    let bodies =
        |v: Vec<trailwatch::pipeline::Outgoing>| v.into_iter().map(|m| m.body).collect::<Vec<_>>();
    totals.messages_sent += delivery.len() + insights.len();
    for (queue, outgoing) in [
        (&context.delivery_queue, delivery),
        (&context.insights_queue, insights),
    ] {
        let stats = context
            .sqs
            .send_all(queue, &bodies(outgoing))
            .await
            .map_err(|e| Retry(e.to_string()))?;
        totals.send_calls += stats.calls;
        totals.send_retries += stats.retries;
    }
    Ok(())
}
