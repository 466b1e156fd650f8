//! `trailwatch replay` as the user sees it: arguments, progress bar, summary table and JSON.
//! The replay itself is `trailwatch::local::replay`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use trailwatch::detect::Detector;
use trailwatch::insights::InsightsConfig;
use trailwatch::local::{
    replay_with_progress, DetectionOptions, Progress, ReplayOptions, ReplaySummary,
};
use trailwatch::select::problems::PROBLEMS_KEPT_PER_OBJECT;
use trailwatch::select::TrailConfig;
use trailwatch::time::parse_event_time;
use trailwatch_aws::dedup::WCU_PER_ITEM;

use crate::detect::{load_rules, report_rule_problems, RuleArgs};
use crate::exit;
use crate::selectors::{Prices, PRICES};

/// Runs the pipeline over CloudTrail log files: selection, delivery to a log group (a folder
/// here), Insights — and says what the same input would cost in AWS.
///
/// Writes what would be delivered to CloudWatch Logs as DIR/<stream>.jsonl (one record per
/// line, exactly as received), Insights records to DIR/insights.jsonl and the detections of
/// the rules (evaluated on every record read, as the select function does; see `trailwatch
/// detect`) to DIR/detections.jsonl, then prints a summary table: files, records (kept,
/// dropped by reason, duplicates, unreadable, stubbed), streams, Insights, detections, and the AWS calls the deployed pipeline would have made with their list
/// price. A progress bar is drawn on stderr when it is a terminal and the run is long.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trailwatch replay events/sample-trail --config events/trail-config.json --out out
  trailwatch replay AWSLogs/ --out out --now 2024-03-06T12:00:00Z
  aws s3 cp s3://bucket/AWSLogs/.../file.json.gz - | trailwatch replay - --out out
  trailwatch replay AWSLogs/ --out out --json | jq .awsCalls.totalUsd

Reading order: log files in delivery order (the YYYYMMDDTHHmmZ stamp of CloudTrail's file
names), then files without a stamp by name, then stdin. Digest files are skipped.

--json prints one object on stdout (nothing else goes to stdout):
  files      {read, failed, digestsSkipped}
  records    {read, kept, dropped: {<reason>: n}, duplicates, rejected, stubbed, insights}
             (reasons as in `selectors explain`: not_selected, outside_trail_region, ...)
  streams    {<stream name>: records delivered}
  delivery   {delivered, notAccepted: {<reason>: n}}
  insights   {enabled, forwardedNative, detected, forwardedDetected}
  detections {enabled, matched, reported, held, excepted}
  awsCalls   {s3GetObject {calls, usd}, sqsSendMessageBatch {calls, messages,
             billedRequests, usd}, cloudWatchLogs {putLogEventsCalls, events, ingestedBytes,
             usd}, dynamoDbPutItem {calls, writeRequestUnits, usd}, eventBridgePutEvents
             {calls, entries, billedEvents, usd}, totalUsd, notCounted}
  prices     the list prices used (USD) and their source
  problems   [text] (of each file the first 10, then a summary), problemCount (all),
             outputErrors [text], out, exitCode

Exit codes: 0 everything read and delivered; 1 done, but some files or records could not be
read (each named on stderr with its file and record index; the rest was processed); 2 could
not run: bad arguments or configuration, missing input or no log file in it, output folder
not writable.")]
pub struct ReplayArgs {
    /// CloudTrail log files (`.json` or `.json.gz`), folders (the `AWSLogs/...` layout, read
    /// recursively), or `-` for one log file on stdin (gzip or not).
    #[arg(required = true, value_name = "LOGS")]
    pub inputs: Vec<PathBuf>,
    /// Trail configuration: `aws cloudtrail get-event-selectors` output, plus HomeRegion /
    /// IsMultiRegionTrail / IncludeGlobalServiceEvents / IsOrganizationTrail and, for
    /// Insights, InsightSelectors. Default: all management events, multi-region.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Deliver everything at TIME, as a backfill would, and see what CloudWatch Logs' window
    /// (14 days back, 2 hours ahead) would refuse. Default: each record at its file's delivery
    /// time (the stamp in CloudTrail's file name, else its eventTime plus 15 minutes), so
    /// every selected record of an archive of any length is written.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<i64>,
    /// Print the summary as one JSON object on stdout instead of the table (fields below).
    #[arg(long)]
    pub json: bool,
    /// Do not evaluate detection rules (by default the rules of `trailwatch detect` run on
    /// every record read, and the detections go to DIR/detections.jsonl).
    #[arg(long)]
    pub no_detections: bool,
    #[command(flatten)]
    pub rules: RuleArgs,
}

