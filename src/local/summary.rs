//! What a replay did: the figures its select side and its delivery side add up.

use std::collections::BTreeMap;

use crate::deliver::DeliveryReport;
use crate::select::SelectCounts;

use super::cost::AwsCalls;
use super::detections::DetectionTotals;

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Inputs seen, digests included.
    pub files: usize,
    /// The select stage's counts, files that failed and digests skipped included.
    pub select: SelectCounts,
    /// Problems in the input, each with its file and record position: every one of delivery,
    /// and of the select stage the first few of each file then a summary (see
    /// `select::problems`).
    pub problems: Vec<String>,
    /// Problems in the input, listed or not.
    pub problem_count: usize,
    /// Writes to the output folder that failed: the output is incomplete.
    pub output_errors: Vec<String>,
    pub delivery: DeliveryTotals,
    /// CloudTrail's own Insights records (from `CloudTrail-Insight` files) forwarded to the bus.
    pub insights_forwarded_native: usize,
    /// trailwatch's Insights records forwarded to the bus.
    pub insights_forwarded_detected: usize,
    /// Insights records trailwatch's detector produced (Start and End).
    pub insights_detected: usize,
    /// What became of the rule matches (their number is `select.detections`).
    pub detections: DetectionTotals,
    pub aws: AwsCalls,
}

impl ReplaySummary {
    /// Log files that could not be read to their end (the records before the damage count).
    pub fn files_failed(&self) -> usize {
        self.select.files_failed
    }

    pub fn digests_skipped(&self) -> usize {
        self.select.digests_skipped
    }

    /// Files opened for reading (the GetObject calls): every input but the digests.
    pub fn files_read(&self) -> usize {
        self.files - self.digests_skipped()
    }

    /// Insights records forwarded to the bus, CloudTrail's and trailwatch's.
    pub fn insights_forwarded(&self) -> usize {
        self.insights_forwarded_native + self.insights_forwarded_detected
    }

    /// Duplicates dropped: by the select stage (eventID seen before) and by delivery.
    pub fn duplicates(&self) -> usize {
        self.select.duplicates + self.delivery.duplicates
    }
}

#[derive(Debug, Default)]
pub struct DeliveryTotals {
    pub delivered: usize,
    pub duplicates: usize,
    /// Records CloudWatch Logs would not accept, by reason (too old, too new, …).
    pub rejected: BTreeMap<&'static str, usize>,
    pub set_aside: usize,
    pub per_stream: BTreeMap<String, usize>,
}

impl DeliveryTotals {
    pub(super) fn add(&mut self, report: &DeliveryReport) {
        self.delivered += report.delivered;
        self.duplicates += report.duplicates;
        self.set_aside += report.set_aside.len();
        for (stream, n) in &report.delivered_per_stream {
            *self.per_stream.entry(stream.clone()).or_default() += n;
        }
        for (reason, n) in &report.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
    }
}
