//! The Insights engine: records in, Insights records out, one closed minute at a time.
//!
//! Used the same way by the CLI backtest and the Lambda evaluator: [`InsightsEngine::observe`]
//! every record as it arrives (any order), [`InsightsEngine::advance_to`] the wall clock
//! (minutes close at `now − watermark`), [`InsightsEngine::finish`] at the end of a replay.
//! Per-key hot state and attribution sketches can be exported and imported, so a Lambda can
//! keep them in DynamoDB between invocations.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::aggregate::{MinuteAggregate, MinuteAggregator, MinuteCell, ObserveStats};
use super::config::{DetectorParams, InsightsConfig, MINUTE_RING};
use super::detector::{InsightState, KeyState, StateDecodeError, StepContext, Transition};
use super::key::SeriesKey;
use super::output::{attributions, insight_record};
use crate::record::Record;
use crate::time::MS_PER_MINUTE;

const MINUTES_PER_DAY: i64 = 1440;
/// Daily attribution rollups kept per key: the 7 baseline days, the start day and one spare.
const ROLLUP_DAYS: i64 = 9;

/// Attribution sketches of one key, kept out of the hot state (docs/insights-design.md §3.6): the last closed
/// minutes, daily rollups, and the open Insight's sketches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyAttributions {
    recent: VecDeque<(i64, MinuteAggregate)>,
    days: Vec<(i64, MinuteAggregate)>,
    insight: Option<MinuteAggregate>,
    baseline: Option<MinuteAggregate>,
}

impl KeyAttributions {
    fn add_to_day(&mut self, minute: i64, agg: &MinuteAggregate) {
        let day = minute.div_euclid(MINUTES_PER_DAY);
        match self.days.iter_mut().find(|(d, _)| *d == day) {
            Some((_, a)) => a.merge(agg),
            None => {
                self.days.push((day, agg.clone()));
                self.days.sort_by_key(|(d, _)| *d);
                let newest = self.days.last().map_or(day, |(d, _)| *d);
                self.days.retain(|(d, _)| *d > newest - ROLLUP_DAYS);
            }
        }
    }

    /// A closed minute: kept while it can be part of a Start window, then rolled into its day.
    fn push_minute(&mut self, minute: i64, agg: MinuteAggregate) {
        if let Some(open) = self.insight.as_mut() {
            open.merge(&agg);
        }
        while let Some((m, _)) = self.recent.front() {
            if *m > minute - MINUTE_RING as i64 {
                break;
            }
            if let Some((m, old)) = self.recent.pop_front() {
                self.add_to_day(m, &old);
            }
        }
        self.recent.push_back((minute, agg));
    }

    fn merged_recent(&self, from: i64, to_inclusive: i64) -> MinuteAggregate {
        let mut out = MinuteAggregate::default();
        for (m, a) in &self.recent {
            if (from..=to_inclusive).contains(m) {
                out.merge(a);
            }
        }
        out
    }

    /// Whether the dominant principal and the dominant user agent of minutes `[start, t]`
    /// both acted on the key in its baseline days (see `DetectorParams::familiar_guard_beta`).
    fn familiar(&self, start: i64, t: i64) -> bool {
        let burst = self.merged_recent(start, t);
        let baseline = self.baseline_for(start);
        let known = |now: &super::sketch::SpaceSaving, before: &super::sketch::SpaceSaving| {
            now.top(1)
                .first()
                .is_some_and(|top| before.entries().iter().any(|e| e.value == top.value))
        };
        known(&burst.user_identity_arn, &baseline.user_identity_arn)
            && known(&burst.user_agent, &baseline.user_agent)
    }

    fn baseline_for(&self, start: i64) -> MinuteAggregate {
        let first_day = start.div_euclid(MINUTES_PER_DAY) - 7;
        let mut out = MinuteAggregate::default();
        for (d, a) in &self.days {
            if *d >= first_day && *d <= start.div_euclid(MINUTES_PER_DAY) {
                out.merge(a);
            }
        }
        out.merge(&self.merged_recent(first_day * MINUTES_PER_DAY, start - 1));
        out
    }
}

struct KeyEntry {
    state: KeyState,
    params: usize,
    attrs: KeyAttributions,
}

