//! `trailwatch replay`: the whole pipeline on one machine, over CloudTrail log files.
//!
//! Files are read and selected by the select path the select function runs
//! ([`select_object`]); the delivery messages go through the local delivery queue
//! ([`super::queue`]) to the deliver stage, and Insights records to the local bus. The log
//! group is a folder of `<stream>.jsonl` files and the Insights bus is `insights.jsonl`. With
//! detection on, the rules are evaluated on every record read, and the detections the noise
//! control lets through go to `detections.jsonl` ([`super::detections`]).
//!
//! Files are read in delivery order — the `YYYYMMDDTHHmmZ` stamp CloudTrail puts in every log
//! file name, as S3 notifications would arrive — then files without a stamp in name order, then
//! stdin. Delivery happens "as it happened": each record is delivered at the time of its own
//! file (the stamp in its name, else its `eventTime` plus CloudTrail's typical delay, see
//! [`crate::select::TYPICAL_DELIVERY_DELAY_MS`]), so every selected record of an archive of any
//! length is written, and CloudWatch Logs' 14-day window refuses only what it would have
//! refused on the day. A delivery time given (`now_ms`) instead delivers everything at that
//! time, showing what a late backfill would lose. Besides the output, a replay counts the AWS
//! calls the deployed pipeline would make for the same input ([`AwsCalls`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};

use crate::deliver::message::DEFAULT_MESSAGE_BYTES;
use crate::deliver::{DeliveryMessage, DeliveryReport};
use crate::forward::{forward, Entry, PutEventsLimits, RetryPolicy, DEFAULT_SOURCE};
use crate::ingest::{parse_object_key, ObjectKind};
use crate::insights::{InsightsConfig, InsightsEngine};
use crate::record::Record;
use crate::select::{
    select_object, Destination, Origin, Outbox, Outgoing, SelectCounts, SelectRun, TrailConfig,
    MESSAGE_DELIVERY_SPAN_MS,
};

use super::adapters::{CountingLogGroup, FileBus, FileLogGroup, Input, STDIN};
use super::block_on;
use super::cost::AwsCalls;
use super::detections::{DetectionOptions, DetectionTotals, LocalDetections};
use super::files::{in_delivery_order, log_files, FilesError};
use super::queue::{deliver_group, next_group, LocalHold};

/// Records between two progress reports inside a file.
pub const PROGRESS_EVERY_RECORDS: usize = 4096;

pub struct ReplayOptions {
    /// Files, folders, or [`STDIN`].
    pub inputs: Vec<PathBuf>,
    pub config: TrailConfig,
    /// Insights detection over the kept management events, when the trail has insight
    /// selectors (as CloudTrail: Insights are off unless enabled).
    pub insights: Option<InsightsConfig>,
    pub out: PathBuf,
    /// The detection rules and their noise control; no detection when `None`.
    pub detection: Option<DetectionOptions>,
    /// The delivery time for CloudWatch Logs' time window; by default each record is delivered
    /// "as it happened", at the delivery time of its file.
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
    #[error("'{STDIN}' (standard input) can be given once")]
    StdinTwice,
    #[error(transparent)]
    Inputs(#[from] FilesError),
    /// Most likely a wrong folder: said rather than reported as an empty success.
    #[error("no log files (.json, .json.gz) in the inputs")]
    NoLogFiles,
    #[error("output {path}: {source}")]
    Output { path: PathBuf, source: io::Error },
}

impl ReplayError {
    /// Whether the output, rather than the input, is at fault.
    pub fn is_output(&self) -> bool {
        matches!(self, ReplayError::Output { .. })
    }
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Inputs seen, digests included.
    pub files: usize,
    /// The select stage's counts, files that failed and digests skipped included.
    pub select: SelectCounts,
    /// Problems in the input, each with its file and record position: every one of delivery,
    /// and of the select stage the first few of each file then a summary (see
    /// `select::problems`).
    pub problems: Vec<String>,
    /// Problems in the input, listed or not.
    pub problem_count: usize,
    /// Writes to the output folder that failed: the output is incomplete.
    pub output_errors: Vec<String>,
    pub delivery: DeliveryTotals,
    /// CloudTrail's own Insights records (from `CloudTrail-Insight` files) forwarded to the bus.
    pub insights_forwarded_native: usize,
    /// trailwatch's Insights records forwarded to the bus.
    pub insights_forwarded_detected: usize,
    /// Insights records trailwatch's detector produced (Start and End).
    pub insights_detected: usize,
    /// What became of the rule matches (their number is `select.detections`).
    pub detections: DetectionTotals,
    pub aws: AwsCalls,
}

impl ReplaySummary {
    /// Log files that could not be read to their end (the records before the damage count).
    pub fn files_failed(&self) -> usize {
        self.select.files_failed
    }

