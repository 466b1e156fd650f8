//! Each eventID reaches its stream once across invocations, retries, duplicate files and
//! dead-letter redrives.
//!
//! A [`DeliveredLedger`] remembers, per `(stream, eventID)`, which *delivery* owns the record
//! and whether it was delivered; and per delivery, whether it is running (in which attempt,
//! until when) or done. A delivery is one delivery message: its id travels in its body (see
//! `deliver::message`), so it is the same delivery when SQS redelivers the message and when a
//! dead-letter queue is redriven (a new SQS message with the same body). A delivery run
//! ([`super::run::deliver_messages_once`]) uses the ledger so:
//!
//! 1. **Begin** each delivery for this attempt (its SQS message id). It goes on unless it is
//!    done — a copy of a finished delivery, whose records are all duplicates — or another
//!    attempt holds it, for at most the run lease: a copy sent twice, in flight elsewhere.
//!    That copy is dropped: the other's SQS message lives on until it succeeds, or waits in a
//!    dead-letter queue. A holder's lease ends with its invocation, well within a queue's
//!    visibility timeout, so a redrive always finds it over.
//! 2. **Claim before the put.** Every accepted record is claimed for its delivery — every copy
//!    of an eventID repeated within the invocation too, each for its own delivery, so that the
//!    copy whose delivery holds the claim wins it; repeats are dropped only among what is
//!    ours. A claim succeeds when nobody holds the key, when the same delivery holds it
//!    unconfirmed (its own earlier attempt, or its redrive), or when another delivery's
//!    unconfirmed claim is older than the claim lease (its owner died; see
//!    [`DEFAULT_CLAIM_LEASE_MS`]). A key delivered, or held by a delivery that is done, is a
//!    duplicate and dropped. A key held by a live delivery that is not done *waits*: the
//!    record is neither put nor dropped, but sent to wait in a new message (see
//!    `deliver::hold`), or its message comes back, until the owner is done or its lease
//!    ends.
//! 3. **Put** the fresh events (re-planned, so the batches are as full as the limits allow) —
//!    or, for a stream's calls that are not full, **hold them back** (see `deliver::hold`):
//!    **release** their claims, then send their records to the hold queue in a new message,
//!    a new delivery, which claims them when it is delivered. A held message that comes back
//!    alone may stay in the queue instead: nothing of it is claimed meanwhile.
//! 4. **Confirm after the put**, only for records of messages that go back to SQS (some other
//!    record of theirs was not delivered): their redelivery then skips what already landed.
//! 5. **Finish** every delivery that succeeded entirely: one write says all its records
//!    landed, so that a copy of the message, or another delivery's copy of a record, knows
//!    they are duplicates. Confirming each record instead would double the ledger's writes;
//!    finishing costs one per message.
//!
//! Why claim *before* the put: marking only after a successful put leaves two writers of the
//! same eventID (two files, two concurrent invocations) free to both put it; claiming first
//! makes the ledger's conditional write the arbiter. Why ownership and not a plain "seen"
//! mark: a crash (timeout, out of memory) between claim and put would otherwise lose the
//! record for good — with ownership, the redelivered or redriven message reclaims its own
//! keys and puts them, and a copy elsewhere takes them over once the lease says the owner is
//! gone. The remaining windows only ever duplicate, never lose:
//! - crash between a successful put and the confirm or the finish (or a failed confirm or
//!   finish): the redelivered message, or a copy after the lease, re-puts that batch;
//! - a PutLogEvents that CloudWatch Logs applied but whose response was lost (timeout, reset)
//!   is retried by the SDK and lands twice — no ledger can see that;
//! - a message SQS delivers twice after it succeeded (visibility timeout passed while it ran);
//! - a held-back message sent twice (a send applied whose answer was lost, in a queue that
//!   does not deduplicate) whose copies are delivered one after the other's release;
//! - a failed release (the records are put at once) while a copy claims them.
//!
//! When the ledger cannot answer, the records are not put and their message comes back
//! (nothing lost, nothing doubled). Records without an eventID are delivered unclaimed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use crate::time::MS_PER_HOUR;

