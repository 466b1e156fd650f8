//! The surprise guard (design §3.4 gate d): the key's largest scores of the previous 7 UTC
//! days, per window and for the CUSUM, and the stricter bar for familiar recurring bursts.

use super::{KeyState, StepContext, BASELINE_DAYS, GUARD_DAYS, MAX_WINDOWS};

/// Resolution of the stored daily CUSUM maxima: 1/16 nat.
pub(super) const CUSUM_GUARD_SCALE: f64 = 16.0;

impl KeyState {
    pub(super) fn guard_max(&self, wi: usize, day: i64) -> f64 {
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
    pub(super) fn guard_slot(&mut self, day: i64) -> usize {
        let s = day.rem_euclid(GUARD_DAYS as i64) as usize;
        if self.guard_day[s] != Some(day) {
            self.guard_day[s] = Some(day);
            self.guard[s] = [0.0; MAX_WINDOWS];
            self.cusum_guard[s] = 0;
        }
        s
    }

    pub(super) fn cusum_guard_max(&self, day: i64) -> f64 {
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

    pub(super) fn cusum_guard_feed(&mut self, day: i64, c: f64) {
        let s = self.guard_slot(day);
        let v = (c * CUSUM_GUARD_SCALE)
            .ceil()
            .clamp(0.0, f64::from(u16::MAX)) as u16;
        if v > self.cusum_guard[s] {
            self.cusum_guard[s] = v;
        }
    }

    pub(super) fn guard_feed(&mut self, wi: usize, day: i64, score: f64) {
        let s = self.guard_slot(day);
        let v = score as f32;
        if v > self.guard[s][wi] {
            self.guard[s][wi] = v;
        }
    }
}
