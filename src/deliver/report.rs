//! What a delivery run did: the messages that must come back, the records set aside for good
//! and why, and the counts behind the functions' metrics.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::Rejection;

/// A record or message set aside for good, with why and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub message_id: String,
    /// Index of the record in the message, when the problem is one record.
    pub record_index: Option<usize>,
    pub event_id: Option<String>,
    pub reason: String,
}

/// What one delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages SQS must redeliver (batch-item failures).
    pub retry: BTreeSet<String>,
    pub set_aside: Vec<SetAside>,
    pub records_received: usize,
    pub delivered: usize,
    pub delivered_per_stream: BTreeMap<String, usize>,
    pub duplicates: usize,
    /// Records sent to the hold queue to wait for a fuller call, and the messages that carry
    /// them.
    pub held_back: usize,
    pub held_back_messages: usize,
    /// Records that wait for another delivery holding their claim (sent to wait in a new
    /// message, or brought back with their message): neither put nor dropped.
    pub waiting: usize,
    /// Why records could not be held back (put at once when their claims could not be
    /// released; their messages come back when they could not be sent).
    pub hold_back_error: Option<String>,
    /// Streams whose held-back records had waited long enough to be put in a call that is not
    /// full.
    pub waited_out: usize,
    /// Held messages that came back alone and stay in the queue a while longer (also in
    /// `retry`), with how long their records may still wait, ms: the caller makes each
    /// invisible again for at most that long.
    pub kept: BTreeMap<String, i64>,
    pub put_calls: usize,
    /// Calls put that are not full (the last of a stream, or closed by the 24-hour span).
    pub partial_calls: usize,
    pub failed_calls: usize,
    /// Rejections by reason (before the call and as reported by CloudWatch Logs).
    pub rejected: BTreeMap<&'static str, usize>,
}

impl DeliveryReport {
    /// Counts a record CloudWatch Logs does not accept: its message comes back when waiting
    /// could help, else the record is set aside.
    pub fn reject(
        &mut self,
        message_id: &str,
        record_index: usize,
        event_id: Option<&str>,
        why: Rejection,
    ) {
        *self.rejected.entry(why.as_str()).or_default() += 1;
        if why.is_retryable() {
            self.retry.insert(message_id.to_owned());
        } else {
            self.set_aside_record(
                message_id,
                record_index,
                event_id,
                format!(
                    "CloudWatch Logs does not accept it: {} ({})",
                    why.as_str(),
                    why.reason()
                ),
            );
        }
    }

    /// Sets one record of a message aside for good.
    pub fn set_aside_record(
        &mut self,
        message_id: &str,
        record_index: usize,
        event_id: Option<&str>,
        reason: impl ToString,
    ) {
        self.set_aside.push(SetAside {
            message_id: message_id.to_owned(),
            record_index: Some(record_index),
            event_id: event_id.map(str::to_owned),
            reason: reason.to_string(),
        });
    }

    /// Sets a whole message aside (it cannot be read) and brings it back, so that after the
    /// redrive limit it waits in the dead-letter queue instead of being dropped.
    pub fn set_aside_message(&mut self, message_id: &str, reason: impl ToString) {
        self.retry.insert(message_id.to_owned());
        self.set_aside.push(SetAside {
            message_id: message_id.to_owned(),
            record_index: None,
            event_id: None,
            reason: reason.to_string(),
        });
    }
}

/// What the ledger did in one delivery run (on top of the [`DeliveryReport`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    /// Deliveries begun (one write each).
    pub began: usize,
    pub claimed: usize,
    /// Records delivered before, or by a delivery that is done (also in `duplicates`).
    pub taken: usize,
    /// Records of messages that are copies of a delivery done or in flight (also in
    /// `duplicates`).
    pub copies: usize,
    /// Records not delivered because the ledger could not answer (their messages retry).
    pub unavailable: usize,
    pub confirmed: usize,
    /// Confirm writes that failed: at worst, duplicates when the message comes back.
    pub confirm_failures: usize,
    /// Claims given up for records held back (sent to the hold queue).
    pub released: usize,
    /// Records not held back, but put at once, because their claims could not be released.
    pub release_failures: usize,
    /// Deliveries recorded as done, and those whose record failed (at worst, duplicates if a
    /// copy comes).
    pub finished: usize,
    pub finish_failures: usize,
    /// Deliveries coming back, let go (one write each), and those that could not be (a copy
    /// finds them held until this attempt's lease ends).
    pub let_go: usize,
    pub let_go_failures: usize,
    /// The fewest PutLogEvents calls the limits allow for the records put (per stream; see
    /// [`super::plan::minimum_batches`]), to compare `put_calls` with.
    pub minimum_put_calls: usize,
}

impl LedgerReport {
    /// The ledger writes the run made (each a DynamoDB write request): begins, claims,
    /// confirms, releases, finishes and lets go.
    pub fn writes(&self) -> usize {
        self.began
            + self.claimed
            + self.confirmed
            + self.confirm_failures
            + self.released
            + self.finished
            + self.finish_failures
            + self.let_go
    }
}