fn parse_time(text: &str) -> Result<i64, String> {
    parse_event_time(text).map_err(|e| e.to_string())
}

/// Writes to stderr; a closed stderr is not worth a panic.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

pub fn run(args: ReplayArgs) -> ExitCode {
    let as_json = args.json;
    let (options, rule_problems) = match options(args) {
        Ok(options) => options,
        Err(message) => {
            say(&format!("trailwatch replay: {message}"));
            return ExitCode::from(exit::USAGE);
        }
    };
    let mut bar = ProgressView::new(std::io::stderr().is_terminal());
    let result = replay_with_progress(&options, &mut |p| bar.update(p));
    bar.finish();
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let hint = if e.is_output() {
                " (is --out a writable folder?)"
            } else {
                ""
            };
            say(&format!("trailwatch replay: {e}{hint}"));
            return ExitCode::from(exit::USAGE);
        }
    };
    let mut code = exit_code(&summary);
    if rule_problems > 0 && code == exit::OK {
        code = exit::PROBLEMS;
    }
    let text = if as_json {
        let mut text = serde_json::to_string_pretty(&summary_json(&options, &summary, code))
            .unwrap_or_default();
        text.push('\n');
        text
    } else {
        summary_table(&options, &summary, &PRICES)
    };
    // A closed stdout (`| head`) ends the output, not the program.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    report_problems(&summary);
    ExitCode::from(code)
}

/// 2 if some output could not be written, 1 if some input could not be read, else 0.
pub fn exit_code(s: &ReplaySummary) -> u8 {
    if !s.output_errors.is_empty() {
        exit::USAGE
    } else if s.files_failed() > 0 || s.select.rejected > 0 || !s.problems.is_empty() {
        exit::PROBLEMS
    } else {
        exit::OK
    }
}

fn report_problems(s: &ReplaySummary) {
    for problem in &s.problems {
        say(&format!("problem: {problem}"));
    }
    let not_accepted: usize = s.delivery.rejected.values().sum();
    if not_accepted > 0 {
        say(&format!(
            "note: {not_accepted} kept records would not be accepted by CloudWatch Logs (see the \
             table); the delivery time is --now, or each file's delivery time"
        ));
    }
    for error in &s.output_errors {
        say(&format!("trailwatch replay: output: {error}"));
    }
    if !s.problems.is_empty() {
        say(&format!(
            "trailwatch replay: {} problem(s) in the input (of each file the first {} are listed, \
             the rest summarised); everything else was processed",
            s.problem_count, PROBLEMS_KEPT_PER_OBJECT
        ));
    }
}

/// The replay's options, and how many rule files could not be read or loaded.
fn options(args: ReplayArgs) -> Result<(ReplayOptions, usize), String> {
    let (config, insights) = match &args.config {
        Some(file) => {
            let path = file.display();
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("--config {path}: {e}"))?;
            let trail =
                TrailConfig::from_json(&text).map_err(|e| format!("--config {path}: {e}"))?;
            let insights = if trail.insight_selectors().is_empty() {
                None
            } else {
                Some(
                    InsightsConfig::from_json(&text)
                        .map_err(|e| format!("--config {path}: {e}"))?,
                )
            };
            (trail, insights)
        }
        None => (TrailConfig::default(), None),
    };
    let (detection, rule_problems) = if args.no_detections {
        (None, 0)
    } else {
        let (set, noise, problems) = load_rules(&args.rules)?;
        report_rule_problems(&set);
        let detector = Detector::new(set.rules);
        (Some(DetectionOptions { detector, noise }), problems)
    };
    let options = ReplayOptions {
        inputs: args.inputs,
        config,
        insights,
        out: args.out,
        detection,
        now_ms: args.now,
    };
    Ok((options, rule_problems))
}

