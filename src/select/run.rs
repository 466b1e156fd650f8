//! The select stage's work for one invocation, pure: records in, outgoing messages out.
//!
//! The objects are read by [`super::select_object`] (records carried inline are handed to
//! [`SelectRun::record`]); the run evaluates the trail's selectors, drops repeated eventIDs,
//! names the log stream, stubs oversized records, and packs what it keeps into delivery
//! messages. Insights records go to their own messages. Completed messages wait in an outbox
//! the caller drains as it goes, so memory does not grow with the input. Everything the run
//! could not take (a record, a file) is counted and described by the run itself.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use rustc_hash::FxHashSet;

use crate::deliver::message::{fit_record, RecordLocation};
use crate::deliver::stream_name;
use crate::detect::{Detection, Detector, Scratch};
use crate::ingest::{LogObjectKey, ObjectKind, RawItem};
use crate::record::Record;
use crate::select::{Matcher, Verdict};

use super::origin::Origin;
use super::packer::{Packed, StreamPacker};
pub use super::packer::{MESSAGE_DELIVERY_SPAN_MS, TYPICAL_DELIVERY_DELAY_MS};
use super::problems::{Problem, ProblemLog};

/// Where an outgoing message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The deliver stage's queue.
    Delivery,
    /// The Insights stage's queue (CloudTrail's own Insights records).
    Insights,
    /// Detections (see [`crate::detect`]): they travel on the Insights queue too, in messages
    /// of the stream [`DETECTIONS_STREAM`], and go out through the same bus.
    Detections,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub destination: Destination,
    pub body: String,
    /// When the newest of its records was delivered to the trail's bucket (epoch ms): its
    /// object's delivery stamp, else its `eventTime` plus [`TYPICAL_DELIVERY_DELAY_MS`]. Its
    /// records were delivered within [`MESSAGE_DELIVERY_SPAN_MS`] of each other.
    pub delivered_ms: i64,
}

/// Counts of one run, for logs, metrics and the CLI summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SelectCounts {
    pub records_read: usize,
    pub kept: usize,
    pub duplicates: usize,
    pub insights: usize,
    /// Rule matches found (on every record read, kept or not).
    pub detections: usize,
    pub stubbed: usize,
    pub dropped: BTreeMap<&'static str, usize>,
    /// Records that could not be read.
    pub rejected: usize,
    /// Objects that could not be read to their end (the records before the damage count).
    pub files_failed: usize,
    /// Digest files (`CloudTrail-Digest`): not records, not read.
    pub digests_skipped: usize,
    pub messages: usize,
    /// The newest eventTime read, in epoch milliseconds.
    pub newest_event_ms: Option<i64>,
}

/// The select stage over one invocation's records.
pub struct SelectRun<'m> {
    matcher: &'m Matcher,
    max_message_bytes: usize,
    /// One packer per stream, found by name through `packer_of`.
    packers: Vec<StreamPacker>,
    packer_of: HashMap<String, usize>,
    last_stream: LastStream,
    insights: StreamPacker,
    /// The rules evaluated on every record read, when detection is on.
    detector: Option<&'m Detector>,
    scratch: Scratch,
    detections: StreamPacker,
    /// 128-bit hashes of the eventIDs already kept (a string set would cost 5× the memory);
    /// they are uniform already, so the set's own hash is the cheapest one.
    seen: FxHashSet<u128>,
    /// Keyed at random: eventIDs come from the input, so their hashes must not be predictable.
    hasher: std::collections::hash_map::RandomState,
    outbox: Vec<Outgoing>,
    counts: SelectCounts,
    problems: ProblemLog,
}

/// The stream under which Insights records travel to the Insights queue.
const INSIGHTS_STREAM: &str = "insights";
/// The stream under which detections travel to the Insights queue.
pub const DETECTIONS_STREAM: &str = "detections";

