//! `trailwatch replay`: the whole pipeline on one machine, over CloudTrail log files.
//!
//! Files are read and selected exactly as the select Lambda reads S3 objects; the delivery
//! messages go through the same message format and the deliver stage's planner, in groups of
//! [`DELIVER_BATCH_MESSAGES`] as the SQS trigger hands them to the deliver Lambda; the log
//! group is a folder of `<stream>.jsonl` files and the Insights bus is `insights.jsonl`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use crate::deliver::{deliver_messages, BatchLimits, DeliveryMessage, DeliveryReport, Inbound};
use crate::forward::{forward, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE};
use crate::ingest::{parse_object_key, read_log_file, LogFileLimits, ObjectKind};
use crate::insights::{InsightsConfig, InsightsEngine};
use crate::local::{block_on, FileBus, FileLogGroup};
use crate::pipeline::{
    Destination, Origin, Outgoing, SelectCounts, SelectRun, SEND_EVERY_MESSAGES,
};
use crate::record::Record;
use crate::select::TrailConfig;

/// Messages per deliver invocation: the SQS trigger's BatchSize in template.yaml (a multiple of
/// [`crate::deliver::message::MESSAGES_PER_PUT_LOG_EVENTS`]).
pub const DELIVER_BATCH_MESSAGES: usize = 8;

pub struct ReplayOptions {
    pub inputs: Vec<PathBuf>,
    pub config: TrailConfig,
    /// Insights detection over the kept management events, when the trail has insight
    /// selectors (as CloudTrail: Insights are off unless enabled).
    pub insights: Option<InsightsConfig>,
    pub out: PathBuf,
    /// The delivery time for CloudWatch Logs' time window; by default each group of messages is
    /// delivered "as it happened", at the newest eventTime read so far.
    pub now_ms: Option<i64>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub files: usize,
    pub files_failed: usize,
    pub digests_skipped: usize,
    pub select: SelectCounts,
    pub problems: Vec<String>,
    pub delivery: DeliveryTotals,
    pub insights_forwarded: usize,
    /// Insights records trailwatch's detector produced (Start and End).
    pub insights_detected: usize,
    pub sqs_messages: usize,
}

#[derive(Debug, Default)]
pub struct DeliveryTotals {
    pub delivered: usize,
    pub duplicates: usize,
    pub put_calls: usize,
    pub rejected: BTreeMap<&'static str, usize>,
    pub set_aside: usize,
    pub per_stream: BTreeMap<String, usize>,
}

impl DeliveryTotals {
    fn add(&mut self, report: &DeliveryReport) {
        self.delivered += report.delivered;
        self.duplicates += report.duplicates;
        self.put_calls += report.put_calls;
        self.set_aside += report.set_aside.len();
        for (stream, n) in &report.delivered_per_stream {
            *self.per_stream.entry(stream.clone()).or_default() += n;
        }
        for (reason, n) in &report.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
    }
}

/// Lists the log files under `inputs`: files as given, folders walked recursively for
/// `.json`, `.json.gz` and `.gz` files, in name order.
pub fn collect_files(inputs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut files)?;
        } else if input.exists() {
            files.push(input.clone());
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file or folder", input.display()),
            ));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if name.ends_with(".json") || name.ends_with(".gz") {
            files.push(path);
        }
    }
    Ok(())
}

