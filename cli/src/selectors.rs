//! `trailwatch selectors`: check a trail configuration, and explain what it would keep from
//! real log files and what that would cost.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};

use trailwatch::ingest::{read_log_file, FileError, LogFileLimits};
use trailwatch::local::{log_files, FilesError};
use trailwatch::record::{EventCategory, Record};
use trailwatch::select::{ConfigError, DropReason, Matcher, TrailConfig, Verdict};

use crate::exit;
use crate::input::{echo, read_input_text};

/// List prices used for every estimate trailwatch makes (`selectors explain`, `replay`): US East
/// (N. Virginia), standard tiers, no free tier, from the public pricing pages:
/// - CloudWatch Logs ingestion: https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard log
///   class, "Collect (data ingestion)", $0.50 per GB); PutLogEvents calls are not charged.
/// - CloudTrail: https://aws.amazon.com/cloudtrail/pricing/ (trails: data events and network
///   activity events, $0.10 per 100,000 delivered; management events are free for the first copy).
/// - S3 GetObject: https://aws.amazon.com/s3/pricing/ (S3 Standard, "GET, SELECT, and all other
///   requests", $0.0004 per 1,000).
/// - SQS: https://aws.amazon.com/sqs/pricing/ (standard queues, $0.40 per million requests
///   after the first million a month; every 64 KB chunk of a payload is one request).
/// - EventBridge: https://aws.amazon.com/eventbridge/pricing/ (event buses, custom events
///   published, $1.00 per million; every 64 KB chunk of an entry is one event).
/// - DynamoDB: https://aws.amazon.com/dynamodb/pricing/on-demand/ (on-demand, standard table
///   class, $0.625 per million write request units; one unit writes an item of up to 1 KB).
///
/// As published in 2025; not re-checked when this build was made — verify before relying on it.
pub const PRICES: Prices = Prices {
    cloudwatch_logs_ingestion_per_gb: 0.50,
    cloudtrail_data_events_per_100k: 0.10,
    cloudtrail_network_activity_events_per_100k: 0.10,
    s3_get_requests_per_1k: 0.0004,
    sqs_requests_per_million: 0.40,
    eventbridge_custom_events_per_million: 1.00,
    dynamodb_write_request_units_per_million: 0.625,
    source: "aws.amazon.com/{cloudwatch,cloudtrail,s3,sqs,eventbridge,dynamodb}/pricing, us-east-1 list prices as published in 2025, no free tier; verify",
};

/// USD list prices, see [`PRICES`]; the methods turn usage into dollars, so every estimate
/// uses the same arithmetic.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    pub cloudwatch_logs_ingestion_per_gb: f64,
    pub cloudtrail_data_events_per_100k: f64,
    pub cloudtrail_network_activity_events_per_100k: f64,
    pub s3_get_requests_per_1k: f64,
    pub sqs_requests_per_million: f64,
    pub eventbridge_custom_events_per_million: f64,
    pub dynamodb_write_request_units_per_million: f64,
    pub source: &'static str,
}

impl Prices {
    /// CloudWatch Logs ingestion of `bytes` (GB = 10^9 bytes).
    pub fn cloudwatch_logs_ingestion_usd(&self, bytes: f64) -> f64 {
        bytes / 1e9 * self.cloudwatch_logs_ingestion_per_gb
    }

    pub fn s3_get_usd(&self, requests: u64) -> f64 {
        requests as f64 / 1e3 * self.s3_get_requests_per_1k
    }

    /// `billed_requests`: 64 KB chunks, not calls.
    pub fn sqs_usd(&self, billed_requests: u64) -> f64 {
        billed_requests as f64 / 1e6 * self.sqs_requests_per_million
    }

    /// `billed_events`: 64 KB chunks of entries.
    pub fn eventbridge_usd(&self, billed_events: u64) -> f64 {
        billed_events as f64 / 1e6 * self.eventbridge_custom_events_per_million
    }

    pub fn dynamodb_writes_usd(&self, write_request_units: u64) -> f64 {
        write_request_units as f64 / 1e6 * self.dynamodb_write_request_units_per_million
    }
}

mod estimate;

use estimate::{estimate, Kept, Timeline, MIN_SPAN_FOR_ESTIMATE_SECONDS};

