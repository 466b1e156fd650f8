//! Sustained rises: a per-key Poisson CUSUM `C = max(0, C + x ln ρ − (ρ − 1) μ)` over a
//! segment (see `DetectorParams::cusum_ratio`).

use super::{KeyState, MINUTES_PER_DAY};
use crate::insights::config::DetectorParams;

impl KeyState {
    /// Adds minute `t` with `x` events against `m_t` expected (level-corrected).
    pub(super) fn cusum_step(&mut self, t: i64, x: u32, m_t: f64, p: &DetectorParams) {
        let c =
            f64::from(self.cusum) + f64::from(x) * p.cusum_ratio.ln() - (p.cusum_ratio - 1.0) * m_t;
        if c <= 0.0 {
            self.cusum_reset();
            return;
        }
        if self.cusum <= 0.0 {
            self.cusum_start = t;
            self.cusum_x = 0;
            self.cusum_m = 0.0;
        }
        self.cusum = c as f32;
        self.cusum_x = self.cusum_x.saturating_add(x);
        self.cusum_m += m_t as f32;
    }

    pub(super) fn cusum_reset(&mut self) {
        self.cusum = 0.0;
        self.cusum_start = 0;
        self.cusum_x = 0;
        self.cusum_m = 0.0;
    }

    /// Minutes `from..=through` closed without events: the CUSUM drifts down by
    /// `(ρ − 1) × expected events` (the level correction taken as 1).
    pub(super) fn cusum_decay(&mut self, from: i64, through: i64, p: &DetectorParams) {
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
}
