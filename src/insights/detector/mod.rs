//! The per-key detector (docs/insights-design.md §3.3–3.5): a state machine stepped one closed
//! minute at a time.
//!
//! * expected count `μ_t` ([`baseline`]): seasonal (hour of day × weekday/weekend) from an
//!   8-day ring of hourly *cleaned* counts, shrunk towards the 7-day mean, recomputed once per
//!   UTC day;
//! * score ([`score`]): Poisson GLR `S = X ln(X/M) − (X − M)` on 1/5/15-minute windows, and a
//!   Poisson CUSUM for sustained rises ([`cusum`]);
//! * Start when some window passes score, ratio and excess gates and beats the surprise guard
//!   ([`guard`]: β × the key's largest score of the previous 7 UTC days);
//! * End after `Q` cold minutes (hysteresis) or after `T_MAX`; cool-down after an End;
//! * while an Insight is open, the baseline is fed winsorised counts and the guard is frozen.
//!
//! Each step is O(|W|) apart from one O(192) recompute per key per UTC day. Idle minutes cost
//! nothing: they are applied on the next touch ([`KeyState::step`] / [`KeyState::advance_idle`]).
//! [`KeyState::encode`] ([`codec`]) gives the compact binary form persisted per key.

mod baseline;
mod codec;
mod cusum;
mod guard;
mod score;
#[cfg(test)]
mod tests;

pub use codec::StateDecodeError;
pub use score::glr;

use super::config::{DetectorParams, MAX_WINDOWS, MINUTE_RING};

/// Hourly slots of the baseline ring: 8 days.
pub const RING_HOURS: usize = 192;
/// Daily slots of the surprise guard and of weekly recurrence (28 previous days + today).
pub const GUARD_DAYS: usize = 29;

const MINUTES_PER_DAY: i64 = 1440;
const BASELINE_DAYS: i64 = 7;
/// Length of the window whose coldness ends an Insight (design §3.5: `X_5`).
const COLD_WINDOW: usize = 5;
/// `Start` or `End`, as in `insightDetails.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightState {
    Start,
    End,
}

impl InsightState {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightState::Start => "Start",
            InsightState::End => "End",
        }
    }
}

/// A Start or End decided by the detector, with the AWS statistics inputs. Minutes are
/// minutes since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub state: InsightState,
    /// First minute of the unusual activity (the Start's `eventTime`).
    pub start_minute: i64,
    /// The record's `eventTime`: the onset for Start, the minute after the last hot one for End.
    pub event_minute: i64,
    /// The closed minute whose evaluation produced this transition.
    pub closed_minute: i64,
    /// Events in the insight period: `[start, closed]` for Start, `[start, event)` for End.
    pub insight_count: u64,
    /// Minutes of that period (`insightDuration`).
    pub insight_duration: i64,
    /// Cleaned events in `[00:00 UTC seven days before the start day, start)`.
    pub baseline_count: u64,
    /// Minutes of that window (`baselineDuration`, ≥ 10080).
    pub baseline_duration: i64,
}

impl Transition {
    pub fn insight_average(&self) -> f64 {
        self.insight_count as f64 / self.insight_duration.max(1) as f64
    }

    pub fn baseline_average(&self) -> f64 {
        self.baseline_count as f64 / self.baseline_duration.max(1) as f64
    }
}

/// Bookkeeping of an open Insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInsight {
    pub start: i64,
    pub detected: i64,
    pub last_hot: i64,
    pub cold: u32,
    pub total: u64,
    pub total_at_last_hot: u64,
    pub baseline_count: u64,
}

/// Whether the activity of minutes `[start, t]` comes from an actor (principal and user agent)
/// that already acted on the key in its baseline days. Asked only for a candidate Start on a
/// key with recurring bursts.
pub type Familiarity<'a> = &'a dyn Fn(i64, i64) -> bool;

/// What a step needs besides the key's own state.
#[derive(Clone, Copy)]
pub struct StepContext<'a> {
    pub params: &'a DetectorParams,
    /// UTC day (minutes / 1440) of the first data of the account: warm-up and the number of
    /// baseline days are counted from it.
    pub origin_day: i64,
    /// The attribution check for `familiar_guard_beta`; without it no burst counts as familiar.
    pub familiar: Option<Familiarity<'a>>,
}

impl<'a> StepContext<'a> {
    pub fn new(params: &'a DetectorParams, origin_day: i64) -> Self {
        StepContext {
            params,
            origin_day,
            familiar: None,
        }
    }
}

impl std::fmt::Debug for StepContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("params", self.params)
            .field("origin_day", &self.origin_day)
            .field("familiar", &self.familiar.is_some())
            .finish()
    }
}

