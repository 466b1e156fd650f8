//! Labelled synthetic Insights streams for rhythms real accounts have and the shared generator
//! lacks — weekly recurring jobs, daylight-saving shifts of local-time schedules, Monday-morning
//! surges after quiet weekends, smooth daily ramps — with the positives that must still fire,
//! across seeds, volumes and organization layouts; and a scorer with the shared harness's rules
//! (`../shared/insights-eval/ctscore.py`), per account and region.
//!
//! Streams are generated as per-(key, minute) cells, the unit the Insights function counts
//! into, delivered in 5-minute files 2–18 minutes late (as CloudTrail does), and run through the
//! same [`trailwatch::insights::InsightsEngine`] as the Lambda and the CLI.

pub mod family;
pub mod generate;
pub mod run;
pub mod score;

pub use family::Family;
pub use generate::{Layout, StreamSpec};
pub use run::{evaluate, Evaluation};
pub use score::{Label, LabelKind, Score};
