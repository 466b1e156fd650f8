//! The per-key detector (DESIGN §3.3–3.5): a state machine stepped one closed minute at a time.
//!
//! * expected count `μ_t`: seasonal (hour of day × weekday/weekend) from an 8-day ring of
//!   hourly *cleaned* counts, shrunk towards the 7-day mean, recomputed once per UTC day;
//! * score: Poisson GLR `S = X ln(X/M) − (X − M)` on 1/5/15-minute windows;
//! * Start when some window passes score, ratio and excess gates and beats the surprise guard
//!   (β × the key's largest score of the previous 7 UTC days);
//! * End after `Q` cold minutes (hysteresis) or after `T_MAX`; cool-down after an End;
//! * while an Insight is open, the baseline is fed winsorised counts and the guard is frozen.
//!
//! Each step is O(|W|) apart from one O(192) recompute per key per UTC day. Idle minutes cost
//! nothing: they are applied on the next touch ([`KeyState::step`] / [`KeyState::advance_idle`]).
//! [`KeyState::encode`] gives the compact binary form persisted per key.

use super::config::DetectorParams;

/// Hourly slots of the baseline ring: 8 days.
pub const RING_HOURS: usize = 192;
/// Raw and cleaned per-minute counts kept (the longest window is at most this).
pub const MINUTE_RING: usize = 16;
/// Daily slots of the surprise guard (7 previous days + today).
pub const GUARD_DAYS: usize = 8;
/// Most windows a configuration may use.
pub const MAX_WINDOWS: usize = 4;

const MINUTES_PER_DAY: i64 = 1440;
const BASELINE_DAYS: i64 = 7;
/// Length of the window whose coldness ends an Insight (DESIGN §3.5: `X_5`).
const COLD_WINDOW: usize = 5;
/// Version 2 added the sustained-rise CUSUM (its value, segment and daily maxima); version 1
/// states are still read (with a CUSUM at zero and no CUSUM history).
const STATE_VERSION: u8 = 2;
/// Resolution of the stored daily CUSUM maxima: 1/16 nat.
const CUSUM_GUARD_SCALE: f64 = 16.0;

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
    guard: [[f32; MAX_WINDOWS]; GUARD_DAYS],
    /// Daily maxima of the CUSUM (1/16 nat), in the slots of `guard_day`.
    cusum_guard: [u16; GUARD_DAYS],
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
            guard: [[0.0; MAX_WINDOWS]; GUARD_DAYS],
            cusum_guard: [0; GUARD_DAYS],
            cusum: 0.0,
            cusum_start: 0,
            cusum_x: 0,
            cusum_m: 0.0,
            insight: None,
        }
    }
}

/// Poisson generalised likelihood ratio for "the rate went up", in nats.
#[inline]
pub fn glr(x: f64, m: f64) -> f64 {
    if x <= m || x <= 0.0 {
        return 0.0;
    }
    x * (x / m).ln() - (x - m)
}

