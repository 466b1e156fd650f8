//! Sharded evaluation (docs/insights-design.md §3.10): the keys of an evaluation split by
//! their pinned hash into shards, each a whole [`InsightsEngine`] of its own, closed in
//! parallel on the invocation's cores and merged back into one engine's output.
//!
//! Keys are independent in the detector (a key's state, baseline and attributions are its
//! own); the only thing shards share is the data's origin (warm-up and baseline days count
//! from its UTC day), which [`ShardedEngine::close_minutes_through`] agrees on before any
//! shard closes. So a sharded evaluation gives exactly the records of one engine, in the same
//! order, whatever the shard count.

use super::aggregate::MinuteCell;
use super::engine::{Emitted, EngineStats, InsightsEngine, KeyAttributions};
use super::key::SeriesKey;
use super::{InsightsConfig, StateDecodeError};

/// The most shards: more than the cores of any Lambda (6 vCPUs at 10 GB) and of most hosts.
pub const MAX_SHARDS: usize = 64;

/// The shard of `shards` that owns `key`: the top bits of its pinned hash, so the split is
/// the same in every invocation, version and host.
pub fn shard_of(key: &SeriesKey, shards: usize) -> usize {
    let shards = shards.clamp(1, MAX_SHARDS) as u64;
    ((u128::from(key.stable_hash()) * u128::from(shards)) >> 64) as usize
}

/// The shard count for this process: one per available core, at most [`MAX_SHARDS`].
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_SHARDS)
}

/// N engines, each owning the keys of its hash range; the façade the evaluator drives.
pub struct ShardedEngine {
    shards: Vec<InsightsEngine>,
}

impl ShardedEngine {
    pub fn new(config: InsightsConfig, shards: usize) -> Self {
        ShardedEngine {
            shards: (0..shards.clamp(1, MAX_SHARDS))
                .map(|_| InsightsEngine::new(config.clone()))
                .collect(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, key: &SeriesKey) -> &InsightsEngine {
        &self.shards[shard_of(key, self.shards.len())]
    }

    fn shard_mut(&mut self, key: &SeriesKey) -> &mut InsightsEngine {
        let n = self.shards.len();
        &mut self.shards[shard_of(key, n)]
    }

    pub fn set_origin_minute(&mut self, minute: Option<i64>) {
        self.shards
            .iter_mut()
            .for_each(|s| s.set_origin_minute(minute));
    }

    pub fn set_closed_through(&mut self, minute: Option<i64>) {
        self.shards
            .iter_mut()
            .for_each(|s| s.set_closed_through(minute));
    }

    /// The origin every shard agrees on (after a close).
    pub fn origin_minute(&self) -> Option<i64> {
        self.shards.iter().filter_map(|s| s.origin_minute()).min()
    }

    pub fn observe_cell(&mut self, cell: &MinuteCell) {
        self.shard_mut(&cell.key).observe_cell(cell);
    }

    pub fn import_key_state(
        &mut self,
        key: &SeriesKey,
        bytes: &[u8],
    ) -> Result<(), StateDecodeError> {
        self.shard_mut(key).import_key_state(key, bytes)
    }

    pub fn import_key_attributions(&mut self, key: &SeriesKey, attrs: KeyAttributions) {
        self.shard_mut(key).import_key_attributions(key, attrs);
    }

    pub fn export_key_state(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        self.shard(key).export_key_state(key)
    }

    pub fn export_key_attributions(&self, key: &SeriesKey) -> Option<&KeyAttributions> {
        self.shard(key).export_key_attributions(key)
    }

    /// Every key held, shard by shard.
    pub fn keys(&self) -> impl Iterator<Item = &SeriesKey> {
        self.shards.iter().flat_map(|s| s.keys())
    }

    pub fn open_insight_keys(&self) -> Vec<SeriesKey> {
        self.shards
            .iter()
            .flat_map(|s| s.open_insight_keys())
            .collect()
    }

    /// The shards' statistics added up.
    pub fn stats(&self) -> EngineStats {
        self.shards
            .iter()
            .map(InsightsEngine::stats)
            .fold(EngineStats::default(), |a, b| EngineStats {
                minutes_evaluated: a.minutes_evaluated + b.minutes_evaluated,
                late_minutes: a.late_minutes + b.late_minutes,
                starts: a.starts + b.starts,
                ends: a.ends + b.ends,
            })
    }

    /// Closes every shard through `through`, one thread per shard, and returns the records in
    /// the order one engine holding every key would give.
    pub fn close_minutes_through(&mut self, through: i64) -> Vec<String> {
        let origin = self
            .shards
            .iter()
            .filter_map(|s| s.origin_through(through))
            .min();
        self.set_origin_minute(origin);
        let mut emitted: Vec<Emitted> = if self.shards.len() == 1 {
            self.shards[0].close_through_emitted(through)
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = self
                    .shards
                    .iter_mut()
                    .map(|shard| scope.spawn(move || shard.close_through_emitted(through)))
                    .collect();
                running
                    .into_iter()
                    // A shard's panic is the detector's own bug: carried to the caller as one.
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        emitted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        emitted.into_iter().map(|e| e.json).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::key::InsightType;
    use crate::insights::MinuteAggregate;

    fn key(n: usize) -> SeriesKey {
        SeriesKey {
            account: format!("{:012}", 111_122_223_333u64 + n as u64 / 200),
            region: "us-east-1".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: format!("Api{}", n % 200),
            insight_type: InsightType::ApiCallRateInsight,
            error_code: None,
        }
    }

    #[test]
    fn shards_split_keys_evenly_and_stably() {
        let mut counts = [0u32; 8];
        for n in 0..8_000 {
            counts[shard_of(&key(n), 8)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of(&key(1), 1), 0);
        assert!((0..100).all(|n| shard_of(&key(n), MAX_SHARDS + 10) < MAX_SHARDS));
    }

    /// 40 keys, 3 quiet days then a burst on key 7 (and a late quiet start for key 30, whose
    /// shard alone would see a later origin).
    fn cells() -> Vec<MinuteCell> {
        let day = 1440;
        let mut out = Vec::new();
        for m in 0..4 * day {
            for n in 0..40 {
                if n == 30 && m < 2 * day {
                    continue;
                }
                let base = 3 + (n as u64 % 5);
                let burst = n == 7 && (3 * day + 600..3 * day + 640).contains(&m);
                out.push(MinuteCell {
                    key: key(n),
                    minute: 28_000_000 + m,
                    aggregate: MinuteAggregate {
                        count: if burst {
                            base * 40
                        } else {
                            base + (m as u64 * 7 + n as u64) % 3
                        },
                        ..MinuteAggregate::default()
                    },
                });
            }
        }
        out
    }

    #[test]
    fn a_sharded_evaluation_gives_one_engines_records_in_its_order() {
        let cells = cells();
        let last = cells.iter().map(|c| c.minute).max().unwrap() + 120;
        let run = |shards: usize| {
            let mut engine = ShardedEngine::new(InsightsConfig::default(), shards);
            for c in &cells {
                engine.observe_cell(c);
            }
            // Two closes, as two evaluator runs would.
            let mut out = engine.close_minutes_through(28_000_000 + 3 * 1440);
            out.extend(engine.close_minutes_through(last));
            (out, engine.origin_minute(), engine.stats())
        };
        let (one, origin, stats) = run(1);
        assert!(stats.starts >= 1, "the burst fires: {stats:?}");
        assert_eq!(origin, Some(28_000_000));
        for shards in [2, 3, 8] {
            assert_eq!(run(shards), (one.clone(), origin, stats), "{shards} shards");
        }
    }
}
