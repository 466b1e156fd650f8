//! The replay's detection stage: what the Insights function does with the select path's
//! detection messages — exceptions, suppression windows, then the bus — with the windows in
//! memory ([`Suppressor`]) and the bus a file (`detections.jsonl`, one `detail` a line).

use crate::deliver::DeliveryMessage;
use crate::detect::{Detection, Detector, Noise, Outcome, Suppressor};
use crate::forward::{forward, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE};

use super::adapters::FileBus;
use super::block_on;
use super::cost::AwsCalls;

/// The rules a replay evaluates and the noise control applied to their matches.
pub struct DetectionOptions {
    pub detector: Detector,
    pub noise: Noise,
}

/// What became of the detections of a replay (matches are counted by the select stage).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DetectionTotals {
    /// Forwarded to the bus (`detections.jsonl`).
    pub reported: usize,
    /// Repeats inside a suppression window: counted in the next report of their key.
    pub held: usize,
    /// Covered by an exception.
    pub excepted: usize,
}

/// The detection stage of one replay.
pub struct LocalDetections<'a> {
    suppressor: Suppressor,
    bus: &'a FileBus,
    pub totals: DetectionTotals,
}

impl<'a> LocalDetections<'a> {
    pub fn new(noise: Noise, bus: &'a FileBus) -> Self {
        LocalDetections {
            suppressor: Suppressor::new(noise),
            bus,
            totals: DetectionTotals::default(),
        }
    }

    /// Takes one detection message: the reported detections go to the bus. A message or
    /// detection that cannot be read goes to `problems`, an entry not written to `output_errors`.
    pub fn take(
        &mut self,
        body: &str,
        aws: &mut AwsCalls,
        problems: &mut Vec<String>,
        output_errors: &mut Vec<String>,
    ) {
        let message = match DeliveryMessage::parse(body) {
            Ok(message) => message,
            Err(e) => return problems.push(format!("detections message: {e}")),
        };
        let mut entries = Vec::new();
        for raw in &message.records {
            let detection: Detection = match serde_json::from_str(raw.get()) {
                Ok(detection) => detection,
                Err(e) => {
                    problems.push(format!("detection: {e}"));
                    continue;
                }
            };
            match self.suppressor.offer(detection) {
                Outcome::Report(detection) => {
                    entries.push(Entry::detection(DEFAULT_SOURCE, &detection))
                }
                Outcome::Held => self.totals.held += 1,
                Outcome::Excepted(_) => self.totals.excepted += 1,
                // Each match travels once in a replay; a repeat changes nothing.
                Outcome::AlreadyReported => {}
            }
        }
        if entries.is_empty() {
            return;
        }
        let report = block_on(forward(
            self.bus,
            &entries,
            &PutEventsLimits::default(),
            &RetryPolicy::default(),
            |_| std::future::ready(()),
        ));
        aws.put_events_calls += report.calls;
        aws.count_put_events_entries(entries.iter().map(Entry::size));
        self.totals.reported += report.accepted.len();
        for (i, reason) in report.failed {
            output_errors.push(format!(
                "detections.jsonl: detection {i} not written: {reason}"
            ));
        }
    }
}
