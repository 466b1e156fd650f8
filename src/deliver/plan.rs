//! Batch planning for PutLogEvents: pure, limits as parameters.
//!
//! Events of one stream are screened (too old, too new, too large, duplicate eventID) before
//! any call, sorted by timestamp, and cut greedily into batches that obey every limit. On
//! sorted input, greedy cutting yields the fewest batches any contiguous split can, so the
//! number of PutLogEvents calls is the minimum the limits allow.

use std::collections::HashSet;

use super::limits::{
    BatchLimits, FUTURE_TOLERANCE_MS, PUT_LOG_EVENTS_MAX_AGE_MS, PUT_LOG_EVENTS_MAX_FUTURE_MS,
};
use crate::time::MS_PER_DAY;

/// One event to deliver: its timestamp, its message, its eventID when known.
#[derive(Debug, Clone, Copy)]
pub struct LogEvent<'a> {
    pub timestamp_ms: i64,
    pub message: &'a str,
    pub event_id: Option<&'a str>,
}

/// Why an event is not put in any batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// More than 14 days old: CloudWatch Logs will never accept it. Permanent.
    TooOld,
    /// Older than the log group's retention: CloudWatch Logs will never accept it. Permanent.
    Expired,
    /// More than 2 hours ahead of now, within the tolerance: accepted a little later.
    /// Retryable.
    TooNew,
    /// Further ahead than the 2 hours and [`FUTURE_TOLERANCE_MS`]: a time no retry within the
    /// message's life would see accepted (a clock or a record gone wrong). Permanent.
    TooFarAhead,
    /// Larger than a whole batch may be. Permanent (the select stage stubs such records).
    TooLarge,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooOld => "too_old",
            Rejection::Expired => "expired",
            Rejection::TooNew => "too_new",
            Rejection::TooFarAhead => "too_far_ahead",
            Rejection::TooLarge => "too_large",
        }
    }

    /// Why, in words.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::TooOld => {
                "its eventTime is more than 14 days old (CloudWatch Logs refuses it; replay old \
                 log files with `trailwatch replay`)"
            }
            Rejection::Expired => "its eventTime is older than the log group's retention",
            Rejection::TooNew => "its eventTime is more than 2 hours ahead (accepted later)",
            Rejection::TooFarAhead => {
                "its eventTime is more than 2 hours 15 minutes ahead of now: no retry would see \
                 it accepted"
            }
            Rejection::TooLarge => "it is larger than a PutLogEvents call",
        }
    }

    /// Whether waiting and trying again could succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Rejection::TooNew)
    }
}

/// The plan for one stream: batches of indices into the input, in call order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Vec<usize>>,
    /// For each batch, whether it is full: no further event could join it under the count or
    /// byte limit (a batch closed by the 24-hour span or by the end of the input is not,
    /// unless it is at the count or byte limit).
    pub full: Vec<bool>,
    pub rejected: Vec<(usize, Rejection)>,
    /// Later copies of an eventID already planned.
    pub duplicates: Vec<usize>,
}

