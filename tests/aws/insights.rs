//! The Insights function's durable state in DynamoDB (moto): key states and the clock round
//! trip, concurrent counting adds up, a redelivered batch counts once, late cells are kept
//! apart, and a generated burst counted through the Logs invocation and evaluated by the
//! schedule reaches an EventBridge rule as a Start and an End. The table, bus and event source
//! are those of template.yaml deployed in moto, as the Insights function is configured there.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use trailwatch::insights::store::{Clock, EvaluationStore, StoredKey};
use trailwatch::insights::{InsightsConfig, InsightsEngine, SeriesKey};
use trailwatch::record::Record;
use trailwatch::time::{format_event_time, MS_PER_MINUTE};
use trailwatch_aws::insights_state::DynamoDbInsightsStore;
use trailwatch_e2e::deployed::contexts;
use trailwatch_e2e::invocations::{logs_batch, schedule_event, subscription_payload};
use trailwatch_e2e::{create_queue, drain_queue, route_to_queue, sdk, unique};
use trailwatch_e2e::{DeployedStack, StackOptions};
use trailwatch_insights_fn::count::count_batch;
use trailwatch_insights_fn::fixtures::{burst_stream, record, DAY0_MS};
use trailwatch_insights_fn::{
    handle_with_state, InsightsContext, StateContext, EVENT_BUS_ENV, STATE_TABLE_ENV,
};

/// template.yaml deployed in moto (a stack per test: each starts from an empty table).
async fn deployed() -> (DeployedStack, aws_config::SdkConfig) {
    let stack = tokio::task::spawn_blocking(|| DeployedStack::deploy(&StackOptions::default()))
        .await
        .unwrap();
    (stack, sdk().await)
}

/// The stack's state table, as the Insights function is configured with it.
async fn new_store() -> (DynamoDbInsightsStore, String, aws_config::SdkConfig) {
    let (stack, sdk) = deployed().await;
    let table = stack.function("InsightsFunction").required(STATE_TABLE_ENV);
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    (
        DynamoDbInsightsStore::new(client, table.clone()),
        table,
        sdk,
    )
}

