//! Runs the engine over a spec's streams as the Lambda would see them: cells delivered in
//! files every 5 minutes, 2–6 minutes late (70 %), 6–12 (25 %) or 12–18 (5 %) as the shared
//! generator delivers events; the clock advanced minute by minute, minutes closing after the
//! watermark (so the latest cells only feed the baseline).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use trailwatch::insights::{InsightsConfig, InsightsEngine, MinuteCell};
use trailwatch::time::MS_PER_MINUTE;

use crate::family::streams;
use crate::generate::{StreamSpec, MINUTES_PER_DAY};
use crate::score::{score, Score, Start};

/// Minutes between delivered files.
const FILE_MINUTES: i64 = 5;

/// A minute's events of one component are delivered in at most this many parts, each with its
/// own lag (one event per part below it).
const DELIVERY_PARTS: u64 = 8;

/// Minutes from an event to its delivery.
fn lag(rng: &mut fastrand::Rng) -> i64 {
    match rng.f64() {
        u if u < 0.70 => rng.i64(2..=6),
        u if u < 0.95 => rng.i64(6..=12),
        _ => rng.i64(12..=18),
    }
}

/// The result of one spec.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub spec: StreamSpec,
    pub score: Score,
    /// Key-minutes stepped and events generated (for throughput figures).
    pub events: u64,
    pub keys: usize,
    pub state_bytes_mean: f64,
    pub state_bytes_max: usize,
    /// What the cost model needs (`trailwatch::insights::cost`): key-minutes evaluated,
    /// Insights records emitted and the single-core seconds spent in the engine.
    pub key_minutes: u64,
    pub insight_records: u64,
    pub engine_seconds: f64,
}

/// Generates, runs and scores one spec.
pub fn evaluate(spec: &StreamSpec, config: &InsightsConfig) -> Evaluation {
    let streams = streams(spec);
    let start = spec.start_day() * MINUTES_PER_DAY;
    let eval_start = spec.eval_start_day() * MINUTES_PER_DAY;
    let eval_end = eval_start + spec.eval_days * MINUTES_PER_DAY;
    let mut total = Score::default();
    let (mut events, mut keys, mut bytes_sum, mut bytes_max) = (0u64, 0usize, 0f64, 0usize);
    let (mut key_minutes, mut insight_records, mut engine_time) = (0u64, 0u64, Duration::ZERO);
    for (i, stream) in streams.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(spec.seed ^ 0x5eed_0000 ^ (i as u64) << 40);
        let mut engine = InsightsEngine::new(config.clone());
        let mut pending: BTreeMap<i64, Vec<MinuteCell>> = BTreeMap::new();
        let mut records = Vec::new();
        for m in start..eval_end {
            for (component, n) in stream.events(m, &mut rng) {
                events += n;
                // Each event has its own lag: up to DELIVERY_PARTS parts of the minute's events.
                let parts = n.min(DELIVERY_PARTS);
                for part in 0..parts {
                    let k = n / parts + u64::from(part < n % parts);
                    let at = m + lag(&mut rng);
                    let file = (at + FILE_MINUTES - 1).div_euclid(FILE_MINUTES) * FILE_MINUTES;
                    pending
                        .entry(file)
                        .or_default()
                        .push(stream.cell(component, m, k));
                }
            }
            let timed = Instant::now();
            records.extend(engine.advance_to(m * MS_PER_MINUTE));
            while let Some(entry) = pending.first_entry() {
                if *entry.key() > m {
                    break;
                }
                for cell in entry.remove() {
                    engine.observe_cell(&cell);
                }
            }
            engine_time += timed.elapsed();
        }
        for cells in pending.into_values() {
            for cell in cells {
                engine.observe_cell(&cell);
            }
        }
        records.extend(engine.finish());
        let starts: Vec<Start> = records
            .iter()
            .filter_map(|r| Start::from_record(r))
            .collect();
        total.merge(&score(&stream.labels, &starts, eval_start, eval_end, 1));
        key_minutes += engine.stats().minutes_evaluated + engine.stats().late_minutes;
        insight_records += records.len() as u64;
        let sizes = engine.state_sizes();
        keys += sizes.keys;
        bytes_sum += sizes.mean_bytes * sizes.keys as f64;
        bytes_max = bytes_max.max(sizes.max_bytes);
    }
    Evaluation {
        spec: *spec,
        score: total,
        events,
        keys,
        state_bytes_mean: bytes_sum / keys.max(1) as f64,
        state_bytes_max: bytes_max,
        key_minutes,
        insight_records,
        engine_seconds: engine_time.as_secs_f64(),
    }
}
