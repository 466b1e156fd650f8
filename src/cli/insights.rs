//! `trailwatch insights`: run the Insights engine over CloudTrail log files.
//!
//! ```text
//! trailwatch insights backtest <logs...> [--config FILE] --out FILE
//! ```
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

use crate::ingest::{read_log_file, LogFileLimits};
use crate::insights::{InsightsConfig, InsightsEngine};
use crate::record::Record;
use crate::time::parse_event_time;

const USAGE: &str =
    "usage: trailwatch insights backtest <logs...> [--config FILE] --out FILE [--export FILE]

  Replays CloudTrail log files (files or folders, recursively; gzip or plain) in delivery
  order through the Insights detector (both Insight types unless --config selects) and writes
  one Insights record per line to FILE.

  --config FILE   get-insight-selectors JSON, optionally with a \"Trailwatch\" object
  --out FILE      output JSONL
  --export FILE   also write the detector state as of the last log file (clock and per-key
                  baselines) as a snapshot to seed a new deployment: invoke the Insights
                  function with {\"trailwatchSnapshot\": <the file's content>}";

/// Entry point for `trailwatch insights <args>`.
pub fn run(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("backtest") => match BacktestArgs::parse(&args[1..]) {
            Ok(a) => match backtest(&a) {
                Ok(summary) => {
                    eprintln!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("trailwatch insights backtest: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("trailwatch insights backtest: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("trailwatch insights: unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug)]
struct BacktestArgs {
    logs: Vec<PathBuf>,
    config: Option<PathBuf>,
    out: PathBuf,
    export: Option<PathBuf>,
}

impl BacktestArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut logs = Vec::new();
        let mut config = None;
        let mut out = None;
        let mut export = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--config" => {
                    config = Some(PathBuf::from(it.next().ok_or("--config needs a file")?))
                }
                "--out" => out = Some(PathBuf::from(it.next().ok_or("--out needs a file")?)),
                "--export" => {
                    export = Some(PathBuf::from(it.next().ok_or("--export needs a file")?))
                }
                s if s.starts_with("--") => return Err(format!("unknown option {s}")),
                s => logs.push(PathBuf::from(s)),
            }
        }
        if logs.is_empty() {
            return Err("no log files or folders given".into());
        }
        let out = out.ok_or("--out is required")?;
        Ok(BacktestArgs {
            logs,
            config,
            out,
            export,
        })
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
        source: crate::insights::ConfigError,
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
        let snapshot = crate::insights::store::snapshot(&engine)
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

    #[test]
    fn arguments_need_logs_and_out() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(BacktestArgs::parse(&s(&["--out", "o"])).is_err());
        assert!(BacktestArgs::parse(&s(&["logs"])).is_err());
        assert!(BacktestArgs::parse(&s(&["logs", "--bogus"])).is_err());
        let a = BacktestArgs::parse(&s(&["a", "b", "--config", "c", "--out", "o"])).unwrap();
        assert_eq!(a.logs.len(), 2);
    }
}