impl<'m> SelectRun<'m> {
    pub fn new(matcher: &'m Matcher, max_message_bytes: usize) -> Self {
        SelectRun {
            matcher,
            max_message_bytes,
            packers: Vec::new(),
            packer_of: HashMap::new(),
            last_stream: LastStream::default(),
            insights: StreamPacker::new(INSIGHTS_STREAM, max_message_bytes),
            detector: None,
            scratch: Scratch::default(),
            detections: StreamPacker::new(DETECTIONS_STREAM, max_message_bytes),
            seen: FxHashSet::default(),
            hasher: Default::default(),
            outbox: Vec::new(),
            counts: SelectCounts::default(),
            problems: ProblemLog::default(),
        }
    }

    /// Evaluates `detector`'s rules on every record read (before the trail's selectors: a
    /// trail that drops read events must still see `GetPasswordData`).
    pub fn with_detector(mut self, detector: &'m Detector) -> Self {
        self.detector = Some(detector);
        self
    }

    /// What the run did so far.
    pub fn counts(&self) -> &SelectCounts {
        &self.counts
    }

    /// What could not be taken, each with where it was and why: the first few of each object
    /// in full, the rest summarised (see `select::problems`).
    pub fn problems(&self) -> &[Problem] {
        self.problems.kept()
    }

    /// The problems noted since the last call, to log as they happen.
    pub fn new_problems(&mut self) -> &[Problem] {
        self.problems.new_problems()
    }

    /// The object being read has ended: its problems beyond the first few are summarised.
    pub fn object_done(&mut self) {
        self.problems.object_done();
    }

    /// Takes one element of a log file: a record, or one the reader could not make out.
    /// Returns the record when it was kept for delivery.
    pub fn take<'r>(&mut self, origin: &Origin<'_>, item: RawItem<'r>) -> Option<Record<'r>> {
        match item.bytes {
            Ok(raw) => self.record(origin, item.index, raw),
            Err(problem) => {
                self.counts.records_read += 1;
                self.reject(origin, item.index, problem.kind(), problem)
            }
        }
    }

    /// An object that could not be read (to its end): counted, and described by `reason`.
    pub fn file_failed(&mut self, origin: &Origin<'_>, reason: impl std::fmt::Display) {
        self.counts.files_failed += 1;
        self.problems
            .note(origin, None, "object unreadable", reason);
    }

    /// A digest file named where log files are expected: counted, not read.
    pub fn digest_skipped(&mut self) {
        self.counts.digests_skipped += 1;
    }

