//! `trailwatch lookup`: CloudTrail's Event history (LookupEvents) over what the trail kept —
//! a `trailwatch replay --out` folder, CloudTrail log files, or the deployed trail's
//! CloudWatch Logs log group — with the AWS CLI's flags and LookupEvents' output.

mod event;
mod local;
mod log_group;
mod output;
pub mod query;
mod search;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, ValueEnum};
use thiserror::Error;

use crate::exit;
use crate::input::echo;
use query::{
    decode_token, encode_token, looks_like_attribute, parse_attributes, Query, QueryError,
};

pub use event::{format_lookup_time, LookupEvent, ResourceOut};
pub use log_group::filter_pattern;

/// Event history (LookupEvents) over a replay output folder, CloudTrail log files, or the
/// trail's log group: who did what, newest first.
///
/// Takes the AWS CLI's `aws cloudtrail lookup-events` flags and prints LookupEvents' output
/// (`{"Events":[{EventId, EventName, ReadOnly, AccessKeyId, EventTime, EventSource, Username,
/// Resources, CloudTrailEvent}]}`), or a table with `--output table`.
///
/// Unlike Event history, which holds management events only, lookup also finds the data and
/// network-activity events your trail kept (the log group holds them); `--management-only`
/// gives exactly Event history's set. Insights events are looked up alone, with
/// `--event-category insight`, as LookupEvents does. There is no 90-day limit.
///
/// Paging as the AWS CLI v2 does it: `lookup-events` is a paginated command there, so it
/// prints every event unless given --max-items (with --starting-token to go on; --page-size
/// only sizes its calls), and it still takes LookupEvents' own --max-results/--next-token,
/// which return one page. All of these are taken here; a NextToken from either continues
/// either.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # A bucket was deleted: who did it? (one command)
  trailwatch lookup out --output table \\
      --lookup-attributes AttributeKey=ResourceName,AttributeValue=my-bucket
  trailwatch lookup out --output table \\
      --lookup-attributes AttributeKey=EventName,AttributeValue=DeleteBucket

  # The same over the deployed trail's log group
  trailwatch lookup --log-group CloudTrail/logs --region us-east-1 --output table \\
      --start-time 2024-03-06 --lookup-attributes AttributeKey=EventName,AttributeValue=DeleteBucket

  # The 10 newest write events, then the next 10
  trailwatch lookup out --max-results 10 \\
      --lookup-attributes AttributeKey=ReadOnly,AttributeValue=false
  trailwatch lookup out --max-results 10 --next-token <NextToken from the first> \\
      --lookup-attributes AttributeKey=ReadOnly,AttributeValue=false