/// What the engine did, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStats {
    /// (key, minute) cells evaluated on time.
    pub minutes_evaluated: u64,
    /// (key, minute) cells that arrived after their minute closed (baseline only).
    pub late_minutes: u64,
    pub starts: u64,
    pub ends: u64,
}

/// Encoded hot-state size over the keys held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StateSizeStats {
    pub keys: usize,
    pub mean_bytes: f64,
    pub max_bytes: usize,
}

/// Records in, Insights records (JSON) out. See the module documentation.
pub struct InsightsEngine {
    config: InsightsConfig,
    params: Vec<DetectorParams>,
    pending: MinuteAggregator,
    keys: Vec<KeyEntry>,
    origin_minute: Option<i64>,
    closed_through: Option<i64>,
    stats: EngineStats,
}

impl InsightsEngine {
    pub fn new(config: InsightsConfig) -> Self {
        InsightsEngine {
            params: Vec::new(),
            pending: MinuteAggregator::new(&config),
            config,
            keys: Vec::new(),
            origin_minute: None,
            closed_through: None,
            stats: EngineStats::default(),
        }
    }

    pub fn config(&self) -> &InsightsConfig {
        &self.config
    }

    /// Counts one record (management events by default; Insights records are skipped).
    /// Returns the number of series it counted in.
    pub fn observe(&mut self, record: &Record<'_>) -> usize {
        self.pending.observe(record)
    }

    /// Closes every minute `t` with `t + 1 + watermark ≤ now` and returns the Insights records
    /// (JSON, one per Start/End) this produced, ordered by the minute that triggered them.
    pub fn advance_to(&mut self, now_ms: i64) -> Vec<String> {
        let now = now_ms.div_euclid(MS_PER_MINUTE);
        self.close_through(now - i64::from(self.config.watermark_minutes) - 1)
    }

    /// End of a replay: closes all remaining minutes as if no more data came, until every open
    /// Insight has ended.
    pub fn finish(&mut self) -> Vec<String> {
        self.sync_keys();
        let last_pending = (0..self.keys.len() as u32)
            .filter_map(|id| self.pending.last_minute(id))
            .max();
        let Some(last) = last_pending.max(self.closed_through) else {
            return Vec::new();
        };
        let mut out = self.close_through(last);
        let p = &self.config.detector;
        let drain = i64::from(p.max_insight_minutes + p.quiet_minutes + p.cooldown_minutes) + 16;
        out.extend(self.close_through(last + drain));
        out
    }

