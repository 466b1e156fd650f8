//! The select stage's work for one invocation, pure: records in, outgoing messages out.
//!
//! The caller (the select Lambda, the local CLI) reads objects and hands each record to
//! [`SelectRun::record`]; the run evaluates the trail's selectors, drops repeated eventIDs,
//! names the log stream, stubs oversized records, and packs what it keeps into delivery
//! messages. Insights records go to their own messages. Completed messages wait in an outbox
//! the caller drains as it goes, so memory does not grow with the input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use crate::deliver::message::{fit_record, MessagePacker, RecordLocation};
use crate::deliver::stream_name;
use crate::ingest::{LogObjectKey, ObjectKind};
use crate::record::Record;
use crate::select::{Matcher, Verdict};

/// Where an outgoing message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The deliver stage's queue.
    Delivery,
    /// The Insights stage's queue (CloudTrail's own Insights records).
    Insights,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub destination: Destination,
    pub body: String,
}

/// Where a record came from: an S3 object, a local file, or an inline event.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub bucket: Option<&'a str>,
    /// The object key, the file path, or a description of the inline source.
    pub key: &'a str,
    pub parsed: LogObjectKey<'a>,
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bucket {
            Some(bucket) => write!(f, "s3://{bucket}/{}", self.key),
            None => f.write_str(self.key),
        }
    }
}

/// A record that could not be taken, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub index: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{} record {i}: {}", self.origin, self.reason),
            None => write!(f, "{}: {}", self.origin, self.reason),
        }
    }
}

/// Counts of one run, for logs, metrics and the CLI summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SelectCounts {
    pub records_read: usize,
    pub kept: usize,
    pub duplicates: usize,
    pub insights: usize,
    pub stubbed: usize,
    pub dropped: BTreeMap<&'static str, usize>,
    /// Records that could not be read, by reason kind.
    pub rejected: usize,
    pub messages: usize,
    /// The newest eventTime read, in epoch milliseconds.
    pub newest_event_ms: Option<i64>,
}

/// The select stage over one invocation's records.
pub struct SelectRun<'m> {
    matcher: &'m Matcher,
    max_message_bytes: usize,
    packers: HashMap<String, MessagePacker>,
    insights: MessagePacker,
    /// 128-bit hashes of the eventIDs already kept (a string set would cost 5× the memory).
    seen: HashSet<u128>,
    hasher: std::collections::hash_map::RandomState,
    outbox: Vec<Outgoing>,
    pub counts: SelectCounts,
    pub problems: Vec<Problem>,
}

/// The stream under which Insights records travel to the Insights queue.
const INSIGHTS_STREAM: &str = "insights";

impl<'m> SelectRun<'m> {
    pub fn new(matcher: &'m Matcher, max_message_bytes: usize) -> Self {
        SelectRun {
            matcher,
            max_message_bytes,
            packers: HashMap::new(),
            insights: MessagePacker::new(INSIGHTS_STREAM, max_message_bytes),
            seen: HashSet::new(),
            hasher: Default::default(),
            outbox: Vec::new(),
            counts: SelectCounts::default(),
            problems: Vec::new(),
        }
    }

    /// Records a problem that is not one record's (a file that could not be read).
    pub fn problem(&mut self, origin: &Origin<'_>, index: Option<usize>, reason: impl ToString) {
        self.problems.push(Problem {
            origin: origin.to_string(),
            index,
            reason: reason.to_string(),
        });
    }

    /// Takes one record (its exact text) found at `index` of `origin`.
    pub fn record(&mut self, origin: &Origin<'_>, index: usize, raw: &str) {
        self.counts.records_read += 1;
        let record = match Record::parse(raw) {
            Ok(record) => record,
            Err(e) => return self.reject(origin, index, e),
        };
        match record.event_time_ms() {
            Ok(t) => self.counts.newest_event_ms = self.counts.newest_event_ms.max(Some(t)),
            Err(e) => return self.reject(origin, index, e),
        }
        if record.is_insight() || origin.parsed.kind == ObjectKind::Insight {
            self.counts.insights += 1;
            return self.pack_insight(origin, index, raw);
        }
        match self.matcher.evaluate(&record) {
            Verdict::Drop(reason) => {
                *self.counts.dropped.entry(reason.as_str()).or_default() += 1;
                return;
            }
            Verdict::Keep { .. } => {}
        }
        if let Some(id) = record.event_id() {
            if !self.seen.insert(self.hash(id)) {
                self.counts.duplicates += 1;
                return;
            }
        }
        let Some(stream) = stream_name(&record, Some(&origin.parsed)) else {
            return self.reject(
                origin,
                index,
                "no log stream can be named: recipientAccountId/awsRegion missing or invalid",
            );
        };
        let location = RecordLocation {
            bucket: origin.bucket,
            key: Some(origin.key),
            index,
        };
        let max = self.max_message_bytes;
        let packer = self
            .packers
            .entry(stream)
            .or_insert_with_key(|s| MessagePacker::new(s, max));
        let fitted = fit_record(&record, location, packer.max_record_bytes());
        if fitted.len() != raw.len() {
            self.counts.stubbed += 1;
        }
        self.counts.kept += 1;
        if let Some(body) = packer.push(&fitted) {
            self.counts.messages += 1;
            self.outbox.push(Outgoing {
                destination: Destination::Delivery,
                body,
            });
        }
    }

    fn pack_insight(&mut self, origin: &Origin<'_>, index: usize, text: &str) {
        if text.len() > self.insights.max_record_bytes() {
            // CloudTrail caps records at 256 KB; an Insights record this large is corrupt input.
            let reason = format!("Insights record of {} bytes exceeds a message", text.len());
            return self.reject(origin, index, reason);
        }
        if let Some(body) = self.insights.push(text) {
            self.counts.messages += 1;
            self.outbox.push(Outgoing {
                destination: Destination::Insights,
                body,
            });
        }
    }

    fn reject(&mut self, origin: &Origin<'_>, index: usize, reason: impl ToString) {
        self.counts.rejected += 1;
        self.problem(origin, Some(index), reason);
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
        let mut streams: Vec<&String> = self.packers.keys().collect();
        streams.sort();
        let mut bodies: Vec<String> = Vec::new();
        for stream in streams.into_iter().cloned().collect::<Vec<_>>() {
            bodies.extend(self.packers.get_mut(&stream).and_then(MessagePacker::take));
        }
        for body in bodies {
            self.counts.messages += 1;
            self.outbox.push(Outgoing {
                destination: Destination::Delivery,
                body,
            });
        }
        if let Some(body) = self.insights.take() {
            self.counts.messages += 1;
            self.outbox.push(Outgoing {
                destination: Destination::Insights,
                body,
            });
        }
    }

    /// The completed messages, to be sent now.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }
}
