//! `insights backfill`: the snapshot of a replay ([`detect`]) written into a deployment's
//! DynamoDB state table through `trailwatch::insights::store::load_snapshot`, the code path
//! of the Insights function's `{"trailwatchSnapshot": ...}` invocation, so a new deployment
//! has baselines at once.

use std::path::PathBuf;
use std::time::Instant;

use aws_sdk_dynamodb::config::Region;
use clap::Args;
use trailwatch::insights::store::{
    load_snapshot, snapshot, Clock, EvaluationStore, Snapshot, SnapshotError,
};
use trailwatch_aws::insights_state::DynamoDbInsightsStore;

use super::present::{backfill_text, refusal};
use super::replay::{detect, Detection};
use super::{load_config, BacktestError};

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
    #[error("table {table}: {source}")]
    Table {
        table: String,
        source: SnapshotError,
    },
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

pub(super) fn wall_clock_ms() -> i64 {
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
    let detection = detect(&args.logs, config, None, |_| Ok(()))?;
    let snapshot = snapshot_of(&detection, &args.table)?;
    let table_error = |source| BackfillError::Table {
        table: args.table.clone(),
        source,
    };
    let clock = store
        .load_clock()
        .await
        .map_err(|e| table_error(e.into()))?;
    let decision = decide(&clock, &snapshot, args.force);
    if args.dry_run {
        if let Decision::Refuse { .. } = decision {
            // A dry run answers as the real run would.
            return Err(BackfillError::Refused(format!(
                "{} (dry run: nothing written)",
                refusal(&clock, &snapshot)
            )));
        }
    }
    let (keys_written, clock_after) = if args.dry_run {
        (0, None)
    } else {
        let owner = format!("backfill-{}-{}", std::process::id(), wall_clock_ms());
        let written = write_snapshot(store, &snapshot, decision, &owner, wall_clock_ms())
            .await
            .map_err(|e| match e {
                SnapshotError::Behind { .. } => BackfillError::Refused(refusal(&clock, &snapshot)),
                other => table_error(other),
            })?;
        let after = store
            .load_clock()
            .await
            .map_err(|e| table_error(e.into()))?;
        (written, Some(after))
    };
    let mut report = BackfillReport {
        input_problems: detection.has_problems(),
        snapshot,
        decision,
        keys_written,
        clock_after,
        text: String::new(),
    };
    let calls = store.calls.snapshot();
    report.text = backfill_text(args, &detection, &clock, &report, &calls, started.elapsed());
    Ok(report)
}

/// The snapshot a backfill writes, refused when it would only move the clock.
fn snapshot_of(detection: &Detection, table: &str) -> Result<Snapshot, BackfillError> {
    let snapshot = match snapshot(&detection.engine) {
        Ok(snapshot) => snapshot,
        Err(SnapshotError::NothingClosed) => {
            return Err(BackfillError::Nothing(
                "the logs closed no minute (no readable record with a time?)",
            ))
        }
        Err(source) => {
            return Err(BackfillError::Table {
                table: table.to_owned(),
                source,
            })
        }
    };
    if snapshot.keys.is_empty() {
        // Only the clock would move: the deployment would skip minutes for no baseline.
        return Err(BackfillError::Nothing(
            "the logs gave the detector no key (no write management event or error code counted)",
        ));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailwatch::insights::store::{MemoryStore, SnapshotKey};
    use trailwatch::insights::{InsightType, KeyAttributions, SeriesKey};

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
