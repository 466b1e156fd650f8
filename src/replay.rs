//! `trailwatch replay`: the whole pipeline on one machine, over CloudTrail log files.
//!
//! Files are read and selected exactly as the select Lambda reads S3 objects; the delivery
//! messages go through the same message format and the deliver stage's planner, in groups of
//! up to [`DELIVER_BATCH_BYTES`] as the SQS trigger hands them to the deliver Lambda, calls
//! that are not full held back in the local queue as the deployment holds them back in SQS;
//! the log group is a folder of `<stream>.jsonl` files and the Insights bus is
//! `insights.jsonl`.
//!
//! Files are read in delivery order — the `YYYYMMDDTHHmmZ` stamp CloudTrail puts in every log
//! file name, as S3 notifications would arrive — then files without a stamp in name order, then
//! stdin. Delivery happens "as it happened" (at the newest eventTime read so far) unless a
//! delivery time is given, so a month of logs from many accounts is not judged against the
//! last account's clock.
//!
//! Besides the output, a replay counts the AWS calls the deployed pipeline would make for the
//! same input ([`AwsCalls`]), as the functions make them: one GetObject per log file,
//! SendMessageBatch calls grouped as `trailwatch_aws::sqs` groups them, PutLogEvents calls
//! from the deliver planner, the dedup ledger's conditional PutItem per delivered record
//! (`src/deliver/ledger.rs`), PutEvents calls and entries for Insights records.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::deliver::limits::{
    PUT_LOG_EVENTS_EVENT_OVERHEAD, SQS_MAX_BATCH_MESSAGES, SQS_MAX_MESSAGE_BYTES,
};
use crate::deliver::{
    deliver_messages_once, Carrier, CarryError, DeliveryMessage, DeliveryReport, DeliverySettings,
    HeldMessage, Inbound, InvocationOnly, LedgerReport, LogEvent, LogSink, RejectedRanges,
    SinkError,
};
use crate::forward::{forward, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE};
use crate::ingest::{parse_object_key, read_log_file, LogFileLimits, ObjectKind};
use crate::insights::{InsightsConfig, InsightsEngine};
use crate::local::{block_on, FileBus, FileLogGroup};
use crate::pipeline::{
    Destination, Origin, Outgoing, SelectCounts, SelectRun, SEND_EVERY_MESSAGES,
};
use crate::record::Record;
use crate::select::TrailConfig;
use crate::time::parse_compact_time;

/// Message bytes per deliver invocation: what fits Lambda's 6 MB invocation payload once the
/// bodies are escaped inside the SQS event (about 20 messages of 256 KiB), as the trigger in
/// template.yaml hands them over.
pub const DELIVER_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Bytes of held-back messages the local queue keeps before it puts calls that are not full.
pub const LOCAL_HOLD_BYTES: usize = 64 * 1024 * 1024;
/// The input name that means "a log file on standard input".
pub const STDIN: &str = "-";
/// How the standard input is named in problems and progress.
pub const STDIN_NAME: &str = "(stdin)";
/// Records between two progress reports inside a file.
pub const PROGRESS_EVERY_RECORDS: usize = 4096;
/// SQS bills every 64 KB chunk of a request's payload as one request.
pub const SQS_BILLING_CHUNK_BYTES: usize = 64 * 1024;
/// EventBridge bills every 64 KB chunk of an entry as one event.
pub const PUT_EVENTS_BILLING_CHUNK_BYTES: usize = 64 * 1024;

pub struct ReplayOptions {
    /// Files, folders, or [`STDIN`].
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

/// Where a replay stands, handed to the caller's observer as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub files_total: usize,
    pub files_done: usize,
    pub records_read: usize,
}

/// Why a replay could not run (nothing, or not everything, could be written).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    #[error("output {path}: {source}")]
    Output { path: PathBuf, source: io::Error },
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Inputs seen, digests included.
    pub files: usize,
    /// Log files that could not be read to their end (the records before the damage count).
    pub files_failed: usize,
    pub digests_skipped: usize,
    pub select: SelectCounts,
    /// Problems in the input, each with its file and record position.
    pub problems: Vec<String>,
    /// Writes to the output folder that failed: the output is incomplete.
    pub output_errors: Vec<String>,
    pub delivery: DeliveryTotals,
    /// CloudTrail's own Insights records (from `CloudTrail-Insight` files) forwarded to the bus.
    pub insights_forwarded_native: usize,
    /// trailwatch's Insights records forwarded to the bus.
    pub insights_forwarded_detected: usize,
    /// Insights records trailwatch's detector produced (Start and End).
    pub insights_detected: usize,
    pub aws: AwsCalls,
}

