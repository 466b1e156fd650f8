//! Counting and evaluation over the in-memory store and a fake bus: the same engine as the
//! CLI, idempotent counting, the lease, forwarding failures and retries.

use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::cloudwatch_logs::{LogEntry, LogsEvent};
use trailwatch::forward::{BusError, Entry, EntryOutcome, EventBus, RetryPolicy};
use trailwatch::insights::store::{
    load_snapshot, snapshot, EvaluationStore, MemoryStore, SnapshotError,
};
use trailwatch::insights::{InsightsConfig, InsightsEngine};
use trailwatch::record::Record;
use trailwatch::time::MS_PER_MINUTE;

use crate::fixtures::{burst_stream, record, DAY0_MS};

use crate::count::count_batch;
use crate::evaluate::{evaluate, EvaluateError, EvaluateSettings};

/// The records as CloudWatch Logs subscription batches of `per_batch` events.
fn batches(records: &[String], per_batch: usize) -> Vec<LogsEvent> {
    records
        .chunks(per_batch)
        .enumerate()
        .map(|(b, chunk)| {
            let mut event = LogsEvent::default();
            event.aws_logs.data.message_type = "DATA_MESSAGE".into();
            event.aws_logs.data.log_group = "CloudTrail/trailwatch".into();
            event.aws_logs.data.log_stream = "111122223333_CloudTrail_us-east-1".into();
            for (i, text) in chunk.iter().enumerate() {
                let mut entry = LogEntry::default();
                entry.id = format!("{b:08}{i:08}");
                entry.message = text.clone();
                event.aws_logs.data.log_events.push(entry);
            }
            event
        })
        .collect()
}

fn fast_settings() -> EvaluateSettings {
    let mut s = EvaluateSettings::new("trailwatch.test");
    s.retry = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
    };
    s.first_run_lookback_minutes = 3 * 1440;
    s.max_catch_up_minutes = 3 * 1440;
    s
}

/// Accepts everything, fails the first `fail_first` entries it sees with `code`.
struct FakeBus {
    code: &'static str,
    fail_first: Mutex<usize>,
    calls: Mutex<Vec<usize>>,
    accepted: Mutex<Vec<Entry>>,
}

impl FakeBus {
    fn failing(code: &'static str, fail_first: usize) -> Self {
        FakeBus {
            code,
            fail_first: Mutex::new(fail_first),
            calls: Mutex::default(),
            accepted: Mutex::default(),
        }
    }

    fn ok() -> Self {
        FakeBus::failing("InternalFailure", 0)
    }