    /// The last closed minute (minutes since the epoch), if any.
    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through
    }

    /// Restores the clock of a persisted engine: minutes up to `minute` count as closed.
    pub fn set_closed_through(&mut self, minute: Option<i64>) {
        self.closed_through = minute;
    }

    /// First minute of data: warm-up and baseline days count from its UTC day.
    pub fn origin_minute(&self) -> Option<i64> {
        self.origin_minute
    }

    /// Sets the origin (e.g. the onboarding time persisted by the Lambda, or the start of a
    /// backfill). Earlier data seen later still moves it back.
    pub fn set_origin_minute(&mut self, minute: Option<i64>) {
        self.origin_minute = minute;
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn observe_stats(&self) -> ObserveStats {
        self.pending.stats()
    }

    /// Every key the engine holds.
    pub fn keys(&self) -> &[SeriesKey] {
        self.pending.index().keys()
    }

    /// The hot state of one key in its binary form (for DynamoDB), if the key is known.
    pub fn export_key_state(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let id = self.pending.index().get(key.as_ref())?;
        self.keys.get(id as usize).map(|e| e.state.encode())
    }

    /// Replaces the hot state of a key with a persisted one.
    pub fn import_key_state(
        &mut self,
        key: &SeriesKey,
        bytes: &[u8],
    ) -> Result<(), StateDecodeError> {
        let state = KeyState::decode(bytes)?;
        let id = self.entry_id(key);
        self.keys[id].state = state;
        Ok(())
    }

    /// The attribution sketches of one key (serde-serialisable), if the key is known.
    pub fn export_key_attributions(&self, key: &SeriesKey) -> Option<&KeyAttributions> {
        let id = self.pending.index().get(key.as_ref())?;
        self.keys.get(id as usize).map(|e| &e.attrs)
    }

    pub fn import_key_attributions(&mut self, key: &SeriesKey, attrs: KeyAttributions) {
        let id = self.entry_id(key);
        self.keys[id].attrs = attrs;
    }

    /// Counts a (key, minute) cell aggregated elsewhere: the Lambda's counting invocations
    /// aggregate log batches and its evaluator reads the cells back from the state table.
    /// Same effect as observing the cell's records one by one.
    pub fn observe_cell(&mut self, cell: &MinuteCell) {
        self.pending.add_cell(cell);
    }

    /// Closes every minute up to `through` (minutes since the epoch) and returns the Insights
    /// records this produced, as [`Self::advance_to`] does for `now − watermark − 1`. For an
    /// evaluator that bounds how far one run catches up.
    pub fn close_minutes_through(&mut self, through: i64) -> Vec<String> {
        self.close_through(through)
    }

    /// The keys with an Insight open now: they must be evaluated every minute even without
    /// events (their End depends on quiet minutes).
    pub fn open_insight_keys(&self) -> Vec<SeriesKey> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state.open_insight().is_some())
            .map(|(id, _)| self.pending.index().key(id as u32).clone())
            .collect()
    }

    /// Encoded hot-state sizes over all keys.
    pub fn state_sizes(&self) -> StateSizeStats {
        let sizes: Vec<usize> = self.keys.iter().map(|e| e.state.encode().len()).collect();
        StateSizeStats {
            keys: sizes.len(),
            mean_bytes: sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
            max_bytes: sizes.iter().copied().max().unwrap_or(0),
        }
    }

    fn entry_id(&mut self, key: &SeriesKey) -> usize {
        let id = self.pending.intern(key) as usize;
        self.sync_keys();
        id
    }

    /// Creates entries for keys first seen since the last call, and moves the origin back to
    /// the earliest pending minute.
    fn sync_keys(&mut self) {
        while self.keys.len() < self.pending.index().len() {
            let key = self.pending.index().key(self.keys.len() as u32);
            let params = self.params_index(key.clone());
            self.keys.push(KeyEntry {
                state: KeyState::new(),
                params,
                attrs: KeyAttributions::default(),
            });
        }
    }

    /// Index of the parameter set of a key (shared by all keys without overrides).
    fn params_index(&mut self, key: SeriesKey) -> usize {
        let p = self
            .config
            .params_for(&key.event_source, &key.event_name, key.insight_type);
        match self.params.iter().position(|q| *q == p) {
            Some(i) => i,
            None => {
                self.params.push(p);
                self.params.len() - 1
            }
        }
    }

    fn close_through(&mut self, through: i64) -> Vec<String> {
        self.close_through_emitted(through)
            .into_iter()
            .map(|e| e.json)
            .collect()
    }

    /// The origin closing through `through` would use: the persisted one moved back to the
    /// earliest pending minute at or before `through`. The shards of a
    /// [`super::shard::ShardedEngine`] must agree on it (warm-up days count from it).
    pub(crate) fn origin_through(&self, through: i64) -> Option<i64> {
        (0..self.pending.index().len() as u32)
            .filter_map(|id| self.pending.first_minute(id))
            .filter(|&first| first <= through)
            .chain(self.origin_minute)
            .min()
    }

    /// Closes through `through` and returns the records in their output order: by the minute
    /// that triggered them, Ends before Starts, then by key (so shards merge into the order
    /// one engine gives).
    pub(crate) fn close_through_emitted(&mut self, through: i64) -> Vec<Emitted> {
        if self.closed_through.is_some_and(|c| through <= c) {
            return Vec::new();
        }
        self.sync_keys();
        self.origin_minute = self.origin_through(through);
        let Some(origin) = self.origin_minute else {
            self.closed_through = Some(through);
            return Vec::new();
        };
        let origin_day = origin.div_euclid(MINUTES_PER_DAY);
        let mut emitted = Vec::new();
        for id in 0..self.keys.len() {
            self.close_key(id, through, origin_day, &mut emitted);
        }
        self.closed_through = Some(through);
        emitted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for e in &emitted {
            if e.order == 1 {
                self.stats.starts += 1;
            } else {
                self.stats.ends += 1;
            }
        }
        emitted
    }

    /// Steps key `id` through its pending minutes up to `through`, then its idle minutes.
    fn close_key(&mut self, id: usize, through: i64, origin_day: i64, out: &mut Vec<Emitted>) {
        let drained = self.pending.drain_key_through(id as u32, through);
        let entry = &mut self.keys[id];
        let params = &self.params[entry.params];
        let live = entry
            .state
            .last_minute()
            .is_some_and(|l| l < through && entry.state.is_live_at(l + 1, params));
        if drained.is_empty() && !live {
            return;
        }
        let mut emitter = Emitter {
            key: self.pending.index().key(id as u32),
            watermark: i64::from(self.config.watermark_minutes),
            top: self.config.attribution_top,
            out,
        };
        let ctx = StepContext::new(params, origin_day);
        let mut transitions = Vec::new();
        for (minute, agg) in drained {
            let count = u32::try_from(agg.count).unwrap_or(u32::MAX);
            let late = self.closed_through.is_some_and(|c| minute <= c)
                || entry.state.last_minute().is_some_and(|l| minute <= l);
            if late {
                entry.state.add_late(minute, count);
                entry.attrs.add_to_day(minute, &agg);
                self.stats.late_minutes += 1;
                continue;
            }
            entry.with_familiar(ctx, |state, ctx| {
                state.advance_idle(minute - 1, ctx, &mut transitions)
            });
            emitter.emit(&mut entry.attrs, &mut transitions);
            entry.attrs.push_minute(minute, agg);
            entry.with_familiar(ctx, |state, ctx| {
                state.step(minute, count, ctx, &mut transitions)
            });
            emitter.emit(&mut entry.attrs, &mut transitions);
            self.stats.minutes_evaluated += 1;
        }
        entry.with_familiar(ctx, |state, ctx| {
            state.advance_idle(through, ctx, &mut transitions)
        });
        emitter.emit(&mut entry.attrs, &mut transitions);
    }
}

