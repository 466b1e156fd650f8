//! The local pipeline after the select stage: the delivery queue, the hold queue, the deliver
//! stage writing the log group, and the Insights bus. It runs on a thread of its own, fed in
//! order through a bounded channel, so that reading and selecting the next files (the caller's
//! thread) and delivering what was selected (this one) use two cores; everything it does
//! happens in the order the select path sent it, as on one thread.

use std::sync::mpsc::Receiver;

use crate::deliver::{DeliveryMessage, DeliveryReport};
use crate::forward::{Entry, DEFAULT_SOURCE};
use crate::record::Record;
use crate::select::{Destination, Outgoing, MESSAGE_DELIVERY_SPAN_MS};

use super::adapters::{CountingLogGroup, FileBus, FileLogGroup};
use super::detections::LocalDetections;
use super::queue::{deliver_group, next_group, HoldQueue, LocalHold};
use super::summary::ReplaySummary;

/// Messages (of about 256 KiB each) on their way from the select path to delivery: a bound
/// on what waits between the two threads.
pub const WORK_IN_FLIGHT: usize = 16;

/// What the select side hands over, in the order it happened.
pub enum Work {
    /// Messages the select path sent.
    Send(Vec<Outgoing>),
    /// Insights records trailwatch's detector produced, for the bus.
    Detected(Vec<String>),
    /// The end of the input, with the select run's last messages: everything is delivered.
    Finish(Vec<Outgoing>),
}

/// The deliver side of a replay: what it counts goes into its [`ReplaySummary`] (delivery,
/// the AWS calls of sending, delivering and forwarding, its problems and output errors).
pub struct LocalDelivery<'a> {
    group: CountingLogGroup<'a>,
    bus: &'a FileBus,
    /// Detections through their noise control to `detections.jsonl`, when detection is on.
    detections: Option<LocalDetections<'a>>,
    /// Everything delivered at this time, instead of each record at its own.
    now_ms: Option<i64>,
    /// The delivery queue.
    queue: Vec<Outgoing>,
    /// Held-back messages waiting for more of their stream.
    hold_queue: HoldQueue,
    summary: ReplaySummary,
}

impl<'a> LocalDelivery<'a> {
    pub fn new(
        group: &'a FileLogGroup,
        bus: &'a FileBus,
        detections: Option<LocalDetections<'a>>,
        now_ms: Option<i64>,
    ) -> Self {
        LocalDelivery {
            group: CountingLogGroup::new(group),
            bus,
            detections,
            now_ms,
            queue: Vec::new(),
            hold_queue: HoldQueue::default(),
            summary: ReplaySummary::default(),
        }
    }

    /// Takes the work in order until the select side is done (or gone).
    pub fn run(mut self, work: Receiver<Work>) -> ReplaySummary {
        for item in work {
            self.take(item);
        }
        self.into_summary()
    }

    /// Takes one piece of work, in the order the select side handed it over.
    pub fn take(&mut self, work: Work) {
        match work {
            Work::Send(messages) => {
                self.enqueue(messages);
                self.drain(false);
            }
            Work::Detected(records) => self.forward_records(&records, false),
            Work::Finish(messages) => {
                self.enqueue(messages);
                // What still waits for more of its stream gets none: put it, with the rest.
                let held = self.hold_queue.take_all();
                self.queue.extend(held);
                self.drain(true);
            }
        }
    }

    /// What the deliver side counted.
    pub fn into_summary(mut self) -> ReplaySummary {
        if let Some(detections) = self.detections {
            self.summary.detections = detections.totals;
        }
        self.summary.aws.cwl_events = self.group.events();
        self.summary.aws.cwl_ingested_bytes = self.group.ingested_bytes();
        self.summary
    }

    /// Queues messages as the select (or deliver) function sends them, counting the calls.
    fn enqueue(&mut self, messages: Vec<Outgoing>) {
        self.summary.aws.count_sends(&messages);
        for message in messages {
            self.hold_queue.queue_with_held(&mut self.queue, message);
        }
    }