    fn accepted_states(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
                v["insightDetails"]["state"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

impl EventBus for FakeBus {
    async fn put_events(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, BusError> {
        assert!(entries.len() <= 10, "PutEvents takes at most 10 entries");
        self.calls.lock().unwrap().push(entries.len());
        let mut fail = self.fail_first.lock().unwrap();
        Ok(entries
            .iter()
            .map(|e| {
                if *fail > 0 {
                    *fail -= 1;
                    EntryOutcome::Failed {
                        code: self.code.into(),
                        message: "injected".into(),
                    }
                } else {
                    self.accepted.lock().unwrap().push(e.clone());
                    EntryOutcome::Accepted {
                        event_id: "id".into(),
                    }
                }
            })
            .collect())
    }
}

/// Evaluates every `step` minutes from `from_ms` to `to_ms` (schedule times).
async fn evaluate_every(
    store: &MemoryStore,
    bus: &FakeBus,
    config: &InsightsConfig,
    from_ms: i64,
    to_ms: i64,
    step: i64,
    shards: usize,
) -> Vec<String> {
    let settings = EvaluateSettings {
        shards,
        ..fast_settings()
    };
    let mut out = Vec::new();
    let mut now = from_ms;
    while now <= to_ms {
        let report = evaluate(store, bus, config, &settings, now, "evaluator")
            .await
            .unwrap();
        assert!(report.closed_through.is_none() || report.shards == shards);
        out.extend(report.records);
        now += step * MS_PER_MINUTE;
    }
    out
}

#[tokio::test]
async fn the_lambda_path_emits_exactly_the_records_of_the_cli_engine() {
    let config = InsightsConfig::default();
    let (records, burst) = burst_stream();
    let watermark = i64::from(config.watermark_minutes) * MS_PER_MINUTE;
    let (from, to) = (DAY0_MS + watermark, burst + 3 * 60 * MS_PER_MINUTE);

    let mut engine = InsightsEngine::new(config.clone());
    for text in &records {
        engine.observe(&Record::parse(text).unwrap());
    }
    let mut expected = Vec::new();
    let mut now = from;
    while now <= to {
        expected.extend(engine.advance_to(now));
        now += 7 * MS_PER_MINUTE;
    }
    assert_eq!(
        expected.len(),
        2,
        "the stream has one Insight: {expected:?}"
    );

    for shards in [1, 4] {
        let store = MemoryStore::new();
        for batch in batches(&records, 37).iter().rev() {
            count_batch(&store, &config, batch).await.unwrap();
        }
        let bus = FakeBus::ok();
        let got = evaluate_every(&store, &bus, &config, from, to, 7, shards).await;
        assert_eq!(got, expected, "{shards} shards");
        assert_eq!(bus.accepted_states(), ["Start", "End"]);
    }
}

#[tokio::test]
async fn a_redelivered_batch_is_counted_once() {
    let config = InsightsConfig::default();
    let (records, _) = burst_stream();
    let store = MemoryStore::new();
    let batch = &batches(&records[..40], 40)[0];
    let first = count_batch(&store, &config, batch).await.unwrap();
    let again = count_batch(&store, &config, batch).await.unwrap();
    assert_eq!((first.parts_written, first.parts_already_counted), (1, 0));
    assert_eq!((again.parts_written, again.parts_already_counted), (0, 1));
    assert_eq!(first.batch_id, again.batch_id);
    let cells = store.read_cells(i64::MIN / 2, i64::MAX / 2).await.unwrap();
    let total: u64 = cells.iter().map(|c| c.cell.aggregate.count).sum();
    assert_eq!(total, 40);
}

#[tokio::test]
async fn cells_of_a_minute_being_evaluated_are_kept_as_late_data() {
    let config = InsightsConfig::default();
    let store = MemoryStore::new();
    assert!(store.acquire_lease("e", 0, 1000).await.unwrap().is_some());
    let fenced = DAY0_MS / MS_PER_MINUTE + 10;
    store.fence("e", fenced).await.unwrap();
    let late = batches(&[record("CreateUser", DAY0_MS + 5 * MS_PER_MINUTE, 0)], 1);
    let report = count_batch(&store, &config, &late[0]).await.unwrap();
    assert_eq!(report.late_cells, 1);
    let cells = store.read_cells(fenced, fenced + 1).await.unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].read_minute, fenced + 1);
    assert_eq!(cells[0].cell.minute, fenced - 5);
}

#[tokio::test]
async fn retryable_put_events_failures_are_retried_until_accepted() {
    let config = InsightsConfig::default();
    let (records, burst) = burst_stream();
    let store = MemoryStore::new();
    for batch in batches(&records, 100) {
        count_batch(&store, &config, &batch).await.unwrap();
    }
    let bus = FakeBus::failing("ThrottlingException", 3);
    let to = burst + 3 * 60 * MS_PER_MINUTE;
    let settings = fast_settings();
    let report = evaluate(&store, &bus, &config, &settings, to, "e")
        .await
        .unwrap();
    assert_eq!((report.starts, report.ends), (1, 1));
    // The Start was throttled twice, so the End got through first (EventBridge does not
    // order events anyway; consumers pair them by sharedEventID).
    assert_eq!(bus.accepted_states(), ["End", "Start"]);
    assert_eq!(
        *bus.calls.lock().unwrap(),
        [2, 2, 1],
        "only the failed entries are sent again"
    );
    assert_eq!(report.forward_retries, 2);
}

#[tokio::test]
async fn a_failed_forward_saves_nothing_and_the_next_run_sends_the_same_records() {
    let config = InsightsConfig::default();
    let (records, burst) = burst_stream();
    let store = MemoryStore::new();
    for batch in batches(&records, 100) {
        count_batch(&store, &config, &batch).await.unwrap();
    }
    let to = burst + 3 * 60 * MS_PER_MINUTE;
    let settings = fast_settings();
    let refused = FakeBus::failing("AccessDeniedException", 1);
    let err = evaluate(&store, &refused, &config, &settings, to, "e")
        .await
        .unwrap_err();
    assert!(
        matches!(err, EvaluateError::Forward { failed: 1, .. }),
        "{err}"
    );
    assert_eq!(store.clock().closed_through, None, "clock not saved");
    assert!(store.stored_keys().is_empty(), "states not saved");
    assert_eq!(refused.accepted_states(), ["End"]);

    let bus = FakeBus::ok();
    let report = evaluate(&store, &bus, &config, &settings, to, "e2")
        .await
        .unwrap();
    assert_eq!(bus.accepted_states(), ["Start", "End"]);
    assert_eq!(
        bus.accepted.lock().unwrap()[1],
        refused.accepted.lock().unwrap()[0],
        "the same End, byte for byte"
    );
    assert_eq!(store.clock().closed_through, report.closed_through);
}

#[tokio::test]
async fn a_second_evaluator_does_nothing_while_the_lease_is_held() {
    let config = InsightsConfig::default();
    let store = MemoryStore::new();
    assert!(store
        .acquire_lease("other", DAY0_MS, 60_000)
        .await
        .unwrap()
        .is_some());
    let bus = FakeBus::ok();
    let report = evaluate(&store, &bus, &config, &fast_settings(), DAY0_MS, "me")
        .await
        .unwrap();
    assert!(!report.leased);
    assert_eq!(store.clock().closing_through, None, "no fence taken");
}

#[tokio::test]
async fn a_crash_between_saving_keys_and_the_clock_counts_nothing_twice() {
    let config = InsightsConfig::default();
    let (records, burst) = burst_stream();
    let store = MemoryStore::new();
    for batch in batches(&records, 100) {
        count_batch(&store, &config, &batch).await.unwrap();
    }
    let settings = fast_settings();
    let mid = burst - 60 * MS_PER_MINUTE;
    let first = evaluate(&store, &FakeBus::ok(), &config, &settings, mid, "e")
        .await
        .unwrap();
    // Simulate the crash: the keys were saved through `first`, the clock goes back.
    let saved = store.stored_keys();
    store.acquire_lease("x", 0, 1).await.unwrap();
    store
        .save_clock_and_release(
            "x",
            &trailwatch::insights::store::Clock {
                closed_through: first.closed_after,
                ..store.clock()
            },
        )
        .await
        .unwrap();
    let again = evaluate(&store, &FakeBus::ok(), &config, &settings, mid, "e")
        .await
        .unwrap();
    assert_eq!(again.cells, first.cells);
    assert_eq!(again.cells_already_applied, first.cells);
    assert_eq!(store.stored_keys(), saved, "states unchanged by the rerun");
}

#[tokio::test]
async fn a_snapshot_of_a_local_replay_seeds_the_lambda_with_the_same_result() {
    let config = InsightsConfig::default();
    let (records, burst) = burst_stream();
    let cut = burst - 60 * MS_PER_MINUTE;
    let to = burst + 3 * 60 * MS_PER_MINUTE;

    // The reference: one engine over everything.
    let mut reference = InsightsEngine::new(config.clone());
    for text in &records {
        reference.observe(&Record::parse(text).unwrap());
    }
    assert!(reference.advance_to(cut).is_empty());
    let expected = reference.advance_to(to);
    assert_eq!(expected.len(), 2);

    // The backfill: a local replay of the log files up to `cut`, exported…
    let mut local = InsightsEngine::new(config.clone());
    for text in &records {
        local.observe(&Record::parse(text).unwrap());
    }
    local.advance_to(cut);
    let snapshot = snapshot(&local).unwrap();
    let json = serde_json::to_string(&snapshot).unwrap();
    // …loaded into the deployment, whose own counting covers the minutes after it.
    let store = MemoryStore::new();
    let payload = serde_json::from_str(&format!(r#"{{"trailwatchSnapshot":{json}}}"#)).unwrap();
    let loaded = crate::snapshot_payload(&payload).unwrap().unwrap();
    assert_eq!(
        load_snapshot(&store, &loaded, "backfill", 0, 1000)
            .await
            .unwrap(),
        1
    );
    let after: Vec<String> = records
        .iter()
        .filter(|r| {
            let minute = Record::parse(r).unwrap().event_time_ms().unwrap() / MS_PER_MINUTE;
            minute > snapshot.closed_through
        })
        .cloned()
        .collect();
    for batch in batches(&after, 40) {
        count_batch(&store, &config, &batch).await.unwrap();
    }
    let bus = FakeBus::ok();
    let report = evaluate(&store, &bus, &config, &fast_settings(), to, "e")
        .await
        .unwrap();
    assert_eq!(report.records, expected);

    // A second load now would lose the minutes evaluated since: refused.
    assert!(matches!(
        load_snapshot(&store, &loaded, "backfill", 0, 1000).await,
        Err(SnapshotError::Behind { .. })
    ));
}
