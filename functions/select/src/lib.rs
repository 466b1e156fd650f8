//! The select function: the ingest side of the trail. It reads CloudTrail log files named by
//! S3 notifications (and records carried by EventBridge), keeps what the trail's selectors
//! select, and sends it packed to the delivery queue; Insights records go to the Insights queue,
//! and so do the detections of the rules evaluated on every record read.

use aws_config::SdkConfig;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::Error;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeSet;

use trailwatch::deliver::message::DEFAULT_MESSAGE_BYTES;
use trailwatch::detect::{Detector, RuleOptions, RuleSet};
use trailwatch::ingest::{parse_message, parse_object_key, ObjectKind, WorkItem};
use trailwatch::select::{
    select_object, ConfigError, Destination, Matcher, Origin, Outbox, Outgoing, Problem,
    SelectCounts, SelectObjectError, SelectRun, TrailConfig,
};
use trailwatch_aws::function::{batch_response, HandlerError, Invocation, FAILED};
use trailwatch_aws::metrics::Emf;
use trailwatch_aws::s3::S3Objects;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_aws::{required_env, ssm};

pub const DELIVERY_QUEUE_ENV: &str = "TRAILWATCH_DELIVERY_QUEUE_URL";
pub const INSIGHTS_QUEUE_ENV: &str = "TRAILWATCH_INSIGHTS_QUEUE_URL";
/// `true` where the stack routes records to the ingest queue (EventBridge ingest): only then
/// are records carried in a message (EventBridge envelopes, inline `Records`) taken as the
/// trail's. Otherwise every record must come from a file in the trail bucket, and a message
/// carrying records is refused: anyone able to send to the queue could forge them.
pub const ACCEPT_RECORDS_ENV: &str = "TRAILWATCH_ACCEPT_RECORDS";
/// `false` turns detection off; on by default.
pub const DETECTIONS_ENV: &str = "TRAILWATCH_DETECTIONS";
/// Rule ids to switch off, separated by commas (CloudFormation's CommaDelimitedList).
pub const DETECTIONS_DISABLE_ENV: &str = "TRAILWATCH_DETECTIONS_DISABLE";
/// Ids of rules off by default to switch on, separated by commas.
pub const DETECTIONS_ENABLE_ENV: &str = "TRAILWATCH_DETECTIONS_ENABLE";

/// What the function needs, built once at cold start.
pub struct SelectContext {
    pub s3: S3Objects,
    pub sqs: SqsSender,
    pub delivery_queue: String,
    pub insights_queue: String,
    pub matcher: Matcher,
    /// See [`ACCEPT_RECORDS_ENV`].
    pub accept_records: bool,
    /// The embedded detection rules, evaluated on every record read; `None` when off.
    pub detector: Option<Detector>,
}

