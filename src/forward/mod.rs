//! Forward: Insights records and detections to an EventBridge bus with PutEvents.
//!
//! Entries are published under a custom source (AWS rejects `aws.` sources from customers)
//! with CloudTrail's detail-type, so users' rules need only the source changed. Each entry's
//! size is computed as EventBridge computes it and checked before sending; calls carry at most
//! 10 entries; per-entry failures are read from the response and the retryable ones sent again
//! with exponential backoff.

use std::future::Future;
use std::time::Duration;

use crate::detect::{Detection, DETECTION_DETAIL_TYPE};

/// The retries [`forward`] makes.
pub use crate::retry::RetryPolicy;

/// PutEvents: at most 10 entries per call.
pub const PUT_EVENTS_MAX_ENTRIES: usize = 10;
/// PutEvents: the entries of one call must total less than 256 KB. Newer API models say 1 MB
/// (late 2026, unconfirmed in every Region), so the older, safe limit is kept.
pub const PUT_EVENTS_MAX_BYTES: usize = 256 * 1024;
/// PutEvents: a set `Time` counts 14 bytes towards the entry size.
pub const PUT_EVENTS_TIME_BYTES: usize = 14;
/// PutEvents: DetailType is at most 128 characters.
pub const PUT_EVENTS_MAX_DETAIL_TYPE: usize = 128;
/// CloudTrail's detail-type for Insights events.
pub const INSIGHT_DETAIL_TYPE: &str = "AWS Insight via CloudTrail";
/// The source trailwatch publishes under unless configured otherwise.
pub const DEFAULT_SOURCE: &str = "trailwatch.cloudtrail";

/// One PutEvents entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub source: String,
    pub detail_type: String,
    /// A JSON object, as text.
    pub detail: String,
    /// RFC 3339 time of the event (the record's eventTime).
    pub time: Option<String>,
    pub resources: Vec<String>,
}

impl Entry {
    /// An Insights record as EventBridge entry: detail = the record, unchanged.
    pub fn insight(source: &str, record_json: &str, event_time: Option<&str>) -> Entry {
        Entry {
            source: source.to_owned(),
            detail_type: INSIGHT_DETAIL_TYPE.to_owned(),
            detail: record_json.to_owned(),
            time: event_time.map(str::to_owned),
            resources: Vec::new(),
        }
    }

    /// A detection as EventBridge entry: detail = the detection, at the matched record's time.
    pub fn detection(source: &str, detection: &Detection) -> Entry {
        Entry {
            source: source.to_owned(),
            detail_type: DETECTION_DETAIL_TYPE.to_owned(),
            detail: detection.to_json(),
            time: detection.event_time.clone(),
            resources: Vec::new(),
        }
    }

    /// The entry size as EventBridge computes it: 14 bytes for a set Time, plus the UTF-8 bytes
    /// of Source, DetailType, Detail and each Resource.
    pub fn size(&self) -> usize {
        self.time.as_ref().map_or(0, |_| PUT_EVENTS_TIME_BYTES)
            + self.source.len()
            + self.detail_type.len()
            + self.detail.len()
            + self.resources.iter().map(String::len).sum::<usize>()
    }
}

/// Why a source cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("event source must not be empty")]
    Empty,
    #[error("event source '{0}' starts with 'aws.', which EventBridge reserves for AWS services (NotAuthorizedForSourceException); use your own, e.g. '{DEFAULT_SOURCE}'")]
    Reserved(String),
    #[error("event source '{0}' is longer than 256 characters")]
    TooLong(String),
}

/// Checks a configured source at cold start, before any event depends on it.
pub fn validate_source(source: &str) -> Result<(), SourceError> {
    if source.is_empty() {
        Err(SourceError::Empty)
    } else if source.starts_with("aws.") {
        Err(SourceError::Reserved(source.to_owned()))
    } else if source.len() > 256 {
        Err(SourceError::TooLong(source.to_owned()))
    } else {
        Ok(())
    }
}

/// Limits for planning PutEvents calls; production values by default.
#[derive(Debug, Clone, Copy)]
pub struct PutEventsLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for PutEventsLimits {
    fn default() -> Self {
        PutEventsLimits {
            max_entries: PUT_EVENTS_MAX_ENTRIES,
            max_bytes: PUT_EVENTS_MAX_BYTES,
        }
    }
}