Exit codes: 0 looked up; 1 looked up, but some records or files could not be read (reported
on stderr, the rest searched); 2 could not run (arguments, missing folder, CloudWatch Logs).")]
pub struct LookupArgs {
    /// A `trailwatch replay --out` folder (its `<stream>.jsonl` files and `insights.jsonl`), a
    /// `.jsonl` file, or CloudTrail log files (a `.json`/`.json.gz` file or an `AWSLogs/…`
    /// folder).
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Look up in this CloudWatch Logs log group (the trail's) instead, with FilterLogEvents.
    /// Credentials and Region come from the environment as for the AWS CLI
    /// (`AWS_ENDPOINT_URL` is honoured).
    #[arg(long, value_name = "NAME", conflicts_with = "path")]
    pub log_group: Option<String>,

    /// At most one `AttributeKey=<key>,AttributeValue=<value>` (or the CLI's JSON form). Keys:
    /// EventId, EventName, ReadOnly (true/false), Username, ResourceType, ResourceName,
    /// EventSource, AccessKeyId. Values match exactly, case-sensitive.
    #[arg(
        long = "lookup-attributes",
        value_name = "AttributeKey=KEY,AttributeValue=VALUE",
        num_args = 1..,
        action = ArgAction::Append
    )]
    pub lookup_attributes: Vec<String>,

    /// Only events at or after this time: UNIX seconds or ISO 8601 (`2024-03-06`,
    /// `2024-03-06T01:05:00Z`); without a zone, UTC.
    #[arg(long, value_name = "TIME", value_parser = query::parse_time_arg)]
    pub start_time: Option<i64>,

    /// Only events at or before this time (same forms as --start-time).
    #[arg(long, value_name = "TIME", value_parser = query::parse_time_arg)]
    pub end_time: Option<i64>,

    /// `insight`: Insights events only (keys EventId, EventName, EventSource). Without it, no
    /// Insights events, as LookupEvents.
    #[arg(long, value_enum, value_name = "CATEGORY")]
    pub event_category: Option<EventCategoryArg>,

    /// Management events only: exactly what Event history holds. By default data and
    /// network-activity events the trail kept are found too.
    #[arg(long, conflicts_with = "event_category")]
    pub management_only: bool,

    /// One page of at most N events (1–50, LookupEvents' MaxResults), with a NextToken when
    /// more follow. As with the AWS CLI, without --max-results or --max-items every
    /// matching event is printed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=50))]
    pub max_results: Option<u16>,

    /// At most N events in all (the AWS CLI's own paging flag; any N), with a NextToken when
    /// more follow.
    #[arg(long, value_name = "N", conflicts_with = "max_results", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_items: Option<u32>,

    /// The AWS CLI's page size for the calls it makes (1–50). Accepted for pasted commands;
    /// it does not change what is printed (see --log-page-limit for FilterLogEvents).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=50))]
    pub page_size: Option<u16>,

    /// Continue after the page that printed this NextToken; the other parameters must be the
    /// same. (--starting-token is the AWS CLI's name for it.)
    #[arg(long, value_name = "TOKEN", visible_alias = "starting-token")]
    pub next_token: Option<String>,

    /// One page of LookupEvents' default size (50) unless --max-results says otherwise, as
    /// the AWS CLI's --no-paginate.
    #[arg(long)]
    pub no_paginate: bool,

    /// `json` (LookupEvents' output as the AWS CLI v2 prints it; EventTime in UTC, e.g.
    /// `2023-07-10T11:42:36+00:00`, where the CLI uses the machine's zone) or `table`
    /// (aligned columns: time, event name, user, event source, source IP, error, event ID,
    /// resources).
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,

    /// With --log-group: only streams whose name starts with this (e.g.
    /// `123456789012_CloudTrail_us-east-1`).
    #[arg(long, value_name = "PREFIX")]
    pub log_stream_name_prefix: Option<String>,

    /// With --log-group: the log group's AWS Region (default: from the environment).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// With --log-group: the AWS CLI profile to use.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,

    /// With --log-group: events per FilterLogEvents call (1–10000; default the service's,
    /// 10,000). Every page is read either way.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub log_page_limit: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventCategoryArg {
    Insight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
}

/// LookupEvents' default and largest page (MaxResults).
const DEFAULT_PAGE: usize = 50;

/// Why `trailwatch lookup` could not run.
#[derive(Debug, Error)]
pub enum LookupError {
    #[error("--lookup-attributes takes AttributeKey=<key>,AttributeValue=<value>, not '{0}'")]
    StrayValues(String),
    #[error("{0} applies to --log-group only (a local folder holds every Region's events)")]
    GroupOnlyFlag(&'static str),
    #[error("give a folder or file to read (a trailwatch replay --out folder), or --log-group")]
    NoSource,
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    LogGroup(#[from] log_group::GroupError),
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

/// Parses the arguments of `trailwatch lookup` (what follows `lookup` on the command line),
/// for callers that run the lookup in their own process with [`run_to`].
pub fn parse_args<I, T>(args: I) -> Result<LookupArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::parse_command_args("trailwatch lookup", args)
}

pub fn run(args: LookupArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run_to(args, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code)
}

/// Runs the lookup, printing the result to `out` and problems and the summary to `err`;
/// returns the exit code.
pub fn run_to(args: LookupArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match lookup(args, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "trailwatch lookup: {e}");
            exit::USAGE
        }
    }
}

