//! Detection cost on real records, measured inside the select path it runs in:
//! `cargo bench -p trailwatch --bench detect` (scripts/bench.sh runs it).
//!
//! Input: the bench corpus of scripts/gen-corpus.py (`TRAILWATCH_BENCH_CORPUS`, default
//! target/bench-corpus; its first `TRAILWATCH_BENCH_DETECT_MB` MB of JSON, default 200), which
//! resamples every real record of ../shared/data; without it, those real records themselves.
//! A second corpus holds only the records no shipped rule matches (a quiet account's).
//!
//! Per log file, as the select function reads one object: gunzip, split, parse, select, pack
//! (the select path), then for each record a second `Record::parse` and, in the detection rows,
//! the rules on that record while its bytes are still in cache, as they will be when the select
//! function hands detection the record it parsed. Detection's cost is the difference between
//! the rows with and without rules (the second parse cancels out); the select path with
//! detection is the select path plus that cost, and the goal is at most 1.10 of the select
//! path. CPU time, the fastest of `TRAILWATCH_BENCH_ROUNDS` (default 3) interleaved rounds.

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;

use trailwatch::deliver::message::{RecordLocation, DEFAULT_MESSAGE_BYTES};
use trailwatch::detect::rules::OFF_BY_DEFAULT;
use trailwatch::detect::{Detector, RuleOptions, RuleSet, Scratch};
use trailwatch::ingest::{parse_object_key, read_log_file, LogFileLimits};
use trailwatch::record::Record;
use trailwatch::select::{Matcher, Origin, SelectRun, TrailConfig};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

const TRAIL_CONFIG: &str = "events/trail-config.json";

type LogFiles = Vec<(String, Vec<u8>)>;

/// What the rows evaluate after selecting each record.
#[derive(Clone, Copy)]
enum Rules<'d> {
    None,
    Prefiltered(&'d Detector),
    Every(&'d Detector),
}

fn main() {
    let rounds: usize = env_number("TRAILWATCH_BENCH_ROUNDS", 3);
    let (files, source) = load_files();
    let matcher = TrailConfig::from_json(&std::fs::read_to_string(TRAIL_CONFIG).unwrap())
        .expect("the sample trail configuration is valid")
        .compile();
    let shipped = detector(false);
    let every = detector(true);
    let quiet = quiet_files(&files, &shipped);
    let mut out = String::new();
    for (name, corpus) in [
        (source.as_str(), &files),
        ("its records no rule matches", &quiet),
    ] {
        table(name, corpus, &matcher, &shipped, &every, rounds, &mut out);
    }
    println!("{out}");
    let dir = PathBuf::from("target/bench-out");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::File::create(dir.join("detect.md"))
            .and_then(|mut f| f.write_all(out.as_bytes()));
    }
}

fn table(
    name: &str,
    files: &LogFiles,
    matcher: &Matcher,
    shipped: &Detector,
    every: &Detector,
    rounds: usize,
    out: &mut String,
) {
    let variants = [
        Rules::None,
        Rules::Prefiltered(shipped),
        Rules::Prefiltered(every),
        Rules::Every(every),
    ];
    let mut best = [f64::INFINITY; 5];
    let mut counts = [(0, 0); 5];
    for _ in 0..rounds.max(1) {
        let (cpu, _) = cpu_seconds();
        counts[0] = black_box(select_files(files, matcher, None));
        best[0] = best[0].min(cpu_seconds().0 - cpu);
        for (i, rules) in variants.iter().enumerate() {
            let (cpu, _) = cpu_seconds();
            counts[i + 1] = black_box(select_files(files, matcher, Some(*rules)));
            best[i + 1] = best[i + 1].min(cpu_seconds().0 - cpu);
        }
    }
    let (records, _) = counts[0];
    let select = best[0];
    let rate = |seconds: f64| si(records as f64 / seconds);
    out.push_str(&format!(
        "### detection in the select path ({name}: {} files, {records} records; CPU s, best of {rounds})\n\n",
        files.len()
    ));
    out.push_str(
        "| what | records/s/core | ratio to the select path | goal |\n|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| select path: gunzip + split + parse + select + pack | {} | 1.000 | |\n",
        rate(select)
    ));
    let rows = [
        (
            2,
            format!("{} rules as shipped", shipped.rules().len()),
            "≤ 1.10",
        ),
        (
            3,
            format!("all {} embedded rules on", every.rules().len()),
            "",
        ),
        (
            4,
            format!("all {} rules, no prefilter", every.rules().len()),
            "",
        ),
    ];
    for (i, what, goal) in rows {
        // best[1] is the select path plus the second parse without rules.
        let detection = (best[i] - best[1]).max(0.0);
        out.push_str(&format!(
            "| select path with detection, {what} ({} matches) | {} | {:.3} | {goal} |\n",
            counts[i].1,
            rate(select + detection),
            (select + detection) / select
        ));
    }
    out.push('\n');
}

