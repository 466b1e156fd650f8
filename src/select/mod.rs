//! Selection: which records a trail keeps, by CloudTrail's trail configuration and event
//! selectors.
//!
//! The configuration is what users already have (`aws cloudtrail get-event-selectors` output,
//! plus trail properties as `describe-trails` names them); it is validated like
//! PutEventSelectors validates it ([`validate`]), then compiled once into a [`Matcher`] that
//! decides each record. [`interpret`] decides the same way by walking the configuration
//! directly; it is the reference the compiled matcher is tested and benchmarked against.
//!
//! [`select_object`] reads one log object into a [`SelectRun`], the select stage's work for one
//! invocation: selection, duplicates, stream names, packing into delivery messages.
//!
//! A record goes through three gates, in this order:
//! 1. Insights records are never chosen by event selectors (Insights are routed elsewhere).
//! 2. The trail's Region scope: a single-Region trail keeps its home Region only, and global
//!    service events only when `IncludeGlobalServiceEvents` is on.
//! 3. The selectors: kept by the first selector that matches (OR across selectors).

mod compiled;
mod config_problem;
mod dry_run;
pub mod fields;
mod interpret;
pub mod model;
mod object;
mod origin;
mod packer;
pub mod problems;
pub mod reference;
mod run;
pub mod validate;

use crate::record::{EventCategory, Record};

pub use config_problem::ConfigProblem;
pub use dry_run::dry_run;
pub use interpret::interpret;
pub use model::{
    AdvancedSelector, BasicSelector, DataResource, FieldSelector, InsightEventCategory,
    InsightSelector, InsightType, ReadWriteType, Selectors,
};
pub use object::{
    select_object, LogObject, ObjectSource, Outbox, ReadError, SelectObjectError,
    SEND_EVERY_MESSAGES,
};
pub use origin::Origin;
pub use problems::Problem;
pub use run::{
    Destination, Outgoing, SelectCounts, SelectRun, DETECTIONS_STREAM, MESSAGE_DELIVERY_SPAN_MS,
    TYPICAL_DELIVERY_DELAY_MS,
};

use compiled::Compiled;

/// A trail: its Region scope and its selectors.
#[derive(Debug, Clone)]
pub struct TrailConfig {
    pub home_region: Option<String>,
    pub is_multi_region_trail: bool,
    pub include_global_service_events: bool,
    pub is_organization_trail: bool,
    pub trail_arn: Option<String>,
    selectors: Selectors,
    insight_selectors: Vec<InsightSelector>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("trail configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("InvalidEventSelectorsException: {}", list_problems(.0))]
    Invalid(Vec<ConfigProblem>),
    #[error("dry-run request is malformed: {0}")]
    Request(&'static str),
}

fn list_problems(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("{} problem(s): {}", problems.len(), lines.join("; "))
}

impl ConfigError {
    /// Every problem found (one for JSON and request errors).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Invalid(problems) => problems.clone(),
            other => vec![ConfigProblem::new("configuration", other.to_string())],
        }
    }
}

impl Default for TrailConfig {
    /// A trail as the console creates it: multi-region, global service events, all management
    /// events, no data events.
    fn default() -> Self {
        TrailConfig {
            home_region: None,
            is_multi_region_trail: true,
            include_global_service_events: true,
            is_organization_trail: false,
            trail_arn: None,
            selectors: Selectors::Default,
            insight_selectors: Vec::new(),
        }
    }
}

impl TrailConfig {
    /// Reads and validates a configuration; every problem is reported in [`ConfigError::Invalid`].
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        Self::from_value(&value)
    }

    /// As [`TrailConfig::from_json`], from an already parsed document.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let doc = model::read_document(value, &mut problems);
        let defaults = TrailConfig::default();
        let config = TrailConfig {
            home_region: doc.home_region,
            is_multi_region_trail: doc
                .is_multi_region_trail
                .unwrap_or(defaults.is_multi_region_trail),
            include_global_service_events: doc
                .include_global_service_events
                .unwrap_or(defaults.include_global_service_events),
            is_organization_trail: doc.is_organization_trail.unwrap_or(false),
            trail_arn: doc.trail_arn,
            selectors: doc.selectors,
            insight_selectors: doc.insight_selectors,
        };
        validate::validate_selectors(&config.selectors, doc.both_kinds, &mut problems);
        config.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Problems with this configuration as it stands now (the public trail properties may have
    /// been changed since it was read).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        validate::validate_selectors(&self.selectors, false, &mut problems);
        self.validate_into(&mut problems);
        problems
    }

    fn validate_into(&self, problems: &mut Vec<ConfigProblem>) {
        let scope = validate::TrailScope {
            home_region: self.home_region.as_deref(),
            trail_arn: self.trail_arn.as_deref(),
            is_multi_region_trail: self.is_multi_region_trail,
            include_global_service_events: self.include_global_service_events,
        };
        validate::validate_trail(&scope, problems);
        validate::validate_insights(&self.insight_selectors, problems);
    }

    pub fn selectors(&self) -> &Selectors {
        &self.selectors
    }

    /// The trail's Insights selectors (`InsightSelectors`); empty when Insights are off.
    pub fn insight_selectors(&self) -> &[InsightSelector] {
        &self.insight_selectors
    }

    /// The home Region: `HomeRegion`, else the Region in `TrailARN`.
    pub fn effective_home_region(&self) -> Option<&str> {
        self.home_region.as_deref().or_else(|| {
            self.trail_arn
                .as_deref()
                .and_then(validate::trail_arn_region)
        })
    }

    pub(crate) fn region_scope(&self) -> RegionScope {
        RegionScope {
            home_region: self.effective_home_region().map(str::to_string),
            is_multi_region_trail: self.is_multi_region_trail,
            include_global_service_events: self.include_global_service_events,
        }
    }

    /// Compiles the selectors once; the matcher then decides each record.
    pub fn compile(&self) -> Matcher {
        let labels = match &self.selectors {
            Selectors::Default => Vec::new(),
            Selectors::Basic(list) => (0..list.len())
                .map(|i| (format!("EventSelectors[{i}]"), None))
                .collect(),
            Selectors::Advanced(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("AdvancedEventSelectors[{i}]"), s.name.clone()))
                .collect(),
        };
        Matcher {
            scope: self.region_scope(),
            compiled: Compiled::new(&self.selectors),
            labels,
        }
    }
}

