//! The records of one delivery run on their way: the messages received, each record waiting
//! in its stream, and each stream's plan of calls.

use super::ledger::Claim;
use super::plan::{LogEvent, Plan};

/// A message received by the deliver stage.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub id: &'a str,
    pub body: &'a str,
}

/// A delivery message of the run, as read: the SQS message that carried it (what comes back
/// when it must), the delivery that owns its records' claims, and since when its records have
/// been held back, if they have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received<'a> {
    pub message_id: &'a str,
    pub owner: &'a str,
    pub since: Option<i64>,
}

/// One record of a received message, as an event of its stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending<'a> {
    /// Index of its message in the run's messages.
    pub message: usize,
    pub record_index: usize,
    pub event: LogEvent<'a>,
}

/// Where one stream's records stand: what is ours, the plan, which batches are held back,
/// which records wait for another delivery.
pub(crate) struct StreamPlan<'s, 'a> {
    pub stream: &'s str,
    pub pending: &'s [Pending<'a>],
    /// Indices into `pending` of the records that are ours to deliver.
    pub fresh: Vec<usize>,
    pub fresh_events: Vec<LogEvent<'a>>,
    pub plan: Plan,
    /// Batches of `plan` sent back to the queue to wait for a fuller call.
    pub held: Vec<usize>,
    /// Indices into `pending` of the records another live delivery holds (see
    /// [`super::ledger::ClaimOutcome::Waiting`]), and whether they were sent to wait.
    pub waiting: Vec<usize>,
    pub waiting_sent: bool,
}

impl<'a> StreamPlan<'_, 'a> {
    /// The batches to put now, and whether each is full.
    pub fn put_batches(&self) -> impl Iterator<Item = (&Vec<usize>, bool)> {
        self.plan
            .batches
            .iter()
            .zip(&self.plan.full)
            .enumerate()
            .filter(|(b, _)| !self.held.contains(b))
            .map(|(_, (batch, full))| (batch, *full))
    }

    /// The pending record behind entry `j` of the plan.
    pub fn pending_of(&self, j: usize) -> &Pending<'a> {
        &self.pending[self.fresh[j]]
    }

    /// The pending records of the batches held back.
    pub fn held_records(&self) -> impl Iterator<Item = &Pending<'a>> {
        self.held
            .iter()
            .flat_map(|&b| &self.plan.batches[b])
            .map(|&j| self.pending_of(j))
    }

    /// The pending records waiting for another delivery.
    pub fn waiting_records(&self) -> impl Iterator<Item = &Pending<'a>> {
        self.waiting.iter().map(|&i| &self.pending[i])
    }
}

/// The ledger claim of a pending record of `stream`, owned by the delivery that carries it.
pub(crate) fn claim_of<'a>(
    stream: &'a str,
    messages: &[Received<'a>],
    p: &Pending<'a>,
) -> Claim<'a> {
    Claim {
        stream,
        event_id: p.event.event_id.unwrap_or_default(),
        owner: messages[p.message].owner,
    }
}
