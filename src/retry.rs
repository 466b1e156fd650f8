//! Retrying a call that failed: exponential backoff with full jitter (AWS Architecture Blog,
//! "Exponential Backoff And Jitter"), bounded in attempts. The jitter is drawn from a
//! generator seeded per thread (`fastrand`), so that calls failing together — equal batches
//! of concurrent invocations — do not retry together.

use std::time::Duration;

/// Exponential backoff with full jitter, bounded in attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The longest pause before attempt `attempt` + 1 (`attempt` from 1): `base` doubled per
    /// attempt, at most `cap`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap)
    }

    /// The pause after failed attempt `attempt`: uniform in [0, [`RetryPolicy::ceiling`]).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }

    /// Whether another attempt may follow failed attempt `attempt`.
    pub fn allows_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_pauses_stay_under_it() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(30), p.cap);
        for attempt in 1..10 {
            assert!(p.delay(attempt) < p.ceiling(attempt));
        }
        assert!(p.allows_after(5) && !p.allows_after(6));
    }

    #[test]
    fn pauses_are_spread_not_in_lockstep() {
        // Equal-sized batches used to draw the same pauses (the jitter was seeded by the batch
        // length); two runs of the same attempt now differ.
        let p = RetryPolicy::default();
        let first: Vec<Duration> = (0..8).map(|_| p.delay(3)).collect();
        let second: Vec<Duration> = (0..8).map(|_| p.delay(3)).collect();
        assert_ne!(first, second);
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 4, "{first:?}");
    }
}