    pub fn digests_skipped(&self) -> usize {
        self.select.digests_skipped
    }

    /// Files opened for reading (the GetObject calls): every input but the digests.
    pub fn files_read(&self) -> usize {
        self.files - self.digests_skipped()
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

/// The inputs in reading order: log files in delivery order (see the module documentation),
/// then files without a delivery stamp in name order, then [`STDIN`] if given (once).
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<Input>, ReplayError> {
    let stdin_count = inputs.iter().filter(|p| p.as_os_str() == STDIN).count();
    if stdin_count > 1 {
        return Err(ReplayError::StdinTwice);
    }
    let paths: Vec<PathBuf> = inputs
        .iter()
        .filter(|p| p.as_os_str() != STDIN)
        .cloned()
        .collect();
    let mut files = in_delivery_order(log_files(&paths)?);
    files.dedup_by(|a, b| a.path == b.path);
    let mut sources: Vec<Input> = files.into_iter().map(|f| Input::File(f.path)).collect();
    if stdin_count == 1 {
        sources.push(Input::Stdin);
    }
    if sources.is_empty() {
        return Err(ReplayError::NoLogFiles);
    }
    Ok(sources)
}

/// Replays with no progress reporting.
pub fn replay(options: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    replay_with_progress(options, &mut |_| {})
}

/// Replays, calling `progress` after every file and every [`PROGRESS_EVERY_RECORDS`] records
/// (at the end of the chunk that reaches them).
pub fn replay_with_progress(
    options: &ReplayOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReplaySummary, ReplayError> {
    let inputs = collect_inputs(&options.inputs)?;
    let outputs = Outputs::create(&options.out, options.detection.is_some())?;
    let matcher = options.config.compile();
    let mut run = SelectRun::new(&matcher, DEFAULT_MESSAGE_BYTES);
    if let Some(detection) = &options.detection {
        run = run.with_detector(&detection.detector);
    }
    let mut pipeline = LocalPipeline {
        group: CountingLogGroup::new(&outputs.group),
        bus: &outputs.bus,
        detections: options
            .detection
            .as_ref()
            .zip(outputs.detections_bus.as_ref())
            .map(|(d, bus)| LocalDetections::new(d.noise.clone(), bus)),
        now_ms: options.now_ms,
        queue: Vec::new(),
        engine: options.insights.clone().map(InsightsEngine::new),
        summary: ReplaySummary::default(),
        progress,
        state: Progress {
            files_total: inputs.len(),
            ..Progress::default()
        },
    };
    for input in &inputs {
        pipeline.read(input, &mut run);
    }
    pipeline.finish(&mut run);
    let mut summary = pipeline.into_summary(&run);
    outputs.flush(&mut summary.output_errors);
    Ok(summary)
}

/// The local stand-ins of the deployment's outputs.
struct Outputs {
    group: FileLogGroup,
    bus: FileBus,
    out: PathBuf,
    bus_path: PathBuf,
    /// `detections.jsonl`, when detection is on.
    detections_bus: Option<FileBus>,
    detections_path: PathBuf,
}

impl Outputs {
    fn create(out: &Path, detections: bool) -> Result<Self, ReplayError> {
        let output_error = |path: &Path| {
            let path = path.to_owned();
            move |source| ReplayError::Output { path, source }
        };
        let group = FileLogGroup::new(out).map_err(output_error(out))?;
        let bus_path = out.join("insights.jsonl");
        let bus = FileBus::create(&bus_path).map_err(output_error(&bus_path))?;
        let detections_path = out.join("detections.jsonl");
        let detections_bus = detections
            .then(|| FileBus::create(&detections_path))
            .transpose()
            .map_err(output_error(&detections_path))?;
        Ok(Outputs {
            group,
            bus,
            out: out.to_owned(),
            bus_path,
            detections_bus,
            detections_path,
        })
    }

    fn flush(&self, errors: &mut Vec<String>) {
        if let Err(e) = self.group.flush() {
            errors.push(format!("{}: {e}", self.out.display()));
        }
        if let Err(e) = self.bus.flush() {
            errors.push(format!("{}: {e}", self.bus_path.display()));
        }
        if let Some(Err(e)) = self.detections_bus.as_ref().map(FileBus::flush) {
            errors.push(format!("{}: {e}", self.detections_path.display()));
        }
    }
}

/// What comes after the select stage on one machine: the delivery queue, the deliver stage
/// writing the log group, the Insights detector and the bus. The select path sends to it as
/// the select function sends to its queues.
struct LocalPipeline<'a> {
    group: CountingLogGroup<'a>,
    bus: &'a FileBus,
    detections: Option<LocalDetections<'a>>,
    /// Everything delivered at this time, instead of each record at its own.
    now_ms: Option<i64>,
    /// The delivery queue.
    queue: Vec<Outgoing>,
    engine: Option<InsightsEngine>,
    summary: ReplaySummary,
    progress: &'a mut dyn FnMut(Progress),
    state: Progress,
}

impl Outbox for LocalPipeline<'_> {
    type Error = Infallible;

    async fn send(&mut self, messages: Vec<Outgoing>) -> Result<(), Infallible> {
        self.enqueue(messages);
        self.drain(false);
        Ok(())
    }

    fn kept(&mut self, record: &Record<'_>) {
        if let Some(engine) = self.engine.as_mut() {
            engine.observe(record);
        }
    }

    fn chunk_read(&mut self, counts: &SelectCounts) {
        let reported = self.state.records_read / PROGRESS_EVERY_RECORDS;
        if counts.records_read / PROGRESS_EVERY_RECORDS > reported {
            self.state.records_read = counts.records_read;
            (self.progress)(self.state);
        }
    }
}

impl LocalPipeline<'_> {
    /// Reads one input through the select path; the Insights detector's clock follows.
    fn read(&mut self, input: &Input, run: &mut SelectRun<'_>) {
        self.summary.files += 1;
        let name = input.name();
        let origin = Origin {
            bucket: None,
            key: &name,
            parsed: parse_object_key(&name),
        };
        let is_log = origin.parsed.kind != ObjectKind::Digest;
        if is_log {
            self.summary.aws.s3_get_object += 1;
        }
        // Local files are never worth retrying, and the local pipeline always takes what is
        // sent: both have been recorded by the run.
        let _ = block_on(select_object(input, &origin, run, self));
        if let (true, Some(engine), Some(newest)) =
            (is_log, self.engine.as_mut(), run.counts().newest_event_ms)
        {
            let detected = engine.advance_to(newest);
            self.summary.insights_detected += detected.len();
            self.forward_records(&detected, false);
        }
        self.state.files_done += 1;
        self.state.records_read = run.counts().records_read;
        (self.progress)(self.state);
    }

