//! Insights configuration: which Insight types run, the detector's parameters and per-API
//! sensitivity overrides.
//!
//! The JSON form is the `get-insight-selectors` response, plus an optional `Trailwatch` object
//! for what AWS does not offer:
//!
//! ```json
//! {
//!   "InsightSelectors": [
//!     {"InsightType": "ApiCallRateInsight"},
//!     {"InsightType": "ApiErrorRateInsight", "EventCategories": ["Management"]}
//!   ],
//!   "Trailwatch": {
//!     "watermarkMinutes": 15,
//!     "includeReadEventsInCallRate": false,
//!     "detector": {"scoreOn": 12.0, "ratioOn": 3.0},
//!     "sensitivity": {"ec2.amazonaws.com:RunInstances": {"multiplier": 1.5},
//!                     "iam.amazonaws.com:CreateUser": {"scoreOn": 9.0}}
//!   }
//! }
//! ```
//!
//! Without `InsightSelectors` both types run on management events (the trailwatch default). With
//! it, exactly the listed types run; `EventCategories` may add `Data` (data-event Insights).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::key::InsightType;

/// Most windows a configuration may use.
pub const MAX_WINDOWS: usize = 4;
/// Raw and cleaned per-minute counts a key keeps: the longest window is at most this.
pub const MINUTE_RING: usize = 16;

/// Parameters of the detector (docs/insights-design.md §3.8). Defaults are the validated
/// prototype values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorParams {
    /// Window lengths in minutes for the GLR score; 1 to 4 windows, each 1..=16.
    /// Default `[1, 5, 15]`.
    pub windows: Vec<u32>,
    /// Minimum Poisson GLR score (nats) to start (`S_ON`). Default 12 (tail ≈ e^-12).
    pub score_on: f64,
    /// Minimum ratio observed / expected to start (`R_ON`). Default 3.
    pub ratio_on: f64,
    /// Minimum excess events over expected to start (`A_ON`). Default 4.
    pub excess_on: f64,
    /// `excess_on` for `ApiErrorRateInsight` keys: a new error code is more telling than a new
    /// call, so fewer events suffice: 2.5 means 3 errors of a code never seen (AWS fires on
    /// about that many). Default 2.5 (on the harness: recall at scale 0.3 from 0.94 to 0.98,
    /// precision unchanged at scales 0.3 and 1).
    pub error_excess_on: f64,
    /// Surprise guard: the score must exceed `guard_beta` × the key's largest score of the
    /// previous 7 UTC days (`β`). Default 2. 0 disables the guard.
    pub guard_beta: f64,
    /// Guard for familiar recurring bursts: on a key that burst (a guard score ≥ `score_on`) on
    /// at least `recurring_burst_days` of the previous 7 UTC days, a candidate whose dominant
    /// principal *and* user agent already acted on the key in those days must beat this
    /// multiple of the guard instead of `guard_beta` (CI/CD deploys, batch jobs at irregular
    /// times: their size varies and two of them can coincide). A burst by a new actor keeps
    /// `guard_beta`. Default 4; at or below `guard_beta` it has no effect.
    pub familiar_guard_beta: f64,
    /// Days (of the previous 7) with a burst that make a key "recurring bursty" for
    /// `familiar_guard_beta`. Default 3. 0 treats every key as recurring bursty.
    pub recurring_burst_days: u32,
    /// Sustained rises: design ratio `ρ` of a per-key Poisson CUSUM,
    /// `C = max(0, C + x ln ρ − (ρ − 1) μ)` (the log-likelihood ratio of "the rate is ρ × μ
    /// since the segment began"), for moderate rises that last longer than the longest window
    /// (×2 for half an hour on a busy key). It starts an Insight when `C` ≥ `score_on`, the
    /// segment is at least as long as the longest window, passes `sustained_ratio_on` and the
    /// excess gate, and beats the guards (its own daily maxima). Its onset is the segment's
    /// first minute; it may start from the second day after the warm-up. Default 2; 0 disables
    /// it.
    pub cusum_ratio: f64,
    /// Minimum observed / expected over the CUSUM segment to start. Default 1.5.
    pub sustained_ratio_on: f64,
    /// Ratio that keeps a minute "hot" / a window "warm" during an Insight (`R_OFF`). Default 1.5.
    pub ratio_off: f64,
    /// Excess that keeps the 5-minute window warm (`A_OFF`). Default 2.
    pub excess_off: f64,
    /// Consecutive cold minutes that end an Insight (`Q`). Default 5.
    pub quiet_minutes: u32,
    /// Minutes after an End before the key may start again. Default 10.
    pub cooldown_minutes: u32,
    /// An Insight is ended after this many minutes (a level shift becomes the new baseline).
    /// Default 360.
    pub max_insight_minutes: u32,
    /// Prior strength (minutes) shrinking hour-of-day and day-type rates (`K`). Default 120.
    pub prior_minutes: f64,
    /// Floor of the expected rate as a fraction of the 7-day mean (`F_MIN`). Default 0.25.
    pub floor_fraction: f64,
    /// Pseudo-events added to the 7-day total (a never-used API expects 0.5/week). Default 0.5.
    pub pseudo_events: f64,
    /// Whole UTC days of data before Starts are allowed. Default 1.
    pub warmup_days: u32,
    /// Start gates expect a neighbouring hour's rate when it is at least `ratio_on` times the
    /// minute's own, so a schedule moved by an hour (daylight saving, a drifting job) is not
    /// news. Default true.
    pub shifted_hours: bool,
    /// Weekly recurrence: a burst needs `guard_beta` × the largest burst of the same weekday
    /// within 90 minutes of the same time in the previous 4 weeks, once there were at least
    /// this many of them (weekly jobs, Monday surges). Default 2; 0 disables it.
    pub weekly_recurrence: u32,
    /// Pseudo-events shrinking the level correction (observed / expected over the hours 2–4
    /// before the current one, which scales the expectation of the Start gates when above 1, so
    /// slow ramps do not fire). 0 disables it. Default 5.
    pub level_pseudo_events: f64,
}

