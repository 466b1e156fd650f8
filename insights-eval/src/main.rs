//! `insights-eval`: runs the scenario families over seeds, volumes and layouts and prints one
//! markdown row per run (see docs/insights-design.md §4 for the command and the figures).
//!
//! ```text
//! insights-eval [--families weekly,dst,monday,ramp] [--seeds 101,102,103]
//!               [--volumes 0.3,1,3,10] [--layout 1x1|AxR] [--config FILE] [--notes]
//! ```
//!
//! After the table: the Insights function's cost for every event generated, at the engine
//! time measured here (`trailwatch::insights::cost`), next to CloudTrail Insights' price.

use std::process::ExitCode;
use std::time::Instant;

use trailwatch::insights::cost::{cost, Workload};
use trailwatch::insights::InsightsConfig;
use trailwatch_insights_eval::{evaluate, Family, Layout, Score, StreamSpec};

struct Options {
    families: Vec<Family>,
    seeds: Vec<u64>,
    volumes: Vec<f64>,
    layout: Layout,
    config: InsightsConfig,
    notes: bool,
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    text.split(',')
        .map(|s| parse(s.trim()).ok_or_else(|| format!("cannot read '{s}'")))
        .collect()
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        families: Family::ALL.to_vec(),
        seeds: vec![101, 102, 103],
        volumes: vec![0.3, 1.0, 3.0, 10.0],
        layout: Layout::Single,
        config: InsightsConfig::default(),
        notes: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--notes" {
            o.notes = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--families" => o.families = list(&value, Family::from_name)?,
            "--seeds" => o.seeds = list(&value, |s| s.parse().ok())?,
            "--volumes" => o.volumes = list(&value, |s| s.parse().ok())?,
            "--layout" => {
                let (a, r) = value.split_once('x').ok_or("--layout is AxR")?;
                let (accounts, regions) = (
                    a.parse().map_err(|_| "accounts")?,
                    r.parse().map_err(|_| "regions")?,
                );
                o.layout = if (accounts, regions) == (1, 1) {
                    Layout::Single
                } else {
                    Layout::Organization { accounts, regions }
                };
            }
            "--config" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                o.config = InsightsConfig::from_json(&text).map_err(|e| format!("{value}: {e}"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn row(label: &str, s: &Score, extra: &str) {
    let latency = if s.emit_latencies.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{:.1}",
            s.emit_latencies.iter().sum::<i64>() as f64 / s.emit_latencies.len() as f64
        )
    };
    println!(
        "| {label} | {:.3} | {:.3} | {:.3} | {:.2} | {}/{} | {} | {latency} | {extra} |",
        s.precision(),
        s.recall(),
        s.f1(),
        s.false_per_day(),
        s.detected,
        s.positives,
        s.false_starts,
    );
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("insights-eval: {e}");
            return ExitCode::from(2);
        }
    };
    println!("| family | layout | seed | volume | precision | recall | F1 | false Starts/day | detected | false | emit latency min | keys, state B mean/max, events, s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut overall = Score::default();
    let mut workload = Workload::default();
    for &family in &o.families {
        for &volume in &o.volumes {
            for &seed in &o.seeds {
                let spec = StreamSpec {
                    layout: o.layout,
                    ..StreamSpec::new(family, seed, volume)
                };
                let started = Instant::now();
                let e = evaluate(&spec, &o.config);
                let extra = format!(
                    "{}, {:.0}/{}, {}, {:.1}",
                    e.keys,
                    e.state_bytes_mean,
                    e.state_bytes_max,
                    e.events,
                    started.elapsed().as_secs_f64()
                );
                let label = format!(
                    "{} | {} | {seed} | {volume}",
                    family.name(),
                    o.layout.name()
                );
                row(&label, &e.score, &extra);
                if o.notes {
                    for n in &e.score.notes {
                        println!("|  ↳ {n} |||||||||||");
                    }
                }
                overall.merge(&e.score);
                // Generated events are write management calls: CloudTrail Insights analyses
                // each twice (API call rate and API error rate).
                workload.analysed_call_rate += e.events;
                workload.analysed_error_rate += e.events;
                workload.records += e.events;
                workload.key_minutes += e.key_minutes;
                workload.insight_records += e.insight_records;
                workload.cpu_seconds += e.engine_seconds;
            }
        }
    }
    row("**all** | | | ", &overall, "");
    print_cost(&workload);
    ExitCode::SUCCESS
}

fn print_cost(w: &Workload) {
    let c = cost(w);
    let (ours, theirs) = c.per_million(w);
    println!(
        "\ncost: {} events ({} analysed by CloudTrail's two types), {} key-minutes, {} Insights records, {:.1} engine s (one core)",
        w.records,
        w.analysed_call_rate + w.analysed_error_rate,
        w.key_minutes,
        w.insight_records,
        w.cpu_seconds
    );
    println!(
        "cost: trailwatch USD {:.4} (Lambda {:.4}, DynamoDB writes {:.4}, reads {:.4}, EventBridge {:.4}) vs CloudTrail Insights USD {:.4}: per million analysed events {ours:.3} vs {theirs:.3} ({:.1}%)",
        c.trailwatch(),
        c.lambda,
        c.dynamodb_writes,
        c.dynamodb_reads,
        c.eventbridge,
        c.cloudtrail_insights,
        100.0 * ours / theirs.max(f64::MIN_POSITIVE)
    );
}