/// The hot state of one series key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    last_minute: Option<i64>,
    last_nonzero: Option<i64>,
    cool_until: Option<i64>,
    ring_hour: Option<i64>,
    ring: [u32; RING_HOURS],
    raw: [u32; MINUTE_RING],
    clean: [u32; MINUTE_RING],
    expected_day: Option<i64>,
    expected: [f32; 24],
    guard_day: [Option<i64>; GUARD_DAYS],
    /// Daily maxima of each window's score on cleaned counts (1/16 nat); kept 7 days.
    guard: [[u16; MAX_WINDOWS]; GUARD_DAYS],
    /// Daily maxima of the CUSUM (1/16 nat), in the slots of `guard_day`; kept 7 days.
    cusum_guard: [u16; GUARD_DAYS],
    /// Each day's largest score, a Start's included (1/16 nat), and its minute of the day:
    /// weekly recurrence, kept 28 days.
    burst: [u16; GUARD_DAYS],
    burst_at: [u16; GUARD_DAYS],
    /// Sustained-rise CUSUM `C` (0 when no segment is running) and its segment: first minute,
    /// events and expected events since then.
    cusum: f32,
    cusum_start: i64,
    cusum_x: u32,
    cusum_m: f32,
    insight: Option<OpenInsight>,
}

impl Default for KeyState {
    fn default() -> Self {
        KeyState {
            last_minute: None,
            last_nonzero: None,
            cool_until: None,
            ring_hour: None,
            ring: [0; RING_HOURS],
            raw: [0; MINUTE_RING],
            clean: [0; MINUTE_RING],
            expected_day: None,
            expected: [0.0; 24],
            guard_day: [None; GUARD_DAYS],
            guard: [[0; MAX_WINDOWS]; GUARD_DAYS],
            cusum_guard: [0; GUARD_DAYS],
            burst: [0; GUARD_DAYS],
            burst_at: [0; GUARD_DAYS],
            cusum: 0.0,
            cusum_start: 0,
            cusum_x: 0,
            cusum_m: 0.0,
            insight: None,
        }
    }
}

/// Day of the week of a UTC day number, Monday = 0 (1970-01-01 was a Thursday).
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

#[inline]
fn slot(minute: i64) -> usize {
    minute.rem_euclid(MINUTE_RING as i64) as usize
}

fn max_window(params: &DetectorParams) -> usize {
    params
        .windows
        .iter()
        .map(|&w| w as usize)
        .max()
        .unwrap_or(1)
        .clamp(COLD_WINDOW, MINUTE_RING)
}

impl KeyState {
    pub fn new() -> Self {
        KeyState::default()
    }

    /// The last closed minute this key was stepped through.
    pub fn last_minute(&self) -> Option<i64> {
        self.last_minute
    }

    pub fn open_insight(&self) -> Option<&OpenInsight> {
        self.insight.as_ref()
    }

    /// Whether closing minute `m` with no events could change anything (an open Insight, or
    /// events still inside the longest window). Otherwise idle minutes are skipped for free.
    pub fn is_live_at(&self, m: i64, params: &DetectorParams) -> bool {
        self.insight.is_some()
            || self
                .last_nonzero
                .is_some_and(|n| m < n + max_window(params) as i64)
    }

    /// Closes minute `minute` with `count` events, first closing the idle minutes since the
    /// last step. A minute at or before the last closed one is late data: it only feeds the
    /// baseline.
    pub fn step(
        &mut self,
        minute: i64,
        count: u32,
        ctx: &StepContext<'_>,
        out: &mut Vec<Transition>,
    ) {
        if let Some(last) = self.last_minute {
            if minute <= last {
                self.add_late(minute, count);
                return;
            }
            self.advance_idle(minute - 1, ctx, out);
        }
        self.close_minute(minute, count, ctx, out);
    }

    /// Closes every minute up to `through` as empty. Costs one step per live minute (an open
    /// Insight, or recent events), nothing for the rest.
    pub fn advance_idle(&mut self, through: i64, ctx: &StepContext<'_>, out: &mut Vec<Transition>) {
        let Some(last) = self.last_minute else {
            return;
        };
        let mut m = last + 1;
        while m <= through {
            if self.is_live_at(m, ctx.params) {
                self.close_minute(m, 0, ctx, out);
                m += 1;
                continue;
            }
            self.cusum_decay(m, through, ctx.params);
            let skipped = (through - m + 1).min(MINUTE_RING as i64);
            for k in 0..skipped {
                let s = slot(through - k);
                self.raw[s] = 0;
                self.clean[s] = 0;
            }
            self.last_minute = Some(through);
            break;
        }
    }

    /// Late data (its minute is already closed): baseline only.
    pub fn add_late(&mut self, minute: i64, count: u32) {
        if count > 0 {
            self.ring_add(minute.div_euclid(60), count);
        }
    }

