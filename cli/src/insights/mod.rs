//! `trailwatch insights`: run the Insights engine over CloudTrail log files.
//!
//! * [`replay`]: log files in delivery order through [`InsightsEngine`] the way the Lambda
//!   would see them ([`detect`]), shared by both commands;
//! * [`backtest`]: the Insights records of a replay as JSONL, optionally the snapshot;
//! * [`backfill`]: the snapshot of a replay written into a deployment's state table;
//! * [`plot`]: the backtest's picture (`--plot FILE.svg`);
//! * [`present`]: what both commands print.

mod backfill;
mod backtest;
mod plot;
mod present;
mod replay;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use trailwatch::insights::InsightsConfig;

use crate::exit;

pub use backfill::{
    backfill, backfill_into, decide, rewind_clock, write_snapshot, BackfillArgs, BackfillError,
    BackfillReport, Decision, BACKFILL_LEASE_MS,
};
pub use backtest::BacktestArgs;
pub use replay::{detect, Detection};

/// Run the Insights detector over log files.
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    Backtest(BacktestArgs),
    Backfill(BackfillArgs),
}

/// Runs `trailwatch insights <command>`.
pub fn run(command: InsightsCommand) -> ExitCode {
    match command {
        InsightsCommand::Backtest(args) => match backtest::backtest(&args) {
            Ok((summary, problems)) => {
                say(&summary);
                ExitCode::from(if problems { exit::PROBLEMS } else { exit::OK })
            }
            Err(e) => {
                say(&format!("trailwatch insights backtest: {e}"));
                ExitCode::from(exit::USAGE)
            }
        },
        InsightsCommand::Backfill(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    say(&format!("trailwatch insights backfill: tokio runtime: {e}"));
                    return ExitCode::from(exit::USAGE);
                }
            };
            match runtime.block_on(backfill::backfill(&args)) {
                Ok(report) => {
                    let _ = std::io::stdout().lock().write_all(report.text.as_bytes());
                    ExitCode::from(if report.input_problems {
                        exit::PROBLEMS
                    } else {
                        exit::OK
                    })
                }
                Err(e) => {
                    say(&format!("trailwatch insights backfill: {e}"));
                    ExitCode::from(exit::USAGE)
                }
            }
        }
    }
}

/// Writes to stderr; a closed stderr is not worth a panic.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Why the backtest or the backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A log file or folder given that cannot be listed (the message names it).
    #[error("{0}")]
    Input(std::io::Error),
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
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

fn load_config(path: Option<&Path>) -> Result<InsightsConfig, BacktestError> {
    let Some(path) = path else {
        return Ok(InsightsConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| BacktestError::Read {
        path: path.to_owned(),
        source,
    })?;
    InsightsConfig::from_json(&text).map_err(|source| BacktestError::Config {
        path: path.to_owned(),
        source,
    })
}
