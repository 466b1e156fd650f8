//! The validation itself, over files found in the CloudTrail layout: digest chains, digest
//! signatures, log file hashes and log files no digest lists. Reads through [`Source`], so it
//! runs on an in-memory folder in unit tests.
//!
//! [`inventory`](super::inventory) sorts the files, [`read`](super::read) reads digests and
//! hashes log files, [`chain`](super::chain) links digests into chains, and
//! [`digest_verdict`](super::digest_verdict) and [`log_verdict`](super::log_verdict) judge them.

use super::chain::Chains;
use super::digest_verdict::{judge_digests, judge_missing};
use super::inventory::Inventory;
use super::keys::PublicKey;
use super::layout::{parse_digest_name, place, LocalFile};
use super::log_verdict::{coverage, extra_results, listed_present, listed_results};
use super::read::{hash_files, load_digests};

pub use super::read::{Disk, Source};
pub use super::report::{Counts, FileResult, FileType, Report, Status};

/// What to check.
#[derive(Debug, Default)]
pub struct Options {
    /// Only digests whose `digestEndTime` is at or after this (epoch ms).
    pub start: Option<i64>,
    /// Only digests whose `digestEndTime` is at or before this (epoch ms).
    pub end: Option<i64>,
    /// Keys to verify digest signatures with; none: signatures are not verified.
    pub keys: Vec<PublicKey>,
}

impl Options {
    pub fn in_range(&self, time: i64) -> bool {
        self.start.is_none_or(|s| time >= s) && self.end.is_none_or(|e| time <= e)
    }
}

/// Validates `files` (as found by [`super::layout::scan`]).
pub fn validate(files: &[LocalFile], options: &Options, source: &dyn Source) -> Report {
    let mut report = Report {
        requested_start: options.start,
        requested_end: options.end,
        keys: options.keys.iter().map(|k| k.label.clone()).collect(),
        ..Report::default()
    };
    let inventory = Inventory::new(files, &mut report.errors);
    let loaded = load_digests(source, &inventory.digests);
    let mut chains = Chains::new(&inventory, loaded, options);
    chains.find_skipped(&mut report.notes);
    let (digest_status, mut results) = judge_digests(&mut chains, options);
    let missing_hours = judge_missing(&chains, options, &mut results, &mut report.notes);
    let hashes = hash_files(source, &listed_present(&chains));
    report.found = found_range(&chains);

    // Each digest followed by the log files it lists, chain by chain in time order.
    for mut entries in results.into_values() {
        entries.sort_by(|a, b| (a.order, &a.result.key).cmp(&(b.order, &b.result.key)));
        for entry in entries {
            report.files.push(entry.result);
            if let Some(i) = entry.digest {
                let valid = digest_status[i] == Some(Status::Valid);
                report
                    .files
                    .extend(listed_results(&chains, i, valid, &hashes));
            }
        }
    }
    let covered = coverage(&chains, &missing_hours);
    report
        .files
        .extend(extra_results(&chains, &inventory.logs, &covered));
    orphan_signatures(&chains, options, &mut report);
    report.errors.sort();
    report
}

/// Earliest `digestStartTime` and latest `digestEndTime` of the digests read in range.
fn found_range(chains: &Chains<'_, '_>) -> Option<(i64, i64)> {
    chains
        .loaded
        .iter()
        .zip(&chains.in_range)
        .filter(|(_, r)| **r)
        .filter_map(|(l, _)| l.digest())
        .map(|d| (d.start, d.end))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
}

/// A signature whose digest is gone: evidence of a deleted digest, even the newest one.
fn orphan_signatures(chains: &Chains<'_, '_>, options: &Options, report: &mut Report) {
    let inventory = chains.inventory;
    for (digest_tail, file) in &inventory.signatures {
        // A digest the chain names is reported missing already.
        if inventory.signatures_used.contains(digest_tail)
            || chains.missing.contains_key(*digest_tail)
        {
            continue;
        }
        let time = place(digest_tail).and_then(|p| parse_digest_name(p.file_name(), &p.scope));
        if time.is_none_or(|n| options.in_range(n.time)) {
            report.errors.push((
                file.path.clone(),
                format!(
                    "signature file without its digest file: {} is not in the folder (deleted?)",
                    short(digest_tail)
                ),
            ));
        }
    }
}

/// The file name of a key.
pub fn short(tail: &str) -> &str {
    tail.rsplit('/').next().unwrap_or(tail)
}

#[cfg(test)]
mod tests;
