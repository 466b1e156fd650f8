//! The scorer, with the rules of the shared harness (`ctscore.py`): a Start matches a label of
//! the same account, region, API, Insight type (and error code) when its `eventTime` falls in
//! `[label start − 5 min, label end + 15 min]`; each Start goes to one label, positive first;
//! Starts on no label or on a negative one are false Starts.

use serde_json::Value;
use trailwatch::time::parse_event_time;

use crate::generate::{Api, MINUTES_PER_DAY};

/// Tolerance before a label's start, minutes.
pub const PRE_TOLERANCE: i64 = 5;
/// Tolerance after a label's end, minutes.
pub const POST_TOLERANCE: i64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// Must fire.
    Positive,
    /// Must not fire.
    Negative,
}

/// A labelled window of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub account: String,
    pub region: String,
    pub api: Api,
    pub kind: LabelKind,
    pub scenario: &'static str,
    /// UTC minutes `[start, end)`.
    pub start: i64,
    pub end: i64,
}

/// A Start as the detector emitted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub account: String,
    pub region: String,
    pub source: String,
    pub name: String,
    pub insight_type: String,
    pub error_code: Option<String>,
    /// `eventTime` and `detectedAt`, UTC minutes.
    pub minute: i64,
    pub detected: Option<i64>,
}

impl Start {
    /// The Start in an Insights record (JSON), `None` for an End or anything else.
    pub fn from_record(json: &str) -> Option<Start> {
        let v: Value = serde_json::from_str(json).ok()?;
        let d = &v["insightDetails"];
        if d["state"] != "Start" {
            return None;
        }
        let minute = |field: &Value| {
            field
                .as_str()
                .and_then(|t| parse_event_time(t).ok())
                .map(|ms| ms / 60_000)
        };
        Some(Start {
            account: v["recipientAccountId"].as_str()?.to_owned(),
            region: v["awsRegion"].as_str()?.to_owned(),
            source: d["eventSource"].as_str()?.to_owned(),
            name: d["eventName"].as_str()?.to_owned(),
            insight_type: d["insightType"].as_str()?.to_owned(),
            error_code: d["errorCode"].as_str().map(str::to_owned),
            minute: minute(&v["eventTime"])?,
            detected: minute(&v["detectedAt"]),
        })
    }

    fn matches(&self, l: &Label) -> bool {
        self.account == l.account
            && self.region == l.region
            && self.source == l.api.source
            && self.name == l.api.name
            && self.insight_type == l.api.insight_type().as_str()
            && match (&self.error_code, l.api.error) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
            && (l.start - PRE_TOLERANCE..=l.end + POST_TOLERANCE).contains(&self.minute)
    }
}

/// Scores of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub positives: usize,
    pub detected: usize,
    pub false_starts: usize,
    /// Account-region series × evaluation days.
    pub series_days: f64,
    /// Minutes from each detected positive's start to its first Start's `detectedAt`.
    pub emit_latencies: Vec<i64>,
    /// What fired falsely or was missed, for the report.
    pub notes: Vec<String>,
}

impl Score {
    pub fn precision(&self) -> f64 {
        let d = self.detected + self.false_starts;
        if d == 0 {
            1.0
        } else {
            self.detected as f64 / d as f64
        }
    }

    pub fn recall(&self) -> f64 {
        if self.positives == 0 {
            1.0
        } else {
            self.detected as f64 / self.positives as f64
        }
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// False Starts per account-region series per day.
    pub fn false_per_day(&self) -> f64 {
        self.false_starts as f64 / self.series_days.max(1e-9)
    }

    pub fn merge(&mut self, other: &Score) {
        self.positives += other.positives;
        self.detected += other.detected;
        self.false_starts += other.false_starts;
        self.series_days += other.series_days;
        self.emit_latencies.extend(&other.emit_latencies);
        self.notes.extend(other.notes.iter().cloned());
    }
}

/// Scores the Starts of `[eval_start, eval_end)` against the labels.
pub fn score(
    labels: &[Label],
    starts: &[Start],
    eval_start: i64,
    eval_end: i64,
    series: usize,
) -> Score {
    let mut s = Score {
        positives: labels
            .iter()
            .filter(|l| l.kind == LabelKind::Positive)
            .count(),
        series_days: series as f64 * (eval_end - eval_start) as f64 / MINUTES_PER_DAY as f64,
        ..Score::default()
    };
    let mut hit = vec![false; labels.len()];
    let mut first_detected: Vec<Option<i64>> = vec![None; labels.len()];
    for start in starts
        .iter()
        .filter(|s| (eval_start..eval_end).contains(&s.minute))
    {
        let found = [LabelKind::Positive, LabelKind::Negative]
            .iter()
            .find_map(|kind| {
                labels
                    .iter()
                    .position(|l| l.kind == *kind && start.matches(l))
            });
        match found {
            Some(i) if labels[i].kind == LabelKind::Positive => {
                hit[i] = true;
                let at = start.detected.unwrap_or(start.minute);
                first_detected[i] = Some(first_detected[i].map_or(at, |f| f.min(at)));
            }
            other => {
                s.false_starts += 1;
                let why = other.map_or("no label", |i| labels[i].scenario);
                s.notes.push(format!(
                    "false Start {}/{} {}:{}{} at {} ({why})",
                    start.account,
                    start.region,
                    start.source,
                    start.name,
                    start
                        .error_code
                        .as_deref()
                        .map(|c| format!("/{c}"))
                        .unwrap_or_default(),
                    trailwatch::time::format_event_time(start.minute * 60_000),
                ));
            }
        }
    }
    for (i, l) in labels.iter().enumerate() {
        if l.kind != LabelKind::Positive {
            continue;
        }
        if hit[i] {
            s.detected += 1;
            if let Some(at) = first_detected[i] {
                s.emit_latencies.push(at - l.start);
            }
        } else {
            s.notes.push(format!(
                "missed {}/{} {}:{} ({}) at {}",
                l.account,
                l.region,
                l.api.source,
                l.api.name,
                l.scenario,
                trailwatch::time::format_event_time(l.start * 60_000)
            ));
        }
    }
    s
}