/// Plans the delivery of `events` at time `now_ms` to a group with `retention_days`.
pub fn plan_batches(
    events: &[LogEvent<'_>],
    now_ms: i64,
    retention_days: Option<u32>,
    limits: &BatchLimits,
) -> Plan {
    let mut plan = Plan::default();
    let oldest_allowed = now_ms - PUT_LOG_EVENTS_MAX_AGE_MS;
    let retention_floor = retention_days.map(|d| now_ms - i64::from(d) * MS_PER_DAY);
    let newest_allowed = now_ms + PUT_LOG_EVENTS_MAX_FUTURE_MS;
    let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
    let mut accepted: Vec<usize> = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let rejection = if event.message.len() + limits.event_overhead > limits.max_bytes {
            Some(Rejection::TooLarge)
        } else if event.timestamp_ms < oldest_allowed {
            Some(Rejection::TooOld)
        } else if retention_floor.is_some_and(|floor| event.timestamp_ms < floor) {
            Some(Rejection::Expired)
        } else if event.timestamp_ms > newest_allowed + FUTURE_TOLERANCE_MS {
            Some(Rejection::TooFarAhead)
        } else if event.timestamp_ms > newest_allowed {
            Some(Rejection::TooNew)
        } else {
            None
        };
        if let Some(r) = rejection {
            plan.rejected.push((i, r));
        } else if event.event_id.is_some_and(|id| !seen.insert(id)) {
            plan.duplicates.push(i);
        } else {
            accepted.push(i);
        }
    }
    accepted.sort_by_key(|&i| events[i].timestamp_ms);

    let mut batch: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    for i in accepted {
        let event = &events[i];
        let cost = event.message.len() + limits.event_overhead;
        let full = batch.len() == limits.max_events || bytes + cost > limits.max_bytes;
        let spanned = batch
            .first()
            .is_some_and(|&f| event.timestamp_ms - events[f].timestamp_ms > limits.max_span_ms);
        if full || spanned {
            plan.batches.push(std::mem::take(&mut batch));
            plan.full.push(full);
            bytes = 0;
        }
        batch.push(i);
        bytes += cost;
    }
    if !batch.is_empty() {
        // The last batch is full only when no event at all could join it.
        plan.full.push(
            batch.len() == limits.max_events || bytes + limits.event_overhead >= limits.max_bytes,
        );
        plan.batches.push(batch);
    }
    plan
}

