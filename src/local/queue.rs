//! The local stand-in of the delivery queue and its trigger: messages wait as they would in
//! SQS, are handed to the deliver stage in groups of up to [`DELIVER_BATCH_BYTES`] as the SQS
//! trigger hands them to the deliver function, and calls that are not full are held back in
//! the queue as the deployment holds them back in its hold queue.

use std::sync::Mutex;

use crate::deliver::{
    deliver_messages_once, Carrier, CarryError, DeliveryReport, DeliverySettings, HeldMessage,
    Inbound, InvocationOnly, LedgerReport, LogSink,
};
use crate::select::{Destination, Outgoing, MESSAGE_DELIVERY_SPAN_MS};

use super::block_on;

/// Message bytes per deliver invocation: what fits Lambda's 6 MB invocation payload once the
/// bodies are escaped inside the SQS event (about 20 messages of 256 KiB), as the trigger in
/// template.yaml hands them over.
pub const DELIVER_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Bytes of held-back messages the local queue keeps before it puts calls that are not full.
pub const LOCAL_HOLD_BYTES: usize = 64 * 1024 * 1024;

/// The messages of one deliver invocation.
#[derive(Debug)]
pub struct Group {
    pub messages: Vec<Outgoing>,
    /// When the newest of its records was delivered: the invocation's time, unless the replay
    /// delivers everything at one given time.
    pub delivered_ms: i64,
    /// No record may wait for a fuller call: the next message was delivered too long after
    /// these to join them, or the queue is being emptied.
    pub closing: bool,
}

/// Takes the next group of messages for one deliver invocation off the front of `queue`:
/// messages up to [`DELIVER_BATCH_BYTES`] (at least one) whose delivery times lie within
/// `span` (`None`: any). `None` when the queue is empty, or when, unless `all`, what waits
/// could still grow into a fuller group.
pub fn next_group(queue: &mut Vec<Outgoing>, all: bool, span: Option<i64>) -> Option<Group> {
    let (mut take, mut bytes) = (0, 0);
    let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
    let mut cut_by_time = false;
    while let Some(message) = queue.get(take) {
        let t = message.delivered_ms;
        let spread = newest.max(t).saturating_sub(oldest.min(t));
        if take > 0 && span.is_some_and(|span| spread > span) {
            cut_by_time = true;
            break;
        }
        if take > 0 && bytes + message.body.len() > DELIVER_BATCH_BYTES {
            break;
        }
        (oldest, newest) = (oldest.min(t), newest.max(t));
        bytes += message.body.len();
        take += 1;
    }
    if take == 0 || (!all && !cut_by_time && take == queue.len() && bytes < DELIVER_BATCH_BYTES) {
        return None;
    }
    Some(Group {
        messages: queue.drain(..take).collect(),
        delivered_ms: newest,
        closing: all || cut_by_time,
    })
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
/// for the next drain, up to [`MESSAGE_DELIVERY_SPAN_MS`] of delivery time and until
/// [`LOCAL_HOLD_BYTES`] wait; nothing waits for a closing group.
#[derive(Default)]
pub struct LocalHold {
    /// Held messages, each with the time of the invocation that held it back.
    held: Mutex<Vec<(String, i64)>>,
    /// The current invocation: its time, and whether it is closing.
    invocation: Mutex<(i64, bool)>,
}

impl LocalHold {
    /// The invocation of `group` at `now_ms` starts.
    pub fn start(&self, group: &Group, now_ms: i64) {
        *lock(&self.invocation) = (now_ms, group.closing);
    }

    /// The held-back messages, to go back to the delivery queue as delivered when they were
    /// held back.
    pub fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *lock(&self.held))
            .into_iter()
            .map(|(body, delivered_ms)| Outgoing {
                destination: Destination::Delivery,
                body,
                delivered_ms,
            })
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Carrier for LocalHold {
    fn max_wait_ms(&self) -> i64 {
        let held_bytes: usize = lock(&self.held).iter().map(|(b, _)| b.len()).sum();
        if lock(&self.invocation).1 || held_bytes >= LOCAL_HOLD_BYTES {
            0
        } else {
            MESSAGE_DELIVERY_SPAN_MS
        }
    }

    async fn send(&self, messages: Vec<HeldMessage>) -> Result<(), CarryError> {
        let now_ms = lock(&self.invocation).0;
        lock(&self.held).extend(messages.into_iter().map(|m| (m.body, now_ms)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize, delivered_ms: i64) -> Outgoing {
        Outgoing {
            destination: Destination::Delivery,
            body: "x".repeat(len),
            delivered_ms,
        }
    }

    fn sizes(group: Option<Group>) -> Option<(usize, bool)> {
        group.map(|g| (g.messages.len(), g.closing))
    }

    #[test]
    fn groups_fill_an_invocation_and_a_partial_one_waits_unless_all_is_asked() {
        let third = DELIVER_BATCH_BYTES / 3;
        let mut queue: Vec<Outgoing> = (0..4).map(|_| message(third, 0)).collect();
        assert_eq!(sizes(next_group(&mut queue, false, None)), Some((3, false)));
        assert!(
            next_group(&mut queue, false, None).is_none(),
            "one third waits"
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(sizes(next_group(&mut queue, true, None)), Some((1, true)));
        assert!(next_group(&mut queue, true, None).is_none());
        let mut big = vec![message(DELIVER_BATCH_BYTES + 1, 0)];
        assert_eq!(sizes(next_group(&mut big, false, None)), Some((1, false)));
    }

    #[test]
    fn a_group_holds_messages_delivered_within_the_span_and_closes_before_a_later_one() {
        let hour = MESSAGE_DELIVERY_SPAN_MS;
        let mut queue = vec![message(10, 0), message(10, hour), message(10, hour + 1)];
        let group = next_group(&mut queue, false, Some(hour)).expect("cut by time");
        assert_eq!((group.messages.len(), group.closing), (2, true));
        assert_eq!(group.delivered_ms, hour);
        assert!(
            next_group(&mut queue, false, Some(hour)).is_none(),
            "the last one waits"
        );
        let mut queue = vec![message(10, 0), message(10, 10 * hour)];
        assert_eq!(
            sizes(next_group(&mut queue, false, None)),
            None,
            "without a span, time does not cut"
        );
    }
}