/// Check a trail configuration, or explain what it would keep from real log files.
#[derive(Debug, Subcommand)]
pub enum SelectorsCommand {
    /// Validates a trail configuration as PutEventSelectors would; prints every problem and
    /// exits 1 if there is any.
    #[command(
        after_help = "Example:\n  aws cloudtrail get-event-selectors --trail-name main > trail.json\n  trailwatch selectors check trail.json"
    )]
    Check {
        /// `aws cloudtrail get-event-selectors` output, plus HomeRegion / IsMultiRegionTrail /
        /// IncludeGlobalServiceEvents / IsOrganizationTrail.
        config: PathBuf,
    },
    /// Runs the configuration over CloudTrail records and reports, per selector, the records
    /// and bytes it keeps, what nothing keeps (by eventSource and eventName), and an
    /// estimated monthly cost.
    #[command(after_help = "Example:\n  trailwatch selectors explain trail.json AWSLogs/ --json")]
    Explain {
        /// The trail configuration, as for `check`.
        config: PathBuf,
        /// Log files `{"Records":[...]}` (gzip or not), JSON arrays of records, `.jsonl` one
        /// record per line; or folders, whose log files (`.json`, `.json.gz`; not digests) are
        /// read recursively.
        #[arg(required = true, value_name = "LOGS")]
        logs: Vec<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `trailwatch selectors <command>`.
pub fn run(command: SelectorsCommand) -> ExitCode {
    match command {
        SelectorsCommand::Check { config } => check(&config),
        SelectorsCommand::Explain { config, logs, json } => explain(&config, &logs, json),
    }
}

/// A configuration that could not be loaded: the exit code (2 unreadable, 1 invalid) and the
/// lines that say why, each cut to a printable length.
struct NotLoaded {
    code: u8,
    lines: Vec<String>,
}

/// The largest configuration read: `get-event-selectors` output within CloudTrail's limits
/// (5 basic selectors of 250 values, or 500 advanced conditions) is well under 1 MiB.
const CONFIG_MAX_BYTES: u64 = 4 << 20;

fn load_config(path: &Path) -> Result<TrailConfig, NotLoaded> {
    let text = read_input_text(path, CONFIG_MAX_BYTES, "a trail configuration").map_err(|e| {
        NotLoaded {
            code: exit::USAGE,
            lines: vec![e.to_string()],
        }
    })?;
    TrailConfig::from_json(&text).map_err(|err| NotLoaded {
        code: exit::PROBLEMS,
        lines: match err {
            ConfigError::Invalid(problems) => problems
                .iter()
                .map(|p| format!("{}: {}", path.display(), echo(&p.to_string())))
                .collect(),
            other => vec![format!("{}: {}", path.display(), echo(&other.to_string()))],
        },
    })
}

fn check(path: &Path) -> ExitCode {
    match load_config(path) {
        Ok(config) => {
            let kind = match config.selectors() {
                trailwatch::select::Selectors::Default => {
                    "no selectors (all management events)".to_string()
                }
                trailwatch::select::Selectors::Basic(list) => {
                    format!("{} basic event selector(s)", list.len())
                }
                trailwatch::select::Selectors::Advanced(list) => {
                    format!("{} advanced event selector(s)", list.len())
                }
            };
            println!("{}: valid — {kind}", path.display());
            ExitCode::SUCCESS
        }
        Err(NotLoaded { code, lines }) => {
            for line in &lines {
                println!("{line}");
            }
            eprintln!("{} problem(s)", lines.len());
            ExitCode::from(code)
        }
    }
}

/// What `explain` counts.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    bytes: u64,
    unreadable: u64,
    files: u64,
    file_errors: Vec<String>,
    /// Per selector index (`None`: the default trail).
    kept: BTreeMap<Option<usize>, Count>,
    kept_data_events: u64,
    kept_network_events: u64,
    dropped: BTreeMap<DropReason, Count>,
    /// Records no selector keeps, by (eventSource, eventName).
    not_selected: HashMap<(String, String), Count>,
    timeline: Timeline,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    records: u64,
    bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
    }
}

