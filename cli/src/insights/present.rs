//! What the Insights commands print: the backtest's one-line summary and the backfill's
//! report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use trailwatch::insights::cost::{cost, Workload};
use trailwatch::insights::store::{Clock, Snapshot};
use trailwatch::time::{format_event_time, MS_PER_MINUTE};
use trailwatch_aws::insights_state::CELL_TTL;

use super::backfill::{BackfillArgs, BackfillReport, Decision};
use super::replay::Detection;

/// The backtest's summary line.
pub(super) fn backtest_summary(
    out: &Path,
    detection: &Detection,
    written: usize,
    took: Duration,
) -> String {
    let engine = &detection.engine;
    let stats = engine.stats();
    let observed = engine.observe_stats();
    let sizes = engine.state_sizes();
    format!(
        "{written} Insights records ({} Start, {} End) -> {} | {} files ({} unreadable), \
         {} records ({} unreadable), {} counted, {} late (key, minute) cells | \
         {} keys, state bytes mean {:.0} max {} | {:.1}s",
        stats.starts,
        stats.ends,
        out.display(),
        detection.files,
        detection.bad_files,
        observed.records,
        detection.bad_records,
        observed.counted,
        stats.late_minutes,
        sizes.keys,
        sizes.mean_bytes,
        sizes.max_bytes,
        took.as_secs_f64(),
    ) + &cost_line(detection, written, took)
}

/// The Insights function's cost for these events at the measured speed, next to CloudTrail
/// Insights' price (`trailwatch::insights::cost`).
fn cost_line(detection: &Detection, written: usize, took: Duration) -> String {
    let stats = detection.engine.stats();
    let observed = detection.engine.observe_stats();
    let w = Workload {
        analysed_call_rate: observed.analysed_call_rate,
        analysed_error_rate: observed.analysed_error_rate,
        records: observed.records,
        key_minutes: stats.minutes_evaluated + stats.late_minutes,
        insight_records: written as u64,
        cpu_seconds: took.as_secs_f64(),
    };
    let c = cost(&w);
    let (ours, theirs) = c.per_million(&w);
    let per = |usd: f64| usd / (w.analysed_call_rate + w.analysed_error_rate).max(1) as f64 * 1e6;
    format!(
        "\ncost per million events analysed ({} analysed: {} call rate, {} error rate): \
         trailwatch USD {ours:.3} (Lambda {:.3}, DynamoDB {:.3}, EventBridge {:.3}) vs \
         CloudTrail Insights USD {theirs:.2}: {:.0}x cheaper",
        w.analysed_call_rate + w.analysed_error_rate,
        w.analysed_call_rate,
        w.analysed_error_rate,
        per(c.lambda),
        per(c.dynamodb_writes + c.dynamodb_reads),
        per(c.eventbridge),
        theirs / ours.max(1e-12),
    )
}

pub(super) fn minute_text(minute: Option<i64>) -> String {
    match minute {
        Some(m) => format!("{} (minute {m})", format_event_time(m * MS_PER_MINUTE)),
        None => "none".to_owned(),
    }
}

/// Lines of `label value`, aligned.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, label: &str, value: String) {
        self.0.push_str(&format!("  {label:<16} {value}\n"));
    }
}

/// The backfill's report: what was read, the snapshot, the table before and after.
pub(super) fn backfill_text(
    args: &BackfillArgs,
    detection: &Detection,
    clock: &Clock,
    report: &BackfillReport,
    calls: &[(&str, u64)],
    took: Duration,
) -> String {
    let snapshot = &report.snapshot;
    let mut text = Lines::default();
    let observed = detection.engine.observe_stats();
    text.line(
        "input",
        format!(
            "{} files ({} unreadable), {} records ({} unreadable), {} counted",
            detection.files,
            detection.bad_files,
            observed.records,
            detection.bad_records,
            observed.counted
        ),
    );
    text.line(
        "snapshot",
        format!(
            "closed through {}, data from {}",
            minute_text(Some(snapshot.closed_through)),
            minute_text(snapshot.origin_minute)
        ),
    );
    text.line("keys", keys_text(detection, snapshot));
    text.line(
        "table before",
        match clock.closed_through {
            Some(_) => format!("closed through {}", minute_text(clock.closed_through)),
            None => "no Insights state yet".to_owned(),
        },
    );
    what_was_written(&mut text, args.dry_run, report);
    if let Some(note) = age_note(snapshot) {
        text.line("note", note);
    }
    let calls: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    text.line("DynamoDB calls", calls.join(", "));
    text.line("took", format!("{:.1}s", took.as_secs_f64()));
    format!(
        "insights backfill of table {}{}\n{}",
        args.table,
        if args.dry_run { " (dry run)" } else { "" },
        text.0
    )
}

