//! Properties of the PutLogEvents batch planner, for any input: every accepted event is in
//! exactly one batch, every batch obeys every limit, the rejections are exactly the events
//! outside the accepted window, and the number of calls is the minimum the limits allow
//! whenever the 24-hour span does not force a cut.

use std::collections::BTreeSet;

use proptest::prelude::*;
use trailwatch::deliver::limits::{
    FUTURE_TOLERANCE_MS, PUT_LOG_EVENTS_MAX_AGE_MS, PUT_LOG_EVENTS_MAX_FUTURE_MS,
};
use trailwatch::deliver::plan::minimum_batches;
use trailwatch::deliver::{plan_batches, BatchLimits, LogEvent, Rejection};
use trailwatch::time::{MS_PER_DAY, MS_PER_HOUR};

const NOW: i64 = 1_700_000_000_000;

/// An event: an offset from now (from 16 days back to 3 hours ahead: past the tolerance), a message length and
/// an eventID drawn from a small set so repeats happen.
fn events_strategy(max_len: usize) -> impl Strategy<Value = Vec<(i64, usize, Option<u8>)>> {
    prop::collection::vec(
        (
            prop_oneof![
                // Mostly inside the window, with a few outside on either side.
                8 => -20 * MS_PER_HOUR..0i64,
                1 => -16 * MS_PER_DAY..-13 * MS_PER_DAY,
                1 => 0i64..3 * MS_PER_HOUR,
            ],
            1..max_len,
            prop::option::of(0u8..60),
        ),
        0..300,
    )
}

fn limits_strategy() -> impl Strategy<Value = BatchLimits> {
    (
        1usize..40,
        60usize..2_000,
        0usize..30,
        prop_oneof![Just(24 * MS_PER_HOUR), (MS_PER_HOUR..30 * MS_PER_HOUR)],
    )
        .prop_map(
            |(max_events, max_bytes, event_overhead, max_span_ms)| BatchLimits {
                max_events,
                max_bytes,
                event_overhead,
                max_span_ms,
            },
        )
}

struct Input {
    messages: Vec<String>,
    ids: Vec<Option<String>>,
    times: Vec<i64>,
}

impl Input {
    fn new(spec: &[(i64, usize, Option<u8>)]) -> Input {
        Input {
            messages: spec
                .iter()
                .enumerate()
                .map(|(i, &(_, len, _))| format!("{i:06}{}", "m".repeat(len)))
                .collect(),
            ids: spec
                .iter()
                .map(|&(_, _, id)| id.map(|n| format!("id-{n}")))
                .collect(),
            times: spec.iter().map(|&(t, _, _)| NOW + t).collect(),
        }
    }

    fn events(&self) -> Vec<LogEvent<'_>> {
        (0..self.messages.len())
            .map(|i| LogEvent {
                timestamp_ms: self.times[i],
                message: &self.messages[i],
                event_id: self.ids[i].as_deref(),
            })
            .collect()
    }
}

