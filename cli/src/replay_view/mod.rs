//! `trailwatch replay` as the user sees it: arguments, progress bar, summary table and JSON.
//! The replay itself is `trailwatch::local::replay`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use trailwatch::detect::Detector;
use trailwatch::insights::InsightsConfig;
use trailwatch::local::{
    replay_with_progress, DetectionOptions, Progress, ReplayOptions, ReplaySummary,
};
use trailwatch::select::problems::PROBLEMS_KEPT_PER_OBJECT;
use trailwatch::select::TrailConfig;
use trailwatch::time::parse_event_time;

use crate::detect::{load_rules, report_rule_problems, RuleArgs};
use crate::exit;
use crate::selectors::PRICES;

mod summary;
use summary::{summary_json, summary_table, thousands};

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
    /// Threads to run on: 1 selects and delivers on one; 2 (the default where the machine has
    /// two cores) delivers on a second thread what the first selected. The output is the same.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub threads: Option<u8>,
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
        // Selecting and delivering are the two halves of the work: a second core takes one.
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            usize::from,
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

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
