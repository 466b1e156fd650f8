//! Insights: unusual API call and error rates, as CloudTrail Insights reports them.
//!
//! The stage, bottom up:
//! * [`key`]: series keys (account, Region, API, Insight type, error code);
//! * [`aggregate`]: records → per-(key, minute) counts with Space-Saving top contributors
//!   ([`sketch`]), mergeable and serialisable for atomic adds in a table;
//! * [`detector`]: the per-key state machine (seasonal Poisson GLR with gates, surprise guard,
//!   hysteresis) with a compact binary state;
//! * [`output`]: Insights records in CloudTrail's format with deterministic ids;
//! * [`engine`]: the façade used by the CLI and the Lambda;
//! * [`config`]: `InsightSelectors` plus trailwatch's extensions;
//! * [`store`]: the port to the durable state the Lambda keeps between invocations;
//! * [`shard`]: which evaluator (shard) owns which keys, and how their number changes;
//! * [`cost`]: what the function costs per million events, next to CloudTrail Insights.

pub mod aggregate;
pub mod config;
pub mod cost;
pub mod detector;
pub mod engine;
pub mod key;
pub mod output;
pub mod shard;
pub mod sketch;
pub mod store;

pub use aggregate::{MinuteAggregate, MinuteAggregator, MinuteCell, ObserveStats};
pub use config::{ConfigError, DetectorParams, InsightsConfig, Sensitivity, TypeSelection};
pub use detector::{InsightState, KeyState, StateDecodeError, StepContext, Transition};
pub use engine::{EngineStats, InsightsEngine, KeyAttributions, StateSizeStats};
pub use key::{InsightType, SeriesKey};
pub use output::{InsightRecord, INSIGHT_EVENT_TYPE};
