//! The delivery run against an in-memory sink, ledger and queue: what is put, held back,
//! retried and confirmed, whatever fails.

use std::sync::Mutex;

use super::*;
use crate::deliver::hold::{CarryError, HeldMessage};
use crate::deliver::ledger::{LedgerError, MemoryLedger};
use crate::deliver::message::MessagePacker;
use crate::deliver::{RejectedRanges, SinkError};
use crate::local::block_on;
use crate::time::format_event_time;

const NOW: i64 = 1_700_000_000_000;

/// Collects what was put; fails the calls whose ordinal is listed.
#[derive(Default)]
struct Sink {
    put: Mutex<Vec<String>>,
    calls: Mutex<usize>,
    fail: Vec<usize>,
}

impl LogSink for Sink {
    async fn put_batch(
        &self,
        _stream: &str,
        events: &[LogEvent<'_>],
    ) -> Result<RejectedRanges, SinkError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if self.fail.contains(&call) {
            return Err(SinkError::new(true, "injected"));
        }
        let mut put = self.put.lock().unwrap();
        put.extend(events.iter().map(|e| e.message.to_owned()));
        Ok(RejectedRanges::default())
    }
}

fn record(id: &str, minute: i64) -> String {
    format!(
        r#"{{"eventID":"{id}","eventTime":"{}","recipientAccountId":"1","awsRegion":"r"}}"#,
        format_event_time(NOW - minute * 60_000)
    )
}

fn body(records: &[String]) -> String {
    format!(
        r#"{{"v":1,"stream":"1_CloudTrail_r","records":[{}]}}"#,
        records.join(",")
    )
}

fn run<L: DeliveredLedger>(
    sink: &Sink,
    ledger: &L,
    messages: &[(&str, &str)],
    limits: &BatchLimits,
) -> (DeliveryReport, LedgerReport) {
    let settings = DeliverySettings {
        limits: *limits,
        ..DeliverySettings::at(NOW)
    };
    run_at(sink, ledger, &NoCarry, messages, &settings)
}

#[test]
fn a_record_in_two_messages_reaches_the_stream_once_across_invocations() {
    let ledger = MemoryLedger::default();
    let sink = Sink::default();
    let first = body(&[record("a", 5), record("b", 4)]);
    let second = body(&[record("b", 4), record("c", 3)]);
    let limits = BatchLimits::default();
    let (r1, _) = run(&sink, &ledger, &[("m1", &first)], &limits);
    let (r2, l2) = run(&sink, &ledger, &[("m2", &second)], &limits);
    assert_eq!((r1.delivered, r2.delivered, r2.duplicates), (2, 1, 1));
    assert_eq!(l2.taken, 1);
    assert_eq!(sink.put.lock().unwrap().len(), 3);
}

#[test]
fn a_redelivered_message_puts_only_what_did_not_land() {
    let ledger = MemoryLedger::default();
    // One event per batch: the second put fails.
    let limits = BatchLimits {
        max_events: 1,
        ..BatchLimits::default()
    };
    let sink = Sink {
        fail: vec![2],
        ..Sink::default()
    };
    let message = body(&[record("a", 5), record("b", 4), record("c", 3)]);
    let (first, l1) = run(&sink, &ledger, &[("m1", &message)], &limits);
    assert_eq!(first.retry.iter().collect::<Vec<_>>(), ["m1"]);
    assert_eq!(
        l1.confirmed, 2,
        "what landed is confirmed, since m1 comes back"
    );
    let (again, _) = run(&sink, &ledger, &[("m1", &message)], &limits);
    assert!(again.retry.is_empty());
    assert_eq!(again.delivered, 1);
    let mut put = sink.put.lock().unwrap().clone();
    put.sort();
    let mut want = vec![record("a", 5), record("b", 4), record("c", 3)];
    want.sort();
    assert_eq!(put, want, "each record exactly once");
}