/// Groups entries (by index) into calls within the limits; entries that could never be sent
/// (too large alone, DetailType too long) are returned apart.
pub fn plan_calls(entries: &[Entry], limits: &PutEventsLimits) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut calls = Vec::new();
    let mut unsendable = Vec::new();
    let mut call: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        let size = entry.size();
        if size >= limits.max_bytes
            || entry.detail_type.chars().count() > PUT_EVENTS_MAX_DETAIL_TYPE
        {
            unsendable.push(i);
            continue;
        }
        if call.len() == limits.max_entries || bytes + size >= limits.max_bytes {
            calls.push(std::mem::take(&mut call));
            bytes = 0;
        }
        call.push(i);
        bytes += size;
    }
    if !call.is_empty() {
        calls.push(call);
    }
    (calls, unsendable)
}

/// The outcome of one entry of a PutEvents call, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Accepted { event_id: String },
    Failed { code: String, message: String },
}

impl EntryOutcome {
    /// EventBridge documents InternalFailure and ThrottlingException as worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EntryOutcome::Failed { code, .. }
            if code == "InternalFailure" || code == "ThrottlingException")
    }
}

/// A whole call that failed, and whether trying again could succeed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BusError {
    pub retryable: bool,
    /// What failed and why, in one line.
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Where entries go: an EventBridge bus in Lambda, a file in the local CLI.
pub trait EventBus {
    /// Sends one call's entries; returns one outcome per entry, in order.
    fn put_events(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, BusError>> + Send;
}

/// What forwarding did, per entry index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForwardReport {
    pub accepted: Vec<usize>,
    /// Entries not accepted after every attempt, with the last error; the caller must keep them
    /// (SQS batch-item failure) so they are not lost.
    pub failed: Vec<(usize, String)>,
    pub calls: usize,
    pub retries: usize,
}

/// Sends `entries` through `bus`, retrying retryable failures with backoff via `sleep`.
pub async fn forward<B, S, F>(
    bus: &B,
    entries: &[Entry],
    limits: &PutEventsLimits,
    policy: &RetryPolicy,
    mut sleep: S,
) -> ForwardReport
where
    B: EventBus,
    S: FnMut(Duration) -> F,
    F: Future<Output = ()>,
{
    let mut report = ForwardReport::default();
    let (calls, unsendable) = plan_calls(entries, limits);
    for i in unsendable {
        report.failed.push((
            i,
            format!(
                "entry of {} bytes cannot be sent (limit {} bytes, DetailType ≤ {PUT_EVENTS_MAX_DETAIL_TYPE} chars)",
                entries[i].size(),
                limits.max_bytes
            ),
        ));
    }
    for call in calls {
        let mut pending = call;
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            report.calls += 1;
            let (again, last_error) = put_once(bus, entries, &pending, &mut report).await;
            if again.is_empty() {
                break;
            }
            if !policy.allows_after(attempt) {
                report
                    .failed
                    .extend(again.iter().map(|&i| (i, last_error.clone())));
                break;
            }
            report.retries += 1;
            sleep(policy.delay(attempt)).await;
            pending = again;
        }
    }
    report.failed.sort_by_key(|(i, _)| *i);
    report
}