fn lookup(
    mut args: LookupArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, LookupError> {
    let attributes = take_stray_path(&mut args)?;
    check_group_flags(&args)?;
    let query = build_query(&args, &attributes)?;
    let cursor = args
        .next_token
        .as_deref()
        .map(|t| decode_token(&query, t))
        .transpose()?;
    let started = std::time::Instant::now();
    let mut searcher = search::Searcher::new(&query, cursor, page_limit(&args));
    let source = search(&args, &query, &mut searcher)?;

    for line in searcher.problem_report() {
        let _ = writeln!(err, "trailwatch lookup: {line}");
    }
    let problems = searcher.problem_count;
    let matched = searcher.matched;
    let page = searcher.into_page();
    let token = page.next.as_ref().map(|key| encode_token(&query, key));
    match args.output {
        OutputFormat::Json => output::write_json(out, &page.events, token.as_deref()),
        OutputFormat::Table => output::write_table(out, &page.events),
    }
    .and_then(|()| out.flush())
    .map_err(LookupError::Output)?;
    let _ = writeln!(
        err,
        "trailwatch lookup: {} of {matched} matching events printed; {source}{} in {:.2?}",
        page.events.len(),
        match problems {
            0 => String::new(),
            n => format!("; {n} unreadable (above)"),
        },
        started.elapsed()
    );
    if let (Some(token), OutputFormat::Table) = (&token, args.output) {
        let _ = writeln!(
            err,
            "trailwatch lookup: more events: repeat with --next-token {token}"
        );
    }
    Ok(if problems > 0 {
        exit::PROBLEMS
    } else {
        exit::OK
    })
}

/// The `--lookup-attributes` values that are attributes. The option takes several values, so
/// a folder written after it lands there: it is taken as the path.
fn take_stray_path(args: &mut LookupArgs) -> Result<Vec<String>, LookupError> {
    let (attributes, stray): (Vec<String>, Vec<String>) =
        std::mem::take(&mut args.lookup_attributes)
            .into_iter()
            .partition(|v| looks_like_attribute(v));
    match stray.as_slice() {
        [] => {}
        [path] if args.path.is_none() && args.log_group.is_none() => {
            args.path = Some(PathBuf::from(path))
        }
        _ => {
            return Err(LookupError::StrayValues(
                echo(&stray.join("' '")).into_owned(),
            ))
        }
    }
    Ok(attributes)
}

fn check_group_flags(args: &LookupArgs) -> Result<(), LookupError> {
    if args.log_group.is_some() {
        return Ok(());
    }
    let group_only = [
        (
            "--log-stream-name-prefix",
            args.log_stream_name_prefix.is_some(),
        ),
        ("--region", args.region.is_some()),
        ("--profile", args.profile.is_some()),
        ("--log-page-limit", args.log_page_limit.is_some()),
    ];
    match group_only.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(LookupError::GroupOnlyFlag(flag)),
        None => Ok(()),
    }
}

/// The query, validated as LookupEvents validates its request.
fn build_query(args: &LookupArgs, attributes: &[String]) -> Result<Query, QueryError> {
    let query = Query {
        attribute: parse_attributes(attributes)?,
        start_ms: args.start_time,
        end_ms: args.end_time,
        insight: args.event_category == Some(EventCategoryArg::Insight),
        management_only: args.management_only,
    };
    if let (Some(start), Some(end)) = (query.start_ms, query.end_ms) {
        if start > end {
            return Err(QueryError::TimeRange {
                start: format_lookup_time(start),
                end: format_lookup_time(end),
            });
        }
    }
    if let (true, Some(a)) = (query.insight, &query.attribute) {
        if !a.key.supported_for_insights() {
            return Err(QueryError::NotForInsights(a.key));
        }
    }
    Ok(query)
}

/// How many events to print: one page, a number of items, or all.
fn page_limit(args: &LookupArgs) -> Option<usize> {
    match (args.max_results, args.max_items, args.no_paginate) {
        (Some(n), _, _) => Some(usize::from(n)),
        (None, Some(n), _) => Some(n as usize),
        (None, None, true) => Some(DEFAULT_PAGE),
        (None, None, false) => None,
    }
}

/// Reads the path or the log group into the searcher; returns what was read, for the summary.
fn search(
    args: &LookupArgs,
    query: &Query,
    searcher: &mut search::Searcher,
) -> Result<String, LookupError> {
    match (&args.path, &args.log_group) {
        (Some(path), None) => {
            local::search_path(path, searcher)?;
            Ok(format!(
                "{} records read from {} files",
                searcher.records, searcher.files
            ))
        }
        (None, Some(group)) => {
            let source = log_group::GroupSource {
                group: group.clone(),
                stream_prefix: args.log_stream_name_prefix.clone(),
                region: args.region.clone(),
                profile: args.profile.clone(),
                page_limit: args.log_page_limit,
            };
            let calls = log_group::search_group(&source, query, searcher)?;
            Ok(format!(
                "{} log events read from log group {group} in {} FilterLogEvents calls (filter \
                 pattern: {})",
                calls.log_events,
                calls.calls,
                calls.pattern.as_deref().unwrap_or("none")
            ))
        }
        _ => Err(LookupError::NoSource),
    }
}