    /// Takes one record (its exact text) found at `index` of `origin`. Returns the record when
    /// it was kept for delivery.
    pub fn record<'r>(
        &mut self,
        origin: &Origin<'_>,
        index: usize,
        raw: &'r str,
    ) -> Option<Record<'r>> {
        self.counts.records_read += 1;
        let record = match Record::parse(raw) {
            Ok(record) => record,
            Err(e) => return self.reject(origin, index, e.kind(), e),
        };
        let event_ms = match record.event_time_ms() {
            Ok(t) => t,
            Err(e) => return self.reject(origin, index, e.kind(), e),
        };
        self.counts.newest_event_ms = self.counts.newest_event_ms.max(Some(event_ms));
        let delivered_ms = origin
            .parsed
            .delivered_ms
            .unwrap_or(event_ms.saturating_add(TYPICAL_DELIVERY_DELAY_MS));
        if record.is_insight() || origin.parsed.kind == ObjectKind::Insight {
            self.counts.insights += 1;
            self.pack_insight(origin, index, raw, delivered_ms);
            return None;
        }
        let location = RecordLocation {
            bucket: origin.bucket,
            key: Some(origin.key),
            index,
        };
        if let Some(detector) = self.detector {
            self.detect(detector, &record, location, origin, delivered_ms);
        }
        match self.matcher.evaluate(&record) {
            Verdict::Drop(reason) => {
                *self.counts.dropped.entry(reason.as_str()).or_default() += 1;
                return None;
            }
            Verdict::Keep { .. } => {}
        }
        if let Some(id) = record.event_id() {
            if !self.seen.insert(self.hash(id)) {
                self.counts.duplicates += 1;
                return None;
            }
        }
        let Some(packer) = self.packer_for(&record, &origin.parsed) else {
            return self.reject(
                origin,
                index,
                "no log stream",
                "no log stream can be named: recipientAccountId/awsRegion missing or invalid",
            );
        };
        let packer = &mut self.packers[packer];
        let fitted = fit_record(&record, location, packer.max_record_bytes());
        if fitted.len() != raw.len() {
            self.counts.stubbed += 1;
        }
        self.counts.kept += 1;
        if let Some(packed) = packer.push(&fitted, delivered_ms) {
            self.send(Destination::Delivery, packed);
        }
        Some(record)
    }

    /// The packer of the record's stream (see [`stream_name`]), `None` when no stream can be
    /// named. Consecutive records nearly always name the same stream from the same inputs, so
    /// the name is formed and looked up once per run of equal inputs.
    fn packer_for(&mut self, record: &Record<'_>, key: &LogObjectKey<'_>) -> Option<usize> {
        let inputs = [
            record.recipient_account_id(),
            record.aws_region(),
            record
                .fields
                .user_identity
                .as_ref()
                .and_then(|u| u.account_id.as_deref()),
            key.account_id,
            key.region,
            key.org_id,
        ];
        if let Some(packer) = self.last_stream.get(&inputs) {
            return packer;
        }
        let packer = stream_name(record, Some(key)).map(|stream| {
            let max = self.max_message_bytes;
            *self.packer_of.entry(stream).or_insert_with_key(|stream| {
                self.packers.push(StreamPacker::new(stream, max));
                self.packers.len() - 1
            })
        });
        self.last_stream.set(&inputs, packer);
        packer
    }

    fn pack_insight(&mut self, origin: &Origin<'_>, index: usize, text: &str, delivered_ms: i64) {
        if text.len() > self.insights.max_record_bytes() {
            // CloudTrail caps records at 256 KB; an Insights record this large is corrupt input.
            let reason = format!("Insights record of {} bytes exceeds a message", text.len());
            return self
                .reject(origin, index, "Insights record too large", reason)
                .unwrap_or(());
        }
        if let Some(packed) = self.insights.push(text, delivered_ms) {
            self.send(Destination::Insights, packed);
        }
    }

    /// Packs the detections of `record` into detection messages.
    fn detect(
        &mut self,
        detector: &Detector,
        record: &Record<'_>,
        location: RecordLocation<'_>,
        origin: &Origin<'_>,
        delivered_ms: i64,
    ) {
        let mut found = Vec::new();
        detector.evaluate(record, &mut self.scratch, |rule, event| {
            found.push(Detection::new(rule, event, location).to_json())
        });
        for detection in found {
            self.counts.detections += 1;
            if detection.len() > self.detections.max_record_bytes() {
                // A detection stubs records over DETECTION_MAX_RECORD_BYTES, so it fits unless
                // the rule's own fields are huge: said, not dropped silently.
                let reason = format!("detection of {} bytes exceeds a message", detection.len());
                self.reject::<()>(origin, location.index, "detection too large", reason);
                continue;
            }
            if let Some(packed) = self.detections.push(&detection, delivered_ms) {
                self.send(Destination::Detections, packed);
            }
        }
    }

    fn send(&mut self, destination: Destination, packed: Packed) {
        self.counts.messages += 1;
        self.outbox.push(Outgoing {
            destination,
            body: packed.body,
            delivered_ms: packed.delivered_ms,
        });
    }

    /// A record that could not be taken; `None` for the caller's convenience.
    fn reject<T>(
        &mut self,
        origin: &Origin<'_>,
        index: usize,
        kind: &'static str,
        reason: impl std::fmt::Display,
    ) -> Option<T> {
        self.counts.rejected += 1;
        self.problems.note(origin, Some(index), kind, reason);
        None
    }

    fn hash(&self, id: &str) -> u128 {
        let mut a = self.hasher.build_hasher();
        a.write(id.as_bytes());
        let mut b = self.hasher.build_hasher();
        b.write_u8(0x5a);
        b.write(id.as_bytes());
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    /// Moves partly filled messages to the outbox (at the end of the invocation).
    pub fn flush(&mut self) {
        self.problems.object_done();
        let mut order: Vec<usize> = (0..self.packers.len()).collect();
        order.sort_by(|&a, &b| self.packers[a].stream.cmp(&self.packers[b].stream));
        for i in order {
            if let Some(packed) = self.packers[i].take() {
                self.send(Destination::Delivery, packed);
            }
        }
        if let Some(packed) = self.insights.take() {
            self.send(Destination::Insights, packed);
        }
        if let Some(packed) = self.detections.take() {
            self.send(Destination::Detections, packed);
        }
    }

    /// How many completed messages wait to be sent.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The completed messages, to be sent now.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }
}

