//! The validation itself, over files found in the CloudTrail layout: digest chains, digest
//! signatures, log file hashes and log files no digest lists. Reads through [`Source`], so it
//! runs on an in-memory folder in unit tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use trailwatch::time::{format_event_time, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};

use super::digest::{
    hex, parse_digest, read_uncompressed, same_hash, sha256_hex, sha256_uncompressed, unhex,
    Digest, HASH_ALGORITHM, SIGNATURE_ALGORITHM,
};
use super::keys::{verifies, PublicKey};
use super::layout::{
    is_json_name, key_tail, parse_day_folders, parse_digest_name, parse_log_name_time, place,
    without_gz, DigestName, LocalFile, Scope, DIGEST_AREA, LOG_AREA, SIGNATURE_SUFFIX,
};

/// Where file contents come from.
pub trait Source: Sync {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>>;
}

/// The file system.
pub struct Disk;

impl Source for Disk {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

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
    fn in_range(&self, time: i64) -> bool {
        self.start.is_none_or(|s| time >= s) && self.end.is_none_or(|e| time <= e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Digest,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Digest: readable, in its place, signature (when keys are given) and chain hold. Log
    /// file: hash as listed by a valid digest.
    Valid,
    /// Digest: anything else.
    Invalid,
    /// Named (by a digest) but not in the folder.
    Missing,
    /// Log file whose hash differs from the one its digest lists.
    Changed,
    /// Log file that could not be read (not gzip, truncated, I/O error).
    Unreadable,
    /// Log file whose hash matches a digest that is itself invalid, or with a hash algorithm
    /// other than SHA-256.
    Unverified,
    /// Log file in the range the digests cover that no digest lists.
    Extra,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid",
            Status::Missing => "missing",
            Status::Changed => "changed",
            Status::Unreadable => "unreadable",
            Status::Unverified => "unverified",
            Status::Extra => "extra",
        }
    }
}

/// The verdict on one digest or log file.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub status: Status,
    /// The local file; none when missing.
    pub path: Option<PathBuf>,
    /// `s3://bucket/key` as CloudTrail named it, when a digest names it.
    pub s3: Option<String>,
    /// The key from `AWSLogs/` on.
    pub key: String,
    /// What is wrong (empty when valid).
    pub problems: Vec<String>,
    /// For a log file: the key of the digest that lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl FileResult {
    /// The local path, or else the S3 location, or else the key.
    pub fn location(&self) -> String {
        match (&self.path, &self.s3) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(s3)) => s3.clone(),
            (None, None) => self.key.clone(),
        }
    }
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: usize,
    pub valid: usize,
    pub invalid: usize,
    pub missing: usize,
    pub changed: usize,
    pub unreadable: usize,
    pub unverified: usize,
}

impl Counts {
    /// Everything but valid.
    pub fn not_valid(&self) -> usize {
        self.total - self.valid
    }
}

/// The outcome of a validation.
#[derive(Debug, Default)]
pub struct Report {
    pub requested_start: Option<i64>,
    pub requested_end: Option<i64>,
    /// Earliest `digestStartTime` and latest `digestEndTime` of the digests read.
    pub found: Option<(i64, i64)>,
    /// Labels of the public keys used; empty: signatures not verified.
    pub keys: Vec<String>,
    /// Each digest (present or missing) followed by the log files it lists, chain by chain in
    /// time order; then the extra log files.
    pub files: Vec<FileResult>,
    /// Files or folders that could not be taken into account, with why.
    pub errors: Vec<(PathBuf, String)>,
    /// Facts worth knowing that are not failures (chain restarts, where a chain begins).
    pub notes: Vec<String>,
}

impl Report {
    pub fn digest_counts(&self) -> Counts {
        self.count(FileType::Digest)
    }

    /// Log files listed by the checked digests (extra files are counted by [`Report::extra`]).
    pub fn log_counts(&self) -> Counts {
        self.count(FileType::Log)
    }

    pub fn extra(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.status == Status::Extra)
            .count()
    }

    fn count(&self, file_type: FileType) -> Counts {
        let mut c = Counts::default();
        for f in self.files.iter().filter(|f| f.file_type == file_type) {
            let slot = match f.status {
                Status::Valid => &mut c.valid,
                Status::Invalid => &mut c.invalid,
                Status::Missing => &mut c.missing,
                Status::Changed => &mut c.changed,
                Status::Unreadable => &mut c.unreadable,
                Status::Unverified => &mut c.unverified,
                Status::Extra => continue,
            };
            *slot += 1;
            c.total += 1;
        }
        c
    }

    /// Everything checked is valid, nothing is extra, nothing was unreadable, and at least one
    /// digest was checked.
    pub fn ok(&self) -> bool {
        let digests = self.digest_counts();
        digests.total > 0
            && digests.not_valid() == 0
            && self.log_counts().not_valid() == 0
            && self.extra() == 0
            && self.errors.is_empty()
    }
}