fn is_weekend(day: i64) -> bool {
    // 1970-01-01 was a Thursday.
    (day + 3).rem_euclid(7) >= 5
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

    fn ring_add(&mut self, hour: i64, v: u32) {
        let idx = hour.rem_euclid(RING_HOURS as i64) as usize;
        match self.ring_hour {
            None => {
                self.ring_hour = Some(hour);
                self.ring[idx] = v;
            }
            Some(rh) if hour > rh => {
                let gap = (hour - rh).min(RING_HOURS as i64);
                for k in 1..=gap {
                    self.ring[(rh + k).rem_euclid(RING_HOURS as i64) as usize] = 0;
                }
                self.ring_hour = Some(hour);
                self.ring[idx] = v;
            }
            Some(rh) if hour <= rh - RING_HOURS as i64 => {}
            Some(_) => self.ring[idx] = self.ring[idx].saturating_add(v),
        }
    }

    fn hour_count(&self, hour: i64) -> u32 {
        match self.ring_hour {
            Some(rh) if hour <= rh && hour > rh - RING_HOURS as i64 => {
                self.ring[hour.rem_euclid(RING_HOURS as i64) as usize]
            }
            _ => 0,
        }
    }

    fn recompute_expected(&mut self, day: i64, n_days: i64, p: &DetectorParams) {
        let mut by_hour = [0f64; 24];
        let mut by_type = [[0f64; 24]; 2];
        let mut n_type = [0i64; 2];
        let mut total = 0f64;
        for d in day - n_days..day {
            let we = usize::from(is_weekend(d));
            n_type[we] += 1;
            for h in 0..24 {
                let c = f64::from(self.hour_count(d * 24 + h as i64));
                by_hour[h] += c;
                by_type[we][h] += c;
                total += c;
            }
        }
        let nd = n_days.max(1) as f64;
        let rbar = (total + p.pseudo_events) / (nd * MINUTES_PER_DAY as f64);
        let k = p.prior_minutes;
        let today = usize::from(is_weekend(day));
        let nj = n_type[today] as f64;
        for h in 0..24 {
            let r_h = (by_hour[h] + k * rbar) / (nd * 60.0 + k);
            let r_jh = if nj > 0.0 {
                (by_type[today][h] + k * r_h) / (nj * 60.0 + k)
            } else {
                r_h
            };
            self.expected[h] = r_jh.max(p.floor_fraction * rbar) as f32;
        }
        self.expected_day = Some(day);
    }

    fn guard_max(&self, wi: usize, day: i64) -> f64 {
        let mut best = 0f32;
        for (s, d) in self.guard_day.iter().enumerate() {
            if let Some(d) = *d {
                if d >= day - BASELINE_DAYS && d < day && self.guard[s][wi] > best {
                    best = self.guard[s][wi];
                }
            }
        }
        f64::from(best)
    }

    /// Whether a candidate that beat the guard is a familiar recurring burst that must beat
    /// `familiar_guard_beta` × the guard instead (see [`DetectorParams::familiar_guard_beta`]).
    fn familiar_recurring(
        &self,
        score: f64,
        guard: f64,
        start: i64,
        t: i64,
        day: i64,
        ctx: &StepContext<'_>,
    ) -> bool {
        let p = ctx.params;
        p.familiar_guard_beta > p.guard_beta
            && score <= p.familiar_guard_beta * guard
            && self.burst_days(day, p.score_on) >= p.recurring_burst_days
            && ctx.familiar.is_some_and(|f| f(start, t))
    }

    /// Days of the previous 7 on which some window of the key scored at least `score_on`
    /// (burst days, whether they fired or were held back by the guard).
    fn burst_days(&self, day: i64, score_on: f64) -> u32 {
        let mut n = 0;
        for (s, d) in self.guard_day.iter().enumerate() {
            if let Some(d) = *d {
                if d >= day - BASELINE_DAYS
                    && d < day
                    && self.guard[s].iter().any(|&v| f64::from(v) >= score_on)
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// The guard slot of `day`, cleared when it held an older day.
    fn guard_slot(&mut self, day: i64) -> usize {
        let s = day.rem_euclid(GUARD_DAYS as i64) as usize;
        if self.guard_day[s] != Some(day) {
            self.guard_day[s] = Some(day);
            self.guard[s] = [0.0; MAX_WINDOWS];
            self.cusum_guard[s] = 0;
        }
        s
    }

    fn cusum_guard_max(&self, day: i64) -> f64 {
        let mut best = 0u16;
        for (s, d) in self.guard_day.iter().enumerate() {
            if let Some(d) = *d {
                if d >= day - BASELINE_DAYS && d < day && self.cusum_guard[s] > best {
                    best = self.cusum_guard[s];
                }
            }
        }
        f64::from(best) / CUSUM_GUARD_SCALE
    }

    fn cusum_guard_feed(&mut self, day: i64, c: f64) {
        let s = self.guard_slot(day);
        let v = (c * CUSUM_GUARD_SCALE)
            .ceil()
            .clamp(0.0, f64::from(u16::MAX)) as u16;
        if v > self.cusum_guard[s] {
            self.cusum_guard[s] = v;
        }
    }

    fn cusum_reset(&mut self) {
        self.cusum = 0.0;
        self.cusum_start = 0;
        self.cusum_x = 0;
        self.cusum_m = 0.0;
    }

    /// Minutes `from..=through` closed without events: the CUSUM drifts down by
    /// `(ρ − 1) × expected events` (the level correction taken as 1).
    fn cusum_decay(&mut self, from: i64, through: i64, p: &DetectorParams) {
        if self.cusum <= 0.0 || through < from {
            return;
        }
        if p.cusum_ratio <= 1.0 || through - from >= 2 * MINUTES_PER_DAY {
            self.cusum_reset();
            return;
        }
        let mut expected = 0f64;
        let mut m = from;
        while m <= through {
            let hour_end = (m.div_euclid(60) + 1) * 60 - 1;
            let n = (hour_end.min(through) - m + 1) as f64;
            expected += n * f64::from(self.expected[m.div_euclid(60).rem_euclid(24) as usize]);
            m = hour_end + 1;
        }
        let c = f64::from(self.cusum) - (p.cusum_ratio - 1.0) * expected;
        if c <= 0.0 {
            self.cusum_reset();
        } else {
            self.cusum = c as f32;
            self.cusum_m += expected as f32;
        }
    }

    fn guard_feed(&mut self, wi: usize, day: i64, score: f64) {
        let s = self.guard_slot(day);
        let v = score as f32;
        if v > self.guard[s][wi] {
            self.guard[s][wi] = v;
        }
    }

    /// Level correction of the seasonal expectation: how far the key ran above its expectation
    /// in the hours `h−4 ..= h−2` before the current hour `h` (the hour just before is skipped so
    /// that the onset of a burst does not raise its own bar), shrunk with
    /// `level_pseudo_events`: `max(1, (O + a) / (E + a))`. A slow ramp lifts it, an abrupt burst
    /// does not. 1 when disabled.
    fn recent_level(&self, t: i64, p: &DetectorParams) -> f64 {
        if p.level_pseudo_events <= 0.0 {
            return 1.0;
        }
        let h = t.div_euclid(60);
        let (mut observed, mut expected) = (0f64, 0f64);
        for k in 2..=4 {
            observed += f64::from(self.hour_count(h - k));
            expected += 60.0 * f64::from(self.expected[(h - k).rem_euclid(24) as usize]);
        }
        let a = p.level_pseudo_events;
        ((observed + a) / (expected + a)).max(1.0)
    }

    /// Cleaned events in the AWS baseline window `[00:00 UTC of start day − 7, start)`, read
    /// while closing minute `t` (the ring then holds minutes up to `t − 1`).
    fn baseline_count(&self, start: i64, t: i64) -> (u64, i64) {
        let b0 = (start.div_euclid(MINUTES_PER_DAY) - BASELINE_DAYS) * MINUTES_PER_DAY;
        let start_hour = start.div_euclid(60);
        let mut sum: u64 = (b0 / 60..=start_hour)
            .map(|h| u64::from(self.hour_count(h)))
            .sum();
        let hour_end = (start_hour + 1) * 60 - 1;
        let last_in_hour = (t - 1).min(hour_end);
        if t - start <= MINUTE_RING as i64 {
            for m in start..=last_in_hour {
                sum = sum.saturating_sub(u64::from(self.clean[slot(m)]));
            }
        } else if last_in_hour >= start {
            // A CUSUM onset older than the minute ring: keep the start hour's share before the
            // onset, prorated by minutes.
            let in_hour = self.hour_count(start_hour);
            let before = (start - start_hour * 60) as u64;
            let kept = u64::from(in_hour) * before / (last_in_hour - start_hour * 60 + 1) as u64;
            sum = sum.saturating_sub(u64::from(in_hour) - kept);
        }
        (sum, start - b0)
    }

    fn close_minute(&mut self, t: i64, x: u32, ctx: &StepContext<'_>, out: &mut Vec<Transition>) {
        let p = ctx.params;
        let day = t.div_euclid(MINUTES_PER_DAY);
        if self.expected_day != Some(day) {
            let n_days = (day - ctx.origin_day).clamp(0, BASELINE_DAYS);
            self.recompute_expected(day, n_days, p);
        }
        self.raw[slot(t)] = x;
        let wmax = max_window(p);
        let mut xs = [0f64; MINUTE_RING];
        let mut mus = [0f64; MINUTE_RING];
        for i in 0..wmax {
            let m = t - i as i64;
            xs[i] = f64::from(self.raw[slot(m)]);
            mus[i] = f64::from(self.expected[m.div_euclid(60).rem_euclid(24) as usize]);
        }
        let mu_t = mus[0];
        let warmed = day - ctx.origin_day >= i64::from(p.warmup_days);
        let can_start = self.insight.is_none() && self.cool_until.is_none_or(|c| t >= c) && warmed;
        let level = if self.insight.is_none() {
            self.recent_level(t, p)
        } else {
            1.0
        };
        // Not before the warm-up: without a baseline every minute looks like a rise.
        if self.insight.is_none() && p.cusum_ratio > 1.0 && warmed {
            let m_t = level * mu_t;
            let c = f64::from(self.cusum) + f64::from(x) * p.cusum_ratio.ln()
                - (p.cusum_ratio - 1.0) * m_t;
            if c <= 0.0 {
                self.cusum_reset();
            } else {
                if self.cusum <= 0.0 {
                    self.cusum_start = t;
                    self.cusum_x = 0;
                    self.cusum_m = 0.0;
                }
                self.cusum = c as f32;
                self.cusum_x = self.cusum_x.saturating_add(x);
                self.cusum_m += m_t as f32;
            }
        }
        if can_start {
            // (onset, events since the onset) of a Start, if some window or the CUSUM fires.
            let mut fire: Option<(i64, u64)> = None;
            for &w in &p.windows {
                let w = w as usize;
                let big_x: f64 = xs[..w].iter().sum();
                let big_m = (level * mus[..w].iter().sum::<f64>()).max(1e-9);
                if big_x - big_m < p.excess_on || big_x < p.ratio_on * big_m {
                    continue;
                }
                let score = glr(big_x, big_m);
                if score < p.score_on {
                    continue;
                }
                let wi = p.windows.iter().position(|&v| v as usize == w).unwrap_or(0);
                let guard = self.guard_max(wi, day);
                if p.guard_beta > 0.0 && score <= p.guard_beta * guard {
                    continue;
                }
                let onset_back = (0..w)
                    .rev()
                    .find(|&i| xs[i] >= 1.0 && xs[i] > mus[i])
                    .unwrap_or(0);
                let start = t - onset_back as i64;
                if self.familiar_recurring(score, guard, start, t, day, ctx) {
                    continue;
                }
                fire = Some((start, (0..=onset_back).map(|i| xs[i] as u64).sum()));
                break;
            }
            // The CUSUM runs from the end of the warm-up; it may start one day later, once its
            // guard has a day of history.
            let cusum_warmed = day - ctx.origin_day > i64::from(p.warmup_days);
            if fire.is_none() && p.cusum_ratio > 1.0 && cusum_warmed {
                let c = f64::from(self.cusum);
                let (cx, cm) = (f64::from(self.cusum_x), f64::from(self.cusum_m).max(1e-9));
                let start = self.cusum_start;
                if c >= p.score_on
                    && t - start + 1 >= wmax as i64
                    && cx - cm >= p.excess_on
                    && cx >= p.sustained_ratio_on * cm
                    && !(p.guard_beta > 0.0 && c <= p.guard_beta * self.cusum_guard_max(day))
                    && !self.familiar_recurring(c, self.cusum_guard_max(day), start, t, day, ctx)
                {
                    fire = Some((start, u64::from(self.cusum_x)));
                }
            }
            if let Some((start, total)) = fire {
                let (baseline_count, baseline_duration) = self.baseline_count(start, t);
                self.insight = Some(OpenInsight {
                    start,
                    detected: t,
                    last_hot: t,
                    cold: 0,
                    total,
                    total_at_last_hot: total,
                    baseline_count,
                });
                self.cusum_reset();
                out.push(Transition {
                    state: InsightState::Start,
                    start_minute: start,
                    event_minute: start,
                    closed_minute: t,
                    insight_count: total,
                    insight_duration: t - start + 1,
                    baseline_count,
                    baseline_duration,
                });
            }
        } else if let Some(ins) = self.insight.as_mut() {
            let x5: f64 = xs[..COLD_WINDOW].iter().sum();
            let m5: f64 = mus[..COLD_WINDOW].iter().sum();
            ins.total += u64::from(x);
            if f64::from(x) >= (p.ratio_off * mu_t).max(mu_t + 1.0) {
                ins.last_hot = t;
                ins.total_at_last_hot = ins.total;
            }
            if x5 < (p.ratio_off * m5).max(m5 + p.excess_off) {
                ins.cold += 1;
            } else {
                ins.cold = 0;
            }
            if ins.cold >= p.quiet_minutes || t - ins.start >= i64::from(p.max_insight_minutes) {
                let end = (ins.start + 1).max(ins.last_hot + 1);
                out.push(Transition {
                    state: InsightState::End,
                    start_minute: ins.start,
                    event_minute: end,
                    closed_minute: t,
                    insight_count: ins.total_at_last_hot,
                    insight_duration: end - ins.start,
                    baseline_count: ins.baseline_count,
                    baseline_duration: ins.start
                        - (ins.start.div_euclid(MINUTES_PER_DAY) - BASELINE_DAYS) * MINUTES_PER_DAY,
                });
                self.insight = None;
                self.cool_until = Some(t + i64::from(p.cooldown_minutes));
            }
        }
        let clean = if self.insight.is_some() {
            x.min((p.ratio_on * mu_t).ceil() as u32)
        } else {
            x
        };
        self.ring_add(t.div_euclid(60), clean);
        self.clean[slot(t)] = clean;
        if self.insight.is_none() {
            for (wi, &w) in p.windows.iter().enumerate().take(MAX_WINDOWS) {
                let w = w as usize;
                let xc: u64 = (0..w)
                    .map(|i| u64::from(self.clean[slot(t - i as i64)]))
                    .sum();
                let m = mus[..w].iter().sum::<f64>().max(1e-9);
                self.guard_feed(wi, day, glr(xc as f64, m));
            }
            if p.cusum_ratio > 1.0 && warmed {
                self.cusum_guard_feed(day, f64::from(self.cusum));
            }
        }
        if x > 0 {
            self.last_nonzero = Some(t);
        }
        self.last_minute = Some(t);
    }

    /// The compact binary form (version byte, varints, zero-run-length rings, f32 rates).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_version(STATE_VERSION)
    }

    /// [`Self::encode`] in the layout of `version` (1 has no CUSUM: it is left out).
    fn encode_version(&self, version: u8) -> Vec<u8> {
        let v2 = version >= 2;
        let mut w = Writer(Vec::with_capacity(512));
        w.u8(version);
        let flags = u8::from(self.last_minute.is_some())
            | u8::from(self.last_nonzero.is_some()) << 1
            | u8::from(self.cool_until.is_some()) << 2
            | u8::from(self.ring_hour.is_some()) << 3
            | u8::from(self.expected_day.is_some()) << 4
            | u8::from(self.insight.is_some()) << 5
            | u8::from(v2 && self.cusum > 0.0 && self.last_minute.is_some()) << 6;
        w.u8(flags);
        for v in [
            self.last_minute,
            self.last_nonzero,
            self.cool_until,
            self.ring_hour,
        ]
        .into_iter()
        .flatten()
        {
            w.zz(v);
        }
        if let Some(rh) = self.ring_hour {
            let ordered: Vec<u32> = (0..RING_HOURS as i64)
                .map(|k| {
                    self.ring
                        [(rh - RING_HOURS as i64 + 1 + k).rem_euclid(RING_HOURS as i64) as usize]
                })
                .collect();
            w.rle(&ordered);
        }
        if let Some(last) = self.last_minute {
            for ring in [&self.raw, &self.clean] {
                let ordered: Vec<u32> = (0..MINUTE_RING as i64)
                    .map(|k| ring[slot(last - MINUTE_RING as i64 + 1 + k)])
                    .collect();
                w.rle(&ordered);
            }
        }
        if let Some(day) = self.expected_day {
            w.zz(day);
            for v in self.expected {
                w.f32(v);
            }
        }
        let mut mask = 0u8;
        let mut n_windows = 0usize;
        for (s, d) in self.guard_day.iter().enumerate() {
            if d.is_some() {
                mask |= 1 << s;
                let used = self.guard[s]
                    .iter()
                    .rposition(|&v| v != 0.0)
                    .map_or(0, |i| i + 1);
                n_windows = n_windows.max(used);
            }
        }
        w.u8(mask);
        w.u8(n_windows as u8);
        for (s, d) in self.guard_day.iter().enumerate() {
            if let Some(d) = d {
                w.zz(*d);
                for v in &self.guard[s][..n_windows] {
                    w.f32(*v);
                }
                if v2 {
                    w.var(u64::from(self.cusum_guard[s]));
                }
            }
        }
        if let (true, Some(last)) = (v2 && self.cusum > 0.0, self.last_minute) {
            w.f32(self.cusum);
            w.zz(last - self.cusum_start);
            w.var(u64::from(self.cusum_x));
            w.f32(self.cusum_m);
        }
        if let Some(ins) = &self.insight {
            w.zz(ins.start);
            w.zz(ins.detected - ins.start);
            w.zz(ins.last_hot - ins.start);
            w.var(u64::from(ins.cold));
            w.var(ins.total);
            w.var(ins.total_at_last_hot);
            w.var(ins.baseline_count);
        }
        w.0
    }

    /// Reads what [`Self::encode`] wrote; refuses anything else without panicking.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != 1 && version != STATE_VERSION {
            return Err(StateDecodeError::UnknownVersion(version));
        }
        let v2 = version >= 2;
        let flags = r.u8()?;
        if flags >> (if v2 { 7 } else { 6 }) != 0 {
            return Err(StateDecodeError::Corrupt("unknown flags"));
        }
        let mut s = KeyState::default();
        let opt = |bit: u8, r: &mut Reader<'_>| -> Result<Option<i64>, StateDecodeError> {
            if flags & bit != 0 {
                Ok(Some(r.zz()?))
            } else {
                Ok(None)
            }
        };
        s.last_minute = opt(1, &mut r)?;
        s.last_nonzero = opt(2, &mut r)?;
        s.cool_until = opt(4, &mut r)?;
        s.ring_hour = opt(8, &mut r)?;
        if let Some(rh) = s.ring_hour {
            let ordered = r.rle(RING_HOURS)?;
            for (k, v) in ordered.into_iter().enumerate() {
                s.ring[(rh - RING_HOURS as i64 + 1 + k as i64).rem_euclid(RING_HOURS as i64)
                    as usize] = v;
            }
        }
        if let Some(last) = s.last_minute {
            for which in 0..2 {
                let ordered = r.rle(MINUTE_RING)?;
                let ring = if which == 0 { &mut s.raw } else { &mut s.clean };
                for (k, v) in ordered.into_iter().enumerate() {
                    ring[slot(last - MINUTE_RING as i64 + 1 + k as i64)] = v;
                }
            }
        }
        if flags & 16 != 0 {
            s.expected_day = Some(r.zz()?);
            for v in s.expected.iter_mut() {
                *v = r.f32()?;
            }
        }
        let mask = r.u8()?;
        let n_windows = r.u8()? as usize;
        if n_windows > MAX_WINDOWS {
            return Err(StateDecodeError::Corrupt("too many guard windows"));
        }
        for slot_index in 0..GUARD_DAYS {
            if mask & (1 << slot_index) != 0 {
                s.guard_day[slot_index] = Some(r.zz()?);
                for wi in 0..n_windows {
                    s.guard[slot_index][wi] = r.f32()?;
                }
                if v2 {
                    s.cusum_guard[slot_index] = u16::try_from(r.var()?)
                        .map_err(|_| StateDecodeError::Corrupt("cusum guard"))?;
                }
            }
        }
        if flags & 64 != 0 {
            let last = s
                .last_minute
                .ok_or(StateDecodeError::Corrupt("cusum without a minute"))?;
            let c = r.f32()?;
            if c <= 0.0 {
                return Err(StateDecodeError::Corrupt("cusum not positive"));
            }
            s.cusum = c;
            s.cusum_start = last.saturating_sub(r.zz()?);
            s.cusum_x =
                u32::try_from(r.var()?).map_err(|_| StateDecodeError::Corrupt("cusum count"))?;
            s.cusum_m = r.f32()?;
        }
        if flags & 32 != 0 {
            let start = r.zz()?;
            let detected = start.saturating_add(r.zz()?);
            let last_hot = start.saturating_add(r.zz()?);
            let cold = u32::try_from(r.var()?).map_err(|_| StateDecodeError::Corrupt("cold"))?;
            s.insight = Some(OpenInsight {
                start,
                detected,
                last_hot,
                cold,
                total: r.var()?,
                total_at_last_hot: r.var()?,
                baseline_count: r.var()?,
            });
        }
        if r.pos != bytes.len() {
            return Err(StateDecodeError::Corrupt("trailing bytes"));
        }
        Ok(s)
    }
}