    /// Steps one closed minute: refreshes the day's expectation, runs the CUSUM, decides a
    /// Start (or the End of the open Insight), then feeds the baseline and the guard.
    fn close_minute(&mut self, t: i64, x: u32, ctx: &StepContext<'_>, out: &mut Vec<Transition>) {
        let p = ctx.params;
        let day = t.div_euclid(MINUTES_PER_DAY);
        if self.expected_day != Some(day) {
            let n_days = (day - ctx.origin_day).clamp(0, BASELINE_DAYS);
            self.recompute_expected(day, n_days, p);
        }
        self.raw[slot(t)] = x;
        let w = self.windows_at(t, p);
        let warmed = day - ctx.origin_day >= i64::from(p.warmup_days);
        let can_start = self.insight.is_none() && self.cool_until.is_none_or(|c| t >= c) && warmed;
        let level = if self.insight.is_none() {
            self.recent_level(t, p)
        } else {
            1.0
        };
        // Not before the warm-up: without a baseline every minute looks like a rise.
        if self.insight.is_none() && p.cusum_ratio > 1.0 && warmed {
            self.cusum_step(t, x, level * w.cusum_mu, p);
        }
        if can_start {
            if let Some(c) = self.start_candidate(t, day, &w, level, ctx) {
                self.burst_feed(c.start, c.score);
                self.open(c.start, c.total, t, out);
            }
        } else if self.insight.is_some() {
            self.continue_insight(t, x, &w, p, out);
        }
        self.feed_baseline(t, x, &w, warmed, p);
        if x > 0 {
            self.last_nonzero = Some(t);
        }
        self.last_minute = Some(t);
    }

    /// Raw counts and expectations of the minutes `t, t−1, …` of the longest window.
    fn windows_at(&self, t: i64, p: &DetectorParams) -> Windows {
        let mut w = Windows {
            xs: [0f64; MINUTE_RING],
            mus: [0f64; MINUTE_RING],
            start_mus: [0f64; MINUTE_RING],
            cusum_mu: 0.0,
            longest: max_window(p),
        };
        for i in 0..w.longest {
            let m = t - i as i64;
            let h = m.div_euclid(60);
            let at = |h: i64| f64::from(self.expected[h.rem_euclid(24) as usize]);
            w.xs[i] = f64::from(self.raw[slot(m)]);
            w.mus[i] = at(h);
            let next_door = at(h - 1).max(at(h + 1));
            w.start_mus[i] = if p.shifted_hours && next_door >= p.ratio_on * w.mus[i] {
                next_door
            } else {
                w.mus[i]
            };
            if i == 0 {
                w.cusum_mu = if p.shifted_hours {
                    next_door.max(w.mus[0])
                } else {
                    w.mus[0]
                };
            }
        }
        w
    }

    /// Feeds minute `t` to the hourly ring (winsorised during an Insight, so bursts do not
    /// poison the next days) and, outside an Insight, the day's guard maxima.
    fn feed_baseline(&mut self, t: i64, x: u32, w: &Windows, warmed: bool, p: &DetectorParams) {
        let clean = if self.insight.is_some() {
            x.min((p.ratio_on * w.mus[0]).ceil() as u32)
        } else {
            x
        };
        self.ring_add(t.div_euclid(60), clean);
        self.clean[slot(t)] = clean;
        if self.insight.is_some() {
            return;
        }
        for (wi, &len) in p.windows.iter().enumerate().take(MAX_WINDOWS) {
            let len = len as usize;
            let xc: u64 = (0..len)
                .map(|i| u64::from(self.clean[slot(t - i as i64)]))
                .sum();
            // The expectation of the Start gates, so that the guard measures what they do.
            let m = w.start_mus[..len].iter().sum::<f64>().max(1e-9);
            self.guard_feed(wi, t, glr(xc as f64, m));
        }
        if p.cusum_ratio > 1.0 && warmed {
            self.cusum_guard_feed(t, f64::from(self.cusum));
        }
    }
}

/// The minutes a step looks at, newest first: raw counts and expected counts.
struct Windows {
    xs: [f64; MINUTE_RING],
    mus: [f64; MINUTE_RING],
    /// The expectation the Start gates (and the guard) use: with `shifted_hours`, a
    /// neighbouring hour's when it is at least `ratio_on` times the minute's own, so that a
    /// schedule moved by an hour (a daylight-saving change, a drifting job) or a ramp an hour
    /// ahead of itself is not news.
    start_mus: [f64; MINUTE_RING],
    /// The CUSUM's expectation for the current minute: with `shifted_hours`, the largest of its
    /// hour and the two neighbours (a sustained rise is only news beyond all three, so the
    /// days after a schedule moved, while its new hour is learnt, do not accumulate).
    cusum_mu: f64,
    /// The longest window in use (at least the End's cold window).
    longest: usize,
}