impl ReplaySummary {
    /// Files opened for reading (the GetObject calls): every input but the digests.
    pub fn files_read(&self) -> usize {
        self.files - self.digests_skipped
    }

    /// Insights records forwarded to the bus, CloudTrail's and trailwatch's.
    pub fn insights_forwarded(&self) -> usize {
        self.insights_forwarded_native + self.insights_forwarded_detected
    }

    /// Duplicates dropped: by the select stage (eventID seen before) and by delivery.
    pub fn duplicates(&self) -> usize {
        self.select.duplicates + self.delivery.duplicates
    }
}

#[derive(Debug, Default)]
pub struct DeliveryTotals {
    pub delivered: usize,
    pub duplicates: usize,
    /// Records CloudWatch Logs would not accept, by reason (too old, too new, …).
    pub rejected: BTreeMap<&'static str, usize>,
    pub set_aside: usize,
    pub per_stream: BTreeMap<String, usize>,
}

impl DeliveryTotals {
    fn add(&mut self, report: &DeliveryReport) {
        self.delivered += report.delivered;
        self.duplicates += report.duplicates;
        self.set_aside += report.set_aside.len();
        for (stream, n) in &report.delivered_per_stream {
            *self.per_stream.entry(stream.clone()).or_default() += n;
        }
        for (reason, n) in &report.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
    }
}

/// The AWS calls the deployed pipeline would have made for the same input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AwsCalls {
    /// S3 GetObject: one per log file the select function reads (digests are not read).
    pub s3_get_object: usize,
    /// SQS SendMessageBatch calls (≤ 10 messages, ≤ 256 KiB each), both queues.
    pub sqs_send_message_batch: usize,
    pub sqs_messages: usize,
    /// SQS requests as billed: every 64 KB chunk of a call's payload counts as one.
    pub sqs_billed_requests: usize,
    pub put_log_events: usize,
    /// Events accepted by the log group.
    pub cwl_events: usize,
    /// Bytes ingested by CloudWatch Logs: message bytes + 26 per event.
    pub cwl_ingested_bytes: u64,
    /// The deliver function's dedup ledger: one conditional PutItem per delivered record with
    /// an eventID (its claim), plus confirms of records whose message goes back to SQS.
    pub dynamodb_put_item: usize,
    pub put_events_calls: usize,
    pub put_events_entries: usize,
    /// EventBridge events as billed: every 64 KB chunk of an entry counts as one.
    pub put_events_billed: usize,
}

/// An input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.to_string_lossy().into_owned(),
            Source::Stdin => STDIN_NAME.to_owned(),
        }
    }
}

/// The delivery time in CloudTrail's log file name
/// (`<acct>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<unique>.json.gz`), epoch milliseconds.
pub fn delivery_time_ms(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let stamp = name.split('_').nth(3)?;
    parse_compact_time(stamp).filter(|_| stamp.len() == 14)
}

/// Lists the log files under `inputs`: files as given, folders walked recursively for
/// `.json`, `.json.gz` and `.gz` files, in name order.
pub fn collect_files(inputs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    collect_files_where(inputs, &|name| {
        name.ends_with(".json") || name.ends_with(".gz")
    })
}

/// Files as given (they must exist), and the files of folders, walked recursively in name
/// order, whose name `accept`s (hidden files and folders are skipped).
pub fn collect_files_where(
    inputs: &[PathBuf],
    accept: &dyn Fn(&str) -> bool,
) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, accept, &mut files)?;
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

