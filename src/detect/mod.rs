//! Detect: Sigma rules for CloudTrail evaluated on every record read.
//!
//! [`rules`] loads the embedded set (SigmaHQ's CloudTrail rules and trailwatch's own) and the
//! user's, accounting for every rule it does not evaluate; [`prefilter`] indexes them by the
//! `eventName`s they can match; [`event`] presents a record to the evaluator (the kept
//! `rsigma-eval` crate), reading fields beyond the record model only when a rule asks;
//! [`detection`] is what a match reports; [`noise`] holds exceptions and suppression windows,
//! [`windows`] the same over a shared store (the Lambda's state table).

pub mod detection;
mod embedded;
pub mod event;
pub mod noise;
pub mod prefilter;
pub mod rules;
pub mod windows;

pub use detection::{Detection, DETECTION_DETAIL_TYPE};
pub use event::RecordEvent;
pub use noise::{Noise, NoiseSettings, Outcome, Suppressor};
pub use rules::{NotLoaded, Rule, RuleOptions, RuleSet, RuleText};

use prefilter::Prefilter;

use crate::deliver::message::RecordLocation;
use crate::record::Record;

/// The loaded rules, indexed for evaluation.
#[derive(Debug)]
pub struct Detector {
    rules: Vec<Rule>,
    prefilter: Prefilter,
}

/// Reusable per-caller buffers, so that evaluating a record allocates nothing when no rule
/// applies.
#[derive(Debug, Default)]
pub struct Scratch {
    candidates: Vec<usize>,
}

impl Detector {
    pub fn new(rules: Vec<Rule>) -> Detector {
        let prefilter = Prefilter::new(rules.iter().map(|r| &r.admission));
        Detector { rules, prefilter }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules every record is tested against, whatever its `eventName`.
    pub fn unfiltered_rules(&self) -> usize {
        self.prefilter.always_len()
    }

    /// Calls `on_match` with each rule `record` matches, in rule order.
    pub fn evaluate<'r, 'a>(
        &self,
        record: &'r Record<'a>,
        scratch: &mut Scratch,
        mut on_match: impl FnMut(&Rule, &RecordEvent<'r, 'a>),
    ) {
        self.prefilter.candidates(record, &mut scratch.candidates);
        if scratch.candidates.is_empty() {
            return;
        }
        let event = RecordEvent::new(record);
        for &index in &scratch.candidates {
            let rule = &self.rules[index];
            if rsigma_eval::evaluate_rule(&rule.compiled, &event).is_some() {
                on_match(rule, &event);
            }
        }
    }

    /// Calls `on_match` with each rule `record` matches, testing every rule: what
    /// [`Detector::evaluate`] must always agree with (its prefilter only skips rules that cannot
    /// match). For checks and measurements.
    pub fn evaluate_every_rule<'r, 'a>(
        &self,
        record: &'r Record<'a>,
        mut on_match: impl FnMut(&Rule, &RecordEvent<'r, 'a>),
    ) {
        let event = RecordEvent::new(record);
        for rule in &self.rules {
            if rsigma_eval::evaluate_rule(&rule.compiled, &event).is_some() {
                on_match(rule, &event);
            }
        }
    }

    /// The detections of `record`, found at `location`.
    pub fn detect(
        &self,
        record: &Record<'_>,
        location: RecordLocation<'_>,
        scratch: &mut Scratch,
    ) -> Vec<Detection> {
        let mut found = Vec::new();
        self.evaluate(record, scratch, |rule, event| {
            found.push(Detection::new(rule, event, location))
        });
        found
    }
}
