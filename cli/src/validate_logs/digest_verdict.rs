//! The verdict on each digest in range: readable, in its place, signed (when keys are given)
//! and linked; and on each digest named as previous but absent.

use std::collections::{BTreeMap, HashSet};

use trailwatch::time::MS_PER_HOUR;

use super::chain::{chain_label, ChainKey, Chains, MissingDigest};
use super::check::{short, Options};
use super::digest::{same_hash, Digest, HASH_ALGORITHM, SIGNATURE_ALGORITHM};
use super::inventory::DigestFile;
use super::keys::verifies;
use super::layout::{key_tail, place, without_gz, Scope, SIGNATURE_SUFFIX};
use super::read::{Loaded, ReadDigest};
use super::report::{FileResult, FileType, Status};

/// A digest's result, with where it sorts in its chain and, for a present digest, its number.
pub struct ChainEntry {
    pub order: i64,
    pub result: FileResult,
    pub digest: Option<usize>,
}

/// Results chain by chain.
pub type ChainResults = BTreeMap<ChainKey, Vec<ChainEntry>>;

/// The verdict on each present digest in range: its status (none: out of range) and results.
pub fn judge_digests(
    chains: &mut Chains<'_, '_>,
    options: &Options,
) -> (Vec<Option<Status>>, ChainResults) {
    let mut status_of = vec![None; chains.loaded.len()];
    let mut results = ChainResults::new();
    for (i, d) in chains.inventory.digests.iter().enumerate() {
        if !chains.in_range[i] {
            continue;
        }
        let mut problems = digest_problems(chains, i, d, options);
        problems.append(&mut chains.link_problems[i]);
        let status = if problems.is_empty() {
            Status::Valid
        } else {
            Status::Invalid
        };
        status_of[i] = Some(status);
        let s3 = chains.loaded[i]
            .digest()
            .map(|g| format!("s3://{}/{}", g.bucket, g.object));
        results
            .entry(chains.chain_of(i))
            .or_default()
            .push(ChainEntry {
                order: chains.ends[i].unwrap_or(i64::MAX),
                result: FileResult {
                    file_type: FileType::Digest,
                    status,
                    path: Some(d.file.path.clone()),
                    s3,
                    key: d.file.tail.clone(),
                    problems,
                    digest: None,
                },
                digest: Some(i),
            });
    }
    (status_of, results)
}

fn digest_problems(
    chains: &Chains<'_, '_>,
    i: usize,
    d: &DigestFile<'_>,
    options: &Options,
) -> Vec<String> {
    let l = &chains.loaded[i];
    let read = match &l.read {
        Err(e) => return vec![e.to_string()],
        Ok(read) => read,
    };
    let mut problems = content_problems(d, &read.digest);
    if !options.keys.is_empty() {
        problems.extend(signature_problem(d, l, read, options));
    }
    problems.extend(voucher_problems(chains, i, l, &read.sha256));
    problems
}

/// Its name, its place, and its own fields.
fn content_problems(d: &DigestFile<'_>, digest: &Digest) -> Vec<String> {
    let mut problems = Vec::new();
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
    problems
}

