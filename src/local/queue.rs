//! The local stand-in of the delivery queue and its trigger: messages wait as they would in
//! SQS, are handed to the deliver stage in groups of up to [`DELIVER_BATCH_BYTES`] as the SQS
//! trigger hands them to the deliver function, and calls that are not full are held back in
//! the queue as the deployment holds them back in its hold queue.

use std::collections::BTreeMap;
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

/// The local delivery queue as the deliver stage's [`Carrier`] for one drain: calls that are
/// not full wait in the [`HoldQueue`] until [`LOCAL_HOLD_BYTES`] wait there; nothing waits
/// when `closing`.
pub struct LocalHold {
    held: Mutex<Vec<HeldMessage>>,
    closing: bool,
    /// Bytes already waiting in the hold queue.
    waiting_bytes: usize,
}

impl LocalHold {
    pub fn new(closing: bool, hold_queue: &HoldQueue) -> Self {
        LocalHold {
            held: Mutex::new(Vec::new()),
            closing,
            waiting_bytes: hold_queue.bytes,
        }
    }

    /// The messages held back in this drain, for the hold queue.
    pub fn take(&self) -> Vec<HeldMessage> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Carrier for LocalHold {
    fn max_wait_ms(&self) -> i64 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = self.waiting_bytes + held.iter().map(|m| m.body.len()).sum::<usize>();
        if self.closing || bytes >= LOCAL_HOLD_BYTES {
            0
        } else {
            i64::MAX
        }
    }

    async fn send(&self, messages: Vec<HeldMessage>) -> Result<(), CarryError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(messages);
        Ok(())
    }
}

/// The local stand-in of the deployment's hold queue: a FIFO queue with one message group per
/// stream. A stream's held messages wait there until the next delivery message of their
/// stream is queued, and go back to the delivery queue just before it, so the next deliver
/// invocation of that stream sees them together (in the stack its group gathers behind a lone
/// held message the same way). Only then are they opened, planned and held again: an
/// invocation of other streams never sees them.
#[derive(Debug, Default)]
pub struct HoldQueue {
    groups: BTreeMap<String, Vec<Outgoing>>,
    bytes: usize,
}

impl HoldQueue {
    /// Held messages join their stream's group.
    pub fn wait(&mut self, held: Vec<HeldMessage>) {
        for message in held {
            self.bytes += message.body.len();
            self.groups
                .entry(message.stream)
                .or_default()
                .push(Outgoing {
                    destination: Destination::Delivery,
                    body: message.body,
                });
        }
    }

    /// Queues `message` on `queue`, after the held messages of its stream if any wait.
    pub fn queue_with_held(&mut self, queue: &mut Vec<Outgoing>, message: Outgoing) {
        if message.destination == Destination::Delivery && !self.groups.is_empty() {
            if let Some(held) = stream_of(&message.body).and_then(|s| self.groups.remove(&s)) {
                self.bytes -= held.iter().map(|m| m.body.len()).sum::<usize>();
                queue.extend(held);
            }
        }
        queue.push(message);
    }

    /// Every held message, stream by stream (the end of the input).
    pub fn take_all(&mut self) -> Vec<Outgoing> {
        self.bytes = 0;
        std::mem::take(&mut self.groups)
            .into_values()
            .flatten()
            .collect()
    }
}

/// The stream a delivery message names, read from its start as [`MessagePacker`] writes it
/// (`{"v":1,"stream":"<name>",...`) without reading its records.
///
/// [`MessagePacker`]: crate::deliver::MessagePacker
fn stream_of(body: &str) -> Option<String> {
    let rest = body.strip_prefix(r#"{"v":1,"stream":"#)?;
    serde::Deserialize::deserialize(&mut serde_json::Deserializer::from_str(rest)).ok()
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

    fn fresh(stream: &str) -> Outgoing {
        Outgoing {
            destination: Destination::Delivery,
            body: format!(r#"{{"v":1,"stream":"{stream}","records":[{{}}]}}"#),
        }
    }

    fn held(stream: &str, body: &str) -> HeldMessage {
        HeldMessage {
            stream: stream.to_owned(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn held_messages_wait_for_the_next_message_of_their_stream_and_go_just_before_it() {
        let mut hold = HoldQueue::default();
        hold.wait(vec![held("a", "a1"), held("b", "b1"), held("a", "a2")]);
        let mut queue = Vec::new();
        hold.queue_with_held(&mut queue, fresh("c"));
        hold.queue_with_held(&mut queue, fresh("a"));
        hold.queue_with_held(&mut queue, fresh("a"));
        let bodies: Vec<&str> = queue.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies,
            [
                fresh("c").body.as_str(),
                "a1",
                "a2",
                fresh("a").body.as_str(),
                fresh("a").body.as_str()
            ]
        );
        assert_eq!(hold.bytes, 2, "b1 still waits");
        let rest: Vec<String> = hold.take_all().into_iter().map(|m| m.body).collect();
        assert_eq!(rest, ["b1"]);
        assert_eq!(hold.bytes, 0);
    }

    #[test]
    fn the_stream_of_a_message_is_read_from_its_start_only() {
        assert_eq!(
            stream_of(&fresh("1_CloudTrail_us-east-1").body).as_deref(),
            Some("1_CloudTrail_us-east-1")
        );
        assert_eq!(
            stream_of(r#"{"v":1,"stream":"a\"b","records":[oops"#).as_deref(),
            Some("a\"b")
        );
        assert_eq!(stream_of(r#"{"gz":"H4sI","v":1,"stream":"a"}"#), None);
    }
}