pub fn replay(options: &ReplayOptions) -> io::Result<ReplaySummary> {
    let files = collect_files(&options.inputs)?;
    let group = FileLogGroup::new(&options.out)?;
    let bus = FileBus::create(&options.out.join("insights.jsonl"))?;
    let matcher = options.config.compile();
    let mut run = SelectRun::new(&matcher, crate::deliver::message::DEFAULT_MESSAGE_BYTES);
    let mut summary = ReplaySummary::default();
    let mut queue: Vec<Outgoing> = Vec::new();
    let mut engine = options.insights.clone().map(InsightsEngine::new);

    for path in &files {
        summary.files += 1;
        let name = path.to_string_lossy();
        let origin = Origin {
            bucket: None,
            key: &name,
            parsed: parse_object_key(&name),
        };
        if origin.parsed.kind == ObjectKind::Digest {
            summary.digests_skipped += 1;
            continue;
        }
        let read = File::open(path).map_err(|e| e.to_string()).and_then(|f| {
            read_log_file(
                BufReader::new(f),
                LogFileLimits::default(),
                |item| match item.bytes {
                    Ok(raw) => {
                        let kept_before = run.counts.kept;
                        run.record(&origin, item.index, raw);
                        if run.outbox_len() >= SEND_EVERY_MESSAGES {
                            // As the select function does: memory stays flat in file size.
                            queue.extend(run.take_outbox());
                            let now = options.now_ms.or(run.counts.newest_event_ms).unwrap_or(0);
                            drain(&mut queue, false, now, &group, &bus, &mut summary);
                        }
                        if let (Some(engine), true) =
                            (engine.as_mut(), run.counts.kept > kept_before)
                        {
                            if let Ok(record) = Record::parse(raw) {
                                engine.observe(&record);
                            }
                        }
                    }
                    Err(problem) => {
                        run.counts.records_read += 1;
                        run.counts.rejected += 1;
                        run.problem(&origin, Some(item.index), problem);
                    }
                },
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = read {
            summary.files_failed += 1;
            run.problem(&origin, None, e);
        }
        queue.extend(run.take_outbox());
        let now = options.now_ms.or(run.counts.newest_event_ms).unwrap_or(0);
        drain(&mut queue, false, now, &group, &bus, &mut summary);
        if let (Some(engine), Some(newest)) = (engine.as_mut(), run.counts.newest_event_ms) {
            let detected = engine.advance_to(newest);
            summary.insights_detected += detected.len();
            forward_records(&detected, &bus, &mut summary);
        }
    }
    if let Some(engine) = engine.as_mut() {
        let detected = engine.finish();
        summary.insights_detected += detected.len();
        forward_records(&detected, &bus, &mut summary);
    }
    run.flush();
    queue.extend(run.take_outbox());
    let now = options.now_ms.or(run.counts.newest_event_ms).unwrap_or(0);
    drain(&mut queue, true, now, &group, &bus, &mut summary);
    group.flush()?;
    bus.flush()?;
    summary.select = run.counts.clone();
    summary.problems = run.problems.iter().map(ToString::to_string).collect();
    Ok(summary)
}

/// Hands queued messages to the local deliver and forward stages, in SQS-sized groups.
fn drain(
    queue: &mut Vec<Outgoing>,
    all: bool,
    now_ms: i64,
    group: &FileLogGroup,
    bus: &FileBus,
    summary: &mut ReplaySummary,
) {
    let (insights, mut delivery): (Vec<Outgoing>, Vec<Outgoing>) = queue
        .drain(..)
        .partition(|m| m.destination == Destination::Insights);
    summary.sqs_messages += insights.len();
    for message in &insights {
        forward_insights(&message.body, bus, summary);
    }
    while delivery.len() >= DELIVER_BATCH_MESSAGES || (all && !delivery.is_empty()) {
        let take = delivery.len().min(DELIVER_BATCH_MESSAGES);
        let chunk: Vec<Outgoing> = delivery.drain(..take).collect();
        summary.sqs_messages += chunk.len();
        let ids: Vec<String> = (0..chunk.len()).map(|i| i.to_string()).collect();
        let inbound: Vec<Inbound<'_>> = chunk
            .iter()
            .zip(&ids)
            .map(|(m, id)| Inbound { id, body: &m.body })
            .collect();
        let report = block_on(deliver_messages(
            group,
            &inbound,
            now_ms,
            None,
            &BatchLimits::default(),
        ));
        for aside in &report.set_aside {
            summary.problems.push(format!(
                "delivery: record {:?} (eventID {:?}): {}",
                aside.record_index, aside.event_id, aside.reason
            ));
        }
        summary.delivery.add(&report);
    }
    queue.extend(delivery);
}

fn forward_insights(body: &str, bus: &FileBus, summary: &mut ReplaySummary) {
    match DeliveryMessage::parse(body) {
        Ok(message) => {
            let records: Vec<&str> = message.records.iter().map(|r| r.get()).collect();
            forward_records(&records, bus, summary);
        }
        Err(e) => summary.problems.push(format!("insights message: {e}")),
    }
}

/// Forwards Insights records, as the Insights function does, to the local bus.
fn forward_records(records: &[impl AsRef<str>], bus: &FileBus, summary: &mut ReplaySummary) {
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
    let report = block_on(forward(
        bus,
        &entries,
        &PutEventsLimits::default(),
        &RetryPolicy::default(),
        |_| std::future::ready(()),
    ));
    summary.insights_forwarded += report.accepted.len();
    for (i, reason) in report.failed {
        summary
            .problems
            .push(format!("insights: record {i} not forwarded: {reason}"));
    }
}
