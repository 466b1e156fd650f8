//! `insights backtest`: the Insights records a replay produces, one per line (JSONL), and
//! optionally the snapshot a deployment would hold after the last file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use trailwatch::insights::store::snapshot;
use trailwatch::insights::MinuteAggregator;

use super::plot::plot;
use super::present::backtest_summary;
use super::replay::detect;
use super::{load_config, BacktestError};

/// Replays CloudTrail log files in delivery order through the Insights detector (both Insight
/// types unless --config selects) and writes one Insights record per line.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  trailwatch insights backtest AWSLogs/ --out insights.jsonl --export snapshot.json\n  trailwatch insights backtest AWSLogs/ --out insights.jsonl --plot insights.svg\n\nExit codes: 0 done; 1 done, but some files or records could not be read (on stderr); 2 could not run."
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
    /// {"trailwatchSnapshot": <the file's content>}, or use `insights backfill`.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Also draw an SVG: per key that fired (or per --plot-key), calls per minute, each
    /// Insight's baseline average and band, and its Start and End. Keeps every key's counts
    /// per minute in memory while replaying.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A key to draw even if it did not fire (repeatable), as
    /// account/region/type/source/name[/errorCode], e.g.
    /// 111122223333/us-east-1/ApiCallRateInsight/iam.amazonaws.com/CreateUser.
    #[arg(long, value_name = "KEY", requires = "plot")]
    pub plot_key: Vec<String>,
}

/// The backtest's one-line summary, and whether the input had problems.
pub(super) fn backtest(args: &BacktestArgs) -> Result<(String, bool), BacktestError> {
    let started = Instant::now();
    let config = load_config(args.config.as_deref())?;
    let out_file = File::create(&args.out).map_err(|source| BacktestError::Write {
        path: args.out.clone(),
        source,
    })?;
    let mut out = BufWriter::new(out_file);
    let write_err = |source| BacktestError::Write {
        path: args.out.clone(),
        source,
    };
    let plotting = args.plot.is_some();
    let mut counts = plotting.then(|| MinuteAggregator::new(&config));
    let mut records = Vec::new();
    let mut detection = detect(&args.logs, config, counts.as_mut(), |line| {
        if plotting {
            records.push(line.to_owned());
        }
        writeln!(out, "{line}").map_err(write_err)
    })?;
    let engine = &mut detection.engine;
    if let Some(path) = &args.export {
        // The state as a deployment would hold it now: before `finish` closes the future.
        let export_err = |source| BacktestError::Write {
            path: path.clone(),
            source,
        };
        let snapshot = snapshot(engine).map_err(|e| export_err(std::io::Error::other(e)))?;
        let file = File::create(path).map_err(export_err)?;
        let mut writer = BufWriter::new(file);
        serde_json::to_writer(&mut writer, &snapshot)
            .map_err(|e| export_err(std::io::Error::other(e)))?;
        writer.flush().map_err(export_err)?;
    }
    let mut written = detection.records_out;
    for line in engine.finish() {
        writeln!(out, "{line}").map_err(write_err)?;
        written += 1;
        if plotting {
            records.push(line);
        }
    }
    out.flush().map_err(write_err)?;
    let mut summary = backtest_summary(&args.out, &detection, written, started.elapsed());
    if let (Some(path), Some(counts)) = (&args.plot, &counts) {
        let drawn = plot(path, counts, &records, &args.plot_key)?;
        summary.push_str(&format!(
            "\n{} key(s) drawn in {}",
            drawn.len(),
            path.display()
        ));
    }
    Ok((summary, detection.has_problems()))
}
