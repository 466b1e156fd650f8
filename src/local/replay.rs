//! `trailwatch replay`: the whole pipeline on one machine, over CloudTrail log files.
//!
//! Files are read and selected by the select path the select function runs
//! ([`select_object`]) on the caller's thread; what it sends goes, in order, to the deliver
//! side ([`super::delivery`], on a second thread unless `threads` is 1): the delivery messages
//! through the local delivery queue ([`super::queue`]) to the deliver stage, Insights records
//! to the local bus. The log
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

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use crate::deliver::message::DEFAULT_MESSAGE_BYTES;
use crate::ingest::{parse_object_key, ObjectKind};
use crate::insights::{InsightsConfig, InsightsEngine};
use crate::record::Record;
use crate::select::{
    select_object, Origin, Outbox, Outgoing, SelectCounts, SelectRun, TrailConfig,
};

use super::adapters::{FileBus, FileLogGroup, Input, STDIN};
use super::block_on;
use super::delivery::{LocalDelivery, Work, WORK_IN_FLIGHT};
use super::detections::{DetectionOptions, LocalDetections};
use super::files::{in_delivery_order, log_files, FilesError};
pub use super::summary::{DeliveryTotals, ReplaySummary};

/// Records between two progress reports inside a file.
pub const PROGRESS_EVERY_RECORDS: usize = 4096;
/// What the replay writes beside the streams: the Insights events it forwards to the bus.
pub const INSIGHTS_FILE: &str = "insights.jsonl";
/// ... and the detections it reports (EventBridge entries, not CloudTrail records).
pub const DETECTIONS_FILE: &str = "detections.jsonl";

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
    /// Threads the replay runs on: with 1, the caller's thread selects and delivers; with more,
    /// a second thread delivers what the first selected. The output is the same: the select
    /// path stays on one thread (eventIDs are deduplicated and records packed in input order),
    /// and the deliver side takes everything in the order it was sent.
    pub threads: usize,
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
    let detections = options
        .detection
        .as_ref()
        .zip(outputs.detections_bus.as_ref())
        .map(|(d, bus)| LocalDetections::new(d.noise.clone(), bus));
    let delivery = LocalDelivery::new(&outputs.group, &outputs.bus, detections, options.now_ms);
    let (select, mut summary) = std::thread::scope(|scope| {
        let (handover, delivering) = if options.threads > 1 {
            let (work, received) = std::sync::mpsc::sync_channel(WORK_IN_FLIGHT);
            let thread = scope.spawn(move || delivery.run(received));
            (Handover::Thread(work), Some(thread))
        } else {
            (Handover::Inline(Box::new(delivery)), None)
        };
        let mut select = SelectSide {
            handover,
            engine: options.insights.clone().map(InsightsEngine::new),
            totals: SelectTotals::default(),
            progress,
            state: Progress {
                files_total: inputs.len(),
                ..Progress::default()
            },
        };
        for input in &inputs {
            select.read(input, &mut run);
        }
        // The select side goes: a deliver thread ends once it has done everything sent.
        let (totals, inline) = select.finish(&mut run);
        let summary = match (inline, delivering) {
            (Some(delivery), _) => delivery.into_summary(),
            (None, Some(thread)) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            (None, None) => unreachable!("a replay delivers inline or on a thread"),
        };
        (totals, summary)
    });
    summary.files = select.files;
    summary.aws.s3_get_object = select.s3_get_object;
    summary.insights_detected = select.insights_detected;
    summary.select = run.counts().clone();
    summary.problem_count =
        summary.select.rejected + summary.select.files_failed + summary.problems.len();
    let mut problems: Vec<String> = run.problems().iter().map(ToString::to_string).collect();
    problems.append(&mut summary.problems);
    summary.problems = problems;
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
        let bus_path = out.join(INSIGHTS_FILE);
        let bus = FileBus::create(&bus_path).map_err(output_error(&bus_path))?;
        let detections_path = out.join(DETECTIONS_FILE);
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

/// How the select side hands its work to the deliver side.
enum Handover<'a> {
    /// Delivered on the select side's thread as it is handed over.
    Inline(Box<LocalDelivery<'a>>),
    /// Sent, in order, to the deliver side's thread.
    Thread(SyncSender<Work>),
}

/// What the select side counts of a replay.
#[derive(Default)]
struct SelectTotals {
    files: usize,
    s3_get_object: usize,
    insights_detected: usize,
}

/// The select side of a replay, on the caller's thread: it reads the inputs through the select
/// path, feeds the Insights detector the records kept, reports progress, and hands what it
/// sends, in order, to the deliver side ([`LocalDelivery`]) as the select function sends to
/// its queues.
struct SelectSide<'a> {
    handover: Handover<'a>,
    engine: Option<InsightsEngine>,
    totals: SelectTotals,
    progress: &'a mut dyn FnMut(Progress),
    state: Progress,
}

