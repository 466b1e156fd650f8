//! The verdict on each log file: listed by a digest in range (valid, changed, missing,
//! unreadable, unverified), or in the covered range but listed by none (extra).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use trailwatch::time::{format_event_time, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};

use super::chain::Chains;
use super::check::short;
use super::digest::{same_hash, LogEntry, HASH_ALGORITHM};
use super::inventory::LogFile;
use super::layout::{key_tail, without_gz, LocalFile, Scope};
use super::report::{FileResult, FileType, Status};

/// The log files the digests in range list and the folder holds, each once.
pub fn listed_present<'a>(chains: &Chains<'_, 'a>) -> Vec<&'a Path> {
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    for (i, l) in chains.loaded.iter().enumerate() {
        let Some(digest) = l.digest().filter(|_| chains.in_range[i]) else {
            continue;
        };
        for entry in &digest.log_files {
            if let Some(file) = chains.inventory.find(entry_tail(entry)) {
                if seen.insert(file.path.as_path()) {
                    paths.push(file.path.as_path());
                }
            }
        }
    }
    paths
}

fn entry_tail(entry: &LogEntry) -> &str {
    key_tail(&entry.object).unwrap_or(&entry.object)
}

/// The result of each log file `digest_tail` lists.
pub fn listed_results(
    chains: &Chains<'_, '_>,
    i: usize,
    digest_valid: bool,
    hashes: &HashMap<&Path, std::io::Result<String>>,
) -> Vec<FileResult> {
    let Some(digest) = chains.loaded[i].digest() else {
        return Vec::new();
    };
    let digest_tail = &chains.inventory.digests[i].file.tail;
    digest
        .log_files
        .iter()
        .map(|entry| {
            let tail = entry_tail(entry);
            let local = chains.inventory.find(tail);
            let (status, problem) = listed_verdict(entry, local, digest_tail, digest_valid, hashes);
            FileResult {
                file_type: FileType::Log,
                status,
                path: local.map(|f| f.path.clone()),
                s3: Some(format!("s3://{}/{}", entry.bucket, entry.object)),
                key: tail.to_owned(),
                problems: problem.into_iter().collect(),
                digest: Some(digest_tail.clone()),
            }
        })
        .collect()
}

fn listed_verdict(
    entry: &LogEntry,
    local: Option<&LocalFile>,
    digest_tail: &str,
    digest_valid: bool,
    hashes: &HashMap<&Path, std::io::Result<String>>,
) -> (Status, Option<String>) {
    let Some(file) = local else {
        return (
            Status::Missing,
            Some(format!(
                "listed in {}, not in the folder",
                short(digest_tail)
            )),
        );
    };
    if let Some(a) = entry
        .hash_algorithm
        .as_deref()
        .filter(|a| *a != HASH_ALGORITHM)
    {
        return (
            Status::Unverified,
            Some(format!(
                "unsupported hashAlgorithm {a} in {}",
                short(digest_tail)
            )),
        );
    }
    match hashes.get(file.path.as_path()) {
        None => (Status::Unreadable, Some("not read".to_owned())),
        Some(Err(e)) => (Status::Unreadable, Some(e.to_string())),
        Some(Ok(sha)) if !same_hash(sha, &entry.hash) => (
            Status::Changed,
            Some(format!(
                "hash expected {} found {sha} (SHA-256 of the uncompressed file; listed in {})",
                entry.hash,
                short(digest_tail)
            )),
        ),
        Some(Ok(_)) if !digest_valid => (
            Status::Unverified,
            Some(format!(
                "hash matches, but the digest listing it ({}) is invalid",
                short(digest_tail)
            )),
        ),
        Some(Ok(_)) => (Status::Valid, None),
    }
}

/// The hull of the times the digests in range cover, per account and region, with the hours
/// of the missing digests (`missing`) and of unreadable digests (the hour before the time in
/// their name).
pub fn coverage(
    chains: &Chains<'_, '_>,
    missing: &[(Scope, i64, i64)],
) -> BTreeMap<Scope, (i64, i64)> {
    let mut covered: BTreeMap<Scope, (i64, i64)> = BTreeMap::new();
    let mut cover = |scope: &Scope, start: i64, end: i64| {
        let hull = covered.entry(scope.clone()).or_insert((start, end));
        hull.0 = hull.0.min(start);
        hull.1 = hull.1.max(end);
    };
    for (i, d) in chains.inventory.digests.iter().enumerate() {
        if !chains.in_range[i] {
            continue;
        }
        match (chains.loaded[i].digest(), &d.name) {
            (Some(digest), _) => cover(&d.scope, digest.start, digest.end),
            (None, Some(name)) => cover(&d.scope, name.time - MS_PER_HOUR, name.time),
            (None, None) => {}
        }
    }
    for (scope, start, end) in missing {
        cover(scope, *start, *end);
    }
    covered
}

/// Log files in the covered range that no digest (read, in range or not) lists.
pub fn extra_results(
    chains: &Chains<'_, '_>,
    logs: &[LogFile<'_>],
    covered: &BTreeMap<Scope, (i64, i64)>,
) -> Vec<FileResult> {
    let listed: HashSet<&str> = chains
        .loaded
        .iter()
        .filter_map(|l| l.digest())
        .flat_map(|d| d.log_files.iter().map(|e| without_gz(entry_tail(e))))
        .collect();
    logs.iter()
        .filter(|log| !listed.contains(without_gz(&log.file.tail)))
        .filter_map(|log| {
            let &(start, end) = covered.get(&log.scope)?;
            let problem = extra_problem(log, start, end)?;
            Some(FileResult {
                file_type: FileType::Log,
                status: Status::Extra,
                path: Some(log.file.path.clone()),
                s3: None,
                key: log.file.tail.clone(),
                problems: vec![problem],
                digest: None,
            })
        })
        .collect()
}

/// Why an unlisted log file should have been listed; none when it may lie outside
/// `start..end`.
fn extra_problem(log: &LogFile<'_>, start: i64, end: i64) -> Option<String> {
    let range = format!(
        "{} to {}, covered by the digests of {}",
        format_event_time(start),
        format_event_time(end),
        log.scope
    );
    match (log.time, log.day) {
        (Some(t), _) if t >= start && t + MS_PER_MINUTE <= end => Some(format!(
            "not listed in any digest (delivered {}, inside {range})",
            &format_event_time(t)[..16]
        )),
        (Some(_), _) => None,
        (None, Some(day)) if day < end && day + MS_PER_DAY > start => Some(format!(
            "not listed in any digest (not a CloudTrail log file name; in the folder of {}, which overlaps {range})",
            &format_event_time(day)[..10]
        )),
        (None, Some(_)) => None,
        (None, None) => Some(format!(
            "not listed in any digest (neither its name nor its folders give a delivery time; digests cover {range})"
        )),
    }
}
