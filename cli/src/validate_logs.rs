//! Validates CloudTrail log files against their digest files (the offline part of aws cloudtrail validate-logs).
//!
//! [`layout`] places files by their key from `AWSLogs/` on, [`digest`] reads digest files and
//! builds the string CloudTrail signs, [`keys`] reads public keys and verifies signatures,
//! [`check`] follows the chains and hashes the log files into a [`check::Report`]; this module
//! parses the command line and prints the report.

mod chain;
pub mod check;
pub mod digest;
mod digest_verdict;
mod inventory;
pub mod keys;
pub mod layout;
mod log_verdict;
mod read;
mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use thiserror::Error;
use trailwatch::time::{format_event_time, parse_event_time};

use crate::exit;
use check::{Counts, FileType, Options, Report, Status};

const LONG_ABOUT: &str = "\
Validates CloudTrail log files against their digest files (the offline part of aws cloudtrail
validate-logs), in a local copy of the trail bucket: no AWS access needed.

What is checked
  Digest files, AWSLogs/[o-orgid/]<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/*.json.gz,
  one chain per account, region and trail, in digestEndTime order:
  - each digest can be read (gzip or plain JSON) and is where it says it is (its
    digestS3Object from AWSLogs/ on: the bucket and the prefix before AWSLogs/ may differ);
  - its SHA-256 (of the uncompressed bytes) is the previousDigestHashValue of the next digest
    in the chain, and its .sig file (see Signatures) that digest's previousDigestSignature;
    a starting digest (logging or validation restarted) has every previousDigest* null;
  - a digest named as previous but absent is missing: when its time is in --start-time..
    --end-time, or, without --start-time, when an older digest of the chain is present;
  - with --public-key: its signature verifies with one of the keys.
  Log files listed by each digest: present, with the listed SHA-256 (of the uncompressed bytes).
  A file decompressed after download (x.json for x.json.gz) is found and checked too. A log
  file that only an invalid digest lists is unverified even if its hash matches.
  Extra log files: a *.json(.gz) file under CloudTrail/<region>/ that no digest lists, in an
  account and region the checked digests cover. \"Covered\" means: its delivery minute (from
  its file name, YYYYMMDDTHHmmZ) lies entirely between the earliest digestStartTime and the
  latest digestEndTime of the digests checked for that account and region (a hole left by a
  missing digest counts as covered). Log files of another trail writing to the same bucket
  prefix without digests are reported too: nothing vouches for them.

Signatures
  CloudTrail keeps each digest's signature (hex) in the S3 object metadata,
  x-amz-meta-signature, which aws s3 sync and aws s3 cp do not copy. Save it next to each
  digest as <digest file name>.sig; from the folder that holds AWSLogs/:

    find AWSLogs -path '*/CloudTrail-Digest/*' -name '*.json.gz' | while read -r f; do
      aws s3api head-object --bucket BUCKET --key \"PREFIX/$f\" \\
        --query Metadata.signature --output text > \"$f.sig\"
    done

  (with no S3 key prefix: --key \"$f\"). Then the public keys of every region the digests
  are written in, from a time before the oldest digest:

    aws cloudtrail list-public-keys --region us-east-1 \\
      --start-time 2023-07-01T00:00:00Z > keys-us-east-1.json

  --public-key takes that JSON as is, a key in PEM or DER (PKCS#1 \"RSA PUBLIC KEY\" or SPKI
  \"PUBLIC KEY\"), or the base64 text of a DER key. A digest is valid only if a given key
  verifies its signature (RSA PKCS#1 v1.5, SHA-256) over the four lines
  digestEndTime, digestS3Bucket/digestS3Object, hex(SHA-256(uncompressed digest)) and
  previousDigestSignature (null for a starting digest). Without --public-key signatures are
  not verified, and the output says so: whoever can rewrite the bucket can recompute hashes.

Not detectable from the files alone
  The newest digests deleted together with their log files: no later digest names them. A
  .sig file left without its digest is reported; otherwise compare \"Results found for\" with
  the end you expect.

Exit codes: 0 everything checked is valid; 1 something is invalid, changed, missing, not
listed, unreadable, or there was no digest to check; 2 could not run (folder, key file,
options).";

const EXAMPLES: &str = "\
Examples:
  # A local copy of the trail bucket (prefix logs/), then the digest signatures (see --help)
  aws s3 sync s3://my-trail-bucket/logs/AWSLogs/ ./trail/AWSLogs/
  trailwatch validate-logs ./trail \\
      --public-key keys-us-east-1.json --public-key keys-eu-west-1.json \\
      --start-time 2023-07-10T00:00:00Z --end-time 2023-07-11T00:00:00Z
  trailwatch validate-logs ./trail/AWSLogs --verbose
  trailwatch validate-logs ./trail --json | jq '.files[] | select(.status != \"valid\")'";

/// Validates CloudTrail log files against their digest files (the offline part of aws cloudtrail validate-logs).
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct ValidateLogsArgs {
    /// Local copy of the trail bucket: a folder holding AWSLogs/ (at any depth), or AWSLogs/
    /// itself, e.g. made with `aws s3 sync s3://BUCKET/[PREFIX/]AWSLogs/ ./copy/AWSLogs/`.
    #[arg(value_name = "FOLDER")]
    pub folder: PathBuf,
    /// Check only the digest files whose digestEndTime is at or after TIME (UTC, ISO 8601:
    /// 2023-07-10T05:21:42Z, 2023-07-10T05:21Z or 2023-07-10). Default: from the oldest.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start_time: Option<i64>,
    /// Check only the digest files whose digestEndTime is at or before TIME (UTC, ISO 8601).
    /// Default: up to the newest.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub end_time: Option<i64>,
    /// Verify digest signatures with the public key(s) in FILE (repeatable): PEM or DER,
    /// PKCS#1 or SPKI, base64 DER, or `aws cloudtrail list-public-keys` JSON. Signatures are
    /// read from <digest>.sig files (see --help).
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// Print one line per digest and log file with its status (problems always go to stderr).
    #[arg(long, short)]
    pub verbose: bool,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Why `validate-logs` could not run.
#[derive(Debug, Error)]
pub enum ValidateLogsError {
    #[error("--start-time is after --end-time")]
    TimeRange,
    #[error("--public-key {0}")]
    PublicKey(#[from] keys::KeyError),
    #[error("{}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: {source}", path.display())]
    Scan {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A time `--start-time`/`--end-time` cannot read.
#[derive(Debug, Error)]
#[error("'{0}' is not a UTC time like 2023-07-10T05:21:42Z, 2023-07-10T05:21Z or 2023-07-10")]
pub struct TimeArgError(String);

/// An ISO 8601 UTC time; also a date alone (midnight) and a time without seconds.
fn parse_time(text: &str) -> Result<i64, TimeArgError> {
    let b = text.as_bytes();
    let candidate = match b.len() {
        10 => format!("{text}T00:00:00Z"),
        16 if b[13] == b':' => format!("{text}:00Z"),
        17 if b[13] == b':' && b[16] == b'Z' => format!("{}:00Z", &text[..16]),
        _ => text.to_owned(),
    };
    parse_event_time(&candidate).map_err(|_| TimeArgError(crate::input::echo(text).into_owned()))
}

pub fn run(args: ValidateLogsArgs) -> ExitCode {
    match validate(&args) {
        Ok(report) => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let (mut out, mut err) = (stdout.lock(), stderr.lock());
            let written = if args.json {
                print_problems(&report, &mut err)
                    .and_then(|()| writeln!(out, "{:#}", report_json(&report, &args.folder)))
            } else {
                print_human(&report, args.verbose, &mut out, &mut err)
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("trailwatch validate-logs: writing the report: {e}");
                    return ExitCode::from(exit::USAGE);
                }
            }
            ExitCode::from(if report.ok() {
                exit::OK
            } else {
                exit::PROBLEMS
            })
        }
        Err(message) => {
            eprintln!("trailwatch validate-logs: {message}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Reads the keys and the folder and validates; `Err` is a usage error.
pub fn validate(args: &ValidateLogsArgs) -> Result<Report, ValidateLogsError> {
    if let (Some(start), Some(end)) = (args.start_time, args.end_time) {
        if start > end {
            return Err(ValidateLogsError::TimeRange);
        }
    }
    let mut keys = Vec::new();
    for path in &args.public_keys {
        keys.extend(keys::load_public_keys(path)?);
    }
    if !args.folder.is_dir() {
        return Err(ValidateLogsError::NotAFolder(args.folder.clone()));
    }
    let scan = layout::scan(&args.folder).map_err(|source| ValidateLogsError::Scan {
        path: args.folder.clone(),
        source,
    })?;
    let options = Options {
        start: args.start_time,
        end: args.end_time,
        keys,
    };
    let mut report = check::validate(&scan.files, &options, &check::Disk);
    report.errors.extend(scan.errors);
    if report.digest_counts().total == 0 {
        let why = if scan.files.is_empty() {
            format!(
                "no files in the CloudTrail layout (AWSLogs/[o-orgid/]<account>/CloudTrail-Digest/<region>/...){}",
                if scan.unplaced > 0 {
                    format!(
                        "; {} other files: copy the bucket from AWSLogs/ on, keeping that folder",
                        scan.unplaced
                    )
                } else {
                    String::new()
                }
            )
        } else {
            "no digest files in the requested range (is log file validation on for this trail?)"
                .to_owned()
        };
        report.errors.push((args.folder.clone(), why));
    }
    Ok(report)
}

fn kind(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Digest => "Digest file",
        FileType::Log => "Log file",
    }
}

fn time_or(time: Option<i64>, otherwise: &str) -> String {
    time.map_or_else(|| otherwise.to_owned(), format_event_time)
}

/// Problem lines (one per file and one per error) on `err`.
fn print_problems(report: &Report, err: &mut impl Write) -> std::io::Result<()> {
    for f in report.files.iter().filter(|f| f.status != Status::Valid) {
        writeln!(
            err,
            "{}\t{}\t{}: {}",
            kind(f.file_type),
            f.location(),
            f.status.as_str(),
            f.problems.join("; ")
        )?;
    }
    for (path, message) in &report.errors {
        writeln!(err, "Error\t{}\t{message}", path.display())?;
    }
    Ok(())
}

fn ratio(
    out: &mut impl Write,
    counts: Counts,
    name: &str,
    detail: &[(usize, &str)],
) -> std::io::Result<()> {
    write!(out, "{}/{} {name} files valid", counts.valid, counts.total)?;
    if counts.not_valid() > 0 {
        write!(
            out,
            ", {}/{} {name} files INVALID",
            counts.not_valid(),
            counts.total
        )?;
        let parts: Vec<String> = detail
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !parts.is_empty() {
            write!(out, " ({})", parts.join(", "))?;
        }
    }
    writeln!(out)
}

/// The aws-cli-like report: verbose lines, problems on `err`, then the summary.
pub fn print_human(
    report: &Report,
    verbose: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    if verbose {
        for f in report.files.iter().filter(|f| f.status == Status::Valid) {
            writeln!(out, "{}\t{}\tvalid", kind(f.file_type), f.location())?;
        }
        if report.files.iter().any(|f| f.status == Status::Valid) {
            writeln!(out)?;
        }
    }
    print_problems(report, err)?;
    writeln!(
        out,
        "Results requested for {} to {}",
        time_or(report.requested_start, "the oldest digest"),
        time_or(report.requested_end, "the newest digest")
    )?;
    print_counts(report, out)?;
    if !report.errors.is_empty() {
        writeln!(
            out,
            "{} other problem{} (files or folders not checked)",
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" }
        )?;
    }
    if report.keys.is_empty() {
        writeln!(
            out,
            "Signatures NOT verified (no --public-key given): only the hash chain was checked, which whoever can rewrite the bucket can recompute"
        )?;
    } else {
        writeln!(
            out,
            "Signatures verified with {} public key{}: {}",
            report.keys.len(),
            if report.keys.len() == 1 { "" } else { "s" },
            report.keys.join(", ")
        )?;
    }
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    Ok(())
}

/// Results found, and the counts of digest and log files.
fn print_counts(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let digests = report.digest_counts();
    if digests.total == 0 {
        writeln!(out, "No digest files found")?;
    } else {
        match report.found {
            Some((start, end)) => writeln!(
                out,
                "Results found for {} to {}:",
                format_event_time(start),
                format_event_time(end)
            )?,
            None => writeln!(out, "No readable digest file found in the range:")?,
        }
        writeln!(out)?;
        ratio(
            out,
            digests,
            "digest",
            &[(digests.invalid, "invalid"), (digests.missing, "missing")],
        )?;
        let logs = report.log_counts();
        ratio(
            out,
            logs,
            "log",
            &[
                (logs.changed, "changed"),
                (logs.missing, "missing"),
                (logs.unreadable, "unreadable"),
                (logs.unverified, "unverified"),
            ],
        )?;
        let extra = report.extra();
        if extra > 0 {
            writeln!(
                out,
                "{extra} log file{} not listed in any digest",
                if extra == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(())
}

fn counts_json(c: Counts) -> serde_json::Value {
    json!({
        "total": c.total,
        "valid": c.valid,
        "invalid": c.not_valid(),
    })
}

/// The report as one JSON object.
pub fn report_json(report: &Report, folder: &Path) -> serde_json::Value {
    let digests = report.digest_counts();
    let logs = report.log_counts();
    let time = |t: Option<i64>| t.map(format_event_time);
    let mut digest_counts = counts_json(digests);
    digest_counts["missing"] = digests.missing.into();
    let mut log_counts = counts_json(logs);
    for (name, n) in [
        ("changed", logs.changed),
        ("missing", logs.missing),
        ("unreadable", logs.unreadable),
        ("unverified", logs.unverified),
    ] {
        log_counts[name] = n.into();
    }
    log_counts["extra"] = report.extra().into();
    json!({
        "folder": folder,
        "ok": report.ok(),
        "requested": {"start": time(report.requested_start), "end": time(report.requested_end)},
        "found": report.found.map(|(s, e)| json!({"start": format_event_time(s), "end": format_event_time(e)})),
        "signatures_verified": !report.keys.is_empty(),
        "public_keys": report.keys,
        "digest_files": digest_counts,
        "log_files": log_counts,
        "files": report.files,
        "errors": report.errors.iter().map(|(p, m)| json!({"path": p, "problem": m})).collect::<Vec<_>>(),
        "notes": report.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_forms_people_type() {
        let t = |s: &str| parse_time(s).map(format_event_time);
        assert_eq!(t("2023-07-10").unwrap(), "2023-07-10T00:00:00Z");
        assert_eq!(t("2023-07-10T05:21").unwrap(), "2023-07-10T05:21:00Z");
        assert_eq!(t("2023-07-10T05:21Z").unwrap(), "2023-07-10T05:21:00Z");
        assert_eq!(t("2023-07-10T05:21:42Z").unwrap(), "2023-07-10T05:21:42Z");
        assert_eq!(
            t("2023-07-10T05:21:42.5+00:00").unwrap(),
            "2023-07-10T05:21:42Z"
        );
        assert!(t("2023-07-10T05:21:42+02:00").is_err());
        assert!(t("yesterday").is_err());
    }
}