/// The detector the environment asks for: the embedded rules less those disabled, plus those
/// enabled ([`DETECTIONS_ENV`], [`DETECTIONS_DISABLE_ENV`], [`DETECTIONS_ENABLE_ENV`]). Every
/// rule not evaluated is logged with the reason; an id no rule has fails the cold start (a
/// typo would otherwise leave a noisy rule on).
/// `var` reads a variable (the process environment in Lambda, the deployed one in tests).
pub fn detector_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Detector>, SettingError> {
    if !flag(DETECTIONS_ENV, var(DETECTIONS_ENV).as_deref(), true)? {
        tracing::warn!("{DETECTIONS_ENV}=false: no detection rule is evaluated");
        return Ok(None);
    }
    let var = |name| var(name).unwrap_or_default();
    let ids = |name| -> BTreeSet<String> {
        var(name)
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let set = RuleSet::load(&RuleOptions {
        embedded: true,
        extra: Vec::new(),
        disable: ids(DETECTIONS_DISABLE_ENV),
        enable: ids(DETECTIONS_ENABLE_ENV),
    });
    for not_loaded in &set.not_loaded {
        tracing::error!(rule = %not_loaded, "detection rule not loaded");
    }
    for off in &set.disabled {
        tracing::info!(rule = %off.id, title = %off.title, reason = %off.reason, "detection rule off");
    }
    if !set.unknown_ids.is_empty() {
        return Err(SettingError::UnknownRuleIds(set.unknown_ids.join(", ")));
    }
    tracing::info!(rules = set.rules.len(), "detection rules loaded");
    Ok(Some(Detector::new(set.rules)))
}

/// [`ACCEPT_RECORDS_ENV`]'s value: unset means false; anything but `true`/`false` is refused.
pub fn accept_records(value: Option<&str>) -> Result<bool, SettingError> {
    flag(ACCEPT_RECORDS_ENV, value, false)
}

/// A boolean setting: `default` when unset or empty; anything but `true`/`false` is refused.
fn flag(name: &'static str, value: Option<&str>, default: bool) -> Result<bool, SettingError> {
    match value {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(SettingError::NotABoolean {
            name,
            value: other.to_owned(),
        }),
    }
}

/// A setting in the function's environment it cannot start with.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("{name}={value}: expected true or false")]
    NotABoolean { name: &'static str, value: String },
    #[error("{DETECTIONS_DISABLE_ENV}/{DETECTIONS_ENABLE_ENV}: no rule has the id(s) {0}")]
    UnknownRuleIds(String),
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
            accept_records: accept_records(std::env::var(ACCEPT_RECORDS_ENV).ok().as_deref())?,
            detector: detector_from_env(|name| std::env::var(name).ok())?,
        })
    }
}

/// What the select function can be invoked with, told apart at the edge (see
/// [`SelectInvocation::try_from`]); the runtime deserializes payloads into it.
#[derive(Debug)]
pub enum SelectInvocation {
    /// A batch from the ingest queue (S3, SNS or EventBridge notifications in the bodies).
    Queue(SqsEvent),
    /// `{"selectors": <trail configuration>, "events": [records]}`: decide each event, change
    /// nothing.
    DryRun(Value),
    /// A notification invoked directly (S3 event, EventBridge event, `{"Records":[...]}`), as
    /// received.
    Direct(String),
}

impl TryFrom<&str> for SelectInvocation {
    type Error = serde_json::Error;