/// Keys by Insight type, event sources, account/region pairs, open Insights.
fn keys_text(detection: &Detection, snapshot: &Snapshot) -> String {
    let open: BTreeSet<String> = detection
        .engine
        .open_insight_keys()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sources = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for k in &snapshot.keys {
        *by_type.entry(k.key.insight_type.as_str()).or_default() += 1;
        sources.insert(k.key.event_source.as_str());
        accounts.insert((k.key.account.as_str(), k.key.region.as_str()));
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    format!(
        "{} ({}), {} event sources, {} account/region pairs, {} with an open Insight",
        snapshot.keys.len(),
        if types.is_empty() {
            "none".to_owned()
        } else {
            types.join(", ")
        },
        sources.len(),
        accounts.len(),
        open.len()
    )
}

fn what_was_written(text: &mut Lines, dry_run: bool, report: &BackfillReport) {
    let how = match report.decision {
        Decision::Write | Decision::Refuse { .. } => String::new(),
        Decision::Overwrite { .. } => " (--force: the table was at the snapshot's minute)".into(),
        Decision::Rewind { table } => format!(
            " (--force: the clock set back from minute {table} first; the deployment \
             re-evaluates the minutes after the snapshot from the cells it holds)"
        ),
    };
    if dry_run {
        let what = format!("{} key states and the clock", report.snapshot.keys.len());
        text.line(
            "dry run",
            format!("would write {what}{how}; nothing written"),
        );
        return;
    }
    text.line(
        "written",
        format!("{} key states and the clock{how}", report.keys_written),
    );
    if let Some(after) = &report.clock_after {
        text.line(
            "table after",
            format!(
                "closed through {}, {} open Insight keys",
                minute_text(after.closed_through),
                after.open_keys.len()
            ),
        );
    }
}

/// A note when the snapshot ends before the oldest minute the deployment keeps counts for.
fn age_note(snapshot: &Snapshot) -> Option<String> {
    let age_ms = super::backfill::wall_clock_ms() - snapshot.closed_through * MS_PER_MINUTE;
    (age_ms > CELL_TTL.as_millis() as i64).then(|| {
        format!(
            "the snapshot ends {} days ago, before the oldest minute the deployment keeps \
             counts for ({} days): it catches up on the minutes in between as quiet ones, \
             a day of them per evaluation; logs that reach closer to now give truer \
             baselines",
            age_ms / (24 * 60 * MS_PER_MINUTE),
            CELL_TTL.as_secs() / 86_400
        )
    })
}

/// Why a backfill is refused, in the table's and the snapshot's minutes.
pub(super) fn refusal(clock: &Clock, snapshot: &Snapshot) -> String {
    let table = clock.closed_through.unwrap_or(i64::MIN);
    if table == snapshot.closed_through {
        format!(
            "the table already holds Insights state through the snapshot's minute, {}: these \
             logs were backfilled already, or the deployment evaluated exactly this far (a load \
             would replace its key states); --force writes it again",
            minute_text(Some(table))
        )
    } else {
        format!(
            "the table's Insights state is newer than the snapshot: evaluated through {}, the \
             snapshot ends at {}; loading it would lose the minutes in between (the Insights \
             function refuses it too). Backfill logs that reach closer to now, or --force to set \
             the table's clock back to the snapshot's minute and load it",
            minute_text(Some(table)),
            minute_text(Some(snapshot.closed_through))
        )
    }
}