/// The rejection the limits call for, independently of the planner.
fn expected_rejection(event: &LogEvent<'_>, limits: &BatchLimits) -> Option<Rejection> {
    if event.message.len() + limits.event_overhead > limits.max_bytes {
        Some(Rejection::TooLarge)
    } else if event.timestamp_ms < NOW - PUT_LOG_EVENTS_MAX_AGE_MS {
        Some(Rejection::TooOld)
    } else if event.timestamp_ms > NOW + PUT_LOG_EVENTS_MAX_FUTURE_MS + FUTURE_TOLERANCE_MS {
        Some(Rejection::TooFarAhead)
    } else if event.timestamp_ms > NOW + PUT_LOG_EVENTS_MAX_FUTURE_MS {
        Some(Rejection::TooNew)
    } else {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn batches_cover_the_accepted_input_exactly_once(
        spec in events_strategy(200),
        limits in limits_strategy(),
    ) {
        let input = Input::new(&spec);
        let events = input.events();
        let plan = plan_batches(&events, NOW, None, &limits);
        let mut planned = BTreeSet::new();
        for batch in &plan.batches {
            for &i in batch {
                prop_assert!(planned.insert(i), "event {i} planned twice");
            }
        }
        let rejected: BTreeSet<usize> = plan.rejected.iter().map(|&(i, _)| i).collect();
        let duplicates: BTreeSet<usize> = plan.duplicates.iter().copied().collect();
        prop_assert!(planned.is_disjoint(&rejected) && planned.is_disjoint(&duplicates));
        prop_assert!(rejected.is_disjoint(&duplicates));
        prop_assert_eq!(planned.len() + rejected.len() + duplicates.len(), events.len());
        // Duplicates are exactly the later copies of an eventID among accepted events.
        let mut seen = BTreeSet::new();
        for (i, e) in events.iter().enumerate() {
            if expected_rejection(e, &limits).is_some() {
                continue;
            }
            let repeat = e.event_id.is_some_and(|id| !seen.insert(id));
            prop_assert_eq!(repeat, duplicates.contains(&i), "event {} duplicate status", i);
        }
    }

    #[test]
    fn every_batch_obeys_every_limit(
        spec in events_strategy(200),
        limits in limits_strategy(),
    ) {
        let input = Input::new(&spec);
        let events = input.events();
        let plan = plan_batches(&events, NOW, None, &limits);
        for batch in &plan.batches {
            prop_assert!(!batch.is_empty());
            prop_assert!(batch.len() <= limits.max_events);
            let bytes: usize = batch.iter().map(|&i| events[i].message.len() + limits.event_overhead).sum();
            prop_assert!(bytes <= limits.max_bytes, "{bytes} bytes > {}", limits.max_bytes);
            let times: Vec<i64> = batch.iter().map(|&i| events[i].timestamp_ms).collect();
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]), "not sorted: {times:?}");
            prop_assert!(times[times.len() - 1] - times[0] <= limits.max_span_ms);
        }
    }

    #[test]
    fn rejections_are_exactly_the_events_outside_the_window(
        spec in events_strategy(200),
        limits in limits_strategy(),
    ) {
        let input = Input::new(&spec);
        let events = input.events();
        let plan = plan_batches(&events, NOW, None, &limits);
        let want: Vec<(usize, Rejection)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| expected_rejection(e, &limits).map(|r| (i, r)))
            .collect();
        prop_assert_eq!(plan.rejected, want);
    }

    #[test]
    fn calls_are_within_two_percent_of_the_minimum_when_no_span_binds(
        spec in prop::collection::vec((0i64..MS_PER_HOUR, 1usize..5_000), 1..3_000),
        max_events in 50usize..10_000,
    ) {
        // Production limits except the count, all events within one hour: only count and
        // bytes can cut.
        let limits = BatchLimits { max_events, ..BatchLimits::default() };
        let spec: Vec<(i64, usize, Option<u8>)> =
            spec.into_iter().map(|(t, len)| (-t, len, None)).collect();
        let input = Input::new(&spec);
        let events = input.events();
        let plan = plan_batches(&events, NOW, None, &limits);
        let minimum = minimum_batches(&events, &limits);
        prop_assert!(
            plan.batches.len() as f64 <= (minimum as f64 * 1.02).max(minimum as f64 + 1.0).floor(),
            "{} calls for a minimum of {minimum}", plan.batches.len()
        );
    }
}

#[test]
fn byte_limit_counts_26_bytes_per_event() {
    // Two events of 500 bytes fit 1,052 bytes only when the overhead is counted as 26 each.
    let messages = ["a".repeat(500), "b".repeat(500)];
    let events: Vec<LogEvent<'_>> = messages
        .iter()
        .map(|m| LogEvent {
            timestamp_ms: NOW,
            message: m,
            event_id: None,
        })
        .collect();
    let fits = BatchLimits {
        max_bytes: 1_052,
        ..BatchLimits::default()
    };
    assert_eq!(plan_batches(&events, NOW, None, &fits).batches.len(), 1);
    let short = BatchLimits {
        max_bytes: 1_051,
        ..BatchLimits::default()
    };
    assert_eq!(plan_batches(&events, NOW, None, &short).batches.len(), 2);
}
