//! Each eventID reaches its stream once across invocations, retries and duplicate files.
//!
//! Across invocations a [`DeliveredLedger`] remembers, per `(stream, eventID)`, which delivery
//! message *owns* the record and whether its delivery was confirmed. A delivery run
//! ([`super::run::deliver_messages_once`]) uses it so:
//!
//! 1. **Claim before the put.** Every accepted event is claimed for its message (the SQS
//!    message id, which stays the same when SQS redelivers the message) — every copy of an
//!    eventID repeated within the invocation too, each for its own message, so that the copy
//!    whose message holds the claim wins it; repeats are dropped only among what is ours. A
//!    claim succeeds when nobody holds the key, or when the same message holds it unconfirmed
//!    (its own earlier, unfinished attempt). A key held by another message, or already
//!    confirmed, is a duplicate and is dropped: the owner either delivered it or is itself
//!    coming back.
//! 2. **Put** the fresh events (re-planned, so the batches are as full as the limits allow) —
//!    or, for a stream's calls that are not full, **hold them back** (see [`super::hold`]):
//!    **release** their claims, then send their records to the hold queue in a new message,
//!    which claims them when it is delivered. A held message that comes back alone may stay
//!    in the queue instead ([`super::hold::Carrier::keeps`]): nothing of it is claimed
//!    meanwhile.
//! 3. **Confirm after the put**, only for records of messages that go back to SQS (some other
//!    record of theirs was not delivered): their redelivery then skips what already landed.
//!    Messages that succeed entirely are deleted by SQS and never come back, so confirming
//!    their records would double the write cost for nothing.
//!
//! Why claim *before* the put: marking only after a successful put leaves two writers of the
//! same eventID (two files, two concurrent invocations) free to both put it; claiming first
//! makes the ledger's conditional write the arbiter. Why ownership and not a plain "seen"
//! mark: a crash (timeout, out of memory) between claim and put would otherwise lose the
//! record for good — with ownership, the redelivered message reclaims its own keys and puts
//! them. The remaining windows only ever duplicate, never lose:
//! - crash between a successful put and the confirm (or a failed confirm): the redelivered
//!   message re-puts that batch;
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

/// One record to claim: the stream it goes to, its eventID, the message that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub stream: &'a str,
    pub event_id: &'a str,
    pub owner: &'a str,
}

/// What the ledger said about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to deliver (new, or our own unconfirmed claim).
    Ours,
    /// Held by another message or already delivered: a duplicate.
    Taken,
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
    /// Claims each record for its owner; one outcome per claim, in order.
    fn claim(&self, claims: &[Claim<'_>]) -> impl Future<Output = Vec<ClaimOutcome>> + Send;

    /// Records that these claims were delivered, so their owners' redeliveries skip them.
    fn confirm(
        &self,
        delivered: &[Claim<'_>],
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Gives up claims that are still the owner's and unconfirmed (their records were sent
    /// back to the queue in a new message, which claims them when it is delivered). A claim
    /// that is no longer the owner's counts as released.
    fn release(&self, claims: &[Claim<'_>])
        -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// No memory beyond the invocation (the planner's dedupe): every claim is ours.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvocationOnly;

impl DeliveredLedger for InvocationOnly {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        vec![ClaimOutcome::Ours; claims.len()]
    }

    async fn confirm(&self, _delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn release(&self, _claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    owner: String,
    confirmed: bool,
}

/// The ledger in memory: for the local CLI (one process) and tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MemoryLedger {
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeliveredLedger for MemoryLedger {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        claims
            .iter()
            .map(|c| {
                let key = (c.stream.to_owned(), c.event_id.to_owned());
                match entries.get(&key) {
                    Some(e) if e.confirmed || e.owner != c.owner => ClaimOutcome::Taken,
                    Some(_) => ClaimOutcome::Ours,
                    None => {
                        entries.insert(
                            key,
                            Entry {
                                owner: c.owner.to_owned(),
                                confirmed: false,
                            },
                        );
                        ClaimOutcome::Ours
                    }
                }
            })
            .collect()
    }

    async fn confirm(&self, delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for c in delivered {
            entries.insert(
                (c.stream.to_owned(), c.event_id.to_owned()),
                Entry {
                    owner: c.owner.to_owned(),
                    confirmed: true,
                },
            );
        }
        Ok(())
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for c in claims {
            let key = (c.stream.to_owned(), c.event_id.to_owned());
            if entries
                .get(&key)
                .is_some_and(|e| e.owner == c.owner && !e.confirmed)
            {
                entries.remove(&key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::block_on;

    #[test]
    fn a_claim_left_by_a_crash_is_taken_back_by_the_same_message_only() {
        let ledger = MemoryLedger::default();
        let claim = |owner| Claim {
            stream: "s",
            event_id: "e",
            owner,
        };
        assert_eq!(block_on(ledger.claim(&[claim("m1")])), [ClaimOutcome::Ours]);
        // m1 crashed before its put: its redelivery may still deliver, m2 may not.
        assert_eq!(
            block_on(ledger.claim(&[claim("m2")])),
            [ClaimOutcome::Taken]
        );
        assert_eq!(block_on(ledger.claim(&[claim("m1")])), [ClaimOutcome::Ours]);
        block_on(ledger.confirm(&[claim("m1")])).unwrap();
        assert_eq!(
            block_on(ledger.claim(&[claim("m1")])),
            [ClaimOutcome::Taken]
        );
    }
}
