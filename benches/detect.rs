//! Detection cost on real records, side by side with the select path it runs in:
//! `cargo bench -p trailwatch --bench detect` (scripts/bench.sh runs it).
//!
//! Input: the bench corpus of scripts/gen-corpus.py (`TRAILWATCH_BENCH_CORPUS`, default
//! target/bench-corpus; its first `TRAILWATCH_BENCH_DETECT_MB` MB of JSON, default 200), which
//! resamples every real record of ../shared/data; without it, those real records themselves.
//! Rows, CPU time of the fastest of `TRAILWATCH_BENCH_ROUNDS` (default 3) rounds, interleaved:
//! - the select path as the select function runs it per object: gunzip, split, parse, select,
//!   pack (what detection is added to);
//! - rule evaluation alone on the same records, parsed (the select path hands detection the
//!   record it parsed): the embedded rules as shipped, every embedded rule on, every rule
//!   without the prefilter, and matching without building detections;
//! - the select path with detection (the CPU times added) against the select path, over the
//!   corpus and over the records no rule matches (a quiet account's): the goal is at most 1.10.

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;

use trailwatch::deliver::message::{RecordLocation, DEFAULT_MESSAGE_BYTES};
use trailwatch::detect::rules::OFF_BY_DEFAULT;
use trailwatch::detect::{Detector, RuleOptions, RuleSet, Scratch};
use trailwatch::ingest::log_file::{read_log_file, LogFileLimits};
use trailwatch::ingest::parse_object_key;
use trailwatch::pipeline::{Origin, SelectRun};
use trailwatch::record::Record;
use trailwatch::select::{Matcher, TrailConfig};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

const TRAIL_CONFIG: &str = "events/trail-config.json";

fn main() {
    let rounds: usize = env_number("TRAILWATCH_BENCH_ROUNDS", 3);
    let (files, source) = load_files();
    let raws: Vec<String> = files.iter().flat_map(|(_, gz)| records_of(gz)).collect();
    let records: Vec<Record<'_>> = raws
        .iter()
        .filter_map(|raw| Record::parse(raw).ok())
        .collect();
    let json_mb = raws.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    eprintln!(
        "{source}: {} files, {} records, {json_mb:.0} MB of JSON",
        files.len(),
        records.len()
    );

    let matcher = TrailConfig::from_json(&std::fs::read_to_string(TRAIL_CONFIG).unwrap())
        .expect("the sample trail configuration is valid")
        .compile();
    let shipped = detector(false);
    let every = detector(true);
    // The records no shipped rule matches: what a quiet account's records cost.
    let quiet: Vec<Record<'_>> = records
        .iter()
        .filter(|r| count_matches(&shipped, std::slice::from_ref(r)) == 0)
        .cloned()
        .collect();

    let mut best = [f64::INFINITY; 6];
    let mut found = [0usize; 6];
    for _ in 0..rounds.max(1) {
        let runs: [&dyn Fn() -> usize; 6] = [
            &|| select_files(&files, &matcher),
            &|| evaluate(&shipped, &records, true),
            &|| evaluate(&every, &records, true),
            &|| evaluate(&every, &records, false),
            &|| count_matches(&shipped, &records),
            &|| evaluate(&shipped, &quiet, true),
        ];
        for (i, run) in runs.iter().enumerate() {
            let (cpu, _) = cpu_seconds();
            found[i] = black_box(run());
            best[i] = best[i].min(cpu_seconds().0 - cpu);
        }
    }
    let n = records.len() as f64;
    let rate = |seconds: f64| n / seconds;
    let with = |detect: f64| best[0] + detect;
    let mut out = String::new();
    out.push_str(&format!(
        "### detection ({source}: {} records, {json_mb:.0} MB JSON; CPU seconds, best of {rounds})\n\n",
        records.len()
    ));
    out.push_str(
        "| what | records/s/core | ratio to the select path | goal |\n|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| select path: gunzip + split + parse + select + pack ({} kept) | {} | 1.00 | |\n",
        found[0],
        si(rate(best[0]))
    ));
    let rows = [
        (
            1,
            format!(
                "{} rules as shipped, evaluation alone ({} matches)",
                shipped.rules().len(),
                found[1]
            ),
        ),
        (
            2,
            format!(
                "all {} embedded rules on, evaluation alone ({} matches)",
                every.rules().len(),
                found[2]
            ),
        ),
        (
            3,
            format!(
                "all {} rules without the prefilter ({} matches)",
                every.rules().len(),
                found[3]
            ),
        ),
        (
            4,
            format!(
                "{} rules as shipped, matching only, no detection built ({} matches)",
                shipped.rules().len(),
                found[4]
            ),
        ),
    ];
    for (i, what) in rows {
        out.push_str(&format!(
            "| {what} | {} | {:.3} | |\n",
            si(rate(best[i])),
            best[i] / best[0]
        ));
    }
    for (i, what) in [(1, "as shipped"), (2, "all rules on")] {
        out.push_str(&format!(
            "| select path with detection, {what} | {} | {:.3} | ≤ 1.10 |\n",
            si(rate(with(best[i]))),
            with(best[i]) / best[0]
        ));
    }
    let per_record = |seconds: f64, count: usize| seconds / count.max(1) as f64;
    let quiet_ratio = 1.0 + per_record(best[5], quiet.len()) / per_record(best[0], records.len());
    out.push_str(&format!(
        "| select path with detection, on the {} records no rule matches (a quiet account) | {} | {quiet_ratio:.3} | ≤ 1.10 |\n",
        quiet.len(),
        si(1.0 / (per_record(best[0], records.len()) + per_record(best[5], quiet.len())))
    ));
    println!("{out}");
    let dir = PathBuf::from("target/bench-out");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::File::create(dir.join("detect.md"))
            .and_then(|mut f| f.write_all(out.as_bytes()));
    }
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

/// The select function's work per object, without the network (as benches/pipeline.rs).
fn select_files(files: &[(String, Vec<u8>)], matcher: &Matcher) -> usize {
    let mut kept = 0;
    for (key, gz) in files {
        let origin = Origin {
            bucket: Some("bench-trail-bucket"),
            key,
            parsed: parse_object_key(key),
        };
        let mut run = SelectRun::new(matcher, DEFAULT_MESSAGE_BYTES);
        read_log_file(&gz[..], LogFileLimits::default(), |item| match item.bytes {
            Ok(raw) => run.record(&origin, item.index, raw),
            Err(problem) => run.problem(&origin, Some(item.index), problem),
        })
        .expect("corpus files are valid");
        run.flush();
        black_box(run.take_outbox());
        kept += run.counts.kept;
    }
    kept
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

/// Matches over all records, without building detections: what matching itself costs.
fn count_matches(detector: &Detector, records: &[Record<'_>]) -> usize {
    let mut scratch = Scratch::default();
    let mut matches = 0;
    for record in records {
        detector.evaluate(record, &mut scratch, |_, _| matches += 1);
    }
    matches
}

/// Matches over all records, building each detection as the select function would.
fn evaluate(detector: &Detector, records: &[Record<'_>], prefilter: bool) -> usize {
    let mut scratch = Scratch::default();
    let location = RecordLocation {
        bucket: Some("bench-trail-bucket"),
        key: Some("bench"),
        index: 0,
    };
    let mut matches = 0;
    for record in records {
        if prefilter {
            matches += black_box(detector.detect(record, location, &mut scratch)).len();
        } else {
            detector.evaluate_every_rule(record, |rule, event| {
                black_box(trailwatch::detect::Detection::new(rule, event, location));
                matches += 1;
            });
        }
    }
    matches
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.0} k", x / 1e3)
    }
}
