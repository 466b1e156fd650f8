//! The local stand-in of the delivery queue and its trigger: messages wait as they would in
//! SQS, are handed to the deliver stage in groups of up to [`DELIVER_BATCH_BYTES`] as the SQS
//! trigger hands them to the deliver function, and calls that are not full are held back in
//! the queue as the deployment holds them back in its hold queue.

use std::sync::Mutex;

use crate::deliver::{
    deliver_messages_once, Carrier, CarryError, DeliveryReport, DeliverySettings, HeldMessage,
    Inbound, InvocationOnly, LedgerReport, LogSink,
};
use crate::select::{Destination, Outgoing};

use super::block_on;

/// Message bytes per deliver invocation: what fits Lambda's 6 MB invocation payload once the
/// bodies are escaped inside the SQS event (about 20 messages of 256 KiB), as the trigger in
/// template.yaml hands them over.
pub const DELIVER_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Bytes of held-back messages the local queue keeps before it puts calls that are not full.
pub const LOCAL_HOLD_BYTES: usize = 64 * 1024 * 1024;

/// Takes the next group of messages for one deliver invocation off the front of `queue`:
/// messages up to [`DELIVER_BATCH_BYTES`] (at least one). `None` when the queue is empty, or
/// when, unless `all`, what waits does not fill a group yet.
pub fn next_group(queue: &mut Vec<Outgoing>, all: bool) -> Option<Vec<Outgoing>> {
    let mut take = 0;
    let mut bytes = 0;
    while take < queue.len() && (take == 0 || bytes + queue[take].body.len() <= DELIVER_BATCH_BYTES)
    {
        bytes += queue[take].body.len();
        take += 1;
    }
    if take == 0 || (!all && take == queue.len() && bytes < DELIVER_BATCH_BYTES) {
        return None;
    }
    Some(queue.drain(..take).collect())
}

/// One deliver invocation over `group` at `now_ms`, as the deliver function runs it.
///
/// The deployment's deliver function claims every record in its ledger; the select run already
/// dropped repeated eventIDs, so every claim here would be granted and the invocation's own
/// ledger stands in for it.
pub fn deliver_group(
    sink: &impl LogSink,
    hold: &LocalHold,
    group: &[Outgoing],
    now_ms: i64,
) -> (DeliveryReport, LedgerReport) {
    let ids: Vec<String> = (0..group.len()).map(|i| i.to_string()).collect();
    let inbound: Vec<Inbound<'_>> = group
        .iter()
        .zip(&ids)
        .map(|(m, id)| Inbound { id, body: &m.body })
        .collect();
    let settings = DeliverySettings::at(now_ms);
    block_on(deliver_messages_once(
        sink,
        &InvocationOnly,
        hold,
        &inbound,
        &settings,
    ))
}

/// The local delivery queue as the deliver stage's [`Carrier`]: calls that are not full wait
/// for the next drain, until [`LOCAL_HOLD_BYTES`] wait; nothing waits when `closing`.
pub struct LocalHold {
    held: Mutex<Vec<String>>,
    closing: bool,
}

impl LocalHold {
    pub fn new(closing: bool) -> Self {
        LocalHold {
            held: Mutex::new(Vec::new()),
            closing,
        }
    }

    /// The held-back messages, to go back to the delivery queue.
    pub fn take(&self) -> Vec<Outgoing> {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
        held.into_iter()
            .map(|body| Outgoing {
                destination: Destination::Delivery,
                body,
            })
            .collect()
    }
}

impl Carrier for LocalHold {
    fn max_wait_ms(&self) -> i64 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if self.closing || held.iter().map(String::len).sum::<usize>() >= LOCAL_HOLD_BYTES {
            0
        } else {
            i64::MAX
        }
    }

    async fn send(&self, messages: Vec<HeldMessage>) -> Result<(), CarryError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(messages.into_iter().map(|m| m.body));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Outgoing {
        Outgoing {
            destination: Destination::Delivery,
            body: "x".repeat(len),
        }
    }

    #[test]
    fn groups_fill_an_invocation_and_a_partial_one_waits_unless_all_is_asked() {
        let third = DELIVER_BATCH_BYTES / 3;
        let mut queue: Vec<Outgoing> = (0..4).map(|_| message(third)).collect();
        assert_eq!(next_group(&mut queue, false).map(|g| g.len()), Some(3));
        assert_eq!(next_group(&mut queue, false), None, "one third waits");
        assert_eq!(queue.len(), 1);
        assert_eq!(next_group(&mut queue, true).map(|g| g.len()), Some(1));
        assert_eq!(next_group(&mut queue, true), None);
        let mut big = vec![message(DELIVER_BATCH_BYTES + 1)];
        assert_eq!(next_group(&mut big, false).map(|g| g.len()), Some(1));
    }
}
