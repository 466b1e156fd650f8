//! The Start and End decisions (design §3.4–3.5): Poisson GLR on short windows with ratio,
//! excess and guard gates, the CUSUM for sustained rises, and hysteresis to end.

use super::{
    InsightState, KeyState, OpenInsight, StepContext, Transition, Windows, BASELINE_DAYS,
    COLD_WINDOW, MINUTES_PER_DAY,
};
use crate::insights::config::DetectorParams;

/// Poisson generalised likelihood ratio for "the rate went up", in nats.
#[inline]
pub fn glr(x: f64, m: f64) -> f64 {
    if x <= m || x <= 0.0 {
        return 0.0;
    }
    x * (x / m).ln() - (x - m)
}

/// A Start the gates let through.
pub(super) struct Candidate {
    /// First minute of the unusual activity.
    pub start: i64,
    /// Events since then.
    pub total: u64,
    /// The score that fired (window GLR or CUSUM), remembered for weekly recurrence.
    pub score: f64,
}

impl KeyState {
    /// The Start at minute `t`, if some window or the CUSUM fires.
    pub(super) fn start_candidate(
        &self,
        t: i64,
        day: i64,
        w: &Windows,
        level: f64,
        ctx: &StepContext<'_>,
    ) -> Option<Candidate> {
        self.window_candidate(t, day, w, level, ctx)
            .or_else(|| self.cusum_candidate(t, day, w, ctx))
    }

    /// The first window that passes the score, ratio, excess and guard gates.
    fn window_candidate(
        &self,
        t: i64,
        day: i64,
        w: &Windows,
        level: f64,
        ctx: &StepContext<'_>,
    ) -> Option<Candidate> {
        let p = ctx.params;
        let recurrence = self.recurrence(t, p.weekly_recurrence, p.score_on);
        for &len in &p.windows {
            let len = len as usize;
            let big_x: f64 = w.xs[..len].iter().sum();
            let big_m = (level * w.start_mus[..len].iter().sum::<f64>()).max(1e-9);
            if big_x - big_m < p.excess_on || big_x < p.ratio_on * big_m {
                continue;
            }
            let score = glr(big_x, big_m);
            if score < p.score_on {
                continue;
            }
            let wi = p
                .windows
                .iter()
                .position(|&v| v as usize == len)
                .unwrap_or(0);
            let guard = self.guard_max(wi, day);
            if p.guard_beta > 0.0 && score <= p.guard_beta * guard.max(recurrence) {
                continue;
            }
            let onset_back = (0..len)
                .rev()
                .find(|&i| w.xs[i] >= 1.0 && w.xs[i] > w.mus[i])
                .unwrap_or(0);
            let start = t - onset_back as i64;
            if self.familiar_recurring(score, guard, start, t, day, ctx) {
                continue;
            }
            return Some(Candidate {
                start,
                total: (0..=onset_back).map(|i| w.xs[i] as u64).sum(),
                score,
            });
        }
        None
    }

    /// The CUSUM's segment, if it is long, large and surprising enough. It runs from the end
    /// of the warm-up and may start one day later, once its guard has a day of history.
    fn cusum_candidate(
        &self,
        t: i64,
        day: i64,
        w: &Windows,
        ctx: &StepContext<'_>,
    ) -> Option<Candidate> {
        let p = ctx.params;
        let cusum_warmed = day - ctx.origin_day > i64::from(p.warmup_days);
        if p.cusum_ratio <= 1.0 || !cusum_warmed {
            return None;
        }
        let c = f64::from(self.cusum);
        let (cx, cm) = (f64::from(self.cusum_x), f64::from(self.cusum_m).max(1e-9));
        let start = self.cusum_start;
        let guard = self.cusum_guard_max(day);
        let bar = guard.max(self.recurrence(t, p.weekly_recurrence, p.score_on));
        let fires = c >= p.score_on
            && t - start + 1 >= w.longest as i64
            && cx - cm >= p.excess_on
            && cx >= p.sustained_ratio_on * cm
            && !(p.guard_beta > 0.0 && c <= p.guard_beta * bar)
            && !self.familiar_recurring(c, guard, start, t, day, ctx);
        fires.then_some(Candidate {
            start,
            total: u64::from(self.cusum_x),
            score: c,
        })
    }

    /// Opens an Insight that began at `start`, decided at `t`.
    pub(super) fn open(&mut self, start: i64, total: u64, t: i64, out: &mut Vec<Transition>) {
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

    /// Minute `t` of an open Insight: hot or not, cold or not; ends it after `quiet_minutes`
    /// cold minutes or `max_insight_minutes`.
    pub(super) fn continue_insight(
        &mut self,
        t: i64,
        x: u32,
        w: &Windows,
        p: &DetectorParams,
        out: &mut Vec<Transition>,
    ) {
        let Some(ins) = self.insight.as_mut() else {
            return;
        };
        let mu_t = w.mus[0];
        let x5: f64 = w.xs[..COLD_WINDOW].iter().sum();
        let m5: f64 = w.mus[..COLD_WINDOW].iter().sum();
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
        if ins.cold < p.quiet_minutes && t - ins.start < i64::from(p.max_insight_minutes) {
            return;
        }
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