impl Tally {
    fn record(&mut self, matcher: &Matcher, raw: &str) {
        let record = match Record::parse(raw) {
            Ok(record) => record,
            Err(_) => {
                self.unreadable += 1;
                return;
            }
        };
        self.records += 1;
        self.bytes += raw.len() as u64;
        if let Ok(ms) = record.event_time_ms() {
            self.timeline.event(ms);
        }
        match matcher.evaluate(&record) {
            Verdict::Keep { selector } => {
                self.kept.entry(selector).or_default().add(raw.len());
                match record.category() {
                    EventCategory::Data => self.kept_data_events += 1,
                    EventCategory::NetworkActivity => self.kept_network_events += 1,
                    _ => {}
                }
            }
            Verdict::Drop(reason) => {
                self.dropped.entry(reason).or_default().add(raw.len());
                if reason == DropReason::NotSelected {
                    let key = (
                        record.event_source().unwrap_or("(none)").to_string(),
                        record.event_name().unwrap_or("(none)").to_string(),
                    );
                    self.not_selected.entry(key).or_default().add(raw.len());
                }
            }
        }
    }

    fn kept_total(&self) -> Count {
        self.kept.values().fold(Count::default(), |a, c| Count {
            records: a.records + c.records,
            bytes: a.bytes + c.bytes,
        })
    }

    fn estimate(&self, prices: &Prices) -> Option<estimate::Estimate> {
        let kept = Kept {
            total: self.kept_total(),
            data_events: self.kept_data_events,
            network_events: self.kept_network_events,
        };
        estimate(&kept, self.timeline.period(), prices)
    }
}

fn explain(config_path: &Path, logs: &[PathBuf], as_json: bool) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(NotLoaded { code, lines }) => {
            for line in &lines {
                eprintln!("{line}");
            }
            return ExitCode::from(code);
        }
    };
    let matcher = config.compile();
    let tally = match tally_logs(&matcher, logs) {
        Ok(tally) => tally,
        // The paths given cannot be walked: nothing was read.
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let report = report_json(&matcher, &tally, &PRICES);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(&matcher, &tally, &PRICES);
    }
    if tally.file_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The `explain --json` report of `config` over the records under `logs`.
pub fn explain_report(config: &TrailConfig, logs: &[PathBuf]) -> Result<Value, FilesError> {
    let matcher = config.compile();
    let tally = tally_logs(&matcher, logs)?;
    Ok(report_json(&matcher, &tally, &PRICES))
}

/// Decides every record under `logs` (files as given, whatever their name; in folders, the log
/// files by `trailwatch::local::files`' rule, digests left out); a folder that cannot be listed
/// is an error, a file that cannot be read is counted in `file_errors` and the others are still
/// read.
fn tally_logs(matcher: &Matcher, logs: &[PathBuf]) -> Result<Tally, FilesError> {
    let files = log_files(logs)?;
    let mut tally = Tally::default();
    for file in files.iter().filter(|f| f.has_records()) {
        tally.files += 1;
        tally.timeline.file(file.delivered_ms);
        let file = &file.path;
        let read = read_records(file, |item| match item {
            Some(raw) => tally.record(matcher, raw),
            None => tally.unreadable += 1,
        });
        if let Err(e) = read {
            tally.file_errors.push(format!("{}: {e}", file.display()));
        }
    }
    Ok(tally)
}

/// Hands each record's exact text to `each` (`None` for an element that is not a readable
/// record): `.jsonl` files line by line, CloudTrail log files through the streaming reader,
/// and JSON arrays of records (exports, test sets) whole.
fn read_records(path: &Path, mut each: impl FnMut(Option<&str>)) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
            if !line.trim().is_empty() {
                each(Some(line.trim()));
            }
        }
        return Ok(());
    }
    let result = read_log_file(file, LogFileLimits::default(), |item| {
        each(item.bytes.ok());
    });
    match result {
        Ok(_) => Ok(()),
        Err(FileError::NotCloudTrail { .. }) => read_json_array(path, each),
        Err(e) => Err(e.to_string()),
    }
}

fn read_json_array(path: &Path, mut each: impl FnMut(Option<&str>)) -> Result<(), String> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(&text)
        .map_err(|e| format!("neither a CloudTrail log file nor a JSON array of records: {e}"))?;
    for item in &items {
        each(Some(item.get()));
    }
    Ok(())
}

fn not_selected_sorted(tally: &Tally) -> Vec<(&(String, String), &Count)> {
    let mut groups: Vec<_> = tally.not_selected.iter().collect();
    groups.sort_by(|a, b| b.1.records.cmp(&a.1.records).then_with(|| a.0.cmp(b.0)));
    groups
}

