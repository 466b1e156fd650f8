//! `trailwatch insights`: run the Insights engine over CloudTrail log files.
//!
//! `backtest` replays log files (gzip or plain `{"Records":[...]}`; folders are walked
//! recursively) through [`InsightsEngine`] the way the Lambda would see them: files in delivery
//! order (the `YYYYMMDDTHHmmZ` stamp of CloudTrail's file name), the clock advanced to each
//! delivery time before the file is read, minutes closing after the watermark, so late files
//! only feed the baseline. Files without a stamp come last, with the clock at the latest event
//! time seen. Output: one Insights record per line (JSONL).
//!
//! `backfill` runs the same detection ([`detect`]) and writes the state it ends with — the
//! snapshot `backtest --export` would write — into a deployment's DynamoDB state table through
//! `trailwatch::insights::store::load_snapshot`, the code path of the Insights function's
//! `{"trailwatchSnapshot": ...}` invocation, so a new deployment has baselines at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};

use aws_sdk_dynamodb::config::Region;
use trailwatch::ingest::ObjectKind;
use trailwatch::ingest::{read_log_file, LogFileLimits};
use trailwatch::insights::store::{
    load_snapshot, snapshot, Clock, EvaluationStore, Snapshot, SnapshotError,
};
use trailwatch::insights::{InsightsConfig, InsightsEngine};
use trailwatch::local::{in_delivery_order, log_files};
use trailwatch::record::Record;
use trailwatch::time::{format_event_time, MS_PER_MINUTE};
use trailwatch_aws::insights_state::{DynamoDbInsightsStore, CELL_TTL};

use crate::exit;

/// Run the Insights detector over log files.
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    Backtest(BacktestArgs),
    Backfill(BackfillArgs),
}

/// Replays CloudTrail log files in delivery order through the Insights detector (both Insight
/// types unless --config selects) and writes one Insights record per line.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  trailwatch insights backtest AWSLogs/ --out insights.jsonl --export snapshot.json\n\nExit codes: 0 done; 1 done, but some files or records could not be read (on stderr); 2 could not run."
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
}

/// Learns baselines from past log files, exactly as `backtest` does, and writes them into a
/// deployment's Insights state table, so it does not wait 7 days for its baselines.
///
/// The state written is the snapshot `backtest --export` would write (every key's detector
/// state, the clock at the last closed minute), loaded the way the Insights function loads a
/// {"trailwatchSnapshot": ...} invocation: under the evaluation lease, key states first, then
/// the clock. The deployment's own counting covers the minutes after the snapshot.
///
/// Refused when the table already holds state at or past the snapshot's minute: loading it
/// would replace what the deployment evaluated since (the Insights function refuses a
/// snapshot the table is past). --force writes anyway; if the table is past the snapshot its
/// clock is first set back to the snapshot's minute, and the deployment re-evaluates the
/// minutes after it from the cells it still holds (9 days), which may forward some Insights
/// again.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trailwatch insights backfill AWSLogs/ --table trailwatch-StateTable-1ABC --config trail.json --dry-run
  trailwatch insights backfill AWSLogs/ --table trailwatch-StateTable-1ABC --config trail.json

Use the same --config as the deployment (its trail configuration: InsightSelectors and the
Trailwatch detector settings), and logs that end close to now. AWS credentials, region and
endpoint come from the environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).

Exit codes: 0 written (or, with --dry-run, would be written); 1 written, but some files or
records could not be read (on stderr); 2 could not run: arguments, configuration, logs
missing, table unreachable, or refused (state at or past the snapshot, without --force).")]
pub struct BackfillArgs {
    /// CloudTrail log files or folders (recursively; gzip or plain).
    #[arg(required = true, value_name = "LOGS")]
    pub logs: Vec<PathBuf>,
    /// The deployment's Insights state table (the stack's StateTable).
    #[arg(long, value_name = "NAME")]
    pub table: String,
    /// AWS region of the table (default: from the environment).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The trail configuration (InsightSelectors, "Trailwatch" detector settings), as the
    /// deployment uses it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the table's clock and report what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write even if the table holds state at or past the snapshot's minute.
    #[arg(long)]
    pub force: bool,
}