/// The inputs in reading order: log files in delivery order (see the module documentation),
/// then files without a delivery stamp in name order, then [`STDIN`] if given (once).
pub fn collect_sources(inputs: &[PathBuf]) -> Result<Vec<Source>, ReplayError> {
    let stdin_count = inputs.iter().filter(|p| p.as_os_str() == STDIN).count();
    if stdin_count > 1 {
        return Err(ReplayError::Input(format!(
            "'{STDIN}' (standard input) can be given once"
        )));
    }
    let paths: Vec<PathBuf> = inputs
        .iter()
        .filter(|p| p.as_os_str() != STDIN)
        .cloned()
        .collect();
    let files = collect_files(&paths).map_err(|e| ReplayError::Input(e.to_string()))?;
    let mut files = in_delivery_order(files);
    files.dedup_by(|a, b| a.1 == b.1);
    let mut sources: Vec<Source> = files.into_iter().map(|(_, p)| Source::File(p)).collect();
    if stdin_count == 1 {
        sources.push(Source::Stdin);
    }
    if sources.is_empty() {
        // Most likely a wrong folder: say so rather than report an empty success.
        return Err(ReplayError::Input(
            "no log files (.json, .json.gz, .gz) in the inputs".into(),
        ));
    }
    Ok(sources)
}

/// Each file with its delivery time ([`delivery_time_ms`]), in delivery order; files without
/// a stamp last, in name order.
pub fn in_delivery_order(files: Vec<PathBuf>) -> Vec<(Option<i64>, PathBuf)> {
    let mut files: Vec<(Option<i64>, PathBuf)> = files
        .into_iter()
        .map(|path| (delivery_time_ms(&path), path))
        .collect();
    files.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    files
}

fn walk(dir: &Path, accept: &dyn Fn(&str) -> bool, files: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, accept, files)?;
        } else if accept(name) {
            files.push(path);
        }
    }
    Ok(())
}

/// The log group, counting what it ingests.
struct CountingLogGroup<'a> {
    group: &'a FileLogGroup,
    events: AtomicUsize,
    bytes: AtomicU64,
}

impl LogSink for CountingLogGroup<'_> {
    async fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> Result<RejectedRanges, SinkError> {
        let ranges = self.group.put_batch(stream, events).await?;
        for (i, event) in events.iter().enumerate() {
            if ranges.of(i).is_none() {
                self.events.fetch_add(1, Ordering::Relaxed);
                let bytes = event.message.len() + PUT_LOG_EVENTS_EVENT_OVERHEAD;
                self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
        }
        Ok(ranges)
    }
}

/// The local stand-ins of the deployment's outputs.
struct Outputs<'a> {
    group: CountingLogGroup<'a>,
    bus: &'a FileBus,
    now_ms: Option<i64>,
}

/// Replays with no progress reporting.
pub fn replay(options: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    replay_with_progress(options, &mut |_| {})
}