/// The select function's work per object, without the network (as benches/pipeline.rs), and
/// with `rules` the rules on each record after selecting it. Returns (records, matches).
fn select_files(files: &LogFiles, matcher: &Matcher, rules: Option<Rules<'_>>) -> (usize, usize) {
    let mut records = 0;
    let mut matches = 0;
    let mut scratch = Scratch::default();
    for (key, gz) in files {
        let origin = Origin {
            bucket: Some("bench-trail-bucket"),
            key,
            parsed: parse_object_key(key),
        };
        let mut run = SelectRun::new(matcher, DEFAULT_MESSAGE_BYTES);
        read_log_file(&gz[..], LogFileLimits::default(), |item| {
            let (index, raw) = (item.index, item.bytes.as_ref().ok().copied());
            run.take(&origin, item);
            if let (Some(rules), Some(Ok(record))) = (rules, raw.map(Record::parse)) {
                let location = RecordLocation {
                    bucket: origin.bucket,
                    key: Some(key),
                    index,
                };
                matches += detect(rules, &record, location, &mut scratch);
            }
        })
        .expect("corpus files are valid");
        run.flush();
        black_box(run.take_outbox());
        records += run.counts().records_read;
    }
    (records, matches)
}

/// The detections of one record, built as the select function would build them.
fn detect(
    rules: Rules<'_>,
    record: &Record<'_>,
    at: RecordLocation<'_>,
    scratch: &mut Scratch,
) -> usize {
    match rules {
        Rules::None => 0,
        Rules::Prefiltered(detector) => black_box(detector.detect(record, at, scratch)).len(),
        Rules::Every(detector) => {
            let mut n = 0;
            detector.evaluate_every_rule(record, |rule, event| {
                black_box(trailwatch::detect::Detection::new(rule, event, at));
                n += 1;
            });
            n
        }
    }
}

/// The corpus's records no shipped rule matches, as log files of the same sizes.
fn quiet_files(files: &LogFiles, shipped: &Detector) -> LogFiles {
    let mut scratch = Scratch::default();
    files
        .iter()
        .map(|(key, gz)| {
            let kept: Vec<String> = records_of(gz)
                .into_iter()
                .filter(|raw| {
                    Record::parse(raw).is_ok_and(|r| {
                        let mut matched = false;
                        shipped.evaluate(&r, &mut scratch, |_, _| matched = true);
                        !matched
                    })
                })
                .collect();
            let text = format!("{{\"Records\":[{}]}}", kept.join(","));
            (key.clone(), gzip(&text))
        })
        .collect()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (object key, gzip bytes) of the corpus files, up to the size limit, or the real records of
/// ../shared/data as one file per source file.
fn load_files() -> (Vec<(String, Vec<u8>)>, String) {
    let dir = PathBuf::from(
        std::env::var("TRAILWATCH_BENCH_CORPUS").unwrap_or_else(|_| "target/bench-corpus".into()),
    );
    let limit = env_number("TRAILWATCH_BENCH_DETECT_MB", 200) as u64 * 1_000_000;
    if let Ok(bytes) = std::fs::read(dir.join("manifest.json")) {
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest is JSON");
        let mut files = Vec::new();
        let mut json = 0;
        for entry in manifest["files"].as_array().expect("files") {
            if json >= limit {
                break;
            }
            let key = entry["path"].as_str().expect("path").to_owned();
            json += entry["uncompressed"].as_u64().unwrap_or(0);
            let gz = std::fs::read(dir.join(&key)).expect("corpus file readable");
            files.push((key, gz));
        }
        return (files, format!("bench corpus {}", dir.display()));
    }
    eprintln!(
        "no corpus at {} (scripts/gen-corpus.py): the real records of ../shared/data",
        dir.display()
    );
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let mut files = Vec::new();
    for folder in ["invictus-ir", "stratus-red-team"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(data.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let records = value.get("Records").cloned().unwrap_or(value);
            let text = serde_json::json!({ "Records": records }).to_string();
            let key = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((key, gzip(&text)));
        }
    }
    (files, "../shared/data".to_owned())
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// The records of a log file, as the select path hands them on.
fn records_of(gz: &[u8]) -> Vec<String> {
    let mut records = Vec::new();
    read_log_file(gz, LogFileLimits::default(), |item| {
        if let Ok(raw) = item.bytes {
            records.push(raw.to_owned());
        }
    })
    .expect("corpus files are valid");
    records
}

fn detector(every_rule: bool) -> Detector {
    let mut options = RuleOptions {
        embedded: true,
        ..RuleOptions::default()
    };
    if every_rule {
        options.enable = OFF_BY_DEFAULT
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
    }
    Detector::new(RuleSet::load(&options).rules)
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.0} k", x / 1e3)
    }
}