/// The progress bar: on stderr, only when it is a terminal, only once the run has taken
/// [`ProgressView::DELAY`] (short runs print nothing but their summary).
struct ProgressView {
    enabled: bool,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl ProgressView {
    const DELAY: Duration = Duration::from_millis(700);

    fn new(enabled: bool) -> Self {
        ProgressView {
            enabled,
            started: Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, p: Progress) {
        if !self.enabled {
            return;
        }
        let elapsed = self.started.elapsed();
        if self.bar.is_none() {
            if elapsed < Self::DELAY {
                return;
            }
            let bar = ProgressBar::with_draw_target(
                Some(p.files_total as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} files  {msg}",
            ) {
                bar.set_style(style.progress_chars("=> ").tick_chars("-\\|/ "));
            }
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            let rate = p.records_read as f64 / elapsed.as_secs_f64().max(1e-3);
            bar.set_position(p.files_done as u64);
            bar.set_message(format!(
                "{} records  {}/s",
                thousands(p.records_read as u64),
                thousands(rate as u64)
            ));
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the AWS calls of a replay cost at list price: one place for the arithmetic.
#[derive(Debug, Clone, Copy)]
pub struct CallCosts {
    pub s3: f64,
    pub sqs: f64,
    pub cwl: f64,
    pub dynamodb_write_units: u64,
    pub dynamodb: f64,
    pub eventbridge: f64,
}

impl CallCosts {
    pub fn of(s: &ReplaySummary, prices: &Prices) -> Self {
        let a = &s.aws;
        let dynamodb_write_units = a.dynamodb_put_item as u64 * WCU_PER_ITEM;
        CallCosts {
            s3: prices.s3_get_usd(a.s3_get_object as u64),
            sqs: prices.sqs_usd(a.sqs_billed_requests as u64),
            cwl: prices.cloudwatch_logs_ingestion_usd(a.cwl_ingested_bytes as f64),
            dynamodb_write_units,
            dynamodb: prices.dynamodb_writes_usd(dynamodb_write_units),
            eventbridge: prices.eventbridge_usd(a.put_events_billed as u64),
        }
    }

    pub fn total(&self) -> f64 {
        self.s3 + self.sqs + self.cwl + self.dynamodb + self.eventbridge
    }
}

/// Calls and services the figures leave out.
const NOT_COUNTED: &str = "Lambda requests and duration, SQS receives and deletes by the \
    event source mappings, the Insights function's state table (counting, evaluation), \
    CloudWatch Logs storage, CloudTrail's own charges";

fn usd(x: f64) -> String {
    format!("{x:.6}")
}

/// One line of the summary table.
enum Row {
    Section(String),
    /// A section title with the titles of the count and price columns.
    Columns {
        title: String,
        value: String,
        usd: String,
    },
    Item {
        label: String,
        value: String,
        usd: String,
        note: String,
    },
}

fn item(label: impl Into<String>, value: u64, note: impl Into<String>) -> Row {
    Row::Item {
        label: label.into(),
        value: thousands(value),
        usd: String::new(),
        note: note.into(),
    }
}

fn priced(label: &str, value: u64, cost: Option<f64>, note: impl Into<String>) -> Row {
    Row::Item {
        label: label.to_owned(),
        value: thousands(value),
        usd: cost.map_or_else(|| "-".to_owned(), usd),
        note: note.into(),
    }
}

/// The summary as an aligned table: label, count, list price in USD, note.
pub fn summary_table(options: &ReplayOptions, s: &ReplaySummary, prices: &Prices) -> String {
    let mut rows = record_rows(s);
    rows.extend(stream_rows(s));
    rows.extend(insights_rows(options, s));
    rows.extend(detection_rows(options, s));
    rows.extend(call_rows(s, prices));
    let mut out = render(&rows);
    out.push_str(&format!("prices: {}\n", prices.source));
    out.push_str(&format!("not counted: {NOT_COUNTED}\n"));
    out.push_str(&format!("output: {}\n", options.out.display()));
    out
}

/// Files and records: what was read and what became of it.
fn record_rows(s: &ReplaySummary) -> Vec<Row> {
    let c = &s.select;
    let mut rows = vec![
        Row::Section("files".into()),
        item("read", s.files_read() as u64, ""),
        item(
            "failed",
            s.files_failed() as u64,
            "unreadable or damaged; named on stderr",
        ),
        item("digests skipped", s.digests_skipped() as u64, ""),
        Row::Section("records".into()),
        item("read", c.records_read as u64, ""),
        item("kept", c.kept as u64, "selected for the log group"),
    ];
    for (reason, n) in &c.dropped {
        rows.push(item(
            format!("dropped: {}", reason.replace('_', " ")),
            *n as u64,
            "",
        ));
    }
    rows.push(item(
        "duplicates",
        s.duplicates() as u64,
        "same eventID seen before",
    ));
    rows.push(item(
        "rejected",
        c.rejected as u64,
        "unreadable records; named on stderr",
    ));
    rows.push(item(
        "stubbed",
        c.stubbed as u64,
        "over 256 KB: delivered as a stub",
    ));
    rows.push(item(
        "CloudTrail Insights",
        c.insights as u64,
        "CloudTrail's own Insights records",
    ));
    rows
}

/// The streams written and what CloudWatch Logs would not accept.
fn stream_rows(s: &ReplaySummary) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(Row::Section(format!(
        "streams ({}, records delivered)",
        s.delivery.per_stream.len()
    )));
    for (stream, n) in &s.delivery.per_stream {
        rows.push(item(stream.clone(), *n as u64, ""));
    }
    for (reason, n) in &s.delivery.rejected {
        rows.push(item(
            format!("not accepted: {}", reason.replace('_', " ")),
            *n as u64,
            "by CloudWatch Logs at the delivery time",
        ));
    }
    rows
}

fn insights_rows(options: &ReplayOptions, s: &ReplaySummary) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(Row::Section("insights".into()));
    rows.push(item(
        "forwarded native",
        s.insights_forwarded_native as u64,
        "CloudTrail's own, to insights.jsonl",
    ));
    rows.push(item(
        "detected",
        s.insights_detected as u64,
        if options.insights.is_some() {
            "by trailwatch (Start and End), to insights.jsonl"
        } else {
            "off: the configuration has no InsightSelectors"
        },
    ));
    rows
}

fn detection_rows(options: &ReplayOptions, s: &ReplaySummary) -> Vec<Row> {
    let Some(detection) = &options.detection else {
        return vec![
            Row::Section("detections".into()),
            item("matched", 0, "off: --no-detections"),
        ];
    };
    let d = &s.detections;
    vec![
        Row::Section("detections".into()),
        item(
            "matched",
            s.select.detections as u64,
            format!(
                "{} rules on every record read",
                detection.detector.rules().len()
            ),
        ),
        item("reported", d.reported as u64, "to detections.jsonl"),
        item("held", d.held as u64, "repeats inside a suppression window"),
        item("excepted", d.excepted as u64, "covered by an exception"),
    ]
}

/// The AWS calls the deployment would have made, with their list price.
fn call_rows(s: &ReplaySummary, prices: &Prices) -> Vec<Row> {
    let a = &s.aws;
    let costs = CallCosts::of(s, prices);
    let mut rows = Vec::new();
    rows.push(Row::Columns {
        title: "AWS calls it would have made".into(),
        value: "count".into(),
        usd: "USD".into(),
    });
    rows.push(priced(
        "S3 GetObject",
        a.s3_get_object as u64,
        Some(costs.s3),
        "one per log file",
    ));
    rows.push(priced(
        "SQS SendMessageBatch",
        a.sqs_send_message_batch as u64,
        Some(costs.sqs),
        format!(
            "{} messages, {} requests billed (64 KB chunks)",
            thousands(a.sqs_messages as u64),
            thousands(a.sqs_billed_requests as u64)
        ),
    ));
    rows.push(priced(
        "CloudWatch Logs PutLogEvents",
        a.put_log_events as u64,
        None,
        "calls are not charged",
    ));
    rows.push(priced(
        "CloudWatch Logs bytes ingested",
        a.cwl_ingested_bytes,
        Some(costs.cwl),
        format!(
            "{} events, message bytes + 26 each",
            thousands(a.cwl_events as u64)
        ),
    ));
    rows.push(priced(
        "DynamoDB PutItem (dedup ledger)",
        a.dynamodb_put_item as u64,
        Some(costs.dynamodb),
        format!(
            "{} write request units",
            thousands(costs.dynamodb_write_units)
        ),
    ));
    rows.push(priced(
        "EventBridge PutEvents",
        a.put_events_calls as u64,
        Some(costs.eventbridge),
        format!(
            "{} entries, {} events billed",
            thousands(a.put_events_entries as u64),
            thousands(a.put_events_billed as u64)
        ),
    ));
    rows.push(Row::Item {
        label: "total".into(),
        value: String::new(),
        usd: usd(costs.total()),
        note: String::new(),
    });

    rows
}

/// The rows aligned in columns.
fn render(rows: &[Row]) -> String {
    let (mut label_w, mut value_w, mut usd_w) = (0, 0, 0);
    for row in rows {
        if let Row::Item {
            label, value, usd, ..
        } = row
        {
            label_w = label_w.max(label.len());
            value_w = value_w.max(value.len());
            usd_w = usd_w.max(usd.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line = match row {
            Row::Section(title) => title.clone(),
            Row::Columns { title, value, usd } => {
                let title_w = label_w + 2;
                format!("{title:<title_w$}  {value:>value_w$}  {usd:>usd_w$}")
            }
            // Rows without a price leave the price column out: their notes follow the count.
            Row::Item {
                label,
                value,
                usd,
                note,
            } if usd.is_empty() => format!("  {label:<label_w$}  {value:>value_w$}  {note}"),
            Row::Item {
                label,
                value,
                usd,
                note,
            } => format!("  {label:<label_w$}  {value:>value_w$}  {usd:>usd_w$}  {note}"),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The summary as JSON (field names documented in `replay --help`).
pub fn summary_json(options: &ReplayOptions, s: &ReplaySummary, exit_code: u8) -> Value {
    let c = &s.select;
    let a = &s.aws;
    let costs = CallCosts::of(s, &PRICES);
    json!({
        "files": {
            "read": s.files_read(),
            "failed": s.files_failed(),
            "digestsSkipped": s.digests_skipped(),
        },
        "records": {
            "read": c.records_read,
            "kept": c.kept,
            "dropped": c.dropped,
            "duplicates": s.duplicates(),
            "rejected": c.rejected,
            "stubbed": c.stubbed,
            "insights": c.insights,
        },
        "streams": s.delivery.per_stream,
        "delivery": {
            "delivered": s.delivery.delivered,
            "notAccepted": s.delivery.rejected,
        },
        "insights": {
            "enabled": options.insights.is_some(),
            "forwardedNative": s.insights_forwarded_native,
            "detected": s.insights_detected,
            "forwardedDetected": s.insights_forwarded_detected,
        },
        "detections": {
            "enabled": options.detection.is_some(),
            "matched": s.select.detections,
            "reported": s.detections.reported,
            "held": s.detections.held,
            "excepted": s.detections.excepted,
        },
        "awsCalls": {
            "s3GetObject": {"calls": a.s3_get_object, "usd": costs.s3},
            "sqsSendMessageBatch": {
                "calls": a.sqs_send_message_batch,
                "messages": a.sqs_messages,
                "billedRequests": a.sqs_billed_requests,
                "usd": costs.sqs,
            },
            "cloudWatchLogs": {
                "putLogEventsCalls": a.put_log_events,
                "events": a.cwl_events,
                "ingestedBytes": a.cwl_ingested_bytes,
                "usd": costs.cwl,
            },
            "dynamoDbPutItem": {
                "calls": a.dynamodb_put_item,
                "writeRequestUnits": costs.dynamodb_write_units,
                "usd": costs.dynamodb,
            },
            "eventBridgePutEvents": {
                "calls": a.put_events_calls,
                "entries": a.put_events_entries,
                "billedEvents": a.put_events_billed,
                "usd": costs.eventbridge,
            },
            "totalUsd": costs.total(),
            "notCounted": NOT_COUNTED,
        },
        "prices": {
            "s3GetPer1k": PRICES.s3_get_requests_per_1k,
            "sqsRequestsPerMillion": PRICES.sqs_requests_per_million,
            "cloudWatchLogsIngestionPerGB": PRICES.cloudwatch_logs_ingestion_per_gb,
            "dynamoDbWriteRequestUnitsPerMillion": PRICES.dynamodb_write_request_units_per_million,
            "eventBridgeCustomEventsPerMillion": PRICES.eventbridge_custom_events_per_million,
            "source": PRICES.source,
        },
        "problems": s.problems,
        "problemCount": s.problem_count,
        "outputErrors": s.output_errors,
        "out": options.out,
        "exitCode": exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn costs_follow_the_price_table() {
        let mut s = ReplaySummary::default();
        s.aws.s3_get_object = 1_000;
        s.aws.sqs_billed_requests = 1_000_000;
        s.aws.cwl_ingested_bytes = 2_000_000_000;
        s.aws.dynamodb_put_item = 1_000_000;
        s.aws.put_events_billed = 1_000_000;
        let c = CallCosts::of(&s, &PRICES);
        assert!((c.s3 - 0.0004).abs() < 1e-12);
        assert!((c.sqs - 0.40).abs() < 1e-12);
        assert!((c.cwl - 1.00).abs() < 1e-12);
        assert!((c.dynamodb - 0.625).abs() < 1e-12);
        assert!((c.eventbridge - 1.00).abs() < 1e-12);
        assert!((c.total() - 3.0254).abs() < 1e-9);
    }

    #[test]
    fn exit_codes_rank_output_errors_over_input_problems() {
        let mut s = ReplaySummary::default();
        assert_eq!(exit_code(&s), exit::OK);
        s.select.files_failed = 1;
        assert_eq!(exit_code(&s), exit::PROBLEMS);
        s.output_errors.push("disk full".into());
        assert_eq!(exit_code(&s), exit::USAGE);
    }
}