/// Why persisted key state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    #[error("key state ends early")]
    Truncated,
    #[error("key state has unknown version {0}")]
    UnknownVersion(u8),
    #[error("key state is corrupt: {0}")]
    Corrupt(&'static str),
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn var(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn zz(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Non-zero values as varints; a run of zeros as `0, run length`.
    fn rle(&mut self, values: &[u32]) {
        let mut i = 0;
        while i < values.len() {
            if values[i] == 0 {
                let run = values[i..].iter().take_while(|&&v| v == 0).count();
                self.var(0);
                self.var(run as u64);
                i += run;
            } else {
                self.var(u64::from(values[i]));
                i += 1;
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(StateDecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn var(&mut self) -> Result<u64, StateDecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StateDecodeError::Corrupt("varint too long"))
    }
    /// A signed minute, hour or day; anything beyond ±2^40 (far past year 9999 in minutes) is
    /// refused so that later arithmetic cannot overflow.
    fn zz(&mut self) -> Result<i64, StateDecodeError> {
        let v = self.var()?;
        let v = (v >> 1) as i64 ^ -((v & 1) as i64);
        if !(-(1i64 << 40)..=(1i64 << 40)).contains(&v) {
            return Err(StateDecodeError::Corrupt("time out of range"));
        }
        Ok(v)
    }
    fn f32(&mut self) -> Result<f32, StateDecodeError> {
        let end = self.pos.checked_add(4).ok_or(StateDecodeError::Truncated)?;
        let b = self
            .bytes
            .get(self.pos..end)
            .ok_or(StateDecodeError::Truncated)?;
        self.pos = end;
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !v.is_finite() {
            return Err(StateDecodeError::Corrupt("non-finite rate"));
        }
        Ok(v)
    }
    fn rle(&mut self, n: usize) -> Result<Vec<u32>, StateDecodeError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = self.var()?;
            if v == 0 {
                let run = self.var()?;
                if run == 0 || run > (n - out.len()) as u64 {
                    return Err(StateDecodeError::Corrupt("bad zero run"));
                }
                out.resize(out.len() + run as usize, 0);
            } else {
                out.push(
                    u32::try_from(v).map_err(|_| StateDecodeError::Corrupt("count too large"))?,
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MINUTES_PER_DAY;
    /// 2024-03-06 (a Wednesday) 00:00 UTC in minutes.
    const T0: i64 = 28_495_680;

    fn run(state: &mut KeyState, p: &DetectorParams, minutes: &[(i64, u32)]) -> Vec<Transition> {
        let ctx = StepContext::new(p, T0 / DAY);
        let mut out = Vec::new();
        for &(m, c) in minutes {
            state.step(m, c, &ctx, &mut out);
        }
        out
    }

    #[test]
    fn glr_matches_the_design_examples() {
        let mu = 0.5 / (7.0 * 1440.0);
        assert!((8.0..10.5).contains(&glr(1.0, mu)));
        assert!(glr(2.0, 5.0 * mu) > 12.0);
        assert_eq!(glr(3.0, 4.0), 0.0);
    }

    #[test]
    fn a_dead_api_fires_on_a_small_burst_and_ends() {
        let p = DetectorParams::default();
        let mut s = KeyState::new();
        // One call a day at noon for 3 days, then six calls within two minutes on day 3.
        let mut minutes: Vec<(i64, u32)> = (0..3).map(|d| (T0 + d * DAY + 720, 1)).collect();
        let burst = T0 + 3 * DAY + 600;
        minutes.extend([(burst, 3), (burst + 1, 3)]);
        let out = run(&mut s, &p, &minutes);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].state, InsightState::Start);
        assert_eq!(out[0].start_minute, burst);
        let mut out = Vec::new();
        let ctx = StepContext::new(&p, T0 / DAY);
        s.advance_idle(burst + 60, &ctx, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, InsightState::End);
        assert_eq!(out[0].event_minute, burst + 2);
        assert_eq!(out[0].insight_count, 6);
        assert!(s.open_insight().is_none());
    }

    #[test]
    fn encode_decode_round_trips_and_rejects_garbage() {
        let p = DetectorParams::default();
        let mut s = KeyState::new();
        assert_eq!(KeyState::decode(&s.encode()).unwrap(), s);
        let mut minutes = Vec::new();
        for m in (0..4 * DAY).step_by(7) {
            minutes.push((T0 + m, (m % 5) as u32));
        }
        let burst = T0 + 4 * DAY + 30;
        minutes.extend((0..5).map(|i| (burst + i, 40)));
        let out = run(&mut s, &p, &minutes);
        assert!(out.iter().any(|t| t.state == InsightState::Start));
        assert!(s.open_insight().is_some());
        let bytes = s.encode();
        assert!(bytes.len() < 2048, "{}", bytes.len());
        assert_eq!(KeyState::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(KeyState::decode(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(KeyState::decode(&extra).is_err());
        assert_eq!(
            KeyState::decode(&[9]),
            Err(StateDecodeError::UnknownVersion(9))
        );
        // A last minute of i64::MIN (zigzag u64::MAX) must be refused, not overflow.
        let mut huge = vec![STATE_VERSION, 1];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert!(KeyState::decode(&huge).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b = STATE_VERSION;
            }
            if let Ok(s) = KeyState::decode(&bytes) {
                assert_eq!(KeyState::decode(&s.encode()), Ok(s));
            }
        }
    }

    #[test]
    fn version_1_states_still_decode_without_a_cusum() {
        let p = DetectorParams::default();
        let mut s = KeyState::new();
        let mut minutes = Vec::new();
        for m in (0..3 * DAY).step_by(3) {
            minutes.push((T0 + m, 2 + (m % 4) as u32));
        }
        run(&mut s, &p, &minutes);
        assert!(s.cusum > 0.0 || s.cusum_guard.iter().any(|&g| g > 0));
        let v1 = s.encode_version(1);
        assert_eq!(v1[0], 1);
        let back = KeyState::decode(&v1).unwrap();
        let mut expected = s.clone();
        expected.cusum_reset();
        expected.cusum_guard = [0; GUARD_DAYS];
        assert_eq!(back, expected);
        assert_eq!(KeyState::decode(&back.encode()).unwrap(), back);
        assert_eq!(KeyState::decode(&s.encode()).unwrap(), s);
    }

    /// A busy key (Poisson 3/min, x-orshift draws) that doubles for 40 minutes at 04:00.
    fn busy_key_with_a_doubling(p: &DetectorParams) -> (Vec<Transition>, i64) {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut poisson = |mean: f64| {
            let l = (-mean).exp();
            let (mut k, mut q) = (0u32, 1.0);
            loop {
                q *= uniform();
                if q <= l {
                    return k;
                }
                k += 1;
            }
        };
        // From the UTC midnight of the origin day, so that the first day is a whole one.
        let midnight = T0.div_euclid(DAY) * DAY;
        let rise = midnight + 8 * DAY + 4 * 60;
        let mut s = KeyState::new();
        let minutes: Vec<(i64, u32)> = (0..9 * DAY)
            .map(|m| {
                let t = midnight + m;
                let doubled = (rise..rise + 40).contains(&t);
                (t, poisson(if doubled { 6.0 } else { 3.0 }))
            })
            .collect();
        (run(&mut s, p, &minutes), rise)
    }

    #[test]
    fn a_sustained_doubling_on_a_busy_key_fires_through_the_cusum() {
        let p = DetectorParams::default();
        let (out, rise) = busy_key_with_a_doubling(&p);
        let starts: Vec<_> = out
            .iter()
            .filter(|t| t.state == InsightState::Start)
            .collect();
        assert_eq!(starts.len(), 1, "{out:?}");
        assert!((rise - 5..=rise + 10).contains(&starts[0].start_minute));
        assert!(starts[0].closed_minute < rise + 40);
        let no_cusum = DetectorParams {
            cusum_ratio: 0.0,
            ..DetectorParams::default()
        };
        let (out, _) = busy_key_with_a_doubling(&no_cusum);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn late_minutes_only_feed_the_baseline() {
        let p = DetectorParams::default();
        let mut s = KeyState::new();
        run(&mut s, &p, &[(T0 + 2 * DAY, 1)]);
        let before = s.clone();
        let out = run(&mut s, &p, &[(T0 + 2 * DAY - 5, 500)]);
        assert!(out.is_empty());
        assert_eq!(s.last_minute(), before.last_minute());
        assert_eq!(s.hour_count((T0 + 2 * DAY - 5).div_euclid(60)), 500);
    }
}
