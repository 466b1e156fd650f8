//! Insights records in CloudTrail's trail format (S3 / EventBridge `detail`), with
//! deterministic ids so that a retried evaluation emits the same records.

use serde::{Deserialize, Serialize};

use super::aggregate::MinuteAggregate;
use super::detector::{InsightState, Transition};
use super::key::{InsightType, SeriesKey, StableHasher};
use crate::time::{format_event_time, MS_PER_MINUTE};

/// `eventVersion` written on Insights records (the newest AWS documents).
pub const INSIGHT_EVENT_VERSION: &str = "1.09";
/// `eventType` of every Insights record.
pub const INSIGHT_EVENT_TYPE: &str = "AwsCloudTrailInsight";
/// `eventCategory` of every Insights record.
pub const INSIGHT_EVENT_CATEGORY: &str = "Insight";

/// One Insights record, field order as CloudTrail writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightRecord {
    pub event_version: String,
    pub event_time: String,
    pub aws_region: String,
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub event_type: String,
    pub recipient_account_id: String,
    #[serde(rename = "sharedEventID")]
    pub shared_event_id: String,
    pub insight_details: InsightDetails,
    pub event_category: String,
    /// trailwatch extension (not an AWS field): when the detector emitted the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightDetails {
    pub state: String,
    pub event_source: String,
    pub event_name: String,
    pub insight_type: String,
    /// Error-rate Insights only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub source_event_category: String,
    pub insight_context: InsightContext,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightContext {
    pub statistics: Statistics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributions: Option<Vec<Attribution>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub baseline: Average,
    pub insight: Average,
    pub insight_duration: i64,
    pub baseline_duration: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Average {
    pub average: f64,
}

/// Top contributors of one attribute, in the Insight and over the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub attribute: String,
    pub insight: Vec<ValueAverage>,
    pub baseline: Vec<ValueAverage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueAverage {
    pub value: String,
    pub average: f64,
}

impl InsightRecord {
    pub fn to_json(&self) -> String {
        // Serialising plain strings and finite numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Rounds an average as AWS prints them (at most 10 decimals), keeping it finite.
fn round_average(v: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    (v * 1e10).round() / 1e10
}

/// The Insight's overall id (`sharedEventID`), common to its Start and End: a version 8 UUID
/// made of the pinned hash of the series key and the onset minute (a retried evaluation, or
/// another version of trailwatch, emits the same id).
pub fn shared_event_id(key: &SeriesKey, start_minute: i64) -> String {
    id_for(key, start_minute, "shared")
}

/// `eventID` of the Start or End record of the Insight that began at `start_minute`.
pub fn event_id(key: &SeriesKey, start_minute: i64, state: InsightState) -> String {
    id_for(key, start_minute, state.as_str())
}

fn id_for(key: &SeriesKey, start_minute: i64, tag: &str) -> String {
    let halves = [0x5452_4149_4c57_4154u64, 0x494e_5349_4748_5453].map(|seed| {
        let mut h = StableHasher::with_seed(seed);
        h.write_str(&key.account);
        h.write_str(&key.region);
        h.write_str(&key.event_source);
        h.write_str(&key.event_name);
        h.write_str(key.insight_type.as_str());
        h.write_str(key.error_code.as_deref().unwrap_or(""));
        h.write_u64(start_minute as u64);
        h.write_str(tag);
        h.finish()
    });
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&halves[0].to_be_bytes());
    b[8..].copy_from_slice(&halves[1].to_be_bytes());
    // RFC 9562 version 8 ("custom") with the RFC variant bits.
    uuid::Builder::from_custom_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Top contributors per attribute: `userIdentityArn`, `userAgent`, and for call-rate Insights
/// `errorCode` ("null" for success). Averages are per minute of each period.
pub fn attributions(
    insight_type: InsightType,
    insight: &MinuteAggregate,
    insight_minutes: i64,
    baseline: &MinuteAggregate,
    baseline_minutes: i64,
    top: usize,
) -> Vec<Attribution> {
    let list = |agg: &MinuteAggregate, which: usize, minutes: i64| -> Vec<ValueAverage> {
        let sketch = match which {
            0 => &agg.user_identity_arn,
            1 => &agg.user_agent,
            _ => &agg.error_code,
        };
        sketch
            .top(top)
            .into_iter()
            .map(|e| ValueAverage {
                value: e.value.clone(),
                average: round_average(e.count as f64 / minutes.max(1) as f64),
            })
            .collect()
    };
    let names: &[&str] = match insight_type {
        InsightType::ApiCallRateInsight => &["userIdentityArn", "userAgent", "errorCode"],
        InsightType::ApiErrorRateInsight => &["userIdentityArn", "userAgent"],
    };
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Attribution {
            attribute: (*name).to_owned(),
            insight: list(insight, i, insight_minutes),
            baseline: list(baseline, i, baseline_minutes),
        })
        .collect()
}

/// Builds the record for one detector transition.
pub fn insight_record(
    key: &SeriesKey,
    transition: &Transition,
    attributions: Option<Vec<Attribution>>,
    detected_at_ms: Option<i64>,
) -> InsightRecord {
    InsightRecord {
        event_version: INSIGHT_EVENT_VERSION.to_owned(),
        event_time: format_event_time(transition.event_minute * MS_PER_MINUTE),
        aws_region: key.region.clone(),
        event_id: event_id(key, transition.start_minute, transition.state),
        event_type: INSIGHT_EVENT_TYPE.to_owned(),
        recipient_account_id: key.account.clone(),
        shared_event_id: shared_event_id(key, transition.start_minute),
        insight_details: InsightDetails {
            state: transition.state.as_str().to_owned(),
            event_source: key.event_source.clone(),
            event_name: key.event_name.clone(),
            insight_type: key.insight_type.as_str().to_owned(),
            error_code: match key.insight_type {
                InsightType::ApiErrorRateInsight => key.error_code.clone(),
                InsightType::ApiCallRateInsight => None,
            },
            source_event_category: "Management".to_owned(),
            insight_context: InsightContext {
                statistics: Statistics {
                    baseline: Average {
                        average: round_average(transition.baseline_average()),
                    },
                    insight: Average {
                        average: round_average(transition.insight_average()),
                    },
                    insight_duration: transition.insight_duration,
                    baseline_duration: transition.baseline_duration,
                },
                attributions,
            },
        },
        event_category: INSIGHT_EVENT_CATEGORY.to_owned(),
        detected_at: detected_at_ms.map(format_event_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SeriesKey {
        SeriesKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: "RunInstances".into(),
            insight_type: InsightType::ApiCallRateInsight,
            error_code: None,
        }
    }

    #[test]
    fn ids_are_deterministic_uuid_shaped_and_distinct() {
        let k = key();
        let shared = shared_event_id(&k, 100);
        assert_eq!(shared, shared_event_id(&k, 100));
        assert_ne!(shared, shared_event_id(&k, 101));
        let start = event_id(&k, 100, InsightState::Start);
        let end = event_id(&k, 100, InsightState::End);
        assert_ne!(start, end);
        assert_ne!(start, shared);
        for id in [&shared, &start, &end] {
            let parts: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(parts, vec![8, 4, 4, 4, 12], "{id}");
            assert_eq!(&id[14..15], "8");
        }
    }

    #[test]
    fn ids_are_pinned_across_versions() {
        let k = key();
        let k = SeriesKey {
            region: "us-east-1".into(),
            ..k
        };
        assert_eq!(
            shared_event_id(&k, 28_495_680),
            "691cb34b-58a8-8395-9fc5-e492ad697349"
        );
        assert_eq!(
            event_id(&k, 28_495_680, InsightState::End),
            "8a8b3e75-896e-87a1-ba4b-8854f3d45bc9"
        );
    }
}