/// How long an unconfirmed claim keeps other deliveries off a record: longer than a message's
/// whole retry life, so that an owner that may still come back is never overtaken. Derived
/// from the stack (template.yaml, checked by a test of the deliver function): the longest
/// retry life is the hold queue's, `maxReceiveCount` 50 × `VisibilityTimeout` 360 s = 5 h
/// (the delivery queue's is 5 × 365 s ≈ 30 min), plus one invocation (`Timeout` 60 s);
/// rounded up to 6 hours. A redrive of the owner within it still takes its own claims back.
pub const DEFAULT_CLAIM_LEASE_MS: i64 = 6 * MS_PER_HOUR;
/// How long an attempt holds its delivery when its invocation's deadline is unknown: the
/// stack's function `Timeout` (60 s) and 10 s to spare. It must stay below every queue's
/// visibility timeout (360 s), so that a redriven message never finds its delivery held.
pub const DEFAULT_RUN_LEASE_MS: i64 = 70_000;

/// The time the ledger is asked at, and how long what it grants holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leases {
    pub now_ms: i64,
    /// How long a claim keeps other deliveries off a record unless confirmed.
    pub claim_ms: i64,
    /// How long an attempt holds its delivery.
    pub run_ms: i64,
}

impl Leases {
    /// At `now_ms`, with the default leases.
    pub fn at(now_ms: i64) -> Self {
        Leases {
            now_ms,
            claim_ms: DEFAULT_CLAIM_LEASE_MS,
            run_ms: DEFAULT_RUN_LEASE_MS,
        }
    }
}

/// One delivery to begin: its id (the owner of its claims) and this attempt at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    pub delivery: &'a str,
    pub attempt: &'a str,
}

/// What the ledger said about beginning a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginOutcome {
    /// Go on (new, this attempt's own, or its last holder's lease is over).
    Go,
    /// It finished before: a copy, every record of it a duplicate.
    Done,
    /// Another attempt holds it now: a copy in flight elsewhere.
    Busy,
    /// The ledger could not answer: do not deliver now, bring the message back.
    Unavailable,
}

/// One record to claim: the stream it goes to, its eventID, the delivery that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub stream: &'a str,
    pub event_id: &'a str,
    pub owner: &'a str,
}

/// What the ledger said about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to deliver (new, our own unconfirmed claim, or one whose owner's lease ran out).
    Ours,
    /// Delivered, or held by a delivery that is done: a duplicate.
    Taken,
    /// Held by another delivery that is neither done nor past its lease: the record waits.
    Waiting,
    /// The ledger could not answer: do not deliver now, bring the message back.
    Unavailable,
}

/// Why the ledger did not write what it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LedgerError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl LedgerError {
    pub fn new(message: impl Into<String>) -> Self {
        LedgerError {
            message: message.into(),
            source: None,
        }
    }
}