impl Default for DetectorParams {
    fn default() -> Self {
        DetectorParams {
            windows: vec![1, 5, 15],
            score_on: 12.0,
            ratio_on: 3.0,
            excess_on: 4.0,
            error_excess_on: 2.5,
            guard_beta: 2.0,
            familiar_guard_beta: 4.0,
            recurring_burst_days: 3,
            cusum_ratio: 2.0,
            sustained_ratio_on: 1.5,
            ratio_off: 1.5,
            excess_off: 2.0,
            quiet_minutes: 5,
            cooldown_minutes: 10,
            max_insight_minutes: 360,
            prior_minutes: 120.0,
            floor_fraction: 0.25,
            pseudo_events: 0.5,
            warmup_days: 1,
            level_pseudo_events: 5.0,
            shifted_hours: true,
            weekly_recurrence: 2,
        }
    }
}

/// Per-API override, keyed by `eventSource:eventName` in [`InsightsConfig::sensitivity`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Sensitivity {
    /// Multiplies `score_on` and `excess_on`: above 1 fewer Insights, below 1 more.
    pub multiplier: Option<f64>,
    /// Replaces `score_on` (before the multiplier).
    pub score_on: Option<f64>,
}

/// Which events one Insight type analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSelection {
    pub management: bool,
    /// Data events (AWS: trails only; call rate then covers read and write data calls).
    pub data: bool,
}

impl TypeSelection {
    pub const MANAGEMENT: TypeSelection = TypeSelection {
        management: true,
        data: false,
    };
}

