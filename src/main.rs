//! The `trailwatch` command: the pipeline on one machine, no AWS account needed.

use std::path::PathBuf;
use std::process::ExitCode;

use trailwatch::insights::InsightsConfig;
use trailwatch::replay::{replay, ReplayOptions, ReplaySummary};
use trailwatch::select::TrailConfig;
use trailwatch::time::parse_event_time;

const USAGE: &str = "\
trailwatch — CloudTrail selection, delivery and Insights, on one machine

USAGE:
  trailwatch replay <log files or folders>... [--config FILE] --out DIR [--now TIME]
      Runs the pipeline over CloudTrail log files (gzip or not): writes what would be
      delivered to CloudWatch Logs as DIR/<stream>.jsonl (one record per line, exactly as
      received) and Insights records to DIR/insights.jsonl, then prints a summary.
      --config  trail configuration: `aws cloudtrail get-event-selectors` output, plus
                HomeRegion / IsMultiRegionTrail / IncludeGlobalServiceEvents /
                IsOrganizationTrail (default: all management events, multi-region)
      --now     delivery time for CloudWatch Logs' 14-day/2-hour window (default: as the
                records happened, i.e. the newest eventTime read so far)

  trailwatch selectors check <config>
  trailwatch selectors explain <config> <log files or folders>... [--json]
      Validates a trail configuration as PutEventSelectors would; explains what it keeps.

  trailwatch insights backtest <log files or folders>... [--config FILE] --out FILE
      Runs the Insights detector over log files and writes the Insights records (JSONL).

  Run a command with --help for its options.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("replay") => run_replay(&args[1..]),
        Some("selectors") => trailwatch::cli::selectors::run(&args[1..]),
        Some("insights") => trailwatch::cli::insights::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("trailwatch: unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_replay(args: &[String]) -> ExitCode {
    match parse_replay(args).and_then(|options| {
        replay(&options)
            .map(|summary| (options, summary))
            .map_err(|e| e.to_string())
    }) {
        Ok((options, summary)) => {
            print_summary(&options, &summary);
            if summary.files_failed > 0 || summary.select.rejected > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(message) => {
            eprintln!("trailwatch replay: {message}");
            ExitCode::from(2)
        }
    }
}

fn parse_replay(args: &[String]) -> Result<ReplayOptions, String> {
    let mut inputs = Vec::new();
    let mut config = None;
    let mut out = None;
    let mut now_ms = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" => config = Some(value("--config")?),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--now" => {
                let text = value("--now")?;
                now_ms = Some(parse_event_time(&text).map_err(|e| format!("--now: {e}"))?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => inputs.push(PathBuf::from(path)),
        }
    }
    if inputs.is_empty() {
        return Err("give at least one log file or folder".into());
    }
    let out = out.ok_or("--out DIR is required")?;
    let (config, insights) = match config {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
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
        inputs,
        config,
        insights,
        out,
        now_ms,
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