impl Outbox for SelectSide<'_> {
    type Error = Infallible;

    async fn send(&mut self, messages: Vec<Outgoing>) -> Result<(), Infallible> {
        self.hand_over(Work::Send(messages));
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

impl<'a> SelectSide<'a> {
    /// Reads one input through the select path; the Insights detector's clock follows.
    fn read(&mut self, input: &Input, run: &mut SelectRun<'_>) {
        self.totals.files += 1;
        let name = input.name();
        let origin = Origin {
            bucket: None,
            key: &name,
            parsed: parse_object_key(&name),
        };
        let is_log = origin.parsed.kind != ObjectKind::Digest;
        if is_log {
            self.totals.s3_get_object += 1;
        }
        // Local files are never worth retrying, and the local pipeline always takes what is
        // sent: both have been recorded by the run.
        let _ = block_on(select_object(input, &origin, run, self));
        if let (true, Some(engine), Some(newest)) =
            (is_log, self.engine.as_mut(), run.counts().newest_event_ms)
        {
            let detected = engine.advance_to(newest);
            self.totals.insights_detected += detected.len();
            self.hand_over(Work::Detected(detected));
        }
        self.state.files_done += 1;
        self.state.records_read = run.counts().records_read;
        (self.progress)(self.state);
    }

    /// The end of the input: the detector closes its open minutes, the run its messages; the
    /// hand-over ends, giving back the deliver side if it was inline.
    fn finish(mut self, run: &mut SelectRun<'_>) -> (SelectTotals, Option<Box<LocalDelivery<'a>>>) {
        if let Some(engine) = self.engine.as_mut() {
            let detected = engine.finish();
            self.totals.insights_detected += detected.len();
            self.hand_over(Work::Detected(detected));
        }
        run.flush();
        self.hand_over(Work::Finish(run.take_outbox()));
        match self.handover {
            Handover::Inline(delivery) => (self.totals, Some(delivery)),
            Handover::Thread(_) => (self.totals, None),
        }
    }

    fn hand_over(&mut self, work: Work) {
        match &mut self.handover {
            Handover::Inline(delivery) => delivery.take(work),
            // A deliver thread that is gone has panicked: the panic is raised when it is
            // joined.
            Handover::Thread(sender) => {
                let _ = sender.send(work);
            }
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
            threads: 2,
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

    /// Every file of one folder, by name, with its bytes.
    fn folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn one_thread_and_two_write_the_same_output_and_summary() {
        let dir = temp_dir("threads");
        let input = dir.join("in");
        std::fs::create_dir_all(&input).unwrap();
        // Six streams over three hours of files: messages fill and part by time, partial calls
        // are held back and rejoin their stream, repeated eventIDs are dropped, an Insights
        // record goes to the bus, and a file without a stamp is delivered by its eventTime.
        let padding = "p".repeat(2000);
        for f in 0..36u32 {
            let (account, region) = (
                100_000_000_000 + u64::from(f % 3),
                ["us-east-1", "eu-west-1"][(f / 3 % 2) as usize],
            );
            let records: Vec<String> = (0..150u32)
                .map(|i| {
                    let id = if i % 50 == 0 { "repeated".to_owned() } else { format!("{f}-{i}") };
                    format!(
                        r#"{{"eventVersion":"1.08","eventTime":"2024-01-01T{:02}:{:02}:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"{region}","eventID":"{id}","eventCategory":"Management","readOnly":true,"recipientAccountId":"{account}","requestParameters":{{"p":"{padding}"}}}}"#,
                        f / 12,
                        f % 12 * 5
                    )
                })
                .collect();
            let name = format!(
                "{account}_CloudTrail_{region}_20240101T{:02}{:02}Z_{f}.json",
                f / 12,
                f % 12 * 5 + 5
            );
            std::fs::write(
                input.join(name),
                format!(r#"{{"Records":[{}]}}"#, records.join(",")),
            )
            .unwrap();
        }
        let insight = r#"{"eventVersion":"1.08","eventTime":"2024-01-01T01:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"insight-1","eventType":"AwsCloudTrailInsight","eventCategory":"Insight","recipientAccountId":"100000000000","insightDetails":{"state":"Start"}}"#;
        std::fs::write(
            input.join("no-stamp.json"),
            format!(r#"{{"Records":[{insight},{}]}}"#, record("late", 1)),
        )
        .unwrap();
        let config = r#"{"InsightSelectors":[{"InsightType":"ApiCallRateInsight"}]}"#;
        let replay_on = |threads: usize| {
            let out = dir.join(format!("out-{threads}"));
            let mut options = options(vec![input.clone()], out.clone());
            options.insights = Some(InsightsConfig::from_json(config).unwrap());
            options.threads = threads;
            let summary = replay(&options).unwrap();
            (format!("{summary:#?}"), folder(&out))
        };
        let (one, two) = (replay_on(1), replay_on(2));
        assert!(one.0.contains("duplicates: 107"), "{}", one.0);
        assert!(
            one.1.len() >= 7,
            "six streams and the bus: {:?}",
            one.1.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        assert_eq!(one.0, two.0, "the summaries differ");
        assert!(one.1 == two.1, "the outputs differ");
        let _ = std::fs::remove_dir_all(&dir);
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
