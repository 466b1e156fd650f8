//! `trailwatch insights backfill` into the Insights state table on moto: the table ends up
//! holding exactly what `insights backtest --export` exports for the same files, the Insights
//! function's evaluation carries on from it, and a backfill that would go back over state the
//! table already has is refused unless forced. The table is the stack's (template.yaml deployed
//! in moto).
//!
//! One test: the command is run in-process (`trailwatch_cli::run`) and takes its AWS
//! configuration from the environment, which this test sets before anything reads it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use trailwatch::forward::{BusError, Entry, EntryOutcome, EventBus};
use trailwatch::insights::store::{Clock, EvaluationStore, Snapshot};
use trailwatch::insights::InsightsConfig;
use trailwatch::time::MS_PER_MINUTE;
use trailwatch_aws::insights_state::DynamoDbInsightsStore;
use trailwatch_cli::insights::{backfill_into, BackfillArgs, BackfillError, Decision};
use trailwatch_e2e::{endpoint, repo_root, sdk, shared_data, unique, REGION};
use trailwatch_e2e::{DeployedStack, StackOptions};
use trailwatch_insights_fn::evaluate::{evaluate, EvaluateSettings};

/// Accepts every entry (the evaluation's forwarding is not under test here).
struct AcceptAll;

impl EventBus for AcceptAll {
    async fn put_events(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, BusError> {
        Ok(entries
            .iter()
            .map(|_| EntryOutcome::Accepted {
                event_id: String::new(),
            })
            .collect())
    }
}

fn cli(args: &[&str]) -> ExitCode {
    let mut all = vec!["trailwatch"];
    all.extend_from_slice(args);
    trailwatch_cli::run(all)
}

fn code(c: ExitCode) -> String {
    format!("{c:?}")
}

fn ok() -> String {
    code(ExitCode::from(0))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn backfill_loads_the_backtest_snapshot_and_refuses_to_go_back_unless_forced() {
    std::env::set_var("AWS_ENDPOINT_URL", endpoint());
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::remove_var("AWS_PROFILE");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sdk = runtime.block_on(sdk());
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    // The state table of template.yaml deployed in moto, as the Insights function names it.
    let stack = DeployedStack::deploy(&StackOptions::default());
    let table = stack
        .function("InsightsFunction")
        .required(trailwatch_insights_fn::STATE_TABLE_ENV);
    let store = DynamoDbInsightsStore::new(client.clone(), table.clone());

    let logs = shared_data().join("invictus-ir");
    let config = repo_root().join("events/trail-config.json");
    let tmp: PathBuf = std::env::temp_dir().join(unique("trailwatch-backfill"));
    std::fs::create_dir_all(&tmp).unwrap();

    // What `backtest --export` writes for the same files and configuration.
    let export = tmp.join("snapshot.json");
    let status = cli(&[
        "insights",
        "backtest",
        p(&logs),
        "--config",
        p(&config),
        "--out",
        p(&tmp.join("insights.jsonl")),
        "--export",
        p(&export),
    ]);
    assert_eq!(code(status), ok());
    let exported: Snapshot =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert!(exported.keys.len() > 100, "{} keys", exported.keys.len());

    let backfill = |extra: &[&str]| {
        let mut args = vec![
            "insights",
            "backfill",
            p(&logs),
            "--config",
            p(&config),
            "--table",
            &table,
            "--region",
            REGION,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };

    // A dry run reads the clock and writes nothing.
    assert_eq!(code(backfill(&["--dry-run"])), ok());
    assert_eq!(
        runtime.block_on(store.load_clock()).unwrap(),
        Clock::default()
    );

    // The backfill: the table now holds the exported snapshot, key by key.
    assert_eq!(code(backfill(&[])), ok());
    let clock = runtime.block_on(store.load_clock()).unwrap();
    assert_eq!(clock.closed_through, Some(exported.closed_through));
    assert_eq!(clock.origin_minute, exported.origin_minute);
    let keys: Vec<_> = exported.keys.iter().map(|k| k.key.clone()).collect();
    let mut stored = runtime.block_on(store.load_keys(&keys)).unwrap();
    assert_eq!(stored.len(), exported.keys.len(), "every key was written");
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = exported.keys.clone();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    for ((key, state), want) in stored.iter().zip(&expected) {
        assert_eq!(key, &want.key);
        assert_eq!(state.through, exported.closed_through);
        assert_eq!(state.state, unhex(&want.state), "{key}");
        assert_eq!(state.attributions, want.attributions, "{key}");
    }

    // Again, without --force: the table is at the snapshot's minute already.
    assert_eq!(code(backfill(&[])), code(ExitCode::from(2)));
    let args = |force: bool, dry_run: bool| BackfillArgs {
        logs: vec![logs.clone()],
        table: table.clone(),
        region: Some(REGION.into()),
        config: Some(config.clone()),
        dry_run,
        force,
    };
    match runtime.block_on(backfill_into(&store, &args(false, false))) {
        Err(BackfillError::Refused(why)) => assert!(why.contains("already"), "{why}"),
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.decision)),
    }

    // The Insights function's evaluation carries on from the snapshot's minute.
    let insights = InsightsConfig::from_json(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let now = (exported.closed_through + 30) * MS_PER_MINUTE;
    let report = runtime
        .block_on(evaluate(
            &store,
            &AcceptAll,
            &insights,
            &EvaluateSettings::new("trailwatch.e2e"),
            now,
            "evaluator",
        ))
        .unwrap();
    assert!(report.leased);
    assert_eq!(report.closed_after, Some(exported.closed_through));
    let evaluated_through = report.closed_through.unwrap();
    assert!(evaluated_through > exported.closed_through);

    // Now the table is newer than the snapshot: refused (as the function's own snapshot
    // loading refuses it), a dry run says so too, and --force sets the clock back and loads.
    assert_eq!(code(backfill(&[])), code(ExitCode::from(2)));
    assert_eq!(code(backfill(&["--dry-run"])), code(ExitCode::from(2)));
    match runtime.block_on(backfill_into(&store, &args(false, false))) {
        Err(BackfillError::Refused(why)) => assert!(why.contains("newer"), "{why}"),
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.decision)),
    }
    assert_eq!(
        runtime.block_on(store.load_clock()).unwrap().closed_through,
        Some(evaluated_through),
        "refusals write nothing"
    );
    let forced = runtime
        .block_on(backfill_into(&store, &args(true, false)))
        .unwrap();
    assert_eq!(
        forced.decision,
        Decision::Rewind {
            table: evaluated_through
        }
    );
    assert_eq!(forced.keys_written, exported.keys.len());
    assert_eq!(
        forced.clock_after.unwrap().closed_through,
        Some(exported.closed_through)
    );
    assert!(forced.text.contains("PutItem"), "{}", forced.text);

    // A table that does not exist cannot be backfilled.
    let missing = BackfillArgs {
        table: unique("no-such-table"),
        ..args(false, true)
    };
    let missing_store = DynamoDbInsightsStore::new(client, missing.table.clone());
    assert!(matches!(
        runtime.block_on(backfill_into(&missing_store, &missing)),
        Err(BackfillError::Table { .. })
    ));
    let _ = std::fs::remove_dir_all(&tmp);
}
