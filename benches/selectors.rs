//! Evaluations per second on one core: compiled matcher vs reference interpreter, over real
//! records, as the number of selector values grows. `cargo bench -p trailwatch --bench selectors`
//! (`-- StartsWith --compiled-only`: only the rows naming StartsWith, without the interpreter).
//!
//! Records: every real record of `../shared/data`, turned into an S3 data event (eventCategory
//! Data, one `AWS::S3::Object` resource `arn:aws:s3:::bench-<n>/<eventName>/<i>`) so that data
//! selector conditions are evaluated on each; eventName, eventSource and userIdentity stay real.
//! Each configuration is one advanced selector: `eventCategory Equals Data`, `resources.type
//! Equals AWS::S3::Object` (2 values) plus the condition under test with 1, 48 or 498 values —
//! 3, 50 and 500 values in total, 500 being CloudTrail's limit per trail (the six-operator row
//! starts at 6 + 2). One value per operator can match; the others are realistic fillers that
//! never do, so rows differ only in the number of values, not in what is kept.

#[path = "../tests/support/select_data.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trailwatch::record::Record;
use trailwatch::select::{interpret, TrailConfig};

const VARIABLE_VALUES: [usize; 3] = [1, 48, 498];
const FIXED_VALUES: usize = 2;
const MIN_RUN: Duration = Duration::from_millis(150);
const REPEATS: usize = 5;

fn bench_records() -> Vec<Record<'static>> {
    support::real_records()
        .into_iter()
        .enumerate()
        .filter_map(|(i, real)| {
            let mut v = real.value;
            let name = v
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string();
            v["eventCategory"] = json!("Data");
            v["managementEvent"] = json!(false);
            v["resources"] = json!([{"type": "AWS::S3::Object",
                                     "ARN": format!("arn:aws:s3:::bench-{}/{name}/{i}", i % 97)}]);
            let text: &'static str = Box::leak(v.to_string().into_boxed_str());
            Record::parse(text).ok()
        })
        .collect()
}