/// Total count per (key, minute) of every cell stored.
async fn counts(store: &DynamoDbInsightsStore) -> BTreeMap<(SeriesKey, i64), u64> {
    let mut out = BTreeMap::new();
    let cells = store
        .read_cells(
            DAY0_MS / MS_PER_MINUTE - 1,
            DAY0_MS / MS_PER_MINUTE + 3 * 1440,
        )
        .await
        .unwrap();
    for c in cells {
        *out.entry((c.cell.key, c.cell.minute)).or_default() += c.cell.aggregate.count;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_state_and_clock_round_trip_through_dynamodb() {
    let (store, _, _) = new_store().await;
    let (records, burst) = burst_stream();
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    for text in &records {
        engine.observe(&Record::parse(text).unwrap());
    }
    let records_out = engine.advance_to(burst + 20 * MS_PER_MINUTE);
    assert_eq!(records_out.len(), 1, "a Start: the key has an open Insight");
    let key = engine.keys()[0].clone();
    let stored = StoredKey {
        through: engine.closed_through().unwrap(),
        state: engine.export_key_state(&key).unwrap(),
        attributions: engine.export_key_attributions(&key).unwrap().clone(),
    };
    store
        .save_keys(&[(key.clone(), stored.clone())])
        .await
        .unwrap();
    let loaded = store.load_keys(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(loaded, vec![(key.clone(), stored)]);

    assert_eq!(
        store.acquire_lease("a", 1_000, 60_000).await.unwrap(),
        Some(Clock::default())
    );
    assert_eq!(store.acquire_lease("b", 2_000, 60_000).await.unwrap(), None);
    store.fence("a", 42).await.unwrap();
    store.fence("a", 40).await.unwrap();
    let clock = Clock {
        closed_through: Some(41),
        closing_through: None,
        origin_minute: Some(7),
        open_keys: engine.open_insight_keys(),
    };
    assert!(
        store.save_clock_and_release("b", &clock).await.is_err(),
        "only the lease holder saves"
    );
    store.save_clock_and_release("a", &clock).await.unwrap();
    let back = store
        .acquire_lease("b", 3_000, 60_000)
        .await
        .unwrap()
        .expect("the lease went back with the clock");
    assert_eq!(back, store.load_clock().await.unwrap());
    assert_eq!(
        back,
        Clock {
            closing_through: Some(42),
            ..clock
        }
    );
    assert_eq!(back.open_keys, vec![key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_counting_invocations_add_up() {
    let (store, table, sdk) = new_store().await;
    let other = DynamoDbInsightsStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let config = InsightsConfig::default();
    let minute = DAY0_MS + 600 * MS_PER_MINUTE;
    let a: Vec<String> = (0..30)
        .map(|n| record("CreateUser", minute + n * 3_000, n as usize))
        .collect();
    let b: Vec<String> = (0..20)
        .map(|n| record("CreateUser", minute + 30_000 + n * 3_000, 100 + n as usize))
        .collect();
    let (batch_a, batch_b) = (logs_batch("a", &a), logs_batch("b", &b));
    let (ra, rb) = tokio::join!(
        count_batch(&store, &config, &batch_a),
        count_batch(&other, &config, &batch_b)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.parts_written, rb.parts_written), (1, 1));
    let counts = counts(&store).await;
    let per_minute: Vec<u64> = counts.values().copied().collect();
    // a: 20 calls in the first minute and 10 in the next; b: 10 and 10.
    assert_eq!(per_minute, vec![20 + 10, 10 + 10], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_is_counted_once_even_when_deliveries_race() {
    let (store, _, _) = new_store().await;
    let config = InsightsConfig::default();
    let (records, _) = burst_stream();
    let batch = logs_batch("r", &records[100..160]);
    let (x, y, z) = tokio::join!(
        count_batch(&store, &config, &batch),
        count_batch(&store, &config, &batch),
        count_batch(&store, &config, &batch)
    );
    let later = count_batch(&store, &config, &batch).await.unwrap();
    let reports = [x.unwrap(), y.unwrap(), z.unwrap(), later];
    let written: usize = reports.iter().map(|r| r.parts_written).sum();
    let skipped: usize = reports.iter().map(|r| r.parts_already_counted).sum();
    assert_eq!((written, skipped), (1, 3));
    let total: u64 = counts(&store).await.values().sum();
    assert_eq!(total, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_of_a_fenced_minute_are_stored_as_late_data() {
    let (store, _, _) = new_store().await;
    let config = InsightsConfig::default();
    let fenced = DAY0_MS / MS_PER_MINUTE + 100;
    assert!(store.acquire_lease("e", 0, 60_000).await.unwrap().is_some());
    store.fence("e", fenced).await.unwrap();
    let batch = logs_batch(
        "l",
        &[
            record("CreateRole", (fenced - 3) * MS_PER_MINUTE, 0),
            record("CreateRole", (fenced + 2) * MS_PER_MINUTE, 1),
        ],
    );
    let report = count_batch(&store, &config, &batch).await.unwrap();
    assert_eq!(report.late_cells, 1);
    let cells = store.read_cells(fenced, fenced + 5).await.unwrap();
    let placed: Vec<(i64, i64)> = cells
        .iter()
        .map(|c| (c.read_minute, c.cell.minute))
        .collect();
    assert_eq!(
        placed,
        vec![(fenced + 1, fenced - 3), (fenced + 2, fenced + 2)]
    );
    assert!(store
        .read_cells(fenced - 10, fenced)
        .await
        .unwrap()
        .is_empty());
}

/// Runs the schedule at `now_ms` until the clock has caught up; returns the evaluation reports.
async fn evaluate_until_caught_up(
    context: &InsightsContext,
    state: &StateContext,
    now_ms: i64,
) -> Vec<Value> {
    let target = now_ms / MS_PER_MINUTE - i64::from(state.config.watermark_minutes) - 1;
    let mut reports = Vec::new();
    for n in 0..10 {
        let report = handle_with_state(context, Some(state), schedule_event(now_ms, n))
            .await
            .unwrap();
        let done = report["closedThrough"].as_i64() == Some(target);
        reports.push(report);
        if done {
            return reports;
        }
    }
    panic!("the evaluator did not catch up to {target}: {reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_burst_counted_from_logs_reaches_an_eventbridge_rule_as_start_and_end() {
    let (stack, sdk) = deployed().await;
    let function = stack.function("InsightsFunction");
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The stack's bus and source, as deployed; a rule of the test's own reads what arrives.
    let context = contexts::insights(function, &sdk);
    let source = context.source.clone();
    let alerts = create_queue(&sqs, &unique("insight-alerts")).await;
    route_to_queue(
        &events,
        &sqs,
        Some(&function.required(EVENT_BUS_ENV)),
        &format!(r#"{{"source":["{source}"],"detail-type":["AWS Insight via CloudTrail"]}}"#),
        &alerts,
    )
    .await;
    let mut state = contexts::insights_state(function, &sdk, InsightsConfig::default(), &source);
    state.settings.first_run_lookback_minutes = 2 * 1440;
    // The run's keys in four shards closed in parallel, over the one table and lease.
    state.settings.shards = 4;
    let calls = state.store.calls.clone();

    // Counting: the stream as CloudWatch Logs subscription payloads of 50 log events.
    let (records, burst) = burst_stream();
    let mut batch_calls = Vec::new();
    for (i, chunk) in records.chunks(50).enumerate() {
        let payload = subscription_payload(&logs_batch(&format!("{i:04}"), chunk));
        let before = calls.total();
        let report = handle_with_state(&context, Some(&state), payload)
            .await
            .unwrap();
        assert_eq!(report["partsWritten"], 1);
        batch_calls.push(calls.total() - before);
    }
    assert!(batch_calls.iter().all(|&n| n == 1), "{batch_calls:?}");

    // Evaluation just after the burst (+ watermark): a Start.
    let first_now = burst + (8 + 16 + 1) * MS_PER_MINUTE;
    let reports = evaluate_until_caught_up(&context, &state, first_now).await;
    let starts: i64 = reports.iter().map(|r| r["starts"].as_i64().unwrap()).sum();
    assert_eq!(starts, 1, "{reports:?}");
    assert!(reports.iter().all(|r| r["shards"] == 4), "{reports:?}");
    let open = state.store.load_clock().await.unwrap().open_keys;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].event_name, "CreateAccessKey");

    // Every minute for the next half hour: the key is evaluated with no new cells (it is
    // open) until its End.
    let mut ends = 0;
    let mut steady_calls = Vec::new();
    for minute in 1..=30 {
        let before = calls.snapshot();
        let report = handle_with_state(
            &context,
            Some(&state),
            schedule_event(first_now + minute * MS_PER_MINUTE, 100 + minute as usize),
        )
        .await
        .unwrap();
        ends += report["ends"].as_i64().unwrap();
        steady_calls.push((
            report["keysLoaded"].as_i64().unwrap(),
            diff(&before, &calls.snapshot()),
        ));
    }
    assert_eq!(ends, 1);
    assert!(state.store.load_clock().await.unwrap().open_keys.is_empty());
    eprintln!("DynamoDB calls per counted batch: {batch_calls:?}");
    eprintln!("DynamoDB calls per evaluation (keys loaded, calls): {steady_calls:?}");
    for (keys, per_op) in &steady_calls {
        let total: u64 = per_op.values().sum();
        // Lease + clock, fence, one Query per hour read, clock + release; then per 100 keys
        // a BatchGetItem and per key a PutItem.
        let keys = *keys as u64;
        assert!(
            total <= 4 + keys.div_ceil(100) + keys,
            "an evaluation costs four calls plus the keys it touches: {per_op:?}"
        );
    }

    let routed = drain_queue(&sqs, &alerts).await;
    let details: Vec<Value> = routed
        .records
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            assert_eq!(envelope["detail-type"], "AWS Insight via CloudTrail");
            assert_eq!(envelope["source"], source.as_str());
            envelope["detail"].clone()
        })
        .collect();
    let mut states: Vec<&str> = details
        .iter()
        .map(|d| d["insightDetails"]["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["End", "Start"]);
    assert_eq!(details[0]["sharedEventID"], details[1]["sharedEventID"]);
    let start = details
        .iter()
        .find(|d| d["insightDetails"]["state"] == "Start")
        .unwrap();
    assert_eq!(start["eventType"], "AwsCloudTrailInsight");
    assert_eq!(start["insightDetails"]["eventName"], "CreateAccessKey");
    assert_eq!(start["eventTime"], format_event_time(burst));
}

fn diff(before: &[(&'static str, u64)], after: &[(&'static str, u64)]) -> BTreeMap<String, u64> {
    let old: BTreeMap<&str, u64> = before.iter().copied().collect();
    after
        .iter()
        .map(|(op, n)| (op.to_string(), n - old.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_invocation_seeds_the_table_with_a_local_replay() {
    let (stack, sdk) = deployed().await;
    let function = stack.function("InsightsFunction");
    let (records, burst) = burst_stream();
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    for text in &records {
        engine.observe(&Record::parse(text).unwrap());
    }
    engine.advance_to(burst - 60 * MS_PER_MINUTE);
    let snapshot = trailwatch::insights::store::snapshot(&engine).unwrap();
    let context = contexts::insights(function, &sdk);
    let state =
        contexts::insights_state(function, &sdk, InsightsConfig::default(), &context.source);
    let response = handle_with_state(
        &context,
        Some(&state),
        json!({ "trailwatchSnapshot": snapshot }),
    )
    .await
    .unwrap();
    assert_eq!(response["keysLoaded"], 1);
    let key = engine.keys()[0].clone();
    let loaded = state
        .store
        .load_keys(std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(loaded[0].1.state, engine.export_key_state(&key).unwrap());
    assert_eq!(loaded[0].1.through, snapshot.closed_through);
    let clock = state.store.load_clock().await.unwrap();
    assert_eq!(clock.closed_through, Some(snapshot.closed_through));
    assert_eq!(clock.origin_minute, engine.origin_minute());
}