/// The fewest batches any plan could use for these accepted events: the largest of the count
/// bound, the byte bound and the span bound (the fewest windows of `max_span_ms` covering every
/// timestamp, exact for the span rule alone). A lower bound on every plan, contiguous or not.
pub fn minimum_batches(events: &[LogEvent<'_>], limits: &BatchLimits) -> usize {
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + limits.event_overhead)
        .sum();
    let mut times: Vec<i64> = events.iter().map(|e| e.timestamp_ms).collect();
    times.sort_unstable();
    let mut windows = 0;
    let mut window_start = None;
    for t in times {
        if window_start.is_none_or(|start| t - start > limits.max_span_ms) {
            windows += 1;
            window_start = Some(t);
        }
    }
    events
        .len()
        .div_ceil(limits.max_events)
        .max(bytes.div_ceil(limits.max_bytes))
        .max(windows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::limits::FUTURE_TOLERANCE_MS;
    use crate::time::MS_PER_HOUR;

    const NOW: i64 = 1_700_000_000_000;

    fn event(t: i64, message: &str) -> LogEvent<'_> {
        LogEvent {
            timestamp_ms: t,
            message,
            event_id: None,
        }
    }

    #[test]
    fn batches_are_sorted_by_timestamp() {
        let events = [
            event(NOW - 3, "c"),
            event(NOW - 9, "a"),
            event(NOW - 5, "b"),
        ];
        let plan = plan_batches(&events, NOW, None, &BatchLimits::default());
        assert_eq!(plan.batches, vec![vec![1, 2, 0]]);
    }

    #[test]
    fn events_outside_the_accepted_window_are_rejected_before_the_call() {
        let events = [
            event(NOW - 15 * MS_PER_DAY, "old"),
            event(NOW + 2 * MS_PER_HOUR + 60_000, "new"),
            event(NOW, "ok"),
            event(NOW - 4 * MS_PER_DAY, "expired under 3-day retention"),
        ];
        let plan = plan_batches(&events, NOW, Some(3), &BatchLimits::default());
        assert_eq!(plan.batches, vec![vec![2]]);
        assert_eq!(
            plan.rejected,
            vec![
                (0, Rejection::TooOld),
                (1, Rejection::TooNew),
                (3, Rejection::Expired)
            ]
        );
        assert!(Rejection::TooNew.is_retryable() && !Rejection::TooOld.is_retryable());
    }

    #[test]
    fn a_record_far_beyond_the_future_window_is_set_aside_not_retried() {
        let events = [
            event(
                NOW + 2 * MS_PER_HOUR + FUTURE_TOLERANCE_MS,
                "just within the tolerance",
            ),
            event(NOW + 2 * MS_PER_HOUR + FUTURE_TOLERANCE_MS + 1, "beyond it"),
            event(NOW + 400 * MS_PER_DAY, "next year"),
        ];
        let plan = plan_batches(&events, NOW, None, &BatchLimits::default());
        assert_eq!(
            plan.rejected,
            vec![
                (0, Rejection::TooNew),
                (1, Rejection::TooFarAhead),
                (2, Rejection::TooFarAhead)
            ]
        );
        assert!(!Rejection::TooFarAhead.is_retryable());
    }

    #[test]
    fn an_event_as_large_as_a_call_allows_is_put_alone_and_a_byte_more_is_too_large() {
        // CloudWatch Logs takes events up to 1 MB; a call's 1,048,576 bytes count 26 per event.
        let limits = BatchLimits::default();
        let largest = "x".repeat(limits.max_bytes - limits.event_overhead);
        let too_large = "x".repeat(limits.max_bytes - limits.event_overhead + 1);
        let events = [
            event(NOW, "small"),
            event(NOW + 1, &largest),
            event(NOW + 2, &too_large),
        ];
        let plan = plan_batches(&events, NOW, None, &limits);
        assert_eq!(plan.batches, vec![vec![0], vec![1]]);
        assert_eq!(plan.full, vec![true, true]);
        assert_eq!(plan.rejected, vec![(2, Rejection::TooLarge)]);
    }

    #[test]
    fn repeated_event_ids_are_planned_once() {
        let mut events = vec![event(NOW, "a"), event(NOW, "a again"), event(NOW, "b")];
        events[0].event_id = Some("id-1");
        events[1].event_id = Some("id-1");
        events[2].event_id = Some("id-2");
        let plan = plan_batches(&events, NOW, None, &BatchLimits::default());
        assert_eq!(plan.batches, vec![vec![0, 2]]);
        assert_eq!(plan.duplicates, vec![1]);
    }

    #[test]
    fn a_batch_never_spans_more_than_the_limit() {
        let events = [
            event(NOW - 10 * MS_PER_DAY, "a"),
            event(NOW - 10 * MS_PER_DAY + 24 * MS_PER_HOUR, "b"),
            event(NOW - 10 * MS_PER_DAY + 24 * MS_PER_HOUR + 1, "c"),
        ];
        let plan = plan_batches(&events, NOW, None, &BatchLimits::default());
        assert_eq!(plan.batches, vec![vec![0, 1], vec![2]]);
        assert_eq!(
            plan.full,
            vec![false, false],
            "closed by the span, then the end"
        );
    }

    #[test]
    fn the_minimum_counts_the_windows_the_span_rule_forces() {
        // Four small events over three days: count and bytes allow one call, the 24-hour rule
        // needs three (0 h and 23 h together; 30 h; 60 h), and the planner uses three.
        let hours = [0, 23, 30, 60];
        let events: Vec<_> = hours
            .iter()
            .map(|h| event(NOW - 61 * MS_PER_HOUR + h * MS_PER_HOUR, "x"))
            .collect();
        let limits = BatchLimits::default();
        assert_eq!(minimum_batches(&events, &limits), 3);
        let plan = plan_batches(&events, NOW, None, &limits);
        assert_eq!(plan.batches.len(), 3);
        // Exactly 24 hours apart still fits one call.
        let edge = [event(NOW - MS_PER_DAY, "a"), event(NOW, "b")];
        assert_eq!(minimum_batches(&edge, &limits), 1);
    }

    #[test]
    fn counts_and_bytes_cut_batches_at_exactly_the_limit() {
        let limits = BatchLimits {
            max_events: 3,
            max_bytes: 3 * (4 + 26),
            ..BatchLimits::default()
        };
        let events: Vec<_> = (0..7).map(|i| event(NOW + i, "abcd")).collect();
        let plan = plan_batches(&events, NOW, None, &limits);
        assert_eq!(plan.batches, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(plan.full, vec![true, true, false]);
        let six = plan_batches(&events[..6], NOW, None, &limits);
        assert_eq!(
            six.full,
            vec![true, true],
            "at the count limit at the end of the input"
        );
        let limits = BatchLimits {
            max_bytes: 2 * (4 + 26),
            ..limits
        };
        let plan = plan_batches(&events, NOW, None, &limits);
        assert_eq!(plan.batches.len(), 4);
        assert_eq!(plan.batches.len(), minimum_batches(&events, &limits));
    }
}
