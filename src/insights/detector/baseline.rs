//! The expected count of a key (design §3.3): an 8-day ring of hourly cleaned counts, the
//! seasonal expectation recomputed from it once per UTC day, the level correction for slow
//! ramps, and the AWS baseline statistics.

use super::{slot, KeyState, BASELINE_DAYS, MINUTES_PER_DAY, MINUTE_RING, RING_HOURS};
use crate::insights::config::DetectorParams;

pub(super) fn is_weekend(day: i64) -> bool {
    super::weekday(day) >= 5
}

impl KeyState {
    pub(super) fn ring_add(&mut self, hour: i64, v: u32) {
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

    pub(super) fn hour_count(&self, hour: i64) -> u32 {
        match self.ring_hour {
            Some(rh) if hour <= rh && hour > rh - RING_HOURS as i64 => {
                self.ring[hour.rem_euclid(RING_HOURS as i64) as usize]
            }
            _ => 0,
        }
    }

    pub(super) fn recompute_expected(&mut self, day: i64, n_days: i64, p: &DetectorParams) {
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

    /// Level correction of the seasonal expectation: how far the key ran above its expectation
    /// in the hours `h−4 ..= h−2` before the current hour `h` (the hour just before is skipped so
    /// that the onset of a burst does not raise its own bar), shrunk with
    /// `level_pseudo_events`: `max(1, (O + a) / (E + a))`. A slow ramp lifts it, an abrupt burst
    /// does not. 1 when disabled.
    pub(super) fn recent_level(&self, t: i64, p: &DetectorParams) -> f64 {
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
    pub(super) fn baseline_count(&self, start: i64, t: i64) -> (u64, i64) {
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
}