    /// Hands queued messages to the local deliver and forward stages, in SQS-sized groups;
    /// calls that are not full wait for the next drain, the last drain (`all`) puts
    /// everything.
    fn drain(&mut self, all: bool) {
        let (to_insights_queue, mut delivery): (Vec<Outgoing>, Vec<Outgoing>) = self
            .queue
            .drain(..)
            .partition(|m| m.destination != Destination::Delivery);
        for message in &to_insights_queue {
            match (message.destination, self.detections.as_mut()) {
                (Destination::Detections, Some(detections)) => {
                    let s = &mut self.summary;
                    detections.take(
                        &message.body,
                        &mut s.aws,
                        &mut s.problems,
                        &mut s.output_errors,
                    );
                }
                _ => self.forward_insights(&message.body),
            }
        }
        let hold = LocalHold::new(&self.hold_queue);
        // With one delivery time for everything, time does not part the messages.
        let span = self.now_ms.is_none().then_some(MESSAGE_DELIVERY_SPAN_MS);
        while let Some(group) = next_group(&mut delivery, all, span) {
            let now_ms = self.now_ms.unwrap_or(group.delivered_ms);
            hold.start(&group, now_ms);
            let (report, ledger) = deliver_group(&self.group, &hold, &group.messages, now_ms);
            let aws = &mut self.summary.aws;
            aws.put_log_events += report.put_calls;
            aws.dynamodb_put_item += ledger.writes();
            self.note_set_aside(&report);
            self.summary.delivery.add(&report);
        }
        // Sent to the hold queue, as the deliver function sends them.
        let held = hold.take();
        let sizes: Vec<usize> = held.iter().map(|(m, _)| m.body.len()).collect();
        self.summary.aws.count_sends_to_one_queue(&sizes);
        self.hold_queue.wait(held);
        self.queue.extend(delivery);
    }

    /// A failed call is an output error; a record CloudWatch Logs would not accept is counted
    /// by reason, not listed; any other record set aside is a problem of the input.
    fn note_set_aside(&mut self, report: &DeliveryReport) {
        if report.failed_calls > 0 {
            for aside in report.set_aside.iter().filter(|a| a.record_index.is_none()) {
                self.summary.output_errors.push(aside.reason.clone());
            }
        }
        for aside in report.set_aside.iter().filter(|a| a.record_index.is_some()) {
            if !aside
                .reason
                .starts_with("CloudWatch Logs does not accept it")
            {
                self.summary.problems.push(format!(
                    "delivery: record with eventID {}: {}",
                    aside.event_id.as_deref().unwrap_or("(none)"),
                    aside.reason
                ));
            }
        }
    }

    fn forward_insights(&mut self, body: &str) {
        match DeliveryMessage::parse(body) {
            Ok(message) => {
                let records: Vec<&str> = message.records.iter().map(|r| r.get()).collect();
                self.forward_records(&records, true);
            }
            Err(e) => self.summary.problems.push(format!("insights message: {e}")),
        }
    }

    /// Forwards Insights records, as the Insights function does, to the local bus.
    fn forward_records(&mut self, records: &[impl AsRef<str>], native: bool) {
        if records.is_empty() {
            return;
        }
        let entries: Vec<Entry> = records
            .iter()
            .map(|raw| {
                let raw = raw.as_ref();
                let time = Record::parse(raw)
                    .ok()
                    .and_then(|r| r.fields.event_time.map(|t| t.into_owned()));
                Entry::insight(DEFAULT_SOURCE, raw, time.as_deref())
            })
            .collect();
        let summary = &mut self.summary;
        let report = self.bus.forward(&entries, &mut summary.aws);
        if native {
            summary.insights_forwarded_native += report.accepted.len();
        } else {
            summary.insights_forwarded_detected += report.accepted.len();
        }
        for (i, reason) in report.failed {
            summary
                .output_errors
                .push(format!("insights.jsonl: record {i} not written: {reason}"));
        }
    }
}
