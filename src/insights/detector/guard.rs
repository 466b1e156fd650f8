//! The surprise guard (design §3.4 gate d): the key's largest scores of the previous 7 UTC
//! days, per window and for the CUSUM; the stricter bar for familiar recurring bursts; and
//! weekly recurrence: 28 days of each day's largest burst and its time, so that a burst that
//! came on the same weekday near the same time in earlier weeks is held to its own size.

use super::{weekday, KeyState, StepContext, BASELINE_DAYS, GUARD_DAYS, MAX_WINDOWS};

/// Resolution of the stored scores: 1/16 nat.
const SCORE_SCALE: f64 = 16.0;
/// Days of weekly memory (CloudTrail's baseline uses 28 days).
pub(super) const RECURRENCE_DAYS: i64 = 28;
/// How far from an earlier week's burst a burst still counts as the same one, minutes (a local
/// schedule moves by an hour at a daylight-saving change).
const RECURRENCE_MINUTES: i64 = 90;

/// A score as stored: 1/16 nat, rounded up, saturating.
pub(super) fn quantize(score: f64) -> u16 {
    (score * SCORE_SCALE).ceil().clamp(0.0, f64::from(u16::MAX)) as u16
}

pub(super) fn score_of(stored: u16) -> f64 {
    f64::from(stored) / SCORE_SCALE
}

impl KeyState {
    /// Slots of the days `[day − days, day)`.
    fn slots_before(&self, day: i64, days: i64) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.guard_day
            .iter()
            .enumerate()
            .filter_map(move |(s, d)| d.filter(|&d| d >= day - days && d < day).map(|d| (s, d)))
    }

    pub(super) fn guard_max(&self, wi: usize, day: i64) -> f64 {
        let best = self
            .slots_before(day, BASELINE_DAYS)
            .map(|(s, _)| self.guard[s][wi])
            .max()
            .unwrap_or(0);
        score_of(best)
    }

    /// Whether a candidate that beat the guard is a familiar recurring burst that must beat
    /// `familiar_guard_beta` × the guard instead (see [`DetectorParams::familiar_guard_beta`]).
    ///
    /// [`DetectorParams::familiar_guard_beta`]: crate::insights::DetectorParams::familiar_guard_beta
    pub(super) fn familiar_recurring(
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
    pub(super) fn burst_days(&self, day: i64, score_on: f64) -> u32 {
        self.slots_before(day, BASELINE_DAYS)
            .filter(|&(s, _)| self.guard[s].iter().any(|&v| score_of(v) >= score_on))
            .count() as u32
    }

    /// The bar of weekly recurrence at minute `t`: the largest burst of the same weekday near
    /// the same time of day in the previous four weeks, if there were at least `weeks` of them
    /// (of at least `score_on`); 0 otherwise.
    pub(super) fn recurrence(&self, t: i64, weeks: u32, score_on: f64) -> f64 {
        if weeks == 0 {
            return 0.0;
        }
        let day = t.div_euclid(super::MINUTES_PER_DAY);
        let at = t.rem_euclid(super::MINUTES_PER_DAY);
        let (mut n, mut best) = (0u32, 0u16);
        for (s, d) in self.slots_before(day, RECURRENCE_DAYS) {
            let near = (i64::from(self.burst_at[s]) - at).abs() <= RECURRENCE_MINUTES;
            if weekday(d) == weekday(day) && near && score_of(self.burst[s]) >= score_on {
                n += 1;
                best = best.max(self.burst[s]);
            }
        }
        if n >= weeks {
            score_of(best)
        } else {
            0.0
        }
    }

    /// The guard slot of `day`, cleared when it held an older day. Slots older than the
    /// guard's 7 days keep only their burst (weekly recurrence reads nothing else).
    pub(super) fn guard_slot(&mut self, day: i64) -> usize {
        let s = day.rem_euclid(GUARD_DAYS as i64) as usize;
        if self.guard_day[s] != Some(day) {
            self.guard_day[s] = Some(day);
            self.guard[s] = [0; MAX_WINDOWS];
            self.cusum_guard[s] = 0;
            self.burst[s] = 0;
            self.burst_at[s] = 0;
            for (o, d) in self.guard_day.iter().enumerate() {
                if d.is_some_and(|d| d < day - BASELINE_DAYS) {
                    self.guard[o] = [0; MAX_WINDOWS];
                    self.cusum_guard[o] = 0;
                }
            }
        }
        s
    }

    pub(super) fn cusum_guard_max(&self, day: i64) -> f64 {
        let best = self
            .slots_before(day, BASELINE_DAYS)
            .map(|(s, _)| self.cusum_guard[s])
            .max()
            .unwrap_or(0);
        score_of(best)
    }

    pub(super) fn cusum_guard_feed(&mut self, t: i64, c: f64) {
        let s = self.guard_slot(t.div_euclid(super::MINUTES_PER_DAY));
        self.cusum_guard[s] = self.cusum_guard[s].max(quantize(c));
        self.burst_feed(t, c);
    }

    pub(super) fn guard_feed(&mut self, wi: usize, t: i64, score: f64) {
        let s = self.guard_slot(t.div_euclid(super::MINUTES_PER_DAY));
        self.guard[s][wi] = self.guard[s][wi].max(quantize(score));
        self.burst_feed(t, score);
    }

    /// Records a burst of `score` at minute `t` (also the score of a Start) for weekly
    /// recurrence.
    pub(super) fn burst_feed(&mut self, t: i64, score: f64) {
        let s = self.guard_slot(t.div_euclid(super::MINUTES_PER_DAY));
        let v = quantize(score);
        if v > self.burst[s] {
            self.burst[s] = v;
            self.burst_at[s] = t.rem_euclid(super::MINUTES_PER_DAY) as u16;
        }
    }
}
