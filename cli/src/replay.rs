//! `trailwatch replay`: the whole pipeline over CloudTrail log files, on one machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use trailwatch::insights::InsightsConfig;
use trailwatch::replay::{replay, ReplayOptions, ReplaySummary};
use trailwatch::select::TrailConfig;
use trailwatch::time::parse_event_time;

use crate::exit;

/// Runs the pipeline over CloudTrail log files: selection, delivery to a log group (a folder
/// here), Insights.
///
/// Writes what would be delivered to CloudWatch Logs as DIR/<stream>.jsonl (one record per
/// line, exactly as received) and Insights records to DIR/insights.jsonl, then prints a
/// summary.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trailwatch replay events/sample-trail --config events/trail-config.json --out out
  trailwatch replay AWSLogs/ --out out --now 2024-03-06T12:00:00Z")]
pub struct ReplayArgs {
    /// CloudTrail log files (`.json` or `.json.gz`) or folders (the `AWSLogs/...` layout),
    /// read recursively.
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
    /// Delivery time for CloudWatch Logs' 14-day/2-hour window (default: as the records
    /// happened, i.e. the newest eventTime read so far).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<i64>,
}

fn parse_time(text: &str) -> Result<i64, String> {
    parse_event_time(text).map_err(|e| e.to_string())
}

pub fn run(args: ReplayArgs) -> ExitCode {
    let options = match options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("trailwatch replay: {message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    match replay(&options) {
        Ok(summary) => {
            print_summary(&options, &summary);
            if summary.files_failed > 0 || summary.select.rejected > 0 {
                ExitCode::from(exit::PROBLEMS)
            } else {
                ExitCode::from(exit::OK)
            }
        }
        Err(e) => {
            eprintln!("trailwatch replay: {e}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn options(args: ReplayArgs) -> Result<ReplayOptions, String> {
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
    Ok(ReplayOptions {
        inputs: args.inputs,
        config,
        insights,
        out: args.out,
        now_ms: args.now,
    })
}
fn print_summary(options: &ReplayOptions, s: &ReplaySummary) {
    let c = &s.select;
    println!(
        "files        {} read, {} failed, {} digests skipped",
        s.files, s.files_failed, s.digests_skipped
    );
    println!("records      {} read", c.records_read);
    println!("kept         {}", c.kept);
    let dropped: usize = c.dropped.values().sum();
    let reasons: Vec<String> = c.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!("dropped      {dropped} ({})", reasons.join(", "));
    println!(
        "duplicates   {} (same eventID seen before)",
        c.duplicates + s.delivery.duplicates
    );
    println!("rejected     {} unreadable records", c.rejected);
    println!(
        "stubbed      {} oversized records delivered as stubs",
        c.stubbed
    );
    println!(
        "delivered    {} to {} streams",
        s.delivery.delivered,
        s.delivery.per_stream.len()
    );
    for (stream, n) in &s.delivery.per_stream {
        println!("  {:<48} {n}", format!("{stream}.jsonl"));
    }
    if !s.delivery.rejected.is_empty() {
        let r: Vec<String> = s
            .delivery
            .rejected
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "not accepted {} by CloudWatch Logs' rules ({})",
            s.delivery.rejected.values().sum::<usize>(),
            r.join(", ")
        );
    }
    println!(
        "insights     {} forwarded to insights.jsonl ({} detected by trailwatch{})",
        s.insights_forwarded,
        s.insights_detected,
        if options.insights.is_none() {
            ", off: no InsightSelectors"
        } else {
            ""
        }
    );
    println!(
        "AWS calls    S3 GetObject {}, SQS messages {}, PutLogEvents {}",
        s.files, s.sqs_messages, s.delivery.put_calls
    );
    println!("output       {}", options.out.display());
    for problem in &s.problems {
        eprintln!("problem: {problem}");
    }
}