/// The inputs [`stream_name`] last read and the packer they led to.
#[derive(Default)]
struct LastStream {
    inputs: Option<[Option<String>; 6]>,
    packer: Option<usize>,
}

impl LastStream {
    fn get(&self, inputs: &[Option<&str>; 6]) -> Option<Option<usize>> {
        let last = self.inputs.as_ref()?;
        let same = last.iter().zip(inputs).all(|(a, b)| a.as_deref() == *b);
        same.then_some(self.packer)
    }

    fn set(&mut self, inputs: &[Option<&str>; 6], packer: Option<usize>) {
        self.inputs = Some(inputs.map(|i| i.map(str::to_owned)));
        self.packer = packer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::DeliveryMessage;
    use crate::ingest::parse_object_key;
    use crate::select::TrailConfig;

    #[test]
    fn records_alternating_between_streams_are_packed_by_their_own_stream() {
        let matcher = TrailConfig::from_json("{}").unwrap().compile();
        let mut run = SelectRun::new(&matcher, 1000);
        let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2024/01/01/f.json.gz";
        let origin = Origin {
            bucket: Some("b"),
            key,
            parsed: parse_object_key(key),
        };
        let accounts = ["222222222222", "333333333333", "", "222222222222", "bad:*"];
        for (i, account) in accounts.iter().cycle().take(40).enumerate() {
            let raw = format!(
                r#"{{"eventID":"e{i}","eventTime":"2024-01-01T00:00:00Z","eventCategory":"Management","awsRegion":"us-east-1"{}}}"#,
                if account.is_empty() {
                    String::new()
                } else {
                    format!(r#","recipientAccountId":"{account}""#)
                }
            );
            run.record(&origin, i, &raw);
        }
        run.flush();
        let mut per_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for message in run.take_outbox() {
            let parsed = DeliveryMessage::parse(&message.body).unwrap();
            let ids = per_stream.entry(parsed.stream.to_string()).or_default();
            for record in parsed.records {
                ids.push(
                    Record::parse(record.get())
                        .unwrap()
                        .event_id()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
        let expect = |accounts: &[usize]| -> Vec<String> {
            (0..40)
                .filter(|i| accounts.contains(&(i % 5)))
                .map(|i| format!("e{i}"))
                .collect()
        };
        assert_eq!(
            per_stream["222222222222_CloudTrail_us-east-1"],
            expect(&[0, 3])
        );
        assert_eq!(
            per_stream["333333333333_CloudTrail_us-east-1"],
            expect(&[1])
        );
        // No recipientAccountId: the object key's account names the stream.
        assert_eq!(
            per_stream["111111111111_CloudTrail_us-east-1"],
            expect(&[2])
        );
        assert_eq!(per_stream.len(), 3);
        assert_eq!(run.counts().rejected, 8);
        assert_eq!(run.counts().kept, 32);
    }
}