/// The most frequent value of `key` over the records (ties by value).
fn most_frequent<'r>(
    records: &'r [Record<'_>],
    key: impl Fn(&'r Record<'_>) -> Option<&'r str>,
) -> String {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for r in records {
        if let Some(v) = key(r) {
            *counts.entry(v).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// `first` followed by fillers up to `n` values. Fillers never match a record but look like
/// real values (shared ARN prefixes, API-like names), so only the number of values changes
/// from row to row, not what is kept.
fn with_fillers(first: &str, n: usize, filler: impl Fn(usize) -> String) -> Vec<String> {
    std::iter::once(first.to_string())
        .chain((0..n.saturating_sub(1)).map(filler))
        .collect()
}

fn condition(shape: &str, n: usize, records: &[Record<'_>]) -> Vec<Value> {
    let top_name = most_frequent(records, |r| r.event_name());
    let identity_suffix = most_frequent(records, |r| {
        let arn = r.user_identity_arn()?;
        arn.get(arn.len().saturating_sub(8)..)
    });
    let name_filler = |j: usize| format!("SyntheticApi{j}");
    let arn_filler = |j: usize| format!("arn:aws:s3:::archive-{j}/");
    let identity_filler = |j: usize| format!("/nobody-{j}");
    match shape {
        "Equals eventName" => {
            vec![json!({"Field": "eventName", "Equals": with_fillers(&top_name, n, name_filler)})]
        }
        "StartsWith resources.ARN" => vec![json!({"Field": "resources.ARN",
            "StartsWith": with_fillers("arn:aws:s3:::bench-1", n, arn_filler)})],
        "EndsWith userIdentity.arn" => vec![json!({"Field": "userIdentity.arn",
            "EndsWith": with_fillers(&identity_suffix, n, identity_filler)})],
        _ => {
            // The six operators over three fields; values spread evenly, one real each.
            let k = |i: usize| n / 6 + usize::from(i < n % 6);
            vec![
                json!({"Field": "resources.ARN",
                       "StartsWith": with_fillers("arn:aws:s3:::bench-", k(0), arn_filler),
                       "NotStartsWith": with_fillers("arn:aws:s3:::bench-5", k(1), arn_filler)}),
                json!({"Field": "userIdentity.arn",
                       "EndsWith": with_fillers(&identity_suffix, k(2), identity_filler),
                       "NotEndsWith": with_fillers("/nobody", k(3), identity_filler)}),
                json!({"Field": "eventName",
                       "Equals": with_fillers(&top_name, k(4), name_filler),
                       "NotEquals": with_fillers("NeverCalled", k(5), name_filler)}),
            ]
        }
    }
}

fn config(conditions: Vec<Value>) -> TrailConfig {
    let mut fs = vec![
        json!({"Field": "eventCategory", "Equals": ["Data"]}),
        json!({"Field": "resources.type", "Equals": ["AWS::S3::Object"]}),
    ];
    fs.extend(conditions);
    let value = json!({"AdvancedEventSelectors": [{"Name": "bench", "FieldSelectors": fs}]});
    TrailConfig::from_value(&value)
        .unwrap_or_else(|e| panic!("benchmark configuration refused: {e}"))
}

/// CPU time of this thread (Linux `/proc/thread-self/schedstat`, first field, nanoseconds):
/// the machine is shared, so wall time would measure the neighbours too.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Evaluations per CPU second of `decide` over `records`: the best of REPEATS runs of at least
/// MIN_RUN of CPU time each (wall time where the kernel does not report thread CPU time); the
/// best run is the one least disturbed by neighbours sharing the core's caches. Returns the
/// rate and how many records one pass keeps.
fn rate(records: &[Record<'_>], mut decide: impl FnMut(&Record<'_>) -> bool) -> (f64, usize) {
    let clock = || thread_cpu().unwrap_or_else(|| WALL_START.with(|s| s.elapsed()));
    let mut best = 0f64;
    let mut kept_per_pass = 0;
    for _ in 0..REPEATS {
        let mut evaluations = 0usize;
        let mut kept = 0usize;
        let start = clock();
        while clock() - start < MIN_RUN {
            for record in records {
                kept += usize::from(decide(black_box(record)));
            }
            evaluations += records.len();
        }
        let spent = (clock() - start).as_secs_f64();
        best = best.max(evaluations as f64 / spent);
        kept_per_pass = kept * records.len() / evaluations.max(1);
    }
    (best, kept_per_pass)
}

thread_local! {
    static WALL_START: Instant = Instant::now();
}

/// Arguments (after `--`): words that pick the rows whose condition contains one of them, and
/// `--compiled-only` to skip the interpreter (for profiling the compiled matcher alone).
fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let compiled_only = args.iter().any(|a| a == "--compiled-only");
    let words: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let records = bench_records();
    println!(
        "{} real records as S3 data events; one thread; rates per CPU second ({}), best of {} runs of >= {} ms per engine\n",
        records.len(),
        if thread_cpu().is_some() { "thread CPU time" } else { "wall time" },
        REPEATS,
        MIN_RUN.as_millis()
    );
    println!(
        "{:<28} {:>7} {:>7} {:>16} {:>16} {:>9} {:>9}",
        "condition", "values", "kept", "compiled M/s", "interpreter M/s", "speedup", "ns/eval"
    );
    for shape in [
        "Equals eventName",
        "StartsWith resources.ARN",
        "EndsWith userIdentity.arn",
        "mixed, six operators",
    ] {
        if !words.is_empty() && !words.iter().any(|w| shape.contains(w.as_str())) {
            continue;
        }
        let mut first = None;
        for n in VARIABLE_VALUES {
            let n = if shape.starts_with("mixed") {
                n.max(6)
            } else {
                n
            };
            let config = config(condition(shape, n, &records));
            let matcher = config.compile();
            let (compiled, kept) = rate(&records, |r| matcher.evaluate(r).is_keep());
            let (interpreted, kept_i) = if compiled_only {
                (f64::NAN, kept)
            } else {
                rate(&records, |r| interpret(&config, r).is_keep())
            };
            assert_eq!(kept, kept_i, "engines disagree on {shape} with {n} values");
            println!(
                "{:<28} {:>7} {:>7} {:>16.2} {:>16.2} {:>8.1}x {:>9.1}",
                shape,
                n + FIXED_VALUES,
                kept,
                compiled / 1e6,
                interpreted / 1e6,
                compiled / interpreted,
                1e9 / compiled
            );
            let first_rate = *first.get_or_insert(compiled);
            if n + FIXED_VALUES >= 500 {
                println!(
                    "{:<28} compiled at 500 values is {:.2}x slower than at {} values",
                    "",
                    first_rate / compiled,
                    VARIABLE_VALUES[0].max(if shape.starts_with("mixed") { 6 } else { 1 })
                        + FIXED_VALUES
                );
            }
        }
    }
}