/// The Region part of a trail, shared by the compiled matcher and the interpreter.
#[derive(Debug, Clone)]
pub(crate) struct RegionScope {
    home_region: Option<String>,
    is_multi_region_trail: bool,
    include_global_service_events: bool,
}

/// Services whose events are global: recorded in us-east-1 and delivered only to trails that
/// include global service events (fact sheet 10; CloudTrail User Guide, "Global service
/// events"). STS is global only when called at its global endpoint: see [`is_global_sts_call`].
const GLOBAL_SERVICE_SOURCES: [&str; 2] = ["iam.amazonaws.com", "cloudfront.amazonaws.com"];

/// The host of STS's global endpoint; its events are recorded in us-east-1 as global service
/// events, those of the regional endpoints (`sts.us-east-1.amazonaws.com` included) in the
/// endpoint's Region as regional ones (fact sheet 10, "STS regional endpoints").
const STS_GLOBAL_ENDPOINT: &str = "sts.amazonaws.com";

/// Whether a record is a global service event: IAM and CloudFront always; STS when the client
/// asked for the global endpoint, as `tlsDetails.clientProvidedHostHeader` says. A us-east-1
/// STS record without `tlsDetails` (before eventVersion 1.08, or called by an AWS service)
/// cannot be told apart from a regional call and is treated as one: a trail without global
/// service events then keeps it rather than lose a regional call's audit evidence.
fn is_global_service_event(record: &Record<'_>) -> bool {
    match record.event_source() {
        Some(source) if GLOBAL_SERVICE_SOURCES.contains(&source) => true,
        Some("sts.amazonaws.com") => is_global_sts_call(record),
        _ => false,
    }
}

fn is_global_sts_call(record: &Record<'_>) -> bool {
    let host = record
        .fields
        .tls_details
        .as_ref()
        .and_then(|t| t.client_provided_host_header.as_deref());
    // A host header may carry a port.
    host.map(|h| h.split(':').next().unwrap_or(h))
        .is_some_and(|h| h.eq_ignore_ascii_case(STS_GLOBAL_ENDPOINT))
}

impl RegionScope {
    /// Gates 1 and 2 of the module doc; `None` when the record reaches the selectors.
    pub(crate) fn drop_reason(&self, record: &Record<'_>) -> Option<DropReason> {
        self.drop_reason_in(record, record.category())
    }

    /// As [`RegionScope::drop_reason`], with the record's category already known.
    fn drop_reason_in(&self, record: &Record<'_>, category: EventCategory) -> Option<DropReason> {
        if category == EventCategory::Insight {
            return Some(DropReason::InsightRecord);
        }
        if !self.is_multi_region_trail {
            // A record without awsRegion cannot be placed; it is kept rather than lost.
            if let (Some(home), Some(region)) = (self.home_region.as_deref(), record.aws_region()) {
                if home != region {
                    return Some(DropReason::OutsideTrailRegion);
                }
            }
        }
        if !self.include_global_service_events && is_global_service_event(record) {
            return Some(DropReason::GlobalServiceEventsExcluded);
        }
        None
    }
}

/// A compiled trail configuration.
#[derive(Debug, Clone)]
pub struct Matcher {
    scope: RegionScope,
    compiled: Compiled,
    /// Per selector: its place in the configuration and its `Name`, if any.
    labels: Vec<(String, Option<String>)>,
}

/// The decision for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept by the selector at this index (None: the default trail's implicit selector).
    Keep {
        selector: Option<usize>,
    },
    Drop(DropReason),
}

impl Verdict {
    pub fn is_keep(self) -> bool {
        matches!(self, Verdict::Keep { .. })
    }
}