impl KeyEntry {
    /// Runs `f` on the key's state with the attribution check of familiar bursts.
    fn with_familiar(
        &mut self,
        ctx: StepContext<'_>,
        f: impl FnOnce(&mut KeyState, &StepContext<'_>),
    ) {
        let attrs = &self.attrs;
        let familiar = |start, t| attrs.familiar(start, t);
        let ctx = StepContext {
            familiar: Some(&familiar),
            ..ctx
        };
        f(&mut self.state, &ctx);
    }
}

/// An Insights record produced while closing minutes, with its place in the output order.
pub(crate) struct Emitted {
    closed_minute: i64,
    key: SeriesKey,
    /// 1 for a Start, 0 for an End (Ends of a minute come first).
    order: u8,
    pub(crate) json: String,
}

impl Emitted {
    pub(crate) fn order_key(&self) -> (i64, u8, &SeriesKey) {
        (self.closed_minute, self.order, &self.key)
    }
}

/// Turns one key's transitions into records with their attributions.
struct Emitter<'a> {
    key: &'a SeriesKey,
    watermark: i64,
    top: usize,
    out: &'a mut Vec<Emitted>,
}

impl Emitter<'_> {
    fn emit(&mut self, attrs: &mut KeyAttributions, transitions: &mut Vec<Transition>) {
        for t in transitions.drain(..) {
            let (insight, baseline) = match t.state {
                InsightState::Start => {
                    let insight = attrs.merged_recent(t.start_minute, t.closed_minute);
                    let baseline = attrs.baseline_for(t.start_minute);
                    attrs.insight = Some(insight.clone());
                    attrs.baseline = Some(baseline.clone());
                    (insight, baseline)
                }
                InsightState::End => (
                    attrs.insight.take().unwrap_or_default(),
                    attrs.baseline.take().unwrap_or_default(),
                ),
            };
            let attribs = attributions(
                self.key.insight_type,
                &insight,
                t.insight_duration,
                &baseline,
                t.baseline_duration,
                self.top,
            );
            let detected = (t.closed_minute + 1 + self.watermark) * MS_PER_MINUTE;
            let record = insight_record(self.key, &t, Some(attribs), Some(detected));
            self.out.push(Emitted {
                closed_minute: t.closed_minute,
                key: self.key.clone(),
                order: u8::from(t.state == InsightState::Start),
                json: record.to_json(),
            });
        }
    }
}
