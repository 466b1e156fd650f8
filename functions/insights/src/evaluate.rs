//! Evaluation: every minute, close the minutes that are past the watermark, run the detector
//! over the keys they touched (and the keys with an open Insight), forward the Starts and
//! Ends to EventBridge, then save the state.
//!
//! One evaluator at a time: the run holds a lease in the clock item (a conditional write with
//! an expiry longer than the function's timeout, so a run cannot outlive it); a second
//! scheduled invocation that finds it taken does nothing. Order of a run and its crash
//! windows:
//!
//! 1. lease and clock, read in the same conditional write;
//! 2. fence: `closing_through = T` — from now on counting stores cells of minutes ≤ T as late
//!    (under `T + 1`), so nothing is written under a minute this run reads. A crash after the
//!    fence loses nothing: the next run reads the same minutes again.
//! 3. read the cells of `(closed_through, T]`, load the keys' states, run the engine;
//! 4. forward the records; if any is not accepted the run fails *before saving*, and the next
//!    run recomputes the same records (their ids are deterministic, so a consumer sees a
//!    repeat at worst, never a different Insight);
//! 5. save every key evaluated with `through = T`, then the clock (`closed_through = T`, open
//!    keys) with the lease given back in the same write. A crash between the two: the next run reads those minutes again but skips, per
//!    key, the cells at or before the key's saved `through`, so nothing is counted twice.
//!
//! The run's keys are split by hash into shards closed in parallel on the function's cores
//! (`trailwatch::insights::shard`): the records are those of one engine, in its order.
//!
//! Idle keys cost nothing: a key is loaded only when it has cells or an open Insight; the
//! minutes it missed are closed lazily the next time it is touched (same result as the CLI
//! engine, which steps them as they pass).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use trailwatch::forward::{forward, Entry, EventBus, PutEventsLimits, RetryPolicy};
use trailwatch::insights::shard::{default_shards, ShardedEngine};
use trailwatch::insights::store::{Clock, EvaluationStore, StoreError, StoredKey};
use trailwatch::insights::{InsightsConfig, SeriesKey};
use trailwatch::time::MS_PER_MINUTE;

/// The lease outlives any run: three times the function's 60-second timeout.
pub const DEFAULT_LEASE_MS: i64 = 3 * 60 * 1000;
/// Minutes one run closes at most (a day: 24 hourly queries), so a run after an outage or the
/// first runs of a deployment stay within the timeout; later runs catch up the rest.
pub const DEFAULT_MAX_CATCH_UP_MINUTES: i64 = 1440;
/// Where the first run of a deployment starts: as far back as cells are kept (their TTL).
pub const DEFAULT_FIRST_RUN_LOOKBACK_MINUTES: i64 = 9 * 1440;

#[derive(Debug, Clone)]
pub struct EvaluateSettings {
    /// EventBridge `source` of the forwarded records.
    pub source: String,
    pub lease_ms: i64,
    pub max_catch_up_minutes: i64,
    pub first_run_lookback_minutes: i64,
    /// Shards the run's keys are split into, closed in parallel (one per core by default).
    pub shards: usize,
    pub limits: PutEventsLimits,
    pub retry: RetryPolicy,
}

