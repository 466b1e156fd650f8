//! CloudWatch embedded metric format (EMF): one JSON line per invocation, printed to stdout,
//! which CloudWatch Logs turns into metrics without any API call.
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"trailwatch",
//!   "Dimensions":[["Function"]],"Metrics":[{"Name":"RecordsReceived","Unit":"Count"}]}]},
//!  "Function":"deliver","RecordsReceived":12}
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{json, Map, Value};

/// The namespace trailwatch's metrics are published under.
pub const NAMESPACE: &str = "trailwatch";
/// EMF: at most 100 metrics per directive.
pub const EMF_MAX_METRICS: usize = 100;

/// One invocation's metrics, with the dimensions they are published under.
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: String,
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, f64, &'static str)>,
}

impl Emf {
    /// Metrics of `function` (the `Function` dimension).
    pub fn new(function: &str) -> Self {
        Emf {
            namespace: NAMESPACE.to_owned(),
            dimensions: vec![("Function".to_owned(), function.to_owned())],
            metrics: Vec::new(),
        }
    }

    /// A count (`Unit: Count`). Names repeated are summed.
    pub fn count(mut self, name: &str, value: usize) -> Self {
        match self.metrics.iter_mut().find(|(n, _, _)| n == name) {
            Some(existing) => existing.1 += value as f64,
            None => self.metrics.push((name.to_owned(), value as f64, "Count")),
        }
        self
    }

    /// Counts by reason, each as `<prefix><Reason>` (`too_old` → `RejectedTooOld`).
    pub fn counts_by<'a>(
        mut self,
        prefix: &str,
        counts: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Self {
        for (reason, value) in counts {
            self = self.count(&format!("{prefix}{}", camel(reason)), value);
        }
        self
    }

    /// The counts of a serialised report: each top-level whole number (and each yes/no, as
    /// 1 or 0) under its name in PascalCase (`logEvents` → `LogEvents`), each list by its
    /// length, except the fields named in `not_counts` (times, ids).
    pub fn counts_of(mut self, report: &Value, not_counts: &[&str]) -> Self {
        let Some(fields) = report.as_object() else {
            return self;
        };
        for (name, value) in fields {
            if not_counts.contains(&name.as_str()) {
                continue;
            }
            let count = match value {
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                Value::Bool(b) => Some(usize::from(*b)),
                Value::Array(items) => Some(items.len()),
                _ => None,
            };
            if let Some(count) = count {
                self = self.count(&pascal(name), count);
            }
        }
        self
    }

    /// A duration in milliseconds.
    pub fn millis(mut self, name: &str, value: f64) -> Self {
        self.metrics.push((name.to_owned(), value, "Milliseconds"));
        self
    }

    /// The EMF line at `timestamp_ms` (epoch milliseconds).
    pub fn to_line(&self, timestamp_ms: i64) -> String {
        let mut root = Map::new();
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .take(EMF_MAX_METRICS)
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        for (key, value) in &self.dimensions {
            root.insert(key.clone(), Value::String(value.clone()));
        }
        for (name, value, _) in self.metrics.iter().take(EMF_MAX_METRICS) {
            let number = if value.fract() == 0.0 && value.abs() < 9.0e15 {
                json!(*value as i64)
            } else {
                json!(value)
            };
            root.insert(name.clone(), number);
        }
        Value::Object(root).to_string()
    }
}

/// `logEvents` → `LogEvents`.
fn pascal(camel: &str) -> String {
    let mut chars = camel.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// `too_old` → `TooOld`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// AWS calls and their attempts in this process, counted by [`CountAttempts`]: the SDK
/// retries invisibly, so this is how an invocation learns how many retries it took. (Lambda
/// runs one invocation at a time per process, so a before/after difference is exact.)
pub static SDK_CALLS: AtomicU64 = AtomicU64::new(0);
pub static SDK_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// The SDK calls and attempts made so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SdkCounts {
    pub calls: u64,
    pub attempts: u64,
}

impl SdkCounts {
    pub fn now() -> Self {
        SdkCounts {
            calls: SDK_CALLS.load(Ordering::Relaxed),
            attempts: SDK_ATTEMPTS.load(Ordering::Relaxed),
        }
    }

    /// Retries (attempts beyond the first of each call) since `earlier`.
    pub fn retries_since(&self, earlier: &SdkCounts) -> usize {
        let calls = self.calls.saturating_sub(earlier.calls);
        let attempts = self.attempts.saturating_sub(earlier.attempts);
        attempts.saturating_sub(calls) as usize
    }
}

/// An SDK interceptor counting calls and attempts into [`SDK_CALLS`] / [`SDK_ATTEMPTS`]; add
/// it to a client's config with `.interceptor(CountAttempts)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountAttempts;

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "CountAttempts"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        SDK_CALLS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        SDK_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The clock EMF lines are stamped with.
pub use trailwatch::time::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_every_metric_and_carries_its_value() {
        let line = Emf::new("deliver")
            .count("RecordsReceived", 12)
            .count("Delivered", 10)
            .counts_by("Rejected", [("too_old", 1), ("too_new", 1)])
            .to_line(1_700_000_000_000);
        assert!(!line.contains('\n'), "one line");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "trailwatch");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["Unit"], "Count");
                m["Name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "RecordsReceived",
                "Delivered",
                "RejectedTooOld",
                "RejectedTooNew"
            ]
        );
        assert_eq!(v["Function"], "deliver");
        assert_eq!(v["RecordsReceived"], 12);
        assert_eq!(v["RejectedTooNew"], 1);
    }

    #[test]
    fn repeated_names_are_summed_not_declared_twice() {
        let line = Emf::new("select")
            .count("Retries", 2)
            .count("Retries", 3)
            .to_line(0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(v["Retries"], 5);
    }

    #[test]
    fn retries_are_attempts_beyond_the_first_of_each_call() {
        let before = SdkCounts {
            calls: 10,
            attempts: 12,
        };
        let after = SdkCounts {
            calls: 13,
            attempts: 19,
        };
        assert_eq!(after.retries_since(&before), 4);
        assert_eq!(before.retries_since(&before), 0);
    }

    #[test]
    fn a_reports_counts_become_metrics_and_its_times_do_not() {
        let report = json!({"batchId": "b", "logEvents": 12, "leased": true,
            "closedThrough": 28_000_000, "batchItemFailures": [{"itemIdentifier": "m"}]});
        let line = Emf::new("insights")
            .counts_of(&report, &["closedThrough"])
            .to_line(0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["LogEvents"], 12);
        assert_eq!(v["Leased"], 1);
        assert_eq!(v["BatchItemFailures"], 1);
        assert!(v.get("ClosedThrough").is_none() && v.get("BatchId").is_none());
    }

    #[test]
    fn durations_are_in_milliseconds_and_fractions_survive() {
        let line = Emf::new("deliver").millis("PutLatency", 12.5).to_line(0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(v["PutLatency"], 12.5);
    }
}