/// Whether one of the keys verifies its signature.
fn signature_problem(
    d: &DigestFile<'_>,
    l: &Loaded,
    read: &ReadDigest,
    options: &Options,
) -> Option<String> {
    let digest = &read.digest;
    match (&l.signature, digest.signature_algorithm.as_deref()) {
        (None, _) => {
            let sidecar = format!(
                "{}{SIGNATURE_SUFFIX}",
                d.file
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            Some(format!(
                "signature missing: no {sidecar} next to it (see --help on fetching signatures)"
            ))
        }
        (Some(Err(e)), _) => Some(format!("signature missing: {e}")),
        (Some(Ok(_)), Some(a)) if a != SIGNATURE_ALGORITHM => {
            Some(format!("unsupported digestSignatureAlgorithm {a}"))
        }
        (Some(Ok(signature)), _) => {
            let message = digest.string_to_sign(&read.sha256);
            let verified = options
                .keys
                .iter()
                .any(|k| verifies(&k.key, message.as_bytes(), signature));
            (!verified).then(|| {
                format!(
                    "signature invalid: does not verify with the {} public key{} given (digestPublicKeyFingerprint {})",
                    options.keys.len(),
                    if options.keys.len() == 1 { "" } else { "s" },
                    digest.fingerprint.as_deref().unwrap_or("null")
                )
            })
        }
    }
}

/// What the digests naming it as previous say of it.
fn voucher_problems(chains: &Chains<'_, '_>, i: usize, l: &Loaded, sha: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name_of = |v: usize| short(&chains.inventory.digests[v].file.tail);
    for &v in &chains.vouchers[i] {
        let Some(next) = chains.loaded[v].digest() else {
            continue;
        };
        if let Some(expected) = &next.previous_hash {
            if !same_hash(expected, sha) {
                problems.push(format!(
                    "chain broken: hash expected {expected} (previousDigestHashValue in the next digest {}) found {sha}",
                    name_of(v)
                ));
            }
        }
        if let (Some(Ok(signature)), Some(expected)) = (&l.signature, &next.previous_signature) {
            if !same_hash(expected, &hex::encode(signature)) {
                problems.push(format!(
                    "signature file differs from previousDigestSignature in the next digest {}",
                    name_of(v)
                ));
            }
        }
    }
    if chains.vouchers[i].len() > 1 {
        let names: Vec<&str> = chains.vouchers[i].iter().map(|&v| name_of(v)).collect();
        problems.push(format!(
            "chain forked: named as previous by {}",
            names.join(" and ")
        ));
    }
    problems
}

/// Digests named as previous but absent: missing when the range asks for them, else a note on
/// where the chain checked begins. Returns the hours the missing digests covered.
pub fn judge_missing(
    chains: &Chains<'_, '_>,
    options: &Options,
    results: &mut ChainResults,
    notes: &mut Vec<String>,
) -> Vec<(Scope, i64, i64)> {
    let mut chain_begin_noted = HashSet::new();
    let mut missing_intervals = Vec::new();
    for (tail, m) in &chains.missing {
        let key = chains.chain_of(m.named_by[0]);
        let namers: Vec<&str> = m
            .named_by
            .iter()
            .map(|&i| short(&chains.inventory.digests[i].file.tail))
            .collect();
        if is_wanted(chains, &key, m, options) {
            if let (Some(t), Some(scope)) = (m.time, place(tail).map(|p| p.scope)) {
                missing_intervals.push((scope, t - MS_PER_HOUR, t));
            }
            results.entry(key).or_default().push(ChainEntry {
                order: m.time.unwrap_or(i64::MIN),
                result: FileResult {
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
                digest: None,
            });
        } else if m.named_by.iter().any(|&i| chains.in_range[i])
            && chain_begin_noted.insert(key.clone())
        {
            let start = options.start.is_some();
            notes.push(format!(
                "{}: the oldest digest checked, {}, names {} as previous, which is {} — earlier digests were not checked{}",
                chain_label(&key),
                namers.join(" and "),
                short(tail),
                if start { "before --start-time" } else { "not in the folder" },
                if start { "" } else { " (give --start-time to require them)" },
            ));
        }
    }
    missing_intervals
}

/// Whether a missing digest is asked for: inside --start-time..--end-time, or without
/// --start-time, newer than the oldest present digest of its chain.
fn is_wanted(
    chains: &Chains<'_, '_>,
    key: &ChainKey,
    m: &MissingDigest,
    options: &Options,
) -> bool {
    let oldest_present = chains
        .members
        .get(key)
        .and_then(|members| members.iter().filter_map(|&i| chains.ends[i]).min());
    match (m.time, options.start) {
        (None, _) => true,
        (Some(t), Some(start)) => t >= start && options.end.is_none_or(|e| t <= e),
        (Some(t), None) => {
            oldest_present.is_some_and(|o| t > o) && options.end.is_none_or(|e| t <= e)
        }
    }
}