/// Why a record was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// An Insights record: event selectors never choose these; Insights have their own route.
    InsightRecord,
    /// A single-Region trail and a record from another Region.
    OutsideTrailRegion,
    /// A global service event (IAM, CloudFront, STS at its global endpoint) on a trail without
    /// global service events.
    GlobalServiceEventsExcluded,
    /// No selector matches it.
    NotSelected,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::InsightRecord,
        DropReason::OutsideTrailRegion,
        DropReason::GlobalServiceEventsExcluded,
        DropReason::NotSelected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InsightRecord => "insight_record",
            DropReason::OutsideTrailRegion => "outside_trail_region",
            DropReason::GlobalServiceEventsExcluded => "global_service_events_excluded",
            DropReason::NotSelected => "not_selected",
        }
    }
}

impl Matcher {
    pub fn evaluate(&self, record: &Record<'_>) -> Verdict {
        let category = record.category();
        if let Some(reason) = self.scope.drop_reason_in(record, category) {
            return Verdict::Drop(reason);
        }
        self.compiled.evaluate(record, category)
    }

    /// Number of selectors (0 for the default trail, whose implicit selector has no index).
    pub fn selector_count(&self) -> usize {
        self.labels.len()
    }

    /// The `Name` of an advanced selector, if it has one.
    pub fn selector_name(&self, index: usize) -> Option<&str> {
        self.labels.get(index)?.1.as_deref()
    }

    /// A label for reports: the selector's `Name`, else its place in the configuration; for
    /// `None` (the default trail), a description of CloudTrail's default.
    pub fn selector_label(&self, index: Option<usize>) -> String {
        match index.and_then(|i| self.labels.get(i)) {
            Some((place, Some(name))) => format!("{place} \"{name}\""),
            Some((place, None)) => place.clone(),
            None => "default trail (all management events)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record<'_> {
        Record::parse(json).expect("test record parses")
    }

    #[test]
    fn default_trail_keeps_management_and_drops_data() {
        let m = TrailConfig::default().compile();
        let mgmt = r#"{"eventCategory":"Management","eventSource":"ec2.amazonaws.com","awsRegion":"eu-west-1"}"#;
        let data =
            r#"{"eventCategory":"Data","eventSource":"s3.amazonaws.com","awsRegion":"eu-west-1"}"#;
        assert_eq!(m.evaluate(&record(mgmt)), Verdict::Keep { selector: None });
        assert_eq!(
            m.evaluate(&record(data)),
            Verdict::Drop(DropReason::NotSelected)
        );
    }

    #[test]
    fn insights_records_have_their_own_drop_reason() {
        let m = TrailConfig::default().compile();
        let insight = r#"{"eventType":"AwsCloudTrailInsight","eventCategory":"Insight","awsRegion":"us-east-1"}"#;
        assert_eq!(
            m.evaluate(&record(insight)),
            Verdict::Drop(DropReason::InsightRecord)
        );
    }

    #[test]
    fn single_region_trail_outside_us_east_1_drops_global_events_by_region() {
        let config = TrailConfig::from_json(
            r#"{"TrailARN":"arn:aws:cloudtrail:eu-west-1:123456789012:trail/t","IsMultiRegionTrail":false,"IncludeGlobalServiceEvents":true}"#,
        )
        .expect("valid");
        assert_eq!(config.effective_home_region(), Some("eu-west-1"));
        let m = config.compile();
        let iam = r#"{"eventCategory":"Management","eventSource":"iam.amazonaws.com","awsRegion":"us-east-1"}"#;
        let local = r#"{"eventCategory":"Management","eventSource":"ec2.amazonaws.com","awsRegion":"eu-west-1"}"#;
        assert_eq!(
            m.evaluate(&record(iam)),
            Verdict::Drop(DropReason::OutsideTrailRegion)
        );
        assert_eq!(m.evaluate(&record(local)), Verdict::Keep { selector: None });
    }

    #[test]
    fn single_region_us_east_1_trail_without_global_events_drops_iam() {
        let config = TrailConfig::from_json(
            r#"{"HomeRegion":"us-east-1","IsMultiRegionTrail":false,"IncludeGlobalServiceEvents":false}"#,
        )
        .expect("valid");
        let m = config.compile();
        let iam = r#"{"eventCategory":"Management","eventSource":"iam.amazonaws.com","awsRegion":"us-east-1"}"#;
        let sts = r#"{"eventCategory":"Management","eventSource":"sts.amazonaws.com","awsRegion":"us-east-1"}"#;
        assert_eq!(
            m.evaluate(&record(iam)),
            Verdict::Drop(DropReason::GlobalServiceEventsExcluded)
        );
        assert_eq!(m.evaluate(&record(sts)), Verdict::Keep { selector: None });
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = TrailConfig::from_json(
            r#"{"IsMultiRegionTrail":true,"IncludeGlobalServiceEvents":false,
                "EventSelectors":[{"ReadWriteType":"read-only"}]}"#,
        )
        .expect_err("invalid");
        assert_eq!(err.problems().len(), 2, "{err}");
    }
}