    /// An SQS batch is `{"Records":[...]}` whose records come from `aws:sqs`; a dry run has
    /// `selectors`; anything else is a notification, read (and refused if need be) as such.
    fn try_from(payload: &str) -> Result<Self, Self::Error> {
        #[derive(Deserialize)]
        struct Shape<'a> {
            #[serde(rename = "Records", borrow, default)]
            records: Option<Vec<&'a RawValue>>,
            #[serde(default)]
            selectors: Option<serde::de::IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct First<'a> {
            #[serde(rename = "eventSource", borrow, default)]
            event_source: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(shape) = serde_json::from_str::<Shape>(payload) else {
            return Ok(SelectInvocation::Direct(payload.to_owned()));
        };
        let first = shape.records.as_deref().and_then(|r| r.first());
        let from_sqs = first
            .and_then(|r| serde_json::from_str::<First>(r.get()).ok())
            .is_some_and(|f| f.event_source.as_deref() == Some("aws:sqs"));
        if from_sqs {
            Ok(SelectInvocation::Queue(serde_json::from_str(payload)?))
        } else if shape.selectors.is_some() {
            Ok(SelectInvocation::DryRun(serde_json::from_str(payload)?))
        } else {
            Ok(SelectInvocation::Direct(payload.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for SelectInvocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let payload = Box::<RawValue>::deserialize(d)?;
        SelectInvocation::try_from(payload.get()).map_err(serde::de::Error::custom)
    }
}

impl SelectInvocation {
    /// The invocation a JSON payload is (tests and sample events start from a `Value`).
    pub fn from_payload(payload: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(payload)
    }
}

/// Why an invocation failed as a whole (the runtime reports it; the invoker retries).
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    DryRun(#[from] ConfigError),
    #[error(transparent)]
    Retry(#[from] Retry),
    #[error("the response could not be written: {0}")]
    Response(#[from] serde_json::Error),
}

/// `errorType` of a dry run whose trail configuration CloudTrail would refuse.
pub const INVALID_TRAIL_CONFIGURATION: &str = "trailwatch.InvalidTrailConfiguration";
/// `errorType` of a notification that must be retried (an object unreadable for now, a send
/// that failed).
pub const MESSAGE_WILL_BE_RETRIED: &str = "trailwatch.MessageWillBeRetried";

impl From<SelectError> for HandlerError {
    fn from(error: SelectError) -> Self {
        match error {
            SelectError::DryRun(e) => HandlerError::failed(INVALID_TRAIL_CONFIGURATION, e),
            SelectError::Retry(e) => HandlerError::failed(MESSAGE_WILL_BE_RETRIED, e),
            SelectError::Response(e) => HandlerError::failed(FAILED, e),
        }
    }
}

/// Handles an SQS batch (partial failures reported per message), a dry run, or a single
/// notification invoked directly.
pub async fn handle(
    context: &SelectContext,
    invocation: SelectInvocation,
) -> Result<Value, SelectError> {
    match invocation {
        SelectInvocation::Queue(event) => {
            let mut failed = Vec::new();
            let mut totals = SelectTotals::default();
            let invocation = Invocation::start();
            for message in &event.records {
                let id = message.message_id.clone().unwrap_or_default();
                let body = message.body.as_deref().unwrap_or("");
                if let Err(e) = process_counted(context, body, &mut totals).await {
                    tracing::error!(message_id = %id, error = %e, "message will be retried");
                    failed.push(id);
                }
            }
            totals.messages_failed = failed.len();
            invocation.publish(totals.emf());
            Ok(serde_json::to_value(batch_response(failed))?)
        }
        SelectInvocation::DryRun(request) => dry_run(&request),
        SelectInvocation::Direct(body) => {
            let mut totals = SelectTotals::default();
            let invocation = Invocation::start();
            let result = process_counted(context, &body, &mut totals).await;
            totals.messages_failed = usize::from(result.is_err());
            invocation.publish(totals.emf());
            result?;
            Ok(Value::Null)
        }
    }
}

/// Decides each event of a selector dry run by the selectors it carries; changes nothing and
/// needs neither AWS nor the function's settings.
pub fn dry_run(request: &Value) -> Result<Value, SelectError> {
    Ok(trailwatch::select::dry_run(request)?)
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
    pub detections: usize,
    pub stubbed: usize,
    pub unreadable: usize,
    pub dropped: std::collections::BTreeMap<&'static str, usize>,
    pub messages_sent: usize,
    pub send_calls: usize,
    pub send_retries: usize,
    pub messages_failed: usize,
    /// Digest files (`CloudTrail-Digest/`) named by notifications: not read, counted.
    pub digests_skipped: usize,
}

impl SelectTotals {
    fn add(&mut self, c: &SelectCounts) {
        self.records_received += c.records_read;
        self.selected += c.kept;
        self.duplicates += c.duplicates;
        self.insights += c.insights;
        self.detections += c.detections;
        self.stubbed += c.stubbed;
        self.unreadable += c.rejected;
        self.digests_skipped += c.digests_skipped;
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
            .count("Detections", self.detections)
            .count("Stubbed", self.stubbed)
            .count("RejectedUnreadable", self.unreadable)
            .counts_by("NotSelected", self.dropped.iter().map(|(k, v)| (*k, *v)))
            .count("MessagesSent", self.messages_sent)
            .count("SendMessageBatchCalls", self.send_calls)
            .count("SendRetries", self.send_retries)
            .count("MessagesFailed", self.messages_failed)
            .count("DigestsSkipped", self.digests_skipped)
    }
}

/// [`process`], adding what it did to `totals`.
pub async fn process_counted(
    context: &SelectContext,
    body: &str,
    totals: &mut SelectTotals,
) -> Result<(), Retry> {
    // Not a notification we understand: retrying will not change that, and dropping it would
    // be silent, so it goes to the dead-letter queue via the redrive policy.
    let items = parse_message(body).map_err(|e| Retry(e.to_string()))?;
    let mut run = SelectRun::new(&context.matcher, DEFAULT_MESSAGE_BYTES);
    if let Some(detector) = &context.detector {
        run = run.with_detector(detector);
    }
    let selected = select_items(context, items, &mut run, totals).await;
    totals.add(run.counts());
    let retry = selected?;
    // Those of objects were logged as they happened; these are the inline records'.
    for problem in run.new_problems() {
        log_problem(problem);
    }
    let c = run.counts();
    tracing::info!(
        records_read = c.records_read,
        kept = c.kept,
        duplicates = c.duplicates,
        insights = c.insights,
        detections = c.detections,
        rejected = c.rejected,
        stubbed = c.stubbed,
        messages = c.messages,
        dropped = ?c.dropped,
        "select done"
    );
    retry.map_or(Ok(()), Err)
}

/// Selects every item of one message, sending as it goes. `Err` when a send failed; `Ok` with
/// the reason to retry when an object may be readable later.
async fn select_items(
    context: &SelectContext,
    items: Vec<WorkItem>,
    run: &mut SelectRun<'_>,
    totals: &mut SelectTotals,
) -> Result<Option<Retry>, Retry> {
    let mut outbox = Queues { context, totals };
    let mut retry = None;
    for item in items {
        match item {
            WorkItem::Ignored(why) => {
                tracing::info!(reason = why, "message acknowledged and ignored")
            }
            WorkItem::Record(_) if !context.accept_records => {
                // Not retryable, but not to be dropped silently: after the redrive limit the
                // message waits in the dead-letter queue, where the DLQ alarm shows it.
                return Err(Retry(format!(
                    "the message carries records, which this stack does not ingest \
                     ({ACCEPT_RECORDS_ENV} is not true: IngestFromEventBridge=false); only \
                     notifications naming files in the trail bucket are read"
                )));
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
                match select_object(&context.s3, &origin, run, &mut outbox).await {
                    Ok(()) if origin.parsed.kind == ObjectKind::Digest => {
                        tracing::info!(bucket = %bucket, key = %key, "digest file skipped")
                    }
                    Ok(()) => {}
                    Err(SelectObjectError::Retry(e)) => retry = Some(Retry(e.to_string())),
                    Err(SelectObjectError::Send(e)) => return Err(e),
                }
            }
        }
        outbox.send(run.take_outbox()).await?;
    }
    run.flush();
    outbox.send(run.take_outbox()).await?;
    Ok(retry)
}

/// The delivery and Insights queues, as the select path's outbox.
struct Queues<'a> {
    context: &'a SelectContext,
    totals: &'a mut SelectTotals,
}

/// A record or file set aside: the first few of each object one by one, then a summary (see
/// `trailwatch::select::problems`).
fn log_problem(problem: &Problem) {
    tracing::error!(problem = %problem, "record or file set aside");
}

impl Outbox for Queues<'_> {
    type Error = Retry;

    fn problem(&mut self, problem: &Problem) {
        log_problem(problem);
    }

    async fn send(&mut self, messages: Vec<Outgoing>) -> Result<(), Retry> {
        if messages.is_empty() {
            return Ok(());
        }
        // Detections travel on the Insights queue, to the same bus.
        let (delivery, insights): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| m.destination == Destination::Delivery);
        let bodies = |v: Vec<Outgoing>| v.into_iter().map(|m| m.body).collect::<Vec<_>>();
        self.totals.messages_sent += delivery.len() + insights.len();
        for (queue, outgoing) in [
            (&self.context.delivery_queue, delivery),
            (&self.context.insights_queue, insights),
        ] {
            let stats = self
                .context
                .sqs
                .send_all(queue, &bodies(outgoing))
                .await
                .map_err(|e| Retry(e.to_string()))?;
            self.totals.send_calls += stats.calls;
            self.totals.send_retries += stats.retries;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_messages_are_accepted_only_when_the_stack_says_true() {
        assert_eq!(accept_records(None), Ok(false));
        assert_eq!(accept_records(Some("")), Ok(false));
        assert_eq!(accept_records(Some("false")), Ok(false));
        assert_eq!(accept_records(Some("true")), Ok(true));
        let error = accept_records(Some("yes")).unwrap_err().to_string();
        assert!(error.contains(ACCEPT_RECORDS_ENV), "{error}");
    }
}
