//! Selection: which records a trail keeps, by CloudTrail's trail configuration and event
//! selectors.
//!
//! The configuration is what users already have (`aws cloudtrail get-event-selectors` output,
//! plus trail properties as `describe-trails` names them); it is validated, then compiled once
//! into a [`Matcher`] that decides each record.

use serde::Deserialize;

use crate::record::{EventCategory, Record};

/// A trail: its region scope and its selectors.
#[derive(Debug, Clone)]
pub struct TrailConfig {
    pub home_region: Option<String>,
    pub is_multi_region_trail: bool,
    pub include_global_service_events: bool,
    pub is_organization_trail: bool,
    pub trail_arn: Option<String>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("trail configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("InvalidEventSelectorsException: {0}")]
    InvalidEventSelectors(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrailDocument {
    home_region: Option<String>,
    is_multi_region_trail: Option<bool>,
    include_global_service_events: Option<bool>,
    is_organization_trail: Option<bool>,
    #[serde(rename = "TrailARN")]
    trail_arn: Option<String>,
    event_selectors: Option<serde_json::Value>,
    advanced_event_selectors: Option<serde_json::Value>,
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
        }
    }
}

impl TrailConfig {
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let doc: TrailDocument = serde_json::from_str(text)?;
        if doc.event_selectors.is_some() || doc.advanced_event_selectors.is_some() {
            return Err(ConfigError::InvalidEventSelectors(
                "event selectors are not supported by this build".into(),
            ));
        }
        let defaults = TrailConfig::default();
        Ok(TrailConfig {
            home_region: doc.home_region,
            is_multi_region_trail: doc
                .is_multi_region_trail
                .unwrap_or(defaults.is_multi_region_trail),
            include_global_service_events: doc
                .include_global_service_events
                .unwrap_or(defaults.include_global_service_events),
            is_organization_trail: doc.is_organization_trail.unwrap_or(false),
            trail_arn: doc.trail_arn,
        })
    }

    pub fn compile(&self) -> Matcher {
        Matcher {}
    }
}

/// A compiled trail configuration.
#[derive(Debug, Clone)]
pub struct Matcher {}

/// The decision for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept by the selector at this index (None: the default trail's implicit selector).
    Keep { selector: Option<usize> },
    Drop(DropReason),
}

/// Why a record was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No selector matches it.
    NotSelected,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotSelected => "not_selected",
        }
    }
}

impl Matcher {
    pub fn evaluate(&self, record: &Record<'_>) -> Verdict {
        match record.category() {
            EventCategory::Management => Verdict::Keep { selector: None },
            _ => Verdict::Drop(DropReason::NotSelected),
        }
    }
}