/// The memory of what was delivered where, shared by all invocations.
pub trait DeliveredLedger {
    /// Begins each delivery for its attempt; one outcome per attempt, in order.
    fn begin(
        &self,
        attempts: &[Attempt<'_>],
        leases: &Leases,
    ) -> impl Future<Output = Vec<BeginOutcome>> + Send;

    /// Claims each record for its owner; one outcome per claim, in order.
    fn claim(
        &self,
        claims: &[Claim<'_>],
        leases: &Leases,
    ) -> impl Future<Output = Vec<ClaimOutcome>> + Send;

    /// Records that these claims were delivered, so their owners' redeliveries skip them.
    fn confirm(
        &self,
        delivered: &[Claim<'_>],
        leases: &Leases,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Gives up claims that are still the owner's and unconfirmed (their records were sent
    /// back to the queue in a new message, which claims them when it is delivered). A claim
    /// that is no longer the owner's counts as released.
    fn release(&self, claims: &[Claim<'_>])
        -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Records that these deliveries succeeded entirely: every record they claimed landed.
    fn finish(
        &self,
        deliveries: &[&str],
        leases: &Leases,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Lets go of deliveries this attempt held but did not finish (their messages come
    /// back): any attempt may begin them at once, a redrive too. A delivery no longer held
    /// by the attempt counts as let go.
    fn let_go(
        &self,
        attempts: &[Attempt<'_>],
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// No memory beyond the invocation (the planner's dedupe): every delivery goes on and every
/// claim is ours.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvocationOnly;

impl DeliveredLedger for InvocationOnly {
    async fn begin(&self, attempts: &[Attempt<'_>], _: &Leases) -> Vec<BeginOutcome> {
        vec![BeginOutcome::Go; attempts.len()]
    }

    async fn claim(&self, claims: &[Claim<'_>], _: &Leases) -> Vec<ClaimOutcome> {
        vec![ClaimOutcome::Ours; claims.len()]
    }

    async fn confirm(&self, _: &[Claim<'_>], _: &Leases) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn release(&self, _: &[Claim<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn finish(&self, _: &[&str], _: &Leases) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn let_go(&self, _: &[Attempt<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// A record's entry: who owns it, and whether it was delivered or until when it is claimed.
#[derive(Debug, Clone)]
struct Entry {
    owner: String,
    /// `None` once delivered.
    claimed_until: Option<i64>,
}

/// A delivery's entry: done, or held by an attempt until a time.
#[derive(Debug, Clone)]
enum Run {
    Holding { attempt: String, until_ms: i64 },
    Done,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<(String, String), Entry>,
    runs: HashMap<String, Run>,
}

/// The ledger in memory: for the local CLI (one process) and tests. It follows the same
/// rules as the DynamoDB ledger (`trailwatch_aws::dedup`).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
}

impl MemoryLedger {
    /// Records remembered.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn begin(&mut self, a: &Attempt<'_>, leases: &Leases) -> BeginOutcome {
        match self.runs.get(a.delivery) {
            Some(Run::Done) => return BeginOutcome::Done,
            Some(Run::Holding { attempt, until_ms })
                if attempt != a.attempt && *until_ms >= leases.now_ms =>
            {
                return BeginOutcome::Busy
            }
            _ => {}
        }
        let holding = Run::Holding {
            attempt: a.attempt.to_owned(),
            until_ms: leases.now_ms + leases.run_ms,
        };
        self.runs.insert(a.delivery.to_owned(), holding);
        BeginOutcome::Go
    }

    fn claim(&mut self, c: &Claim<'_>, leases: &Leases) -> ClaimOutcome {
        let key = (c.stream.to_owned(), c.event_id.to_owned());
        match self.records.get(&key) {
            Some(Entry {
                claimed_until: None,
                ..
            }) => return ClaimOutcome::Taken,
            Some(Entry {
                owner,
                claimed_until: Some(until),
            }) if owner != c.owner && *until >= leases.now_ms => {
                return match self.runs.get(owner) {
                    Some(Run::Done) => ClaimOutcome::Taken,
                    _ => ClaimOutcome::Waiting,
                };
            }
            _ => {}
        }
        let entry = Entry {
            owner: c.owner.to_owned(),
            claimed_until: Some(leases.now_ms + leases.claim_ms),
        };
        self.records.insert(key, entry);
        ClaimOutcome::Ours
    }
}

impl DeliveredLedger for MemoryLedger {
    async fn begin(&self, attempts: &[Attempt<'_>], leases: &Leases) -> Vec<BeginOutcome> {
        let mut state = self.state();
        attempts.iter().map(|a| state.begin(a, leases)).collect()
    }

    async fn claim(&self, claims: &[Claim<'_>], leases: &Leases) -> Vec<ClaimOutcome> {
        let mut state = self.state();
        claims.iter().map(|c| state.claim(c, leases)).collect()
    }

    async fn confirm(&self, delivered: &[Claim<'_>], _: &Leases) -> Result<(), LedgerError> {
        let mut state = self.state();
        for c in delivered {
            let entry = Entry {
                owner: c.owner.to_owned(),
                claimed_until: None,
            };
            state
                .records
                .insert((c.stream.to_owned(), c.event_id.to_owned()), entry);
        }
        Ok(())
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        let mut state = self.state();
        for c in claims {
            let key = (c.stream.to_owned(), c.event_id.to_owned());
            if state
                .records
                .get(&key)
                .is_some_and(|e| e.owner == c.owner && e.claimed_until.is_some())
            {
                state.records.remove(&key);
            }
        }
        Ok(())
    }

    async fn finish(&self, deliveries: &[&str], _: &Leases) -> Result<(), LedgerError> {
        let mut state = self.state();
        for d in deliveries {
            state.runs.insert((*d).to_owned(), Run::Done);
        }
        Ok(())
    }

    async fn let_go(&self, attempts: &[Attempt<'_>]) -> Result<(), LedgerError> {
        let mut state = self.state();
        for a in attempts {
            if matches!(state.runs.get(a.delivery),
                Some(Run::Holding { attempt, .. }) if attempt == a.attempt)
            {
                state.runs.remove(a.delivery);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::block_on;

    const NOW: i64 = 1_700_000_000_000;

    fn claim(owner: &str) -> Claim<'_> {
        Claim {
            stream: "s",
            event_id: "e",
            owner,
        }
    }

    fn at(ms: i64) -> Leases {
        Leases::at(NOW + ms)
    }

    #[test]
    fn a_claim_left_by_a_crash_is_taken_back_by_the_same_delivery_and_waits_for_others() {
        let ledger = MemoryLedger::default();
        let claim_at = |owner, ms| block_on(ledger.claim(&[claim(owner)], &at(ms)))[0];
        assert_eq!(claim_at("d1", 0), ClaimOutcome::Ours);
        // d1 crashed before its put: its redelivery or redrive may still deliver; d2 waits.
        assert_eq!(claim_at("d2", 1_000), ClaimOutcome::Waiting);
        assert_eq!(claim_at("d1", 2_000), ClaimOutcome::Ours);
        block_on(ledger.confirm(&[claim("d1")], &at(3_000))).unwrap();
        assert_eq!(claim_at("d1", 4_000), ClaimOutcome::Taken);
        assert_eq!(claim_at("d2", 5_000), ClaimOutcome::Taken);
    }

    #[test]
    fn a_record_of_a_finished_delivery_is_a_duplicate_for_everyone() {
        let ledger = MemoryLedger::default();
        block_on(ledger.claim(&[claim("d1")], &at(0)));
        block_on(ledger.finish(&["d1"], &at(1))).unwrap();
        let again = block_on(ledger.claim(&[claim("d2")], &at(2)));
        assert_eq!(again, [ClaimOutcome::Taken]);
    }

    #[test]
    fn a_claim_whose_owner_died_is_taken_over_once_its_lease_is_over() {
        let ledger = MemoryLedger::default();
        block_on(ledger.claim(&[claim("d1")], &at(0)));
        let lease = DEFAULT_CLAIM_LEASE_MS;
        let before = block_on(ledger.claim(&[claim("d2")], &at(lease)));
        assert_eq!(before, [ClaimOutcome::Waiting]);
        let after = block_on(ledger.claim(&[claim("d2")], &at(lease + 1)));
        assert_eq!(after, [ClaimOutcome::Ours]);
        // The owner, back after all (a late redrive), finds the record another's now.
        let late = block_on(ledger.claim(&[claim("d1")], &at(lease + 2)));
        assert_eq!(late, [ClaimOutcome::Waiting]);
    }

    #[test]
    fn a_delivery_goes_on_for_its_own_attempt_and_not_for_a_copy_in_flight() {
        let ledger = MemoryLedger::default();
        let begin = |attempt, ms| {
            let a = Attempt {
                delivery: "d1",
                attempt,
            };
            block_on(ledger.begin(&[a], &at(ms)))[0]
        };
        assert_eq!(begin("sqs-1", 0), BeginOutcome::Go);
        assert_eq!(begin("sqs-1", 1_000), BeginOutcome::Go, "redelivered");
        assert_eq!(
            begin("sqs-2", 2_000),
            BeginOutcome::Busy,
            "a copy in flight"
        );
        // Its holder's invocation is over: a redrive (a new message id) goes on.
        assert_eq!(
            begin("sqs-3", 2_000 + DEFAULT_RUN_LEASE_MS),
            BeginOutcome::Go
        );
        block_on(ledger.finish(&["d1"], &at(80_000))).unwrap();
        assert_eq!(begin("sqs-4", 90_000), BeginOutcome::Done);
    }

    #[test]
    fn releasing_gives_up_only_the_owners_unconfirmed_claim() {
        let ledger = MemoryLedger::default();
        block_on(ledger.claim(&[claim("d1")], &at(0)));
        block_on(ledger.release(&[claim("d2")])).unwrap();
        assert_eq!(ledger.len(), 1, "not d2's to release");
        block_on(ledger.release(&[claim("d1")])).unwrap();
        assert!(ledger.is_empty());
        let again = block_on(ledger.claim(&[claim("d2")], &at(1)));
        assert_eq!(again, [ClaimOutcome::Ours]);
    }
}
