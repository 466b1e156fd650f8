//! `trailwatch insights`: run the Insights engine over CloudTrail log files.
//!
//! `backtest` replays log files (gzip or plain `{"Records":[...]}`; folders are walked
//! recursively) through [`InsightsEngine`] the way the Lambda would see them: files in delivery
//! order (the `YYYYMMDDTHHmmZ` stamp of CloudTrail's file name), the clock advanced to each
//! delivery time before the file is read, minutes closing after the watermark, so late files
//! only feed the baseline. Files without a stamp come last, with the clock at the latest event
//! time seen. Output: one Insights record per line (JSONL).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};

use trailwatch::ingest::{read_log_file, LogFileLimits};
use trailwatch::insights::{InsightsConfig, InsightsEngine};
use trailwatch::record::Record;
use trailwatch::time::parse_event_time;

use crate::exit;

/// Run the Insights detector over log files.
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    Backtest(BacktestArgs),
}

/// Replays CloudTrail log files in delivery order through the Insights detector (both Insight
/// types unless --config selects) and writes one Insights record per line.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  trailwatch insights backtest AWSLogs/ --out insights.jsonl --export snapshot.json"
)]
pub struct BacktestArgs {
    /// CloudTrail log files or folders (recursively; gzip or plain).
    #[arg(required = true, value_name = "LOGS")]
    pub logs: Vec<PathBuf>,
    /// `get-insight-selectors` JSON, optionally with a "Trailwatch" object of detector
    /// settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output JSONL.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the detector state as of the last log file (clock and per-key baselines)
    /// as a snapshot to seed a new deployment: invoke the Insights function with
    /// {"trailwatchSnapshot": <the file's content>}.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

/// Runs `trailwatch insights <command>`.
pub fn run(command: InsightsCommand) -> ExitCode {
    match command {
        InsightsCommand::Backtest(args) => match backtest(&args) {
            Ok(summary) => {
                eprintln!("{summary}");
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("trailwatch insights backtest: {e}");
                ExitCode::from(exit::USAGE)
            }
        },
    }
}

/// Why the backtest stopped.
#[derive(Debug, thiserror::Error)]
enum BacktestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Config {
        path: PathBuf,
        source: trailwatch::insights::ConfigError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct LogFile {
    path: PathBuf,
    delivered_ms: Option<i64>,
}

/// Delivery time from `<acct>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<unique>.json.gz`.
fn delivery_ms(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let stamp = name.split('_').nth(3)?;
    let b = stamp.as_bytes();
    if b.len() != 14 || b[8] != b'T' || b[13] != b'Z' {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:00Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13]
    );
    parse_event_time(&text).ok()
}

/// Log files under the given paths. Folders contribute CloudTrail-looking files only (`.json`
/// or `.json.gz`, not digests or Insights); files named explicitly are always read.
fn collect(paths: &[PathBuf]) -> Result<Vec<LogFile>, BacktestError> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| BacktestError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    let mut files: Vec<LogFile> = files
        .into_iter()
        .map(|path| LogFile {
            delivered_ms: delivery_ms(&path),
            path,
        })
        .collect();
    files.sort_by(|a, b| {
        (a.delivered_ms.is_none(), a.delivered_ms, &a.path).cmp(&(
            b.delivered_ms.is_none(),
            b.delivered_ms,
            &b.path,
        ))
    });
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BacktestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BacktestError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let looks_like_log = (name.ends_with(".json.gz") || name.ends_with(".json"))
            && name.contains("_CloudTrail_");
        if looks_like_log {
            out.push(p);
        }
    }
    Ok(())
}

fn backtest(args: &BacktestArgs) -> Result<String, BacktestError> {
    let started = Instant::now();
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| BacktestError::Read {
                path: path.clone(),
                source,
            })?;
            InsightsConfig::from_json(&text).map_err(|source| BacktestError::Config {
                path: path.clone(),
                source,
            })?
        }
        None => InsightsConfig::default(),
    };
    let files = collect(&args.logs)?;
    let out_file = File::create(&args.out).map_err(|source| BacktestError::Write {
        path: args.out.clone(),
        source,
    })?;
    let mut out = BufWriter::new(out_file);
    let write_err = |source| BacktestError::Write {
        path: args.out.clone(),
        source,
    };
    let mut engine = InsightsEngine::new(config);
    let mut written = 0usize;
    let mut latest_event_ms: Option<i64> = None;
    let (mut bad_records, mut bad_files) = (0usize, 0usize);
    for file in &files {
        let now = file.delivered_ms.or(latest_event_ms);
        if let Some(now) = now {
            for line in engine.advance_to(now) {
                writeln!(out, "{line}").map_err(write_err)?;
                written += 1;
            }
        }
        let reader = File::open(&file.path).map_err(|source| BacktestError::Read {
            path: file.path.clone(),
            source,
        })?;
        let result = read_log_file(reader, LogFileLimits::default(), |item| {
            let Ok(text) = item.bytes else {
                bad_records += 1;
                return;
            };
            match Record::parse(text) {
                Ok(record) => {
                    if file.delivered_ms.is_none() {
                        if let Ok(ms) = record.event_time_ms() {
                            latest_event_ms = Some(latest_event_ms.map_or(ms, |l| l.max(ms)));
                        }
                    }
                    engine.observe(&record);
                }
                Err(_) => bad_records += 1,
            }
        });
        if let Err(e) = result {
            bad_files += 1;
            eprintln!("warning: {}: {e}", file.path.display());
        }
    }
    if let Some(path) = &args.export {
        // The state as a deployment would hold it now: before `finish` closes the future.
        let export_err = |source| BacktestError::Write {
            path: path.clone(),
            source,
        };
        let snapshot = trailwatch::insights::store::snapshot(&engine)
            .map_err(|e| export_err(std::io::Error::other(e.to_string())))?;
        let file = File::create(path).map_err(export_err)?;
        serde_json::to_writer(BufWriter::new(file), &snapshot)
            .map_err(|e| export_err(std::io::Error::other(e)))?;
    }
    for line in engine.finish() {
        writeln!(out, "{line}").map_err(write_err)?;
        written += 1;
    }
    out.flush().map_err(write_err)?;
    let stats = engine.stats();
    let observed = engine.observe_stats();
    let sizes = engine.state_sizes();
    Ok(format!(
        "{written} Insights records ({} Start, {} End) -> {} | {} files ({bad_files} unreadable), \
         {} records ({bad_records} unreadable), {} counted, {} late (key, minute) cells | \
         {} keys, state bytes mean {:.0} max {} | {:.1}s",
        stats.starts,
        stats.ends,
        args.out.display(),
        files.len(),
        observed.records,
        observed.counted,
        stats.late_minutes,
        sizes.keys,
        sizes.mean_bytes,
        sizes.max_bytes,
        started.elapsed().as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_time_comes_from_the_cloudtrail_file_name() {
        let p = Path::new(
            "x/111122223333_CloudTrail_us-east-1_20240306T0105Z_abcdef0123456789.json.gz",
        );
        assert_eq!(
            delivery_ms(p),
            Some(parse_event_time("2024-03-06T01:05:00Z").unwrap())
        );
        assert_eq!(delivery_ms(Path::new("logs.json.gz")), None);
    }
}