/// Runs `trailwatch insights <command>`.
pub fn run(command: InsightsCommand) -> ExitCode {
    match command {
        InsightsCommand::Backtest(args) => match backtest(&args) {
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
            match runtime.block_on(backfill(&args)) {
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
}

struct LogFile {
    path: PathBuf,
    delivered_ms: Option<i64>,
}

/// Log files under the given paths (`trailwatch::local::files`' rule), in delivery order;
/// digests and CloudTrail's own Insights files are left out.
fn collect(paths: &[PathBuf]) -> Result<Vec<LogFile>, BacktestError> {
    let files = log_files(paths).map_err(|e| BacktestError::Input(e.into()))?;
    Ok(in_delivery_order(files)
        .into_iter()
        .filter(|f| f.kind == ObjectKind::LogFile)
        .map(|f| LogFile {
            delivered_ms: f.delivered_ms,
            path: f.path,
        })
        .collect())
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

/// The detector after a replay of log files, as a deployment would hold it after the last
/// one (before `finish`), with what the replay read.
pub struct Detection {
    pub engine: InsightsEngine,
    pub files: usize,
    pub bad_files: usize,
    pub bad_records: usize,
    /// Insights records the replay produced on the way.
    pub records_out: usize,
}

impl Detection {
    pub fn has_problems(&self) -> bool {
        self.bad_files > 0 || self.bad_records > 0
    }
}

/// Replays `logs` in delivery order through the detector (see the module documentation),
/// handing every Insights record it produces to `emit`. Unreadable files and records are
/// counted and named on stderr; the rest is read.
pub fn detect(
    logs: &[PathBuf],
    config: InsightsConfig,
    mut emit: impl FnMut(&str) -> Result<(), BacktestError>,
) -> Result<Detection, BacktestError> {
    let files = collect(logs)?;
    let mut engine = InsightsEngine::new(config);
    let mut latest_event_ms: Option<i64> = None;
    let (mut bad_records, mut bad_files, mut records_out) = (0usize, 0usize, 0usize);
    for file in &files {
        let now = file.delivered_ms.or(latest_event_ms);
        if let Some(now) = now {
            for line in engine.advance_to(now) {
                emit(&line)?;
                records_out += 1;
            }
        }
        let reader = File::open(&file.path).map_err(|source| BacktestError::Read {
            path: file.path.clone(),
            source,
        })?;
        let result = read_log_file(reader, LogFileLimits::default(), |item| {
            let Ok(text) = item.bytes else {
                bad_records += 1;
                say(&format!(
                    "warning: {} record {}: unreadable",
                    file.path.display(),
                    item.index
                ));
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
                Err(e) => {
                    bad_records += 1;
                    say(&format!(
                        "warning: {} record {}: {e}",
                        file.path.display(),
                        item.index
                    ));
                }
            }
        });
        if let Err(e) = result {
            bad_files += 1;
            say(&format!("warning: {}: {e}", file.path.display()));
        }
    }
    Ok(Detection {
        engine,
        files: files.len(),
        bad_files,
        bad_records,
        records_out,
    })
}

/// The backtest's one-line summary, and whether the input had problems.
fn backtest(args: &BacktestArgs) -> Result<(String, bool), BacktestError> {
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
    let mut detection = detect(&args.logs, config, |line| {
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
    }
    out.flush().map_err(write_err)?;
    let stats = engine.stats();
    let observed = engine.observe_stats();
    let sizes = engine.state_sizes();
    let summary = format!(
        "{written} Insights records ({} Start, {} End) -> {} | {} files ({} unreadable), \
         {} records ({} unreadable), {} counted, {} late (key, minute) cells | \
         {} keys, state bytes mean {:.0} max {} | {:.1}s",
        stats.starts,
        stats.ends,
        args.out.display(),
        detection.files,
        detection.bad_files,
        observed.records,
        detection.bad_records,
        observed.counted,
        stats.late_minutes,
        sizes.keys,
        sizes.mean_bytes,
        sizes.max_bytes,
        started.elapsed().as_secs_f64(),
    );
    Ok((summary, detection.has_problems()))
}

/// The evaluation lease a backfill holds while it writes: the Insights function's
/// `DEFAULT_LEASE_MS` (functions/insights/src/evaluate.rs).
pub const BACKFILL_LEASE_MS: i64 = 3 * 60 * 1000;

/// Why a backfill did not write.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Input(#[from] BacktestError),
    #[error("nothing to backfill: {0}")]
    Nothing(&'static str),
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    #[error("refused: {0}")]
    Refused(String),
}

/// What the backfill decided, given the table's clock and the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The table is empty or behind the snapshot: load it.
    Write,
    /// The table holds state at or past the snapshot's minute and --force was not given.
    Refuse { table: i64 },
    /// --force with the table at the snapshot's minute: load it again.
    Overwrite { table: i64 },
    /// --force with the table past the snapshot: set its clock back, then load.
    Rewind { table: i64 },
}

/// [`load_snapshot`] refuses a table past the snapshot (minutes would be lost); the backfill
/// also refuses one at the snapshot's minute without --force (it was loaded already, or the
/// deployment evaluated exactly this far and a load would replace its key states).
pub fn decide(clock: &Clock, snapshot: &Snapshot, force: bool) -> Decision {
    match clock.closed_through {
        Some(table) if table >= snapshot.closed_through => match (force, table) {
            (false, _) => Decision::Refuse { table },
            (true, t) if t == snapshot.closed_through => Decision::Overwrite { table },
            (true, _) => Decision::Rewind { table },
        },
        _ => Decision::Write,
    }
}

/// Sets the table's clock back to `minute` under the evaluation lease (keys, open Insights,
/// origin and fence as they are), so that [`load_snapshot`] accepts a snapshot of that minute.
pub async fn rewind_clock<S: EvaluationStore>(
    store: &S,
    minute: i64,
    owner: &str,
    now_ms: i64,
) -> Result<(), SnapshotError> {
    let clock = store
        .acquire_lease(owner, now_ms, BACKFILL_LEASE_MS)
        .await?
        .ok_or(SnapshotError::Busy)?;
    let rewound = Clock {
        closed_through: Some(minute),
        ..clock
    };
    if let Err(e) = store.save_clock_and_release(owner, &rewound).await {
        let _ = store.release_lease(owner).await;
        return Err(e.into());
    }
    Ok(())
}

/// Writes `snapshot` into `store` as `decision` says; the number of keys written.
pub async fn write_snapshot<S: EvaluationStore>(
    store: &S,
    snapshot: &Snapshot,
    decision: Decision,
    owner: &str,
    now_ms: i64,
) -> Result<usize, SnapshotError> {
    match decision {
        Decision::Refuse { table } => Err(SnapshotError::Behind {
            snapshot: snapshot.closed_through,
            table,
        }),
        Decision::Rewind { .. } => {
            rewind_clock(store, snapshot.closed_through, owner, now_ms).await?;
            load_snapshot(store, snapshot, owner, now_ms, BACKFILL_LEASE_MS).await
        }
        Decision::Write | Decision::Overwrite { .. } => {
            load_snapshot(store, snapshot, owner, now_ms, BACKFILL_LEASE_MS).await
        }
    }
}

/// What a backfill did, as printed.
pub struct BackfillReport {
    pub snapshot: Snapshot,
    pub decision: Decision,
    pub keys_written: usize,
    pub clock_after: Option<Clock>,
    pub input_problems: bool,
    pub text: String,
}

fn minute_text(minute: Option<i64>) -> String {
    match minute {
        Some(m) => format!("{} (minute {m})", format_event_time(m * MS_PER_MINUTE)),
        None => "none".to_owned(),
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The DynamoDB store of `args.table`, from the environment's AWS configuration.
async fn store_of(args: &BackfillArgs) -> DynamoDbInsightsStore {
    let mut loader = trailwatch_aws::config_loader();
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    DynamoDbInsightsStore::new(aws_sdk_dynamodb::Client::new(&sdk), args.table.clone())
}

/// Runs `insights backfill`.
pub async fn backfill(args: &BackfillArgs) -> Result<BackfillReport, BackfillError> {
    let store = store_of(args).await;
    backfill_into(&store, args).await
}

/// [`backfill`] into a given store (its calls are counted in the report).
pub async fn backfill_into(
    store: &DynamoDbInsightsStore,
    args: &BackfillArgs,
) -> Result<BackfillReport, BackfillError> {
    let started = Instant::now();
    let config = load_config(args.config.as_deref())?;
    let detection = detect(&args.logs, config, |_| Ok(()))?;
    let open: BTreeSet<String> = detection
        .engine
        .open_insight_keys()
        .iter()
        .map(ToString::to_string)
        .collect();
    let snapshot = match snapshot(&detection.engine) {
        Ok(snapshot) => snapshot,
        Err(SnapshotError::NothingClosed) => {
            return Err(BackfillError::Nothing(
                "the logs closed no minute (no readable record with a time?)",
            ))
        }
        Err(e) => {
            return Err(BackfillError::Table {
                table: args.table.clone(),
                message: e.to_string(),
            })
        }
    };
    if snapshot.keys.is_empty() {
        // Only the clock would move: the deployment would skip minutes for no baseline.
        return Err(BackfillError::Nothing(
            "the logs gave the detector no key (no write management event or error code counted)",
        ));
    }
    let table_error = |message: String| BackfillError::Table {
        table: args.table.clone(),
        message,
    };
    let clock = store
        .load_clock()
        .await
        .map_err(|e| table_error(e.to_string()))?;
    let decision = decide(&clock, &snapshot, args.force);
    let owner = format!("backfill-{}-{}", std::process::id(), wall_clock_ms());
    let (keys_written, clock_after) = if args.dry_run {
        (0, None)
    } else {
        let written = write_snapshot(store, &snapshot, decision, &owner, wall_clock_ms())
            .await
            .map_err(|e| match e {
                SnapshotError::Behind { .. } => BackfillError::Refused(refusal(&clock, &snapshot)),
                other => table_error(other.to_string()),
            })?;
        let after = store
            .load_clock()
            .await
            .map_err(|e| table_error(e.to_string()))?;
        (written, Some(after))
    };
    if args.dry_run {
        if let Decision::Refuse { .. } = decision {
            // A dry run answers as the real run would.
            return Err(BackfillError::Refused(format!(
                "{} (dry run: nothing written)",
                refusal(&clock, &snapshot)
            )));
        }
    }

    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sources = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for k in &snapshot.keys {
        *by_type.entry(k.key.insight_type.as_str()).or_default() += 1;
        sources.insert(k.key.event_source.as_str());
        accounts.insert((k.key.account.as_str(), k.key.region.as_str()));
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let observed = detection.engine.observe_stats();
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        text.push_str(&format!("  {label:<16} {value}\n"));
    };
    line(
        "input",
        format!(
            "{} files ({} unreadable), {} records ({} unreadable), {} counted",
            detection.files,
            detection.bad_files,
            observed.records,
            detection.bad_records,
            observed.counted
        ),
    );
    line(
        "snapshot",
        format!(
            "closed through {}, data from {}",
            minute_text(Some(snapshot.closed_through)),
            minute_text(snapshot.origin_minute)
        ),
    );
    line(
        "keys",
        format!(
            "{} ({}), {} event sources, {} account/region pairs, {} with an open Insight",
            snapshot.keys.len(),
            if types.is_empty() {
                "none".to_owned()
            } else {
                types.join(", ")
            },
            sources.len(),
            accounts.len(),
            open.len()
        ),
    );
    line(
        "table before",
        match clock.closed_through {
            Some(_) => format!("closed through {}", minute_text(clock.closed_through)),
            None => "no Insights state yet".to_owned(),
        },
    );
    let how = match decision {
        Decision::Write | Decision::Refuse { .. } => String::new(),
        Decision::Overwrite { .. } => " (--force: the table was at the snapshot's minute)".into(),
        Decision::Rewind { table } => format!(
            " (--force: the clock set back from minute {table} first; the deployment \
             re-evaluates the minutes after the snapshot from the cells it holds)"
        ),
    };
    let what = format!("{} key states and the clock", snapshot.keys.len());
    if args.dry_run {
        line(
            "dry run",
            format!("would write {what}{how}; nothing written"),
        );
    } else {
        line(
            "written",
            format!("{keys_written} key states and the clock{how}"),
        );
        if let Some(after) = &clock_after {
            line(
                "table after",
                format!(
                    "closed through {}, {} open Insight keys",
                    minute_text(after.closed_through),
                    after.open_keys.len()
                ),
            );
        }
    }
    let age_ms = wall_clock_ms() - snapshot.closed_through * MS_PER_MINUTE;
    if age_ms > CELL_TTL.as_millis() as i64 {
        line(
            "note",
            format!(
                "the snapshot ends {} days ago, before the oldest minute the deployment keeps \
                 counts for ({} days): it catches up on the minutes in between as quiet ones, \
                 a day of them per evaluation; logs that reach closer to now give truer \
                 baselines",
                age_ms / (24 * 60 * MS_PER_MINUTE),
                CELL_TTL.as_secs() / 86_400
            ),
        );
    }
    let calls: Vec<String> = store
        .calls
        .snapshot()
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    line("DynamoDB calls", calls.join(", "));
    line("took", format!("{:.1}s", started.elapsed().as_secs_f64()));
    let text = format!(
        "insights backfill of table {}{}\n{text}",
        args.table,
        if args.dry_run { " (dry run)" } else { "" }
    );
    Ok(BackfillReport {
        input_problems: detection.has_problems(),
        snapshot,
        decision,
        keys_written,
        clock_after,
        text,
    })
}

fn refusal(clock: &Clock, snapshot: &Snapshot) -> String {
    let table = clock.closed_through.unwrap_or(i64::MIN);
    if table == snapshot.closed_through {
        format!(
            "the table already holds Insights state through the snapshot's minute, {}: these \
             logs were backfilled already, or the deployment evaluated exactly this far (a load \
             would replace its key states); --force writes it again",
            minute_text(Some(table))
        )
    } else {
        format!(
            "the table's Insights state is newer than the snapshot: evaluated through {}, the \
             snapshot ends at {}; loading it would lose the minutes in between (the Insights \
             function refuses it too). Backfill logs that reach closer to now, or --force to set \
             the table's clock back to the snapshot's minute and load it",
            minute_text(Some(table)),
            minute_text(Some(snapshot.closed_through))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailwatch::insights::store::{MemoryStore, SnapshotKey};
    use trailwatch::insights::{InsightType, KeyAttributions, SeriesKey};
    use trailwatch::local::delivery_time_ms;

    #[test]
    fn delivery_time_comes_from_the_cloudtrail_file_name() {
        let p = Path::new(
            "x/111122223333_CloudTrail_us-east-1_20240306T0105Z_abcdef0123456789.json.gz",
        );
        assert_eq!(
            delivery_time_ms(p),
            Some(trailwatch::time::parse_event_time("2024-03-06T01:05:00Z").unwrap())
        );
        assert_eq!(delivery_time_ms(Path::new("logs.json.gz")), None);
    }

    fn snapshot_at(minute: i64) -> Snapshot {
        Snapshot {
            closed_through: minute,
            origin_minute: Some(minute - 100),
            keys: vec![SnapshotKey {
                key: SeriesKey {
                    account: "111122223333".into(),
                    region: "us-east-1".into(),
                    event_source: "iam.amazonaws.com".into(),
                    event_name: "CreateUser".into(),
                    insight_type: InsightType::ApiCallRateInsight,
                    error_code: None,
                },
                state: String::new(),
                attributions: KeyAttributions::default(),
            }],
        }
    }

    fn clock_at(minute: Option<i64>) -> Clock {
        Clock {
            closed_through: minute,
            ..Clock::default()
        }
    }

    #[test]
    fn state_at_or_past_the_snapshot_is_refused_unless_forced() {
        let s = snapshot_at(1_000);
        assert_eq!(decide(&clock_at(None), &s, false), Decision::Write);
        assert_eq!(decide(&clock_at(Some(999)), &s, false), Decision::Write);
        assert_eq!(
            decide(&clock_at(Some(1_000)), &s, false),
            Decision::Refuse { table: 1_000 }
        );
        assert_eq!(
            decide(&clock_at(Some(1_001)), &s, false),
            Decision::Refuse { table: 1_001 }
        );
        assert_eq!(
            decide(&clock_at(Some(1_000)), &s, true),
            Decision::Overwrite { table: 1_000 }
        );
        assert_eq!(
            decide(&clock_at(Some(1_001)), &s, true),
            Decision::Rewind { table: 1_001 }
        );
    }

    fn ready<F: std::future::Future>(f: F) -> F::Output {
        trailwatch::local::block_on(f)
    }

    #[test]
    fn forcing_a_table_past_the_snapshot_sets_its_clock_back_then_loads() {
        let store = MemoryStore::new();
        let first = snapshot_at(1_000);
        assert_eq!(
            ready(write_snapshot(&store, &first, Decision::Write, "a", 0)).unwrap(),
            1
        );
        // The deployment evaluated on to minute 1,050.
        let owner = "evaluator";
        ready(store.acquire_lease(owner, 10, 1_000))
            .unwrap()
            .unwrap();
        let mut clock = store.clock();
        clock.closed_through = Some(1_050);
        ready(store.save_clock_and_release(owner, &clock)).unwrap();

        let older = snapshot_at(1_020);
        let decision = decide(&store.clock(), &older, false);
        assert!(matches!(
            ready(write_snapshot(&store, &older, decision, "b", 20)),
            Err(SnapshotError::Behind { .. })
        ));
        assert_eq!(store.clock().closed_through, Some(1_050), "nothing written");
        let decision = decide(&store.clock(), &older, true);
        assert_eq!(decision, Decision::Rewind { table: 1_050 });
        ready(write_snapshot(&store, &older, decision, "b", 20)).unwrap();
        assert_eq!(store.clock().closed_through, Some(1_020));
        assert_eq!(
            store.clock().origin_minute,
            Some(900),
            "the earliest origin"
        );
        assert_eq!(store.stored_keys()[0].1.through, 1_020);
        assert!(
            ready(store.acquire_lease("c", 30, 1_000))
                .unwrap()
                .is_some(),
            "the lease was given back"
        );
    }
}