/// The whole Insights configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsConfig {
    /// `ApiCallRateInsight`; default on, management events.
    pub call_rate: Option<TypeSelection>,
    /// `ApiErrorRateInsight`; default on, management events.
    pub error_rate: Option<TypeSelection>,
    /// Count read management calls in the call rate too (AWS counts writes only). Default false.
    pub include_read_events_in_call_rate: bool,
    /// Minutes a minute stays open for late log files: minute `t` closes once
    /// `now ≥ t + 1 + watermark`. Default 15 (CloudTrail delivers in ~5 min, not guaranteed).
    pub watermark_minutes: u32,
    pub detector: DetectorParams,
    /// `eventSource:eventName` → override.
    pub sensitivity: BTreeMap<String, Sensitivity>,
    /// Entries per attribute in an Insight record (AWS: at most five). Default 5.
    pub attribution_top: usize,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            call_rate: Some(TypeSelection::MANAGEMENT),
            error_rate: Some(TypeSelection::MANAGEMENT),
            include_read_events_in_call_rate: false,
            watermark_minutes: 15,
            detector: DetectorParams::default(),
            sensitivity: BTreeMap::new(),
            attribution_top: 5,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Insights configuration is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("InsightSelectors[{index}]: unknown InsightType '{name}'")]
    UnknownInsightType { index: usize, name: String },
    #[error("InsightSelectors[{index}]: unknown event category '{name}'")]
    UnknownEventCategory { index: usize, name: String },
    #[error("Trailwatch.{field}: {reason}")]
    Invalid { field: String, reason: &'static str },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    insight_selectors: Option<Vec<RawSelector>>,
    trailwatch: Option<RawExtensions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSelector {
    insight_type: String,
    event_categories: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExtensions {
    watermark_minutes: Option<u32>,
    include_read_events_in_call_rate: Option<bool>,
    detector: Option<DetectorParams>,
    sensitivity: Option<BTreeMap<String, Sensitivity>>,
    attribution_top: Option<usize>,
}

impl InsightsConfig {
    /// Reads the JSON form described in the module documentation.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)?;
        let mut config = InsightsConfig::default();
        if let Some(selectors) = raw.insight_selectors {
            config.call_rate = None;
            config.error_rate = None;
            for (index, selector) in selectors.iter().enumerate() {
                let kind = InsightType::from_name(&selector.insight_type).ok_or_else(|| {
                    ConfigError::UnknownInsightType {
                        index,
                        name: selector.insight_type.clone(),
                    }
                })?;
                let mut selection = TypeSelection {
                    management: selector.event_categories.is_none(),
                    data: false,
                };
                for name in selector.event_categories.iter().flatten() {
                    match name.as_str() {
                        "Management" => selection.management = true,
                        "Data" => selection.data = true,
                        _ => {
                            return Err(ConfigError::UnknownEventCategory {
                                index,
                                name: name.clone(),
                            })
                        }
                    }
                }
                match kind {
                    InsightType::ApiCallRateInsight => config.call_rate = Some(selection),
                    InsightType::ApiErrorRateInsight => config.error_rate = Some(selection),
                }
            }
        }
        if let Some(ext) = raw.trailwatch {
            if let Some(w) = ext.watermark_minutes {
                config.watermark_minutes = w;
            }
            if let Some(b) = ext.include_read_events_in_call_rate {
                config.include_read_events_in_call_rate = b;
            }
            if let Some(d) = ext.detector {
                config.detector = d;
            }
            if let Some(s) = ext.sensitivity {
                config.sensitivity = s;
            }
            if let Some(n) = ext.attribution_top {
                config.attribution_top = n;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges the detector relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason| ConfigError::Invalid {
            field: field.to_owned(),
            reason,
        };
        let d = &self.detector;
        if d.windows.is_empty() || d.windows.len() > MAX_WINDOWS {
            return Err(invalid("detector.windows", "needs 1 to 4 windows"));
        }
        if d.windows
            .iter()
            .any(|&w| w == 0 || w as usize > MINUTE_RING)
        {
            return Err(invalid(
                "detector.windows",
                "each window must be 1..=16 minutes",
            ));
        }
        let positive = [
            ("detector.ratioOn", d.ratio_on),
            ("detector.ratioOff", d.ratio_off),
            ("detector.priorMinutes", d.prior_minutes),
            ("detector.pseudoEvents", d.pseudo_events),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(field, "must be a positive number"));
            }
        }
        let non_negative = [
            ("detector.scoreOn", d.score_on),
            ("detector.excessOn", d.excess_on),
            ("detector.errorExcessOn", d.error_excess_on),
            ("detector.guardBeta", d.guard_beta),
            ("detector.familiarGuardBeta", d.familiar_guard_beta),
            ("detector.cusumRatio", d.cusum_ratio),
            ("detector.sustainedRatioOn", d.sustained_ratio_on),
            ("detector.excessOff", d.excess_off),
            ("detector.floorFraction", d.floor_fraction),
            ("detector.levelPseudoEvents", d.level_pseudo_events),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(field, "must be a non-negative number"));
            }
        }
        if d.cusum_ratio != 0.0 && d.cusum_ratio <= 1.0 {
            return Err(invalid(
                "detector.cusumRatio",
                "must be above 1 (0 disables the CUSUM)",
            ));
        }
        if d.quiet_minutes == 0 || d.max_insight_minutes == 0 {
            return Err(invalid(
                "detector.quietMinutes/maxInsightMinutes",
                "must be at least 1",
            ));
        }
        for (api, s) in &self.sensitivity {
            if !api.contains(':') {
                return Err(invalid("sensitivity", "keys are eventSource:eventName"));
            }
            let bad = |v: Option<f64>| v.is_some_and(|v| !(v.is_finite() && v >= 0.0));
            if bad(s.multiplier) || bad(s.score_on) {
                return Err(ConfigError::Invalid {
                    field: format!("sensitivity.{api}"),
                    reason: "must be a non-negative number",
                });
            }
        }
        Ok(())
    }

    /// The detector parameters for one series (API and Insight type), with the API's
    /// sensitivity override applied.
    pub fn params_for(
        &self,
        event_source: &str,
        event_name: &str,
        insight_type: InsightType,
    ) -> DetectorParams {
        let mut params = self.detector.clone();
        if insight_type == InsightType::ApiErrorRateInsight {
            params.excess_on = params.error_excess_on;
        }
        let api = format!("{event_source}:{event_name}");
        if let Some(s) = self.sensitivity.get(&api) {
            if let Some(score_on) = s.score_on {
                params.score_on = score_on;
            }
            if let Some(m) = s.multiplier {
                params.score_on *= m;
                params.excess_on *= m;
                params.error_excess_on *= m;
            }
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_selectors_means_both_types_on_management_events() {
        let c = InsightsConfig::from_json("{}").unwrap();
        assert_eq!(c.call_rate, Some(TypeSelection::MANAGEMENT));
        assert_eq!(c.error_rate, Some(TypeSelection::MANAGEMENT));
        assert_eq!(c.watermark_minutes, 15);
        assert_eq!(c.detector, DetectorParams::default());
    }

    #[test]
    fn selectors_pick_exactly_the_listed_types() {
        let c = InsightsConfig::from_json(
            r#"{"InsightSelectors":[{"InsightType":"ApiErrorRateInsight","EventCategories":["Management","Data"]}]}"#,
        )
        .unwrap();
        assert_eq!(c.call_rate, None);
        assert_eq!(
            c.error_rate,
            Some(TypeSelection {
                management: true,
                data: true
            })
        );
    }

    #[test]
    fn extensions_and_overrides_apply() {
        let c = InsightsConfig::from_json(
            r#"{"Trailwatch":{"watermarkMinutes":5,"detector":{"scoreOn":10},
                "sensitivity":{"ec2.amazonaws.com:RunInstances":{"multiplier":2},
                               "iam.amazonaws.com:CreateUser":{"scoreOn":8}}}}"#,
        )
        .unwrap();
        assert_eq!(c.watermark_minutes, 5);
        assert_eq!(c.detector.score_on, 10.0);
        assert_eq!(c.detector.ratio_on, 3.0);
        let p = c.params_for(
            "ec2.amazonaws.com",
            "RunInstances",
            InsightType::ApiCallRateInsight,
        );
        assert_eq!((p.score_on, p.excess_on), (20.0, 8.0));
        assert_eq!(
            c.params_for(
                "iam.amazonaws.com",
                "CreateUser",
                InsightType::ApiCallRateInsight
            )
            .score_on,
            8.0
        );
        assert_eq!(
            c.params_for(
                "s3.amazonaws.com",
                "PutObject",
                InsightType::ApiCallRateInsight
            )
            .score_on,
            10.0
        );
    }

    #[test]
    fn bad_configurations_are_refused_with_the_place() {
        for bad in [
            r#"{"InsightSelectors":[{"InsightType":"ApiCallRate"}]}"#,
            r#"{"InsightSelectors":[{"InsightType":"ApiCallRateInsight","EventCategories":["Network"]}]}"#,
            r#"{"Trailwatch":{"detector":{"windows":[]}}}"#,
            r#"{"Trailwatch":{"detector":{"windows":[1,60]}}}"#,
            r#"{"Trailwatch":{"detector":{"ratioOn":-1}}}"#,
            r#"{"Trailwatch":{"detector":{"unknownKnob":1}}}"#,
            r#"{"Trailwatch":{"detector":{"cusumRatio":0.8}}}"#,
            r#"{"Trailwatch":{"detector":{"familiarGuardBeta":-1}}}"#,
            r#"{"Trailwatch":{"sensitivity":{"RunInstances":{"multiplier":2}}}}"#,
            r#"[1,2]"#,
        ] {
            assert!(InsightsConfig::from_json(bad).is_err(), "{bad} accepted");
        }
        let off = r#"{"Trailwatch":{"detector":{"cusumRatio":0,"familiarGuardBeta":0}}}"#;
        assert!(InsightsConfig::from_json(off).is_ok());
    }
}