impl EvaluateSettings {
    pub fn new(source: &str) -> Self {
        EvaluateSettings {
            source: source.to_owned(),
            lease_ms: DEFAULT_LEASE_MS,
            max_catch_up_minutes: DEFAULT_MAX_CATCH_UP_MINUTES,
            first_run_lookback_minutes: DEFAULT_FIRST_RUN_LOOKBACK_MINUTES,
            shards: default_shards(),
            limits: PutEventsLimits::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// What an evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// False when another evaluator holds the lease (nothing else was done).
    pub leased: bool,
    /// Minutes closed: `(after, through]`.
    pub closed_after: Option<i64>,
    pub closed_through: Option<i64>,
    pub cells: usize,
    /// Cells skipped because their key's saved state already covered them.
    pub cells_already_applied: usize,
    pub keys_loaded: usize,
    /// Shards the keys were closed in.
    pub shards: usize,
    pub keys_saved: usize,
    pub open_insights: usize,
    pub starts: usize,
    pub ends: usize,
    pub forward_calls: usize,
    pub forward_retries: usize,
    /// The lease went back with the saved clock.
    #[serde(skip)]
    pub lease_released: bool,
    /// The Insights records forwarded (JSON), in order.
    #[serde(skip)]
    pub records: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("{failed} of {total} Insights records not forwarded (first: {first}); state not saved, the next run retries")]
    Forward {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// Runs one evaluation at `now_ms` as `owner` (unique per invocation).
pub async fn evaluate<S, B>(
    store: &S,
    bus: &B,
    config: &InsightsConfig,
    settings: &EvaluateSettings,
    now_ms: i64,
    owner: &str,
) -> Result<EvaluationReport, EvaluateError>
where
    S: EvaluationStore,
    B: EventBus,
{
    let Some(clock) = store
        .acquire_lease(owner, now_ms, settings.lease_ms)
        .await?
    else {
        tracing::info!(owner, "evaluation lease held by another run; nothing to do");
        return Ok(EvaluationReport::default());
    };
    let result = evaluate_leased(store, bus, config, settings, clock, now_ms, owner).await;
    // A successful run gave the lease back with the clock; a failed one gives it back here.
    if !matches!(&result, Ok(r) if r.lease_released) {
        if let Err(e) = store.release_lease(owner).await {
            tracing::warn!(owner, reason = %e, "lease not released; it expires by itself");
        }
    }
    result
}

async fn evaluate_leased<S, B>(
    store: &S,
    bus: &B,
    config: &InsightsConfig,
    settings: &EvaluateSettings,
    clock: Clock,
    now_ms: i64,
    owner: &str,
) -> Result<EvaluationReport, EvaluateError>
where
    S: EvaluationStore,
    B: EventBus,
{
    let mut report = EvaluationReport {
        leased: true,
        ..EvaluationReport::default()
    };
    let target = now_ms.div_euclid(MS_PER_MINUTE) - i64::from(config.watermark_minutes) - 1;
    let after = clock
        .closed_through
        .unwrap_or(target - settings.first_run_lookback_minutes);
    let through = target.min(after + settings.max_catch_up_minutes);
    if through <= after {
        return Ok(report);
    }
    report.closed_after = Some(after);
    report.closed_through = Some(through);
    if clock.closing_through.is_none_or(|c| c < through) {
        store.fence(owner, through).await?;
    }
    let mut engine =
        load_engine(store, config, settings, &clock, after, through, &mut report).await?;
    let records = engine.close_minutes_through(through);
    forward_records(bus, settings, &records, &mut report).await?;
    save_engine(store, &engine, through, owner, &mut report).await?;
    report.records = records;
    Ok(report)
}

/// An engine with the cells of `(after, through]` and the state of the keys they touch plus
/// the keys with an open Insight; cells a key's saved state already covers are skipped.
async fn load_engine<S: EvaluationStore>(
    store: &S,
    config: &InsightsConfig,
    settings: &EvaluateSettings,
    clock: &Clock,
    after: i64,
    through: i64,
    report: &mut EvaluationReport,
) -> Result<ShardedEngine, EvaluateError> {
    let cells = store.read_cells(after, through).await?;
    report.cells = cells.len();
    let keys: BTreeSet<SeriesKey> = cells
        .iter()
        .map(|c| c.cell.key.clone())
        .chain(clock.open_keys.iter().cloned())
        .collect();
    let keys: Vec<SeriesKey> = keys.into_iter().collect();
    let loaded = store.load_keys(&keys).await?;
    report.keys_loaded = loaded.len();

    let mut engine = ShardedEngine::new(config.clone(), settings.shards);
    report.shards = engine.shard_count();
    engine.set_origin_minute(clock.origin_minute);
    engine.set_closed_through(clock.closed_through);
    let mut applied_through: BTreeMap<SeriesKey, i64> = BTreeMap::new();
    for (key, stored) in loaded {
        if let Err(e) = engine.import_key_state(&key, &stored.state) {
            tracing::error!(key = %key, reason = %e, "unreadable key state; the key starts afresh");
            continue;
        }
        engine.import_key_attributions(&key, stored.attributions);
        applied_through.insert(key, stored.through);
    }
    for stored in &cells {
        if applied_through
            .get(&stored.cell.key)
            .is_some_and(|&t| stored.read_minute <= t)
        {
            report.cells_already_applied += 1;
            continue;
        }
        engine.observe_cell(&stored.cell);
    }
    Ok(engine)
}

/// Saves every key evaluated as valid through `through`, then the clock with the lease.
async fn save_engine<S: EvaluationStore>(
    store: &S,
    engine: &ShardedEngine,
    through: i64,
    owner: &str,
    report: &mut EvaluationReport,
) -> Result<(), EvaluateError> {
    let saved: Vec<(SeriesKey, StoredKey)> = engine
        .keys()
        .filter_map(|key| {
            Some((
                key.clone(),
                StoredKey {
                    through,
                    state: engine.export_key_state(key)?,
                    attributions: engine.export_key_attributions(key)?.clone(),
                },
            ))
        })
        .collect();
    store.save_keys(&saved).await?;
    report.keys_saved = saved.len();
    let open_keys = engine.open_insight_keys();
    report.open_insights = open_keys.len();
    store
        .save_clock_and_release(
            owner,
            &Clock {
                closed_through: Some(through),
                closing_through: None,
                origin_minute: engine.origin_minute(),
                open_keys,
            },
        )
        .await?;
    report.lease_released = true;
    Ok(())
}

async fn forward_records<B: EventBus>(
    bus: &B,
    settings: &EvaluateSettings,
    records: &[String],
    report: &mut EvaluationReport,
) -> Result<(), EvaluateError> {
    if records.is_empty() {
        return Ok(());
    }
    let entries: Vec<Entry> = records
        .iter()
        .map(|json| {
            let value: Value = serde_json::from_str(json).unwrap_or(Value::Null);
            match value["insightDetails"]["state"].as_str() {
                Some("Start") => report.starts += 1,
                Some("End") => report.ends += 1,
                _ => {}
            }
            Entry::insight(&settings.source, json, value["eventTime"].as_str())
        })
        .collect();
    let outcome = forward(
        bus,
        &entries,
        &settings.limits,
        &settings.retry,
        tokio::time::sleep,
    )
    .await;
    report.forward_calls = outcome.calls;
    report.forward_retries = outcome.retries;
    match outcome.failed.first() {
        None => Ok(()),
        Some((i, reason)) => Err(EvaluateError::Forward {
            failed: outcome.failed.len(),
            total: entries.len(),
            first: format!("record {i}: {reason}"),
        }),
    }
}