fn report_json(matcher: &Matcher, tally: &Tally, prices: &Prices) -> Value {
    let selectors: Vec<Value> = tally
        .kept
        .iter()
        .map(|(index, count)| {
            json!({
                "selector": index,
                "name": index.and_then(|i| matcher.selector_name(i)),
                "label": matcher.selector_label(*index),
                "records": count.records,
                "bytes": count.bytes,
            })
        })
        .collect();
    let dropped: Value = tally
        .dropped
        .iter()
        .map(|(reason, c)| {
            (
                reason.as_str().to_string(),
                json!({"records": c.records, "bytes": c.bytes}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let not_selected: Vec<Value> = not_selected_sorted(tally)
        .into_iter()
        .map(|((source, name), c)| {
            json!({"eventSource": source, "eventName": name, "records": c.records, "bytes": c.bytes})
        })
        .collect();
    let kept = tally.kept_total();
    let estimate = tally.estimate(prices).map(|e| {
        json!({
            "basis": e.basis,
            "factor": e.factor,
            "cloudWatchLogsIngestionGB": e.cwl_gb,
            "cloudWatchLogsIngestionUSD": e.cwl_usd,
            "dataEvents": e.data_events,
            "networkActivityEvents": e.network_events,
            "cloudTrailEventsUSD": e.cloudtrail_usd,
        })
    });
    json!({
        "files": tally.files,
        "fileErrors": tally.file_errors,
        "records": tally.records,
        "bytes": tally.bytes,
        "unreadable": tally.unreadable,
        "kept": {"records": kept.records, "bytes": kept.bytes},
        "selectors": selectors,
        "dropped": dropped,
        "notSelected": not_selected,
        "monthlyEstimate": estimate,
        "prices": {
            "cloudWatchLogsIngestionPerGB": prices.cloudwatch_logs_ingestion_per_gb,
            "cloudTrailDataEventsPer100k": prices.cloudtrail_data_events_per_100k,
            "cloudTrailNetworkActivityEventsPer100k": prices.cloudtrail_network_activity_events_per_100k,
            "source": prices.source,
        },
    })
}

fn print_report(matcher: &Matcher, tally: &Tally, prices: &Prices) {
    println!(
        "{} records ({} bytes) from {} file(s); {} unreadable",
        tally.records, tally.bytes, tally.files, tally.unreadable
    );
    for error in &tally.file_errors {
        println!("  file error: {error}");
    }
    println!("\nKept, by the first selector that matches:");
    if tally.kept.is_empty() {
        println!("  (nothing)");
    }
    for (index, count) in &tally.kept {
        println!(
            "  {:<50} {:>9} records {:>12} bytes",
            matcher.selector_label(*index),
            count.records,
            count.bytes
        );
    }
    for i in 0..matcher.selector_count() {
        if !tally.kept.contains_key(&Some(i)) {
            println!(
                "  {:<50} {:>9} records {:>12} bytes",
                matcher.selector_label(Some(i)),
                0,
                0
            );
        }
    }
    println!("\nDropped:");
    for reason in DropReason::ALL {
        let c = tally.dropped.get(&reason).copied().unwrap_or_default();
        println!(
            "  {:<50} {:>9} records {:>12} bytes",
            reason.as_str(),
            c.records,
            c.bytes
        );
    }
    let groups = not_selected_sorted(tally);
    if !groups.is_empty() {
        println!(
            "\nKept by nothing (top 25 of {} eventSource/eventName):",
            groups.len()
        );
        for ((source, name), c) in groups.iter().take(25) {
            println!(
                "  {:<60} {:>9} records {:>12} bytes",
                format!("{source} {name}"),
                c.records,
                c.bytes
            );
        }
    }
    println!("\nEstimated monthly cost (list prices: {}):", prices.source);
    match tally.estimate(prices) {
        Some(e) => {
            println!("  basis: {}", e.basis);
            println!(
                "  CloudWatch Logs ingestion: {:.3} GB/month x ${:.2}/GB = ${:.2}",
                e.cwl_gb, prices.cloudwatch_logs_ingestion_per_gb, e.cwl_usd
            );
            println!(
                "  CloudTrail data events: {:.0}/month, network activity events: {:.0}/month = ${:.2}",
                e.data_events, e.network_events, e.cloudtrail_usd
            );
        }
        None => println!(
            "  not estimated: the records cover less than {MIN_SPAN_FOR_ESTIMATE_SECONDS:.0} s (or none was read)"
        ),
    }
}