    /// The end of the input: the detector closes its open minutes, every message is delivered.
    fn finish(&mut self, run: &mut SelectRun<'_>) {
        if let Some(engine) = self.engine.as_mut() {
            let detected = engine.finish();
            self.summary.insights_detected += detected.len();
            self.forward_records(&detected, false);
        }
        run.flush();
        self.enqueue(run.take_outbox());
        self.drain(true);
    }

    fn into_summary(self, run: &SelectRun<'_>) -> ReplaySummary {
        let mut summary = self.summary;
        if let Some(detections) = self.detections {
            summary.detections = detections.totals;
        }
        summary.aws.cwl_events = self.group.events();
        summary.aws.cwl_ingested_bytes = self.group.ingested_bytes();
        summary.select = run.counts().clone();
        summary.problem_count =
            summary.select.rejected + summary.select.files_failed + summary.problems.len();
        let mut problems: Vec<String> = run.problems().iter().map(ToString::to_string).collect();
        problems.append(&mut summary.problems);
        summary.problems = problems;
        summary
    }

    /// Queues messages as the select (or deliver) function sends them, counting the calls.
    fn enqueue(&mut self, messages: Vec<Outgoing>) {
        self.summary.aws.count_sends(&messages);
        self.queue.extend(messages);
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
        let hold = LocalHold::default();
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
        // Sent back to the delivery queue, as the deliver function sends them.
        self.enqueue(hold.take());
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
        let report = block_on(forward(
            self.bus,
            &entries,
            &PutEventsLimits::default(),
            &RetryPolicy::default(),
            |_| std::future::ready(()),
        ));
        let summary = &mut self.summary;
        summary.aws.put_events_calls += report.calls;
        summary
            .aws
            .count_put_events_entries(entries.iter().map(Entry::size));
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
            detection: None,
            now_ms: None,
        }
    }

    #[test]
    fn files_are_read_in_delivery_order_then_by_name_then_stdin() {
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
        let inputs = collect_inputs(&[PathBuf::from(STDIN), dir.clone()]).unwrap();
        let order: Vec<String> = inputs
            .iter()
            .map(|s| match s {
                Input::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                Input::Stdin => STDIN.to_owned(),
            })
            .collect();
        assert_eq!(order, [names[2], names[1], names[3], names[0], STDIN]);
        assert!(matches!(
            collect_inputs(&[PathBuf::from(STDIN), PathBuf::from(STDIN)]),
            Err(ReplayError::StdinTwice)
        ));
        assert!(matches!(
            collect_inputs(&[dir.join("missing")]),
            Err(ReplayError::Inputs(FilesError::NotFound(_)))
        ));
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(
            collect_inputs(&[empty]),
            Err(ReplayError::NoLogFiles)
        ));
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
            summary.aws.dynamodb_put_item,
            15 + 2,
            "one ledger claim per record, a begin and a finish per delivery message"
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