/// Replays, calling `progress` after every file and every [`PROGRESS_EVERY_RECORDS`] records.
pub fn replay_with_progress(
    options: &ReplayOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReplaySummary, ReplayError> {
    let sources = collect_sources(&options.inputs)?;
    let output_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplayError::Output { path, source }
    };
    let group = FileLogGroup::new(&options.out).map_err(output_error(&options.out))?;
    let bus_path = options.out.join("insights.jsonl");
    let bus = FileBus::create(&bus_path).map_err(output_error(&bus_path))?;
    let outputs = Outputs {
        group: CountingLogGroup {
            group: &group,
            events: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        },
        bus: &bus,
        now_ms: options.now_ms,
    };
    let matcher = options.config.compile();
    let mut run = SelectRun::new(&matcher, crate::deliver::message::DEFAULT_MESSAGE_BYTES);
    let mut summary = ReplaySummary::default();
    let mut queue: Vec<Outgoing> = Vec::new();
    let mut engine = options.insights.clone().map(InsightsEngine::new);
    let mut state = Progress {
        files_total: sources.len(),
        ..Progress::default()
    };

    for source in &sources {
        summary.files += 1;
        let name = source.name();
        let origin = Origin {
            bucket: None,
            key: &name,
            parsed: parse_object_key(&name),
        };
        if origin.parsed.kind == ObjectKind::Digest {
            summary.digests_skipped += 1;
            state.files_done += 1;
            progress(state);
            continue;
        }
        let reader: Result<Box<dyn Read>, String> = match source {
            Source::File(path) => File::open(path)
                .map(|f| Box::new(BufReader::new(f)) as Box<dyn Read>)
                .map_err(|e| format!("cannot open: {e}")),
            Source::Stdin => Ok(Box::new(io::stdin().lock())),
        };
        let read = reader.and_then(|reader| {
            read_log_file(reader, LogFileLimits::default(), |item| {
                match item.bytes {
                    Ok(raw) => {
                        let kept_before = run.counts.kept;
                        run.record(&origin, item.index, raw);
                        if run.outbox_len() >= SEND_EVERY_MESSAGES {
                            // As the select function does: memory stays flat in file size.
                            send(run.take_outbox(), &mut queue, &mut summary);
                            drain(&mut queue, false, &run, &outputs, &mut summary);
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
                }
                if run.counts.records_read % PROGRESS_EVERY_RECORDS == 0 {
                    state.records_read = run.counts.records_read;
                    progress(state);
                }
            })
            .map_err(|e| e.to_string())
        });
        summary.aws.s3_get_object += 1;
        if let Err(e) = read {
            summary.files_failed += 1;
            run.problem(&origin, None, e);
        }
        send(run.take_outbox(), &mut queue, &mut summary);
        drain(&mut queue, false, &run, &outputs, &mut summary);
        if let (Some(engine), Some(newest)) = (engine.as_mut(), run.counts.newest_event_ms) {
            let detected = engine.advance_to(newest);
            summary.insights_detected += detected.len();
            forward_records(&detected, false, &outputs, &mut summary);
        }
        state.files_done += 1;
        state.records_read = run.counts.records_read;
        progress(state);
    }
    if let Some(engine) = engine.as_mut() {
        let detected = engine.finish();
        summary.insights_detected += detected.len();
        forward_records(&detected, false, &outputs, &mut summary);
    }
    run.flush();
    send(run.take_outbox(), &mut queue, &mut summary);
    drain(&mut queue, true, &run, &outputs, &mut summary);
    summary.aws.cwl_events = outputs.group.events.load(Ordering::Relaxed);
    summary.aws.cwl_ingested_bytes = outputs.group.bytes.load(Ordering::Relaxed);
    if let Err(e) = group.flush() {
        summary
            .output_errors
            .push(format!("{}: {e}", options.out.display()));
    }
    if let Err(e) = bus.flush() {
        summary
            .output_errors
            .push(format!("{}: {e}", bus_path.display()));
    }
    summary.select = run.counts.clone();
    let mut problems: Vec<String> = run.problems.iter().map(ToString::to_string).collect();
    problems.append(&mut summary.problems);
    summary.problems = problems;
    Ok(summary)
}

/// Counts the SendMessageBatch calls the select (or deliver) function makes for one outbox
/// (each queue's messages grouped as `trailwatch_aws::sqs` groups them) and queues the
/// messages.
fn send(outbox: Vec<Outgoing>, queue: &mut Vec<Outgoing>, summary: &mut ReplaySummary) {
    for destination in [Destination::Delivery, Destination::Insights] {
        let sizes: Vec<usize> = outbox
            .iter()
            .filter(|m| m.destination == destination)
            .map(|m| m.body.len())
            .collect();
        summary.aws.sqs_messages += sizes.len();
        for payload in send_message_batch_payloads(&sizes) {
            summary.aws.sqs_send_message_batch += 1;
            summary.aws.sqs_billed_requests += payload.div_ceil(SQS_BILLING_CHUNK_BYTES).max(1);
        }
    }
    queue.extend(outbox);
}

/// The payload bytes of each SendMessageBatch call for messages of these sizes, in order: at
/// most [`SQS_MAX_BATCH_MESSAGES`] messages and [`SQS_MAX_MESSAGE_BYTES`] per call.
pub fn send_message_batch_payloads(sizes: &[usize]) -> Vec<usize> {
    let mut calls = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for &size in sizes {
        if count > 0 && (count == SQS_MAX_BATCH_MESSAGES || bytes + size > SQS_MAX_MESSAGE_BYTES) {
            calls.push(bytes);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size;
    }
    if count > 0 {
        calls.push(bytes);
    }
    calls
}

/// Hands queued messages to the local deliver and forward stages, in SQS-sized groups.
fn drain(
    queue: &mut Vec<Outgoing>,
    all: bool,
    run: &SelectRun<'_>,
    outputs: &Outputs<'_>,
    summary: &mut ReplaySummary,
) {
    let now_ms = outputs.now_ms.or(run.counts.newest_event_ms).unwrap_or(0);
    let (insights, mut delivery): (Vec<Outgoing>, Vec<Outgoing>) = queue
        .drain(..)
        .partition(|m| m.destination == Destination::Insights);
    for message in &insights {
        forward_insights(&message.body, outputs, summary);
    }
    // Calls that are not full wait for the next drain; the last drain puts everything.
    let hold = LocalHold {
        held: Default::default(),
        closing: all,
    };
    loop {
        let mut take = 0;
        let mut bytes = 0;
        while take < delivery.len()
            && (take == 0 || bytes + delivery[take].body.len() <= DELIVER_BATCH_BYTES)
        {
            bytes += delivery[take].body.len();
            take += 1;
        }
        if take == 0 || (!all && take == delivery.len() && bytes < DELIVER_BATCH_BYTES) {
            break;
        }
        let chunk: Vec<Outgoing> = delivery.drain(..take).collect();
        let ids: Vec<String> = (0..chunk.len()).map(|i| i.to_string()).collect();
        let inbound: Vec<Inbound<'_>> = chunk
            .iter()
            .zip(&ids)
            .map(|(m, id)| Inbound { id, body: &m.body })
            .collect();
        // The deployment's deliver function claims every record in its ledger; the select run
        // already dropped repeated eventIDs, so every claim here would be granted.
        let settings = DeliverySettings::at(now_ms);
        let delivered =
            deliver_messages_once(&outputs.group, &InvocationOnly, &hold, &inbound, &settings);
        let (report, ledger): (DeliveryReport, LedgerReport) = block_on(delivered);
        summary.aws.put_log_events += report.put_calls;
        summary.aws.dynamodb_put_item += ledger.claimed + ledger.confirmed + ledger.released;
        if report.failed_calls > 0 {
            for aside in report.set_aside.iter().filter(|a| a.record_index.is_none()) {
                summary.output_errors.push(aside.reason.clone());
            }
        }
        // Records CloudWatch Logs would not accept are counted by reason, not listed; any
        // other record set aside is a problem of the input.
        for aside in report.set_aside.iter().filter(|a| a.record_index.is_some()) {
            if !aside
                .reason
                .starts_with("CloudWatch Logs does not accept it")
            {
                summary.problems.push(format!(
                    "delivery: record with eventID {}: {}",
                    aside.event_id.as_deref().unwrap_or("(none)"),
                    aside.reason
                ));
            }
        }
        summary.delivery.add(&report);
    }
    // Sent back to the delivery queue, as the deliver function sends them.
    send(hold.take(), queue, summary);
    queue.extend(delivery);
}

/// The local delivery queue as the deliver stage's [`Carrier`]: calls that are not full wait
/// for the next drain, until [`LOCAL_HOLD_BYTES`] wait; nothing waits when `closing`.
struct LocalHold {
    held: std::sync::Mutex<Vec<String>>,
    closing: bool,
}

impl LocalHold {
    fn take(&self) -> Vec<Outgoing> {
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

fn forward_insights(body: &str, outputs: &Outputs<'_>, summary: &mut ReplaySummary) {
    match DeliveryMessage::parse(body) {
        Ok(message) => {
            let records: Vec<&str> = message.records.iter().map(|r| r.get()).collect();
            forward_records(&records, true, outputs, summary);
        }
        Err(e) => summary.problems.push(format!("insights message: {e}")),
    }
}

/// Forwards Insights records, as the Insights function does, to the local bus.
fn forward_records(
    records: &[impl AsRef<str>],
    native: bool,
    outputs: &Outputs<'_>,
    summary: &mut ReplaySummary,
) {
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
    let report = block_on(forward(
        outputs.bus,
        &entries,
        &PutEventsLimits::default(),
        &RetryPolicy::default(),
        |_| std::future::ready(()),
    ));
    summary.aws.put_events_calls += report.calls;
    summary.aws.put_events_entries += entries.len();
    summary.aws.put_events_billed += entries
        .iter()
        .map(|e| e.size().div_ceil(PUT_EVENTS_BILLING_CHUNK_BYTES).max(1))
        .sum::<usize>();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trailwatch-core-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn record(id: &str, second: u32) -> String {
        format!(
            r#"{{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:{second:02}Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"{id}","eventCategory":"Management","readOnly":true,"recipientAccountId":"111122223333"}}"#
        )
    }

    fn options(inputs: Vec<PathBuf>, out: PathBuf) -> ReplayOptions {
        ReplayOptions {
            inputs,
            config: TrailConfig::default(),
            insights: None,
            out,
            now_ms: None,
        }
    }

    #[test]
    fn files_are_read_in_delivery_order_then_by_name() {
        let dir = temp_dir("order");
        let names = [
            "zz-no-stamp.json",
            "111122223333_CloudTrail_us-west-2_20240101T0010Z_b.json",
            "111122223333_CloudTrail_us-east-1_20240101T0005Z_a.json.gz",
            "aa-no-stamp.json",
        ];
        for name in names {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        let sources = collect_sources(&[PathBuf::from(STDIN), dir.clone()]).unwrap();
        let order: Vec<String> = sources
            .iter()
            .map(|s| match s {
                Source::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                Source::Stdin => STDIN.to_owned(),
            })
            .collect();
        assert_eq!(order, [names[2], names[1], names[3], names[0], STDIN]);
        assert!(collect_sources(&[PathBuf::from(STDIN), PathBuf::from(STDIN)]).is_err());
        assert!(matches!(
            collect_sources(&[dir.join("missing")]),
            Err(ReplayError::Input(_))
        ));
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(
            collect_sources(&[empty]),
            Err(ReplayError::Input(_))
        ));
    }

    #[test]
    fn send_message_batch_calls_obey_the_count_and_size_limits() {
        assert_eq!(send_message_batch_payloads(&[]), Vec::<usize>::new());
        assert_eq!(send_message_batch_payloads(&[10; 25]), [100, 100, 50]);
        assert_eq!(
            send_message_batch_payloads(&[200_000, 100_000, 62_144]),
            [200_000, 162_144]
        );
    }

    #[test]
    fn progress_reaches_every_file_and_record_and_calls_are_counted() {
        let dir = temp_dir("progress");
        let input = dir.join("in");
        std::fs::create_dir_all(&input).unwrap();
        for f in 0..3 {
            let records: Vec<String> = (0..5).map(|i| record(&format!("{f}-{i}"), i)).collect();
            std::fs::write(
                input.join(format!("{f}.json")),
                format!(r#"{{"Records":[{}]}}"#, records.join(",")),
            )
            .unwrap();
        }
        let mut seen = Vec::new();
        let summary = replay_with_progress(&options(vec![input], dir.join("out")), &mut |p| {
            seen.push(p)
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen.last().copied(),
            Some(Progress {
                files_total: 3,
                files_done: 3,
                records_read: 15
            })
        );
        assert_eq!(summary.delivery.delivered, 15);
        assert_eq!(summary.aws.s3_get_object, 3);
        assert_eq!(
            summary.aws.dynamodb_put_item, 15,
            "one ledger claim per record"
        );
        assert_eq!(summary.aws.put_log_events, 1);
        assert_eq!(summary.aws.sqs_messages, 1);
        assert_eq!(summary.aws.sqs_send_message_batch, 1);
        let text = std::fs::read_to_string(dir.join("out/111122223333_CloudTrail_us-east-1.jsonl"))
            .unwrap();
        let bytes: usize = text.lines().map(|l| l.len() + 26).sum();
        assert_eq!(summary.aws.cwl_ingested_bytes, bytes as u64);
        assert_eq!(summary.aws.cwl_events, 15);
    }

    #[test]
    fn an_output_folder_that_cannot_be_created_is_an_error() {
        let dir = temp_dir("out-file");
        std::fs::write(dir.join("file"), "x").unwrap();
        std::fs::write(dir.join("log.json"), r#"{"Records":[]}"#).unwrap();
        let result = replay(&options(vec![dir.clone()], dir.join("file/out")));
        assert!(matches!(result, Err(ReplayError::Output { .. })));
    }
}