/// One PutEvents call of the `pending` entries: the accepted and the refused for good go to
/// `report`; returns the entries worth sending again and the last reason.
async fn put_once<B: EventBus>(
    bus: &B,
    entries: &[Entry],
    pending: &[usize],
    report: &mut ForwardReport,
) -> (Vec<usize>, String) {
    let batch: Vec<Entry> = pending.iter().map(|&i| entries[i].clone()).collect();
    match bus.put_events(&batch).await {
        Ok(outcomes) if outcomes.len() == pending.len() => {
            let (mut again, mut last_error) = (Vec::new(), String::new());
            for (&i, outcome) in pending.iter().zip(&outcomes) {
                match outcome {
                    EntryOutcome::Accepted { .. } => report.accepted.push(i),
                    EntryOutcome::Failed { code, message } if outcome.is_retryable() => {
                        last_error = format!("{code}: {message}");
                        again.push(i);
                    }
                    EntryOutcome::Failed { code, message } => {
                        report.failed.push((i, format!("{code}: {message}")))
                    }
                }
            }
            (again, last_error)
        }
        Ok(outcomes) => (
            pending.to_vec(),
            format!(
                "PutEvents answered {} outcomes for {} entries",
                outcomes.len(),
                pending.len()
            ),
        ),
        Err(e) if e.retryable => (pending.to_vec(), e.message),
        Err(e) => {
            report
                .failed
                .extend(pending.iter().map(|&i| (i, e.message.clone())));
            (Vec::new(), String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn entry(detail_len: usize) -> Entry {
        Entry::insight(
            DEFAULT_SOURCE,
            &format!("{{\"p\":\"{}\"}}", "x".repeat(detail_len)),
            Some("2024-01-01T00:00:00Z"),
        )
    }

    #[test]
    fn entry_size_is_computed_as_eventbridge_does() {
        let e = Entry {
            source: "src".into(),
            detail_type: "dt".into(),
            detail: "{}".into(),
            time: Some("t".into()),
            resources: vec!["r1".into(), "r22".into()],
        };
        assert_eq!(e.size(), 14 + 3 + 2 + 2 + 2 + 3);
        assert_eq!(Entry { time: None, ..e }.size(), 3 + 2 + 2 + 2 + 3);
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_stay_under_the_size_limit() {
        let entries: Vec<Entry> = (0..25).map(|_| entry(10)).collect();
        let (calls, unsendable) = plan_calls(&entries, &PutEventsLimits::default());
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert!(unsendable.is_empty());
        let entries: Vec<Entry> = (0..5).map(|_| entry(100 * 1024)).collect();
        let (calls, _) = plan_calls(&entries, &PutEventsLimits::default());
        for call in &calls {
            let total: usize = call.iter().map(|&i| entries[i].size()).sum();
            assert!(total < PUT_EVENTS_MAX_BYTES);
        }
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 5);
        let (_, unsendable) = plan_calls(&[entry(300 * 1024)], &PutEventsLimits::default());
        assert_eq!(unsendable, vec![0]);
    }

    #[test]
    fn aws_sources_are_refused_up_front() {
        assert!(validate_source("trailwatch.cloudtrail").is_ok());
        assert!(matches!(
            validate_source("aws.cloudtrail"),
            Err(SourceError::Reserved(_))
        ));
        assert_eq!(validate_source(""), Err(SourceError::Empty));
    }

    /// A bus that fails given entries a set number of times with a given code.
    struct FlakyBus {
        failures: Mutex<Vec<(usize, u32, &'static str)>>,
        seen: Mutex<Vec<String>>,
    }

    impl EventBus for FlakyBus {
        async fn put_events(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, BusError> {
            let mut failures = self.failures.lock().unwrap();
            let mut out = Vec::new();
            for e in entries {
                let n: usize = e.detail.len();
                match failures
                    .iter_mut()
                    .find(|(len, left, _)| *len == n && *left > 0)
                {
                    Some((_, left, code)) => {
                        *left -= 1;
                        out.push(EntryOutcome::Failed {
                            code: (*code).into(),
                            message: "injected".into(),
                        });
                    }
                    None => {
                        self.seen.lock().unwrap().push(e.detail.clone());
                        out.push(EntryOutcome::Accepted {
                            event_id: "id".into(),
                        });
                    }
                }
            }
            Ok(out)
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        // A single-threaded executor is enough: the fakes never wait.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn retryable_entry_failures_are_sent_again_and_others_reported() {
        let entries: Vec<Entry> = (1..=12).map(entry).collect();
        let bus = FlakyBus {
            failures: Mutex::new(vec![
                (entries[2].detail.len(), 2, "ThrottlingException"),
                (entries[5].detail.len(), 1, "InternalFailure"),
                (entries[7].detail.len(), 1, "MalformedDetail"),
            ]),
            seen: Mutex::new(Vec::new()),
        };
        let mut pauses = Vec::new();
        let report = run(forward(
            &bus,
            &entries,
            &PutEventsLimits::default(),
            &RetryPolicy::default(),
            |d| {
                pauses.push(d);
                std::future::ready(())
            },
        ));
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, 7);
        assert!(report.failed[0].1.starts_with("MalformedDetail"));
        assert_eq!(report.accepted.len(), 11);
        assert_eq!(report.retries, 2);
        assert_eq!(pauses.len(), 2);
        assert_eq!(bus.seen.lock().unwrap().len(), 11);
    }

    #[test]
    fn entries_still_failing_after_every_attempt_are_reported_not_dropped() {
        let entries = vec![entry(1), entry(2)];
        let bus = FlakyBus {
            failures: Mutex::new(vec![(entries[0].detail.len(), 100, "ThrottlingException")]),
            seen: Mutex::new(Vec::new()),
        };
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let report = run(forward(
            &bus,
            &entries,
            &PutEventsLimits::default(),
            &policy,
            |_| std::future::ready(()),
        ));
        assert_eq!(report.accepted, vec![1]);
        assert_eq!(
            report.failed.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(report.calls, 3);
    }
}