/// A digest file found in the folder.
struct DigestFile<'a> {
    file: &'a LocalFile,
    scope: Scope,
    name: Option<DigestName>,
    signature_file: Option<&'a LocalFile>,
}

/// What reading a digest file gave.
struct Loaded {
    /// Hex SHA-256 of the uncompressed bytes, or why they could not be read.
    sha: Result<String, String>,
    digest: Result<Digest, String>,
    /// The signature sidecar: none, its bytes, or why it is unusable.
    signature: Option<Result<Vec<u8>, String>>,
}

/// A log file found under `CloudTrail/`.
struct LogFile<'a> {
    file: &'a LocalFile,
    scope: Scope,
    /// Delivery minute from the file name.
    time: Option<i64>,
    /// Day from the `YYYY/MM/DD` folders.
    day: Option<i64>,
}

/// Digests of one trail in one account and region: (scope, trail name, home region).
type ChainKey = (Scope, String, String);

/// A digest named as previous by another but not in the folder.
struct MissingDigest {
    s3: String,
    time: Option<i64>,
    named_by: Vec<usize>,
}

/// Validates `files` (as found by [`super::layout::scan`]).
pub fn validate(files: &[LocalFile], options: &Options, source: &dyn Source) -> Report {
    let mut report = Report {
        requested_start: options.start,
        requested_end: options.end,
        keys: options.keys.iter().map(|k| k.label.clone()).collect(),
        ..Report::default()
    };

    // Index by tail; a second copy of the same key is not read.
    let mut by_tail: HashMap<&str, &LocalFile> = HashMap::new();
    for file in files {
        if let Some(first) = by_tail.get(file.tail.as_str()) {
            report.errors.push((
                file.path.clone(),
                format!(
                    "a second copy of {} (the first, at {}, is the one checked)",
                    file.tail,
                    first.path.display()
                ),
            ));
        } else {
            by_tail.insert(&file.tail, file);
        }
    }
    let find = |tail: &str| -> Option<&LocalFile> {
        by_tail
            .get(tail)
            .or_else(|| by_tail.get(without_gz(tail)))
            .copied()
    };

    // Sort the files into digests, signatures and log files.
    let mut signatures: HashMap<&str, &LocalFile> = HashMap::new();
    let mut digest_files = Vec::new();
    let mut log_files = Vec::new();
    for file in files {
        if !by_tail
            .get(file.tail.as_str())
            .is_some_and(|f| std::ptr::eq(*f, file))
        {
            continue;
        }
        let Some(placed) = place(&file.tail) else {
            continue;
        };
        let name = placed.file_name();
        if placed.area == DIGEST_AREA {
            if let Some(digest_tail) = file.tail.strip_suffix(SIGNATURE_SUFFIX) {
                signatures.insert(digest_tail, file);
            } else if is_json_name(name) {
                digest_files.push(DigestFile {
                    file,
                    name: parse_digest_name(name, &placed.scope),
                    scope: placed.scope,
                    signature_file: None,
                });
            }
        } else if placed.area == LOG_AREA && is_json_name(name) {
            log_files.push(LogFile {
                file,
                time: parse_log_name_time(name, &placed.scope),
                day: parse_day_folders(&placed.rest),
                scope: placed.scope,
            });
        }
    }
    // A digest decompressed after download (`x.json`) may keep the sidecar `x.json.gz.sig`.
    let mut signatures_used = HashSet::new();
    for d in &mut digest_files {
        let tail = d.file.tail.as_str();
        let with_gz = format!("{tail}.gz");
        d.signature_file = [tail, without_gz(tail), with_gz.as_str()]
            .into_iter()
            .find_map(|t| signatures.get_key_value(t))
            .map(|(k, f)| {
                signatures_used.insert(*k);
                *f
            });
    }

    let loaded = par_map(&digest_files, |d| load_digest(source, d));
    let ends: Vec<Option<i64>> = digest_files
        .iter()
        .zip(&loaded)
        .map(|(d, l)| match &l.digest {
            Ok(digest) => Some(digest.end),
            Err(_) => d.name.as_ref().map(|n| n.time),
        })
        .collect();
    let in_range: Vec<bool> = ends
        .iter()
        .map(|end| end.is_none_or(|t| options.in_range(t)))
        .collect();
    let chain_of = |i: usize| -> ChainKey {
        let d = &digest_files[i];
        match &d.name {
            Some(n) => (d.scope.clone(), n.trail.clone(), n.home_region.clone()),
            None => (d.scope.clone(), String::new(), String::new()),
        }
    };
    let digest_index: HashMap<&str, usize> = digest_files
        .iter()
        .enumerate()
        .map(|(i, d)| (d.file.tail.as_str(), i))
        .collect();
    let find_digest = |tail: &str| -> Option<usize> {
        find(tail).and_then(|f| digest_index.get(f.tail.as_str()).copied())
    };

    // Links: each digest vouches for the one it names as previous.
    let mut vouchers: Vec<Vec<usize>> = vec![Vec::new(); digest_files.len()];
    let mut link_problems: Vec<Vec<String>> = vec![Vec::new(); digest_files.len()];
    let mut missing: BTreeMap<String, MissingDigest> = BTreeMap::new();
    for (i, l) in loaded.iter().enumerate() {
        let Ok(digest) = &l.digest else { continue };
        let Some(object) = &digest.previous_object else {
            continue;
        };
        let tail = key_tail(object).unwrap_or(object);
        match find_digest(tail) {
            Some(j) => {
                vouchers[j].push(i);
                if ends[j].is_some_and(|t| t >= digest.end) {
                    link_problems[i].push(format!(
                        "chain broken: previousDigestS3Object {} does not end before this digest",
                        short(tail)
                    ));
                }
            }
            None => {
                let time = place(tail).and_then(|p| parse_digest_name(p.file_name(), &p.scope));
                missing
                    .entry(tail.to_owned())
                    .or_insert_with(|| MissingDigest {
                        s3: format!(
                            "s3://{}/{object}",
                            digest.previous_bucket.as_deref().unwrap_or("?")
                        ),
                        time: time.map(|n| n.time),
                        named_by: Vec::new(),
                    })
                    .named_by
                    .push(i);
            }
        }
    }

    // Chains in time order.
    let mut chains: BTreeMap<ChainKey, Vec<usize>> = BTreeMap::new();
    for i in 0..digest_files.len() {
        chains.entry(chain_of(i)).or_default().push(i);
    }
    for members in chains.values_mut() {
        members.sort_by(|&a, &b| {
            (ends[a].unwrap_or(i64::MAX), &digest_files[a].file.tail)
                .cmp(&(ends[b].unwrap_or(i64::MAX), &digest_files[b].file.tail))
        });
    }
    // A digest nobody vouches for although a later one follows it: left out of the chain.
    for (key, members) in &chains {
        for pair in members.windows(2) {
            let (this, next) = (pair[0], pair[1]);
            if !vouchers[this].is_empty() || !(in_range[this] || in_range[next]) {
                continue;
            }
            let Ok(next_digest) = &loaded[next].digest else {
                continue;
            };
            match &next_digest.previous_object {
                None => {
                    if let Ok(this_digest) = &loaded[this].digest {
                        report.notes.push(format!(
                            "{}: chain restarts at {} (a starting digest): no digest between {} and {} — CloudTrail logging or log file validation was off, so log files delivered then (if any) are not covered",
                            chain_label(key),
                            short(&digest_files[next].file.tail),
                            format_event_time(this_digest.end),
                            format_event_time(next_digest.start),
                        ));
                    }
                }
                // Skipped for a present digest (naming a missing one leaves a hole instead).
                Some(object)
                    if in_range[this]
                        && find_digest(key_tail(object).unwrap_or(object))
                            .is_some_and(|named| named != this) =>
                {
                    link_problems[this].push(format!(
                        "not in the chain: the next digest {} names {} as previous",
                        short(&digest_files[next].file.tail),
                        short(key_tail(object).unwrap_or(object))
                    ));
                }
                Some(_) => {}
            }
        }
    }

    // Verdicts on the digests in range.
    let mut digest_status: Vec<Option<Status>> = vec![None; digest_files.len()];
    let mut results_by_chain: BTreeMap<ChainKey, Vec<(i64, FileResult, Option<usize>)>> =
        BTreeMap::new();
    for (i, d) in digest_files.iter().enumerate() {
        if !in_range[i] {
            continue;
        }
        let mut problems = digest_problems(i, d, &loaded, &vouchers, &digest_files, options);
        problems.append(&mut link_problems[i]);
        let status = if problems.is_empty() {
            Status::Valid
        } else {
            Status::Invalid
        };
        digest_status[i] = Some(status);
        let s3 = loaded[i]
            .digest
            .as_ref()
            .ok()
            .map(|g| format!("s3://{}/{}", g.bucket, g.object));
        results_by_chain.entry(chain_of(i)).or_default().push((
            ends[i].unwrap_or(i64::MAX),
            FileResult {
                file_type: FileType::Digest,
                status,
                path: Some(d.file.path.clone()),
                s3,
                key: d.file.tail.clone(),
                problems,
                digest: None,
            },
            Some(i),
        ));
    }

    // Digests named as previous but absent: missing when the range asks for them.
    let mut chain_begin_noted = HashSet::new();
    let mut missing_intervals = Vec::new();
    for (tail, m) in &missing {
        let key = chain_of(m.named_by[0]);
        let oldest_present = chains
            .get(&key)
            .and_then(|members| members.iter().filter_map(|&i| ends[i]).min());
        let wanted = match (m.time, options.start) {
            (None, _) => true,
            (Some(t), Some(start)) => t >= start && options.end.is_none_or(|e| t <= e),
            (Some(t), None) => {
                oldest_present.is_some_and(|o| t > o) && options.end.is_none_or(|e| t <= e)
            }
        };
        let namers: Vec<&str> = m
            .named_by
            .iter()
            .map(|&i| short(&digest_files[i].file.tail))
            .collect();
        if wanted {
            if let (Some(t), Some(scope)) = (m.time, place(tail).map(|p| p.scope)) {
                missing_intervals.push((scope, t - MS_PER_HOUR, t));
            }
            results_by_chain.entry(key).or_default().push((
                m.time.unwrap_or(i64::MIN),
                FileResult {
                    file_type: FileType::Digest,
                    status: Status::Missing,
                    path: None,
                    s3: Some(m.s3.clone()),
                    key: tail.clone(),
                    problems: vec![format!(
                        "chain broken: previous digest of {} not found",
                        namers.join(" and ")
                    )],
                    digest: None,
                },
                None,
            ));
        } else if m.named_by.iter().any(|&i| in_range[i]) && chain_begin_noted.insert(key.clone()) {
            report.notes.push(format!(
                "{}: the oldest digest checked, {}, names {} as previous, which is {} — earlier digests were not checked{}",
                chain_label(&key),
                namers.join(" and "),
                short(tail),
                if options.start.is_some() { "before --start-time" } else { "not in the folder" },
                if options.start.is_some() { "" } else { " (give --start-time to require them)" },
            ));
        }
    }

    // Log files listed by the digests in range.
    let mut jobs: Vec<&Path> = Vec::new();
    let mut seen_jobs = HashSet::new();
    for (i, l) in loaded.iter().enumerate() {
        let Ok(digest) = &l.digest else { continue };
        if !in_range[i] {
            continue;
        }
        for entry in &digest.log_files {
            if let Some(file) = find(key_tail(&entry.object).unwrap_or(&entry.object)) {
                if seen_jobs.insert(file.path.as_path()) {
                    jobs.push(&file.path);
                }
            }
        }
    }
    let hashes: HashMap<&Path, Result<String, String>> = jobs
        .iter()
        .copied()
        .zip(par_map(&jobs, |path| {
            source
                .open(path)
                .and_then(sha256_uncompressed)
                .map_err(|e| e.to_string())
        }))
        .collect();

    let mut listed: HashSet<&str> = HashSet::new();
    for l in &loaded {
        if let Ok(digest) = &l.digest {
            for entry in &digest.log_files {
                listed.insert(without_gz(key_tail(&entry.object).unwrap_or(&entry.object)));
            }
        }
    }

    let mut covered: BTreeMap<Scope, (i64, i64)> = BTreeMap::new();
    let mut cover = |scope: &Scope, start: i64, end: i64| {
        let hull = covered.entry(scope.clone()).or_insert((start, end));
        hull.0 = hull.0.min(start);
        hull.1 = hull.1.max(end);
    };
    for (i, d) in digest_files.iter().enumerate() {
        if !in_range[i] {
            continue;
        }
        match (&loaded[i].digest, &d.name) {
            (Ok(digest), _) => cover(&d.scope, digest.start, digest.end),
            // An unreadable digest covered (about) the hour before its name's time.
            (Err(_), Some(name)) => cover(&d.scope, name.time - MS_PER_HOUR, name.time),
            (Err(_), None) => {}
        }
    }
    for (scope, start, end) in &missing_intervals {
        cover(scope, *start, *end);
    }
    report.found = loaded
        .iter()
        .zip(&in_range)
        .filter(|(_, r)| **r)
        .filter_map(|(l, _)| l.digest.as_ref().ok())
        .map(|d| (d.start, d.end))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));

    let not_read: Result<String, String> = Err("not read".into());
    for mut results in results_by_chain.into_values() {
        results.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        for (_, result, index) in results {
            report.files.push(result);
            let Some(i) = index else { continue };
            let Ok(digest) = &loaded[i].digest else {
                continue;
            };
            let digest_valid = digest_status[i] == Some(Status::Valid);
            let digest_tail = &digest_files[i].file.tail;
            for entry in &digest.log_files {
                let tail = key_tail(&entry.object).unwrap_or(&entry.object);
                let local = find(tail);
                let (status, problem) = match local {
                    None => (
                        Status::Missing,
                        format!("listed in {}, not in the folder", short(digest_tail)),
                    ),
                    Some(file) => match (
                        hashes.get(file.path.as_path()).unwrap_or(&not_read),
                        &entry.hash_algorithm,
                    ) {
                        (_, Some(a)) if a != HASH_ALGORITHM => (
                            Status::Unverified,
                            format!("unsupported hashAlgorithm {a} in {}", short(digest_tail)),
                        ),
                        (Err(e), _) => (Status::Unreadable, e.clone()),
                        (Ok(sha), _) if !same_hash(sha, &entry.hash) => (
                            Status::Changed,
                            format!(
                                "hash expected {} found {sha} (SHA-256 of the uncompressed file; listed in {})",
                                entry.hash,
                                short(digest_tail)
                            ),
                        ),
                        (Ok(_), _) if !digest_valid => (
                            Status::Unverified,
                            format!(
                                "hash matches, but the digest listing it ({}) is invalid",
                                short(digest_tail)
                            ),
                        ),
                        (Ok(_), _) => (Status::Valid, String::new()),
                    },
                };
                report.files.push(FileResult {
                    file_type: FileType::Log,
                    status,
                    path: local.map(|f| f.path.clone()),
                    s3: Some(format!("s3://{}/{}", entry.bucket, entry.object)),
                    key: tail.to_owned(),
                    problems: if problem.is_empty() {
                        Vec::new()
                    } else {
                        vec![problem]
                    },
                    digest: Some(digest_tail.clone()),
                });
            }
        }
    }

    // Log files the digests should have listed but do not.
    for log in &log_files {
        if listed.contains(without_gz(&log.file.tail)) {
            continue;
        }
        let Some(&(start, end)) = covered.get(&log.scope) else {
            continue;
        };
        let range = format!(
            "{} to {}, covered by the digests of {}",
            format_event_time(start),
            format_event_time(end),
            log.scope
        );
        let problem = match (log.time, log.day) {
            (Some(t), _) if t >= start && t + MS_PER_MINUTE <= end => format!(
                "not listed in any digest (delivered {}, inside {range})",
                &format_event_time(t)[..16]
            ),
            (Some(_), _) => continue,
            (None, Some(day)) if day < end && day + MS_PER_DAY > start => format!(
                "not listed in any digest (not a CloudTrail log file name; in the folder of {}, which overlaps {range})",
                &format_event_time(day)[..10]
            ),
            (None, Some(_)) => continue,
            (None, None) => format!(
                "not listed in any digest (neither its name nor its folders give a delivery time; digests cover {range})"
            ),
        };
        report.files.push(FileResult {
            file_type: FileType::Log,
            status: Status::Extra,
            path: Some(log.file.path.clone()),
            s3: None,
            key: log.file.tail.clone(),
            problems: vec![problem],
            digest: None,
        });
    }

    // A signature whose digest is gone: evidence of a deleted digest, even the newest one.
    for (digest_tail, file) in &signatures {
        // A digest the chain names is reported missing already.
        if signatures_used.contains(digest_tail) || missing.contains_key(*digest_tail) {
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
    report.errors.sort();
    report
}

fn load_digest(source: &dyn Source, d: &DigestFile<'_>) -> Loaded {
    let signature = d.signature_file.map(|f| {
        let mut text = String::new();
        source
            .open(&f.path)
            .and_then(|r| r.take(64 * 1024).read_to_string(&mut text))
            .map_err(|e| format!("signature file {} unreadable: {e}", f.path.display()))?;
        unhex(&text).ok_or_else(|| {
            format!(
                "signature file {} does not hold hex (it holds {:?}; expected x-amz-meta-signature)",
                f.path.display(),
                text.trim().chars().take(40).collect::<String>()
            )
        })
    });
    match source.open(&d.file.path).and_then(read_uncompressed) {
        Ok(bytes) => Loaded {
            sha: Ok(sha256_hex(&bytes)),
            digest: parse_digest(&bytes),
            signature,
        },
        Err(e) => {
            let why = format!("unreadable: {e}");
            Loaded {
                sha: Err(why.clone()),
                digest: Err(why),
                signature,
            }
        }
    }
}

fn digest_problems(
    i: usize,
    d: &DigestFile<'_>,
    loaded: &[Loaded],
    vouchers: &[Vec<usize>],
    files: &[DigestFile<'_>],
    options: &Options,
) -> Vec<String> {
    let l = &loaded[i];
    let mut problems = Vec::new();
    let (sha, digest) = match (&l.sha, &l.digest) {
        (Err(e), _) | (Ok(_), Err(e)) => return vec![e.clone()],
        (Ok(sha), Ok(digest)) => (sha, digest),
    };
    if d.name.is_none() {
        problems.push(format!(
            "file name is not {}_CloudTrail-Digest_{}_<trail>_<homeRegion>_<YYYYMMDDTHHmmssZ>.json.gz",
            d.scope.account, d.scope.region
        ));
    }
    let named = key_tail(&digest.object).map(without_gz);
    if named != Some(without_gz(&d.file.tail)) {
        problems.push(format!(
            "moved: it says it is s3://{}/{}",
            digest.bucket, digest.object
        ));
    }
    if let Some(p) = digest.previous_fields_problem() {
        problems.push(p);
    }
    if let Some(a) = digest
        .previous_hash_algorithm
        .as_deref()
        .filter(|a| *a != HASH_ALGORITHM)
    {
        problems.push(format!("unsupported previousDigestHashAlgorithm {a}"));
    }
    if !options.keys.is_empty() {
        let sidecar = format!(
            "{}{SIGNATURE_SUFFIX}",
            d.file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        match (&l.signature, digest.signature_algorithm.as_deref()) {
            (None, _) => problems.push(format!(
                "signature missing: no {sidecar} next to it (see --help on fetching signatures)"
            )),
            (Some(Err(e)), _) => problems.push(format!("signature missing: {e}")),
            (Some(Ok(_)), Some(a)) if a != SIGNATURE_ALGORITHM => {
                problems.push(format!("unsupported digestSignatureAlgorithm {a}"))
            }
            (Some(Ok(signature)), _) => {
                let message = digest.string_to_sign(sha);
                if !options
                    .keys
                    .iter()
                    .any(|k| verifies(&k.key, message.as_bytes(), signature))
                {
                    problems.push(format!(
                        "signature invalid: does not verify with the {} public key{} given (digestPublicKeyFingerprint {})",
                        options.keys.len(),
                        if options.keys.len() == 1 { "" } else { "s" },
                        digest.fingerprint.as_deref().unwrap_or("null")
                    ));
                }
            }
        }
    }
    for &v in &vouchers[i] {
        let Ok(next) = &loaded[v].digest else {
            continue;
        };
        let next_name = short(&files[v].file.tail);
        if let Some(expected) = &next.previous_hash {
            if !same_hash(expected, sha) {
                problems.push(format!(
                    "chain broken: hash expected {expected} (previousDigestHashValue in the next digest {next_name}) found {sha}"
                ));
            }
        }
        if let (Some(Ok(signature)), Some(expected)) = (&l.signature, &next.previous_signature) {
            if !same_hash(expected, &hex(signature)) {
                problems.push(format!(
                    "signature file differs from previousDigestSignature in the next digest {next_name}"
                ));
            }
        }
    }
    if vouchers[i].len() > 1 {
        let names: Vec<&str> = vouchers[i]
            .iter()
            .map(|&v| short(&files[v].file.tail))
            .collect();
        problems.push(format!(
            "chain forked: named as previous by {}",
            names.join(" and ")
        ));
    }
    problems
}

/// The file name of a key.
fn short(tail: &str) -> &str {
    tail.rsplit('/').next().unwrap_or(tail)
}

fn chain_label((scope, trail, home): &ChainKey) -> String {
    if trail.is_empty() {
        format!("{scope}, unrecognised digest names")
    } else {
        format!("trail {trail} (home {home}), {scope}")
    }
}

/// `f` over `items` on a few threads (hashing is CPU-bound; reading may wait on the disk).
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    //! Chains and coverage on an in-memory copy, unsigned (signatures are covered by the
    //! integration tests in `cli/tests/validate_logs.rs`).

    use super::*;
    use std::io::Write;
    use trailwatch::time::parse_event_time;

    const ACCOUNT: &str = "218007301253";
    const REGION: &str = "us-east-1";

    struct Memory(HashMap<PathBuf, Vec<u8>>);

    impl Source for Memory {
        fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
            match self.0.get(path) {
                Some(bytes) => Ok(Box::new(&bytes[..])),
                None => Err(std::io::ErrorKind::NotFound.into()),
            }
        }
    }

    fn at(text: &str) -> i64 {
        parse_event_time(text).unwrap()
    }

    fn compact(ms: i64) -> String {
        format_event_time(ms).replace(['-', ':'], "")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A bucket copy being written: log files and an hourly digest chain.
    #[derive(Default)]
    struct Bucket {
        files: BTreeMap<String, Vec<u8>>,
        /// Key and uncompressed SHA-256 of the last digest written.
        last: Option<(String, String)>,
    }

    impl Bucket {
        fn log(&mut self, minute: &str, n: u32) -> (String, String) {
            let t = at(minute);
            let key = format!(
                "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2023/07/10/{ACCOUNT}_CloudTrail_{REGION}_{}Z_{n:016}.json.gz",
                &compact(t)[..13]
            );
            let body = format!("{{\"Records\":[{{\"eventID\":\"{n}\"}}]}}");
            self.files.insert(key.clone(), gzip(body.as_bytes()));
            (key, sha256_hex(body.as_bytes()))
        }

        /// A digest ending at `end`, an hour long, chained to the previous one unless
        /// `starting`.
        fn digest(&mut self, end: &str, logs: &[(String, String)], starting: bool) -> String {
            let end = at(end);
            let key = format!(
                "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2023/07/10/{ACCOUNT}_CloudTrail-Digest_{REGION}_my_trail_{REGION}_{}.json.gz",
                compact(end)
            );
            let previous = if starting { None } else { self.last.clone() };
            let body = serde_json::json!({
                "awsAccountId": ACCOUNT,
                "digestStartTime": format_event_time(end - MS_PER_HOUR),
                "digestEndTime": format_event_time(end),
                "digestS3Bucket": "bucket",
                "digestS3Object": format!("prefix/{key}"),
                "digestSignatureAlgorithm": "SHA256withRSA",
                "previousDigestS3Bucket": previous.as_ref().map(|_| "bucket"),
                "previousDigestS3Object": previous.as_ref().map(|p| format!("prefix/{}", p.0)),
                "previousDigestHashValue": previous.as_ref().map(|p| p.1.clone()),
                "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
                "previousDigestSignature": previous.as_ref().map(|_| "00"),
                "logFiles": logs.iter().map(|(k, h)| serde_json::json!({
                    "s3Bucket": "bucket", "s3Object": format!("prefix/{k}"),
                    "hashValue": h, "hashAlgorithm": "SHA-256",
                })).collect::<Vec<_>>(),
            })
            .to_string();
            self.files.insert(key.clone(), gzip(body.as_bytes()));
            self.last = Some((key.clone(), sha256_hex(body.as_bytes())));
            key
        }

        /// Three hours: 11:31:07–12:31:07 (starting, 2 logs), –13:31:07 (1 log), –14:31:07
        /// (empty). Returns the digest keys and the log keys.
        fn three_hours() -> (Self, Vec<String>, Vec<String>) {
            let mut b = Bucket::default();
            let l1 = b.log("2023-07-10T11:45:00Z", 1);
            let l2 = b.log("2023-07-10T12:05:00Z", 2);
            let d1 = b.digest("2023-07-10T12:31:07Z", &[l1.clone(), l2.clone()], true);
            let l3 = b.log("2023-07-10T13:00:00Z", 3);
            let d2 = b.digest("2023-07-10T13:31:07Z", std::slice::from_ref(&l3), false);
            let d3 = b.digest("2023-07-10T14:31:07Z", &[], false);
            (b, vec![d1, d2, d3], vec![l1.0, l2.0, l3.0])
        }

        fn check(&self, options: &Options) -> Report {
            let files: Vec<LocalFile> = self
                .files
                .keys()
                .map(|tail| LocalFile {
                    path: Path::new("/copy").join(tail),
                    tail: tail.clone(),
                })
                .collect();
            let memory = Memory(
                files
                    .iter()
                    .map(|f| (f.path.clone(), self.files[&f.tail].clone()))
                    .collect(),
            );
            validate(&files, options, &memory)
        }
    }

    fn status_of<'a>(report: &'a Report, key: &str) -> &'a FileResult {
        report
            .files
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("{key} not in {report:#?}"))
    }

    #[test]
    fn an_intact_chain_is_valid_in_time_order() {
        let (b, digests, logs) = Bucket::three_hours();
        let r = b.check(&Options::default());
        assert!(r.ok(), "{r:#?}");
        assert_eq!(r.digest_counts().valid, 3);
        assert_eq!(r.log_counts().valid, 3);
        let order: Vec<&str> = r.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            order,
            [
                &digests[0],
                &logs[0],
                &logs[1],
                &digests[1],
                &logs[2],
                &digests[2]
            ]
        );
        assert_eq!(
            r.found,
            Some((at("2023-07-10T11:31:07Z"), at("2023-07-10T14:31:07Z")))
        );
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn a_changed_digest_breaks_the_hash_chain_and_its_logs_are_unverified() {
        let (mut b, digests, logs) = Bucket::three_hours();
        let text =
            String::from_utf8(read_uncompressed(&b.files[&digests[0]][..]).unwrap()).unwrap();
        let changed = text.replace("11:31:07Z", "11:31:08Z");
        b.files.insert(digests[0].clone(), gzip(changed.as_bytes()));
        let r = b.check(&Options::default());
        assert!(!r.ok());
        let d = status_of(&r, &digests[0]);
        assert_eq!(d.status, Status::Invalid);
        assert!(
            d.problems[0].starts_with("chain broken: hash expected"),
            "{:?}",
            d.problems
        );
        assert!(d.problems[0].contains(digests[1].rsplit('/').next().unwrap()));
        assert_eq!(status_of(&r, &logs[0]).status, Status::Unverified);
        assert_eq!(status_of(&r, &digests[1]).status, Status::Valid);
        assert_eq!(r.digest_counts().valid, 2);
        assert_eq!(r.log_counts().valid, 1);
    }

    #[test]
    fn a_deleted_digest_is_missing_and_its_log_files_unlisted() {
        let (mut b, digests, logs) = Bucket::three_hours();
        b.files.remove(&digests[1]);
        let r = b.check(&Options::default());
        let d = status_of(&r, &digests[1]);
        assert_eq!(d.status, Status::Missing);
        assert_eq!(
            d.s3.as_deref(),
            Some(format!("s3://bucket/prefix/{}", digests[1]).as_str())
        );
        assert!(d.problems[0].contains("chain broken: previous digest of"));
        let l = status_of(&r, &logs[2]);
        assert_eq!(l.status, Status::Extra);
        assert!(l.problems[0].starts_with("not listed in any digest (delivered 2023-07-10T13:00"));
        assert_eq!(r.digest_counts().total, 3);
        assert_eq!(r.digest_counts().missing, 1);
        assert!(!r.ok());
    }

    #[test]
    fn the_oldest_digest_gone_is_a_note_unless_start_time_asks_for_it() {
        let (mut b, digests, logs) = Bucket::three_hours();
        b.files.remove(&digests[0]);
        b.files.remove(&logs[0]);
        b.files.remove(&logs[1]);
        let r = b.check(&Options::default());
        assert!(r.ok(), "{r:#?}");
        assert_eq!(r.digest_counts().total, 2);
        assert!(r.notes[0].contains("not in the folder"), "{:?}", r.notes);
        let r = b.check(&Options {
            start: Some(at("2023-07-10T12:00:00Z")),
            ..Options::default()
        });
        assert_eq!(status_of(&r, &digests[0]).status, Status::Missing);
        assert!(!r.ok());
        let r = b.check(&Options {
            start: Some(at("2023-07-10T13:00:00Z")),
            ..Options::default()
        });
        assert!(r.ok(), "{r:#?}");
        assert!(r.notes[0].contains("before --start-time"), "{:?}", r.notes);
    }

    #[test]
    fn a_digest_the_chain_skips_is_reported_and_a_restart_is_a_note() {
        let mut b = Bucket::default();
        let d1 = b.digest("2023-07-10T12:31:07Z", &[], true);
        let after_d1 = b.last.clone();
        // A digest inserted after the 1st, which the next one does not name.
        let intruder = b.digest("2023-07-10T13:00:00Z", &[], false);
        b.last = after_d1;
        let d2 = b.digest("2023-07-10T13:31:07Z", &[], false);
        let r = b.check(&Options::default());
        let i = status_of(&r, &intruder);
        assert_eq!(i.status, Status::Invalid);
        assert!(
            i.problems
                .iter()
                .any(|p| p.starts_with("not in the chain: the next digest")),
            "{:?}",
            i.problems
        );
        assert_eq!(status_of(&r, &d2).status, Status::Valid);
        // Both name the 1st as previous.
        let d = status_of(&r, &d1);
        assert!(
            d.problems.iter().any(|p| p.starts_with("chain forked")),
            "{:?}",
            d.problems
        );

        let (mut b, _, _) = Bucket::three_hours();
        b.digest("2023-07-10T18:31:07Z", &[], true);
        let r = b.check(&Options::default());
        assert!(r.ok(), "{r:#?}");
        assert!(r.notes[0].contains("chain restarts at"), "{:?}", r.notes);
    }

    #[test]
    fn a_digest_under_another_name_has_moved() {
        let (mut b, digests, _) = Bucket::three_hours();
        let bytes = b.files[&digests[2]].clone();
        let copy = digests[2].replace("T143107Z", "T153107Z");
        b.files.insert(copy.clone(), bytes);
        let r = b.check(&Options::default());
        let c = status_of(&r, &copy);
        assert_eq!(c.status, Status::Invalid);
        assert!(
            c.problems
                .iter()
                .any(|p| p.starts_with("moved: it says it is s3://bucket/prefix/")),
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn decompressed_copies_validate_and_unreadable_ones_say_why() {
        let (mut b, digests, logs) = Bucket::three_hours();
        for key in [&digests[1], &logs[2]] {
            let plain = read_uncompressed(&b.files.remove(key.as_str()).unwrap()[..]).unwrap();
            b.files.insert(without_gz(key).to_owned(), plain);
        }
        let r = b.check(&Options::default());
        assert!(r.ok(), "{r:#?}");
        assert_eq!(r.log_counts().valid, 3);

        let bytes = b.files[&logs[0]].clone();
        b.files
            .insert(logs[0].clone(), bytes[..bytes.len() / 2].to_vec());
        b.files
            .insert(digests[2].clone(), b"{\"Records\":[]}".to_vec());
        let r = b.check(&Options::default());
        let l = status_of(&r, &logs[0]);
        assert_eq!(l.status, Status::Unreadable);
        assert!(l.problems[0].contains("deflate"), "{:?}", l.problems);
        let d = status_of(&r, &digests[2]);
        assert_eq!(d.problems, ["not a digest file: no digestStartTime"]);
        assert_eq!(status_of(&r, without_gz(&digests[1])).status, Status::Valid);
    }

    #[test]
    fn unlisted_log_files_count_only_inside_the_covered_range() {
        let (mut b, _, _) = Bucket::three_hours();
        let inside = b.log("2023-07-10T12:40:00Z", 10).0;
        // The minute of 11:31 is not all inside 11:31:07..: may belong to the digest before.
        let edge = b.log("2023-07-10T11:31:00Z", 11).0;
        let after = b.log("2023-07-10T14:31:00Z", 12).0;
        let r = b.check(&Options::default());
        assert_eq!(status_of(&r, &inside).status, Status::Extra);
        assert!(r.files.iter().all(|f| f.key != edge && f.key != after));
        assert_eq!(r.extra(), 1);
        assert!(!r.ok());
        // Narrowed to the last hour, 12:40 is outside what is checked.
        let r = b.check(&Options {
            start: Some(at("2023-07-10T14:00:00Z")),
            ..Options::default()
        });
        assert_eq!(r.extra(), 0, "{r:#?}");
        assert_eq!(r.digest_counts().total, 1);
    }
}