/// A ledger that lets deliveries begin but cannot answer for a claim.
struct Down;
impl DeliveredLedger for Down {
    async fn begin(&self, attempts: &[Attempt<'_>], _: &Leases) -> Vec<BeginOutcome> {
        vec![BeginOutcome::Go; attempts.len()]
    }
    async fn claim(&self, claims: &[Claim<'_>], _: &Leases) -> Vec<ClaimOutcome> {
        vec![ClaimOutcome::Unavailable; claims.len()]
    }
    async fn confirm(&self, _: &[Claim<'_>], _: &Leases) -> Result<(), LedgerError> {
        Err(LedgerError::new("down"))
    }
    async fn release(&self, _: &[Claim<'_>]) -> Result<(), LedgerError> {
        Err(LedgerError::new("down"))
    }
    async fn finish(&self, _: &[&str], _: &Leases) -> Result<(), LedgerError> {
        Err(LedgerError::new("down"))
    }
    async fn let_go(&self, _: &[Attempt<'_>]) -> Result<(), LedgerError> {
        Err(LedgerError::new("down"))
    }
}

#[test]
fn when_the_ledger_cannot_answer_nothing_is_put_and_the_message_comes_back() {
    let sink = Sink::default();
    let message = body(&[record("a", 5)]);
    let (report, ledger) = run(&sink, &Down, &[("m1", &message)], &BatchLimits::default());
    assert_eq!(report.delivered, 0);
    assert_eq!(ledger.unavailable, 1);
    assert!(report.retry.contains("m1"));
    assert!(sink.put.lock().unwrap().is_empty());
}

#[test]
fn a_record_claimed_by_a_message_that_comes_back_is_not_lost_to_a_copy_in_another_message() {
    let ledger = MemoryLedger::default();
    let limits = BatchLimits::default();
    let failing = Sink {
        fail: vec![1],
        ..Sink::default()
    };
    let x = body(&[record("r", 5)]);
    let (first, _) = run(&failing, &ledger, &[("x", &x)], &limits);
    assert!(
        first.retry.contains("x"),
        "x holds r's claim and comes back"
    );
    // A CloudTrail duplicate of r in another file's message z, ahead of x in the batch.
    let sink = Sink::default();
    let z = body(&[record("r", 5), record("s", 4)]);
    let (again, _) = run(&sink, &ledger, &[("z", &z), ("x", &x)], &limits);
    assert!(again.retry.is_empty());
    assert_eq!(
        (again.delivered, again.duplicates, again.waiting),
        (2, 1, 0)
    );
    let mut put = sink.put.lock().unwrap().clone();
    put.sort();
    assert_eq!(put, [record("r", 5), record("s", 4)], "r once, s once");
}

/// The delivery queue as the deliver stage sees it: what was sent back, or a failure.
#[derive(Default)]
struct Queue {
    sent: Mutex<Vec<String>>,
    max_wait_ms: i64,
    down: bool,
    keeps: bool,
}

impl Queue {
    /// A queue records may wait in for a minute.
    fn holding() -> Self {
        Queue {
            max_wait_ms: 60_000,
            ..Queue::default()
        }
    }
}

impl Carrier for Queue {
    fn max_wait_ms(&self) -> i64 {
        self.max_wait_ms
    }
    async fn send(&self, held: Vec<HeldMessage>) -> Result<(), CarryError> {
        if self.down {
            return Err(CarryError::new("queue down"));
        }
        assert!(held.iter().all(|m| m.stream == "1_CloudTrail_r"));
        self.sent
            .lock()
            .unwrap()
            .extend(held.into_iter().map(|m| m.body));
        Ok(())
    }
    fn keeps(&self) -> bool {
        self.keeps
    }
}

/// A memory ledger that cannot release.
#[derive(Default)]
struct Sticky(MemoryLedger);

impl DeliveredLedger for Sticky {
    async fn begin(&self, attempts: &[Attempt<'_>], leases: &Leases) -> Vec<BeginOutcome> {
        self.0.begin(attempts, leases).await
    }
    async fn claim(&self, claims: &[Claim<'_>], leases: &Leases) -> Vec<ClaimOutcome> {
        self.0.claim(claims, leases).await
    }
    async fn confirm(&self, delivered: &[Claim<'_>], leases: &Leases) -> Result<(), LedgerError> {
        self.0.confirm(delivered, leases).await
    }
    async fn release(&self, _: &[Claim<'_>]) -> Result<(), LedgerError> {
        Err(LedgerError::new("unavailable"))
    }
    async fn finish(&self, deliveries: &[&str], leases: &Leases) -> Result<(), LedgerError> {
        self.0.finish(deliveries, leases).await
    }
    async fn let_go(&self, attempts: &[Attempt<'_>]) -> Result<(), LedgerError> {
        self.0.let_go(attempts).await
    }
}

/// Calls of at most three events, delivered at `NOW`.
fn three_a_call() -> DeliverySettings {
    DeliverySettings {
        limits: BatchLimits {
            max_events: 3,
            ..BatchLimits::default()
        },
        ..DeliverySettings::at(NOW)
    }
}

fn deliver_with<L: DeliveredLedger>(
    sink: &Sink,
    ledger: &L,
    queue: &Queue,
    messages: &[(&str, &str)],
) -> (DeliveryReport, LedgerReport) {
    run_at(sink, ledger, queue, messages, &three_a_call())
}

#[test]
fn a_call_that_is_not_full_waits_in_the_queue_and_is_put_full_later() {
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let queue = Queue::holding();
    let first = body(&[
        record("a", 9),
        record("b", 8),
        record("c", 7),
        record("d", 6),
    ]);
    let (r1, l1) = deliver_with(&sink, &ledger, &queue, &[("m1", &first)]);
    assert_eq!((r1.put_calls, r1.delivered, r1.held_back), (1, 3, 1));
    assert!(
        r1.retry.is_empty(),
        "m1 is done: d travels in a new message"
    );
    assert_eq!(l1.released, 1);
    let held = queue.sent.lock().unwrap().pop().unwrap();
    let opened = open_held(&held).unwrap();
    assert_eq!(opened.len(), 1, "sealed in one envelope");
    let message = DeliveryMessage::parse(&opened[0]).unwrap();
    assert_eq!(message.since, Some(NOW), "held back since now");
    assert_eq!(message.records[0].get(), record("d", 6));

    // The held record meets two more of its stream: one full call.
    let second = body(&[record("e", 5), record("f", 4)]);
    let (r2, _) = deliver_with(&sink, &ledger, &queue, &[("held", &held), ("m2", &second)]);
    assert_eq!((r2.put_calls, r2.delivered, r2.held_back), (1, 3, 0));
    let mut put = sink.put.lock().unwrap().clone();
    put.sort();
    let want: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, id)| record(id, 9 - i as i64))
        .collect();
    assert_eq!(put, want, "each record once");
}

#[test]
fn records_that_waited_long_enough_are_put_in_a_call_that_is_not_full() {
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let queue = Queue::holding();
    // Waiting since a minute ago (a message held back before).
    let held = MessagePacker::waiting_since("1_CloudTrail_r", 10_000, Some(NOW - 60_000));
    let mut held = held;
    assert!(held.push(&record("a", 9)).is_none());
    let held = held.take().unwrap();
    let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
    assert_eq!((r.put_calls, r.delivered, r.held_back), (1, 1, 0));
    // Without a carrier nothing is held back.
    let fresh = body(&[record("b", 8)]);
    let (r, _) = deliver_with(&sink, &ledger, &Queue::default(), &[("m", &fresh)]);
    assert_eq!((r.put_calls, r.held_back), (1, 0));
    assert!(queue.sent.lock().unwrap().is_empty());
}

#[test]
fn a_held_tail_that_comes_back_alone_waits_until_its_time_is_up() {
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let queue = Queue::holding();
    let message = body(&[record("a", 9)]);
    let (r, _) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
    assert_eq!((r.put_calls, r.held_back), (0, 1));
    // Back alone: held again, still since its first hold, so more of its stream may join.
    let held = queue.sent.lock().unwrap().pop().unwrap();
    let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
    assert_eq!((r.put_calls, r.held_back, r.waited_out), (0, 1, 0));
    let again = queue.sent.lock().unwrap().pop().unwrap();
    let (first, second) = (open_held(&held).unwrap(), open_held(&again).unwrap());
    let (first, second) = (
        DeliveryMessage::parse(&first[0]).unwrap(),
        DeliveryMessage::parse(&second[0]).unwrap(),
    );
    assert_eq!(first.since, second.since, "held since the first time");
    assert_eq!(first.records[0].get(), second.records[0].get());
    assert_ne!(first.id, second.id, "a new delivery");
}

#[test]
fn a_queue_that_keeps_leaves_a_lone_held_message_in_it_unclaimed_until_more_comes() {
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let queue = Queue {
        keeps: true,
        ..Queue::holding()
    };
    let message = body(&[record("a", 9)]);
    deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
    let held = queue.sent.lock().unwrap().pop().unwrap();
    // Back alone: it stays in the queue (retried), for what is left of its minute.
    let (r, l) = deliver_with(&sink, &ledger, &queue, &[("h", &held)]);
    assert_eq!((r.put_calls, r.held_back, l.claimed), (0, 0, 0));
    assert_eq!(r.kept, [("h".to_owned(), 60_000)].into());
    assert!(r.retry.contains("h") && queue.sent.lock().unwrap().is_empty());
    assert!(ledger.is_empty(), "nothing claimed while it waits");
    // Back with more of its stream: they meet in one call.
    let more = body(&[record("b", 8), record("c", 7)]);
    let (r, _) = deliver_with(&sink, &ledger, &queue, &[("h", &held), ("n", &more)]);
    assert_eq!((r.put_calls, r.delivered), (1, 3));
    assert!(r.kept.is_empty() && r.retry.is_empty());
    // One that has waited long enough is put, kept or not.
    let mut old = MessagePacker::waiting_since("1_CloudTrail_r", 10_000, Some(NOW - 60_000));
    assert!(old.push(&record("d", 6)).is_none());
    let old = old.take().unwrap();
    let (r, _) = deliver_with(&sink, &ledger, &queue, &[("o", &old)]);
    assert_eq!((r.put_calls, r.waited_out), (1, 1));
    assert!(r.kept.is_empty());
}

#[test]
fn records_that_cannot_be_sent_back_bring_their_message_back_to_claim_them_again() {
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let queue = Queue {
        down: true,
        ..Queue::holding()
    };
    let message = body(&[record("a", 9)]);
    let (r, l) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
    assert_eq!((r.put_calls, r.held_back, l.released), (0, 0, 1));
    assert_eq!(
        r.hold_back_error.as_deref(),
        Some("sending them to the queue failed: queue down")
    );
    assert!(r.retry.contains("m"), "m comes back");
    let (r, _) = deliver_with(&sink, &ledger, &Queue::default(), &[("m", &message)]);
    assert_eq!(r.delivered, 1);
    assert_eq!(*sink.put.lock().unwrap(), [record("a", 9)]);
}

#[test]
fn a_held_message_received_at_once_finds_its_records_released() {
    // The hold queue hands the new message to another invocation before this one ends:
    // its claims must already be released, or it would drop them as taken.
    struct Instant<'a> {
        sink: &'a Sink,
        ledger: &'a MemoryLedger,
        delivered: Mutex<usize>,
    }
    impl Carrier for Instant<'_> {
        fn max_wait_ms(&self) -> i64 {
            60_000
        }
        async fn send(&self, held: Vec<HeldMessage>) -> Result<(), CarryError> {
            for m in held {
                let (r, _) =
                    deliver_with(self.sink, self.ledger, &Queue::default(), &[("n", &m.body)]);
                *self.delivered.lock().unwrap() += r.delivered;
            }
            Ok(())
        }
    }
    let (sink, ledger) = (Sink::default(), MemoryLedger::default());
    let carrier = Instant {
        sink: &sink,
        ledger: &ledger,
        delivered: Mutex::new(0),
    };
    let message = body(&[record("a", 9)]);
    let inbound = [Inbound {
        id: "m",
        body: &message,
    }];
    let (r, _) = block_on(deliver_messages_once(
        &sink,
        &ledger,
        &carrier,
        &inbound,
        &three_a_call(),
    ));
    assert_eq!((r.held_back, r.delivered), (1, 0));
    assert_eq!(
        *carrier.delivered.lock().unwrap(),
        1,
        "the held message delivered a"
    );
}

#[test]
fn records_whose_claims_cannot_be_released_are_put_at_once() {
    let (sink, ledger) = (Sink::default(), Sticky::default());
    let queue = Queue::holding();
    let message = body(&[record("a", 9)]);
    let (r, l) = deliver_with(&sink, &ledger, &queue, &[("m", &message)]);
    assert_eq!((r.delivered, r.held_back, l.release_failures), (1, 0, 1));
    assert!(r.retry.is_empty() && queue.sent.lock().unwrap().is_empty());
    assert_eq!(*sink.put.lock().unwrap(), [record("a", 9)]);
}

/// A delivery message with a delivery id, as select packs it.
fn delivery(id: &str, records: &[String]) -> String {
    format!(
        r#"{{"v":1,"id":"{id}","stream":"1_CloudTrail_r","records":[{}]}}"#,
        records.join(",")
    )
}

fn settings_at(now_ms: i64) -> DeliverySettings {
    DeliverySettings::at(now_ms)
}

fn run_at<L: DeliveredLedger, C: Carrier>(
    sink: &Sink,
    ledger: &L,
    carrier: &C,
    messages: &[(&str, &str)],
    settings: &DeliverySettings,
) -> (DeliveryReport, LedgerReport) {
    let inbound: Vec<Inbound<'_>> = messages
        .iter()
        .map(|&(id, body)| Inbound { id, body })
        .collect();
    block_on(deliver_messages_once(
        sink, ledger, carrier, &inbound, settings,
    ))
}

#[test]
fn a_message_redriven_from_the_dead_letter_queue_takes_its_claims_back() {
    let ledger = MemoryLedger::default();
    let failing = Sink {
        fail: vec![1, 2, 3, 4, 5],
        ..Sink::default()
    };
    let message = delivery("d1", &[record("a", 5), record("b", 4)]);
    // Five receives, each put failing: the message ends in the dead-letter queue.
    for receive in 0..5 {
        let at = settings_at(NOW + receive * 365_000);
        let (r, _) = run_at(&failing, &ledger, &NoCarry, &[("sqs-1", &message)], &at);
        assert!(r.retry.contains("sqs-1"));
    }
    // Moved back: a new SQS message id, the same body.
    let sink = Sink::default();
    let at = settings_at(NOW + 3_600_000);
    let (r, l) = run_at(&sink, &ledger, &NoCarry, &[("sqs-2", &message)], &at);
    assert!(r.retry.is_empty());
    assert_eq!((r.delivered, r.duplicates, l.finished), (2, 0, 1));
    assert_eq!(sink.put.lock().unwrap().len(), 2);
}

#[test]
fn a_copy_of_a_finished_delivery_is_dropped_and_a_copy_in_flight_too() {
    let ledger = MemoryLedger::default();
    let sink = Sink::default();
    let message = delivery("d1", &[record("a", 5), record("b", 4)]);
    // Sent twice (a send whose answer was lost): two SQS messages, one delivery.
    let (r, _) = run_at(
        &sink,
        &ledger,
        &NoCarry,
        &[("sqs-1", &message)],
        &settings_at(NOW),
    );
    assert_eq!(r.delivered, 2);
    let (r, l) = run_at(
        &sink,
        &ledger,
        &NoCarry,
        &[("sqs-2", &message)],
        &settings_at(NOW),
    );
    assert_eq!((r.delivered, r.duplicates, l.copies), (0, 2, 2));
    assert!(r.retry.is_empty());
    // A copy received while the other is in flight.
    let other = delivery("d2", &[record("c", 3)]);
    let attempt = Attempt {
        delivery: "d2",
        attempt: "sqs-3",
    };
    block_on(ledger.begin(&[attempt], &Leases::at(NOW)));
    let (r, l) = run_at(
        &sink,
        &ledger,
        &NoCarry,
        &[("sqs-4", &other)],
        &settings_at(NOW),
    );
    assert_eq!((r.delivered, l.copies), (0, 1));
    assert!(r.retry.is_empty(), "the one in flight lives on in SQS");
    assert_eq!(sink.put.lock().unwrap().len(), 2);
}

#[test]
fn a_copy_waits_while_the_owner_may_still_deliver_and_is_dropped_once_it_has() {
    let ledger = MemoryLedger::default();
    let queue = Queue::holding();
    let failing = Sink {
        fail: vec![1],
        ..Sink::default()
    };
    let owner = delivery("d1", &[record("r", 5)]);
    let (r, _) = run_at(
        &failing,
        &ledger,
        &NoCarry,
        &[("x", &owner)],
        &settings_at(NOW),
    );
    assert!(r.retry.contains("x"));
    // Another file's copy of r: neither put nor dropped, but sent to wait.
    let sink = Sink::default();
    let copy = delivery("d2", &[record("r", 5), record("s", 4)]);
    let (r, _) = run_at(&sink, &ledger, &queue, &[("z", &copy)], &settings_at(NOW));
    assert_eq!((r.waiting, r.held_back, r.duplicates), (1, 1, 0));
    assert!(
        r.retry.is_empty(),
        "z is done: r waits in a new message, with s held back"
    );
    let waiting = queue.sent.lock().unwrap().pop().unwrap();
    // The owner comes back and delivers r; the waiting copy is then a duplicate.
    let (r, _) = run_at(
        &sink,
        &ledger,
        &NoCarry,
        &[("x", &owner)],
        &settings_at(NOW),
    );
    assert_eq!(r.delivered, 1);
    let later = settings_at(NOW + 60_000);
    let (r, l) = run_at(&sink, &ledger, &queue, &[("w", &waiting)], &later);
    assert_eq!(
        (r.delivered, r.duplicates, l.taken),
        (1, 1, 1),
        "s put, r dropped"
    );
    let mut put = sink.put.lock().unwrap().clone();
    put.sort();
    assert_eq!(put, [record("r", 5), record("s", 4)], "each once");
}

#[test]
fn a_record_whose_owner_died_is_delivered_by_the_copy_that_waited() {
    let ledger = MemoryLedger::default();
    let failing = Sink {
        fail: vec![1],
        ..Sink::default()
    };
    let owner = delivery("d1", &[record("r", 5)]);
    run_at(
        &failing,
        &ledger,
        &NoCarry,
        &[("x", &owner)],
        &settings_at(NOW),
    );
    // x ends in the dead-letter queue and expires there: it never comes back. Its copy,
    // without a hold queue, comes back until the owner's lease is over.
    let sink = Sink::default();
    let copy = delivery("d2", &[record("r", 5)]);
    let (r, _) = run_at(&sink, &ledger, &NoCarry, &[("z", &copy)], &settings_at(NOW));
    assert_eq!((r.delivered, r.waiting), (0, 1));
    assert!(r.retry.contains("z"));
    let after = settings_at(NOW + DEFAULT_CLAIM_LEASE_MS + 1);
    let (r, _) = run_at(&sink, &ledger, &NoCarry, &[("z", &copy)], &after);
    assert_eq!(r.delivered, 1);
    assert!(r.retry.is_empty());
    assert_eq!(*sink.put.lock().unwrap(), [record("r", 5)]);
}
