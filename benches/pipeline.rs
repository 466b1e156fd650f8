//! The pipeline benchmark of issue 6: one table, every figure a ratio to a baseline measured in
//! the same run on the same input. Run it with `scripts/bench.sh` (which builds the functions
//! and generates the corpus first); alone: `cargo bench -p trailwatch --bench pipeline`.
//!
//! Figures are per core: CPU time (user + system, from /proc) of this single-threaded process
//! or of the baseline's processes, so other work on a shared machine costs wall time, not the
//! figures. Each measurement is repeated and the fastest round kept.
//!
//! Modes used internally: `--rss FILE` runs the select path over one file and prints its peak
//! RSS (run in a child process so the corpus this process holds does not count).
//!
//! Long by design: every stage's row with its baseline, measured side by side in one run.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use trailwatch::deliver::message::{open_held, seal_held, DEFAULT_MESSAGE_BYTES};
use trailwatch::deliver::{plan_batches, BatchLimits, LogEvent, MessagePacker};
use trailwatch::ingest::{parse_object_key, read_log_file, LogFileLimits};
use trailwatch::record::Record;
use trailwatch::select::{Matcher, Origin, SelectRun, TrailConfig, SEND_EVERY_MESSAGES};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{cpu_seconds, measure_child, Timing};

const CHUNK: usize = 64 * 1024;
const TRAIL_CONFIG: &str = "events/trail-config.json";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        return rss_child(Path::new(&args[i + 1]));
    }
    let filter: Option<&str> = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let corpus_dir = PathBuf::from(
        std::env::var("TRAILWATCH_BENCH_CORPUS").unwrap_or_else(|_| "target/bench-corpus".into()),
    );
    let rounds: usize = std::env::var("TRAILWATCH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let manifest: serde_json::Value = match std::fs::read(corpus_dir.join("manifest.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("manifest.json is JSON"),
        Err(e) => {
            eprintln!(
                "no corpus at {} ({e}): run scripts/gen-corpus.py (or scripts/bench.sh)",
                corpus_dir.display()
            );
            std::process::exit(2);
        }
    };
    let matcher = TrailConfig::from_json(&std::fs::read_to_string(TRAIL_CONFIG).unwrap())
        .expect("the sample trail configuration is valid")
        .compile();
    if filter == Some("profile") {
        // The select path alone, nothing else in the process: what scripts/profile.sh samples.
        let corpus = Corpus::load(&corpus_dir, &manifest);
        for _ in 0..rounds {
            std::hint::black_box(select_files(&corpus.all(), &matcher));
        }
        return;
    }
    let mut table = Table::default();
    let wants = |section: &str| filter.is_none_or(|f| section.contains(f));

    if wants("select") || wants("deliver") {
        eprintln!("loading the corpus into memory…");
        let corpus = Corpus::load(&corpus_dir, &manifest);
        if wants("select") {
            bench_select(&corpus, &matcher, rounds, &mut table);
        }
        if wants("deliver") {
            bench_deliver(&corpus, &matcher, rounds, &mut table);
        }
    }
    if wants("memory") {
        bench_memory(&corpus_dir, &manifest, &mut table);
    }
    if wants("cold") {
        bench_functions(&mut table);
    }
    table.print(&manifest, rounds);
}

// ---------------------------------------------------------------------------------------------
// Corpus

struct LogFile {
    key: String,
    path: PathBuf,
    gzip: Vec<u8>,
}

struct Corpus {
    files: Vec<LogFile>,
    /// Indices into `files` of the subset the Python and jq baselines read.
    subset: Vec<usize>,
}

impl Corpus {
    fn load(dir: &Path, manifest: &serde_json::Value) -> Corpus {
        let subset_keys: std::collections::HashSet<&str> = manifest["subset"]
            .as_array()
            .expect("subset")
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        let mut files = Vec::new();
        let mut subset = Vec::new();
        for entry in manifest["files"].as_array().expect("files") {
            let key = entry["path"].as_str().expect("path").to_owned();
            let path = dir.join(&key);
            let gzip = std::fs::read(&path).expect("corpus file readable");
            if subset_keys.contains(key.as_str()) {
                subset.push(files.len());
            }
            files.push(LogFile { key, path, gzip });
        }
        Corpus { files, subset }
    }

    fn all(&self) -> Vec<&LogFile> {
        self.files.iter().collect()
    }

    fn subset(&self) -> Vec<&LogFile> {
        self.subset.iter().map(|&i| &self.files[i]).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time

/// Runs `f` `rounds` times, keeping the fastest round (by CPU time) and the value of the last.
fn measure<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut best = Timing {
        cpu: f64::INFINITY,
        wall: f64::INFINITY,
    };
    let mut value = None;
    for _ in 0..rounds.max(1) {
        let (cpu0, _) = cpu_seconds();
        let t0 = Instant::now();
        value = Some(f());
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds().0 - cpu0;
        if cpu < best.cpu {
            best = Timing { cpu, wall };
        }
    }
    (best, value.expect("at least one round"))
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest + parse + select

#[derive(Default, Clone, Copy)]
struct SelectTotals {
    records: usize,
    kept: usize,
    uncompressed: u64,
    message_bytes: usize,
}

/// The select function's work without the network: one run per object, as one SQS message
/// names one object.
fn select_files(files: &[&LogFile], matcher: &Matcher) -> SelectTotals {
    let mut totals = SelectTotals::default();
    for file in files {
        let origin = Origin {
            bucket: Some("bench-trail-bucket"),
            key: &file.key,
            parsed: parse_object_key(&file.key),
        };
        let mut run = SelectRun::new(matcher, DEFAULT_MESSAGE_BYTES);
        let read = read_log_file(&file.gzip[..], LogFileLimits::default(), |item| {
            run.take(&origin, item);
        });
        totals.uncompressed += read.expect("corpus files are valid");
        run.flush();
        totals.message_bytes += run
            .take_outbox()
            .iter()
            .map(|m| m.body.len())
            .sum::<usize>();
        totals.records += run.counts().records_read;
        totals.kept += run.counts().kept;
    }
    totals
}

/// Where the time goes: the reader alone (gunzip + split into records), then with
/// `Record::parse` of each record.
fn split_files(files: &[&LogFile], parse: bool) -> usize {
    let mut ok = 0;
    for file in files {
        read_log_file(&file.gzip[..], LogFileLimits::default(), |item| {
            if let Ok(raw) = item.bytes {
                if !parse || Record::parse(raw).is_ok() {
                    ok += 1;
                }
            }
        })
        .expect("corpus files are valid");
    }
    ok
}

/// gunzip alone, with the decoder and chunking the log-file reader uses, into a sink.
fn gunzip_files(files: &[&LogFile]) -> u64 {
    let mut total = 0;
    for file in files {
        let mut decoder = flate2::write::MultiGzDecoder::new(CountingSink(0));
        for chunk in file.gzip.chunks(CHUNK) {
            decoder.write_all(chunk).expect("valid gzip");
        }
        decoder.try_finish().expect("valid gzip");
        total += decoder.get_ref().0;
    }
    total
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const JQ_SELECT: &str = r#".Records[]
| (.eventCategory // (if .eventType == "AwsCloudTrailInsight" then "Insight"
    elif .eventType == "AwsVpceEvent" then "NetworkActivity"
    elif .managementEvent == false then "Data" else "Management" end)) as $cat
| select(($cat == "Management" and .eventSource != "kms.amazonaws.com")
    or ($cat == "Data" and .readOnly == false
        and any(.resources[]?; .type == "AWS::S3::Object")
        and any(.resources[]?; (.ARN // "") | startswith("arn:aws:s3:::audit-bucket/"))))
| {stream: "\(.recipientAccountId)_CloudTrail_\(.awsRegion)", record: .}"#;

fn bench_select(corpus: &Corpus, matcher: &Matcher, rounds: usize, table: &mut Table) {
    let all = corpus.all();
    eprintln!("1. ingest + parse + select over {} files…", all.len());
    // Interleave the two so that machine noise hits both alike.
    let mut gunzip = Timing {
        cpu: f64::INFINITY,
        wall: 0.0,
    };
    let mut select = Timing {
        cpu: f64::INFINITY,
        wall: 0.0,
    };
    let mut split = gunzip;
    let mut parse = gunzip;
    let mut totals = SelectTotals::default();
    let mut gunzip_bytes = 0;
    for _ in 0..rounds.max(1) {
        for (parsing, best) in [(false, &mut split), (true, &mut parse)] {
            let (t, _) = measure(1, || split_files(&all, parsing));
            if t.cpu < best.cpu {
                *best = t;
            }
        }
        let (t, bytes) = measure(1, || gunzip_files(&all));
        gunzip_bytes = bytes;
        if t.cpu < gunzip.cpu {
            gunzip = t;
        }
        let (t, got) = measure(1, || select_files(&all, matcher));
        totals = got;
        if t.cpu < select.cpu {
            select = t;
        }
    }
    assert_eq!(gunzip_bytes, totals.uncompressed);
    let mb = totals.uncompressed as f64 / 1e6;
    let records = totals.records as f64;
    table.row(Row {
        section: "1. ingest+parse+select",
        what: format!(
            "{} files, {:.0} MB, {} records ({} kept); wall {:.1} s vs {:.1} s",
            all.len(),
            mb,
            totals.records,
            totals.kept,
            select.wall,
            gunzip.wall
        ),
        figure: format!(
            "{} rec/s/core, {:.0} MB/s",
            si(records / select.cpu),
            mb / select.cpu
        ),
        baseline: format!(
            "(a) gunzip alone (flate2 zlib-rs): {:.0} MB/s",
            mb / gunzip.cpu
        ),
        ratio: gunzip.cpu / select.cpu,
        target: Some(0.8),
    });

    for (label, t) in [
        ("gunzip + split into records (LogFileDecoder)", &split),
        ("… + Record::parse of each record", &parse),
    ] {
        table.row(Row {
            section: "1. where the time goes",
            what: label.into(),
            figure: format!("{:.0} MB/s", mb / t.cpu),
            baseline: format!("gunzip alone {:.0} MB/s", mb / gunzip.cpu),
            ratio: gunzip.cpu / t.cpu,
            target: None,
        });
    }

    // The baselines read a subset; trailwatch is measured again on exactly that subset.
    let subset = corpus.subset();
    // Repeated inside each round so that the CPU clock's 10 ms ticks do not matter.
    let sub_mb = subset.iter().map(|f| f.gzip.len()).sum::<usize>() as f64 * 6.5 / 1e6;
    let reps = (1000.0 / sub_mb.max(1.0)).ceil() as usize;
    let (mut sub, sub_totals) = measure(rounds, || {
        let mut totals = SelectTotals::default();
        for _ in 0..reps {
            totals = select_files(&subset, matcher);
        }
        totals
    });
    sub.cpu /= reps as f64;
    let sub_mb = sub_totals.uncompressed as f64 / 1e6;
    let list = std::env::temp_dir().join(format!("trailwatch-bench-subset-{}", std::process::id()));
    std::fs::write(
        &list,
        subset
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    eprintln!(
        "   baselines over a subset of {} files, {:.0} MB…",
        subset.len(),
        sub_mb
    );

    let mut python = Command::new("python3");
    python
        .arg("scripts/bench_select.py")
        .arg(format!("@{}", list.display()));
    let (py, out) = measure_child(python);
    let py_out: serde_json::Value = serde_json::from_str(out.trim()).expect("python prints JSON");
    let py_kept = py_out["kept"].as_u64().unwrap_or(0);
    table.row(Row {
        section: "1. vs Python",
        what: format!(
            "subset: {} files, {:.0} MB, {} records; kept: trailwatch {}, python {}",
            subset.len(),
            sub_mb,
            sub_totals.records,
            sub_totals.kept,
            py_kept
        ),
        figure: format!(
            "{} rec/s/core, {:.0} MB/s",
            si(sub_totals.records as f64 / sub.cpu),
            sub_mb / sub.cpu
        ),
        baseline: format!(
            "(b) Python gzip+json: {} rec/s/core, {:.1} MB/s",
            si(sub_totals.records as f64 / py.cpu),
            sub_mb / py.cpu
        ),
        ratio: py.cpu / sub.cpu,
        target: Some(15.0),
    });

    let mut jq = Command::new("sh");
    jq.arg("-c")
        .arg(r#"xargs gzip -dc < "$1" | jq -c "$2" | wc -l"#)
        .arg("sh")
        .arg(&list)
        .arg(JQ_SELECT);
    let (jq_t, out) = measure_child(jq);
    table.row(Row {
        section: "1. vs jq",
        what: format!("same subset; kept: jq {} (no dedupe/packing)", out.trim()),
        figure: format!(
            "{} rec/s/core, {:.0} MB/s",
            si(sub_totals.records as f64 / sub.cpu),
            sub_mb / sub.cpu
        ),
        baseline: format!(
            "(c) gzip -dc | jq: {} rec/s/core, {:.1} MB/s",
            si(sub_totals.records as f64 / jq_t.cpu),
            sub_mb / jq_t.cpu
        ),
        ratio: jq_t.cpu / sub.cpu,
        target: Some(30.0),
    });
    let _ = std::fs::remove_file(&list);
}

// ---------------------------------------------------------------------------------------------
// 2. Batch planning + serialisation for delivery

/// The PutLogEvents request body (awsJson1_1), as the SDK serialises it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsRequest<'a> {
    log_events: Vec<InputLogEvent<'a>>,
    log_group_name: &'a str,
    log_stream_name: &'a str,
}

#[derive(Serialize)]
struct InputLogEvent<'a> {
    message: &'a str,
    timestamp: i64,
}

fn bench_deliver(corpus: &Corpus, matcher: &Matcher, rounds: usize, table: &mut Table) {
    eprintln!("2. batch planning + serialisation…");
    // The delivery input: what select kept from the subset, grouped by stream as the
    // messages carry it.
    let mut streams: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in corpus.subset() {
        let origin = Origin {
            bucket: None,
            key: &file.key,
            parsed: parse_object_key(&file.key),
        };
        let mut run = SelectRun::new(matcher, DEFAULT_MESSAGE_BYTES);
        read_log_file(&file.gzip[..], LogFileLimits::default(), |item| {
            if let Ok(raw) = item.bytes {
                run.record(&origin, item.index, raw);
            }
        })
        .expect("valid corpus file");
        run.flush();
        for message in run.take_outbox() {
            let parsed = trailwatch::deliver::DeliveryMessage::parse(&message.body).unwrap();
            let records = streams.entry(parsed.stream.to_string()).or_default();
            records.extend(parsed.records.iter().map(|r| r.get().to_owned()));
        }
    }
    let events: Vec<(String, Vec<LogEvent<'_>>)> = streams
        .iter()
        .map(|(stream, records)| {
            let events = records
                .iter()
                .map(|raw| {
                    let record = Record::parse(raw).unwrap();
                    LogEvent {
                        timestamp_ms: record.event_time_ms().unwrap(),
                        message: raw,
                        event_id: record.event_id_ref(),
                    }
                })
                .collect();
            (stream.clone(), events)
        })
        .collect();
    let count: usize = events.iter().map(|(_, e)| e.len()).sum();
    let bytes: usize = events
        .iter()
        .flat_map(|(_, e)| e.iter().map(|e| e.message.len()))
        .sum();
    let now_ms = events
        .iter()
        .flat_map(|(_, e)| e.iter().map(|e| e.timestamp_ms))
        .max()
        .unwrap_or(0)
        + 3_600_000;
    let limits = BatchLimits::default();
    let repeat = 20;
    let mut payload: Vec<u8> = Vec::with_capacity(2 << 20);
    let (plan_t, payload_bytes) = measure(rounds, || {
        let mut total = 0usize;
        for _ in 0..repeat {
            for (stream, events) in &events {
                let plan = plan_batches(events, now_ms, Some(90), &limits);
                for batch in &plan.batches {
                    payload.clear();
                    let request = PutLogEventsRequest {
                        log_events: batch
                            .iter()
                            .map(|&i| InputLogEvent {
                                message: events[i].message,
                                timestamp: events[i].timestamp_ms,
                            })
                            .collect(),
                        log_group_name: "CloudTrail/trailwatch",
                        log_stream_name: stream,
                    };
                    serde_json::to_writer(&mut payload, &request).unwrap();
                    total += payload.len();
                }
            }
        }
        total
    });
    let mut copy: Vec<u8> = Vec::with_capacity(bytes);
    let (memcpy_t, copied) = measure(rounds, || {
        let mut total = 0usize;
        for _ in 0..repeat {
            for (_, events) in &events {
                copy.clear();
                for e in events {
                    copy.extend_from_slice(e.message.as_bytes());
                }
                total += std::hint::black_box(&copy).len();
            }
        }
        total
    });
    assert_eq!(copied, bytes * repeat);
    let n = (count * repeat) as f64;
    table.row(Row {
        section: "2. plan+serialise",
        what: format!(
            "{} records, {} streams, {:.0} MB of messages ×{repeat}; payload {:.0} MB",
            count,
            events.len(),
            bytes as f64 / 1e6,
            payload_bytes as f64 / 1e6 / repeat as f64
        ),
        figure: format!(
            "{} rec/s/core, {:.0} MB/s",
            si(n / plan_t.cpu),
            (bytes * repeat) as f64 / 1e6 / plan_t.cpu
        ),
        baseline: format!(
            "memcpy of the same bytes: {} rec/s, {:.0} MB/s",
            si(n / memcpy_t.cpu.max(0.01)),
            (bytes * repeat) as f64 / 1e6 / memcpy_t.cpu.max(0.01)
        ),
        ratio: memcpy_t.cpu.max(0.01) / plan_t.cpu,
        target: None,
    });

    // Holding back: the same records as held tails, packed, sealed (gzip + base64) and opened
    // again, as deliver does for the records of every call that is not full.
    let (hold_t, sealed_bytes) = measure(rounds, || {
        let mut total = 0usize;
        for _ in 0..repeat {
            for (stream, events) in &events {
                let mut packer =
                    MessagePacker::waiting_since(stream, DEFAULT_MESSAGE_BYTES, Some(1));
                let mut plain = Vec::new();
                for e in events {
                    plain.extend(packer.push(e.message));
                }
                plain.extend(packer.take());
                for envelope in seal_held(stream, &plain, DEFAULT_MESSAGE_BYTES) {
                    total += envelope.len();
                    let opened = open_held(&envelope).unwrap();
                    std::hint::black_box(&opened);
                }
            }
        }
        total
    });
    table.row(Row {
        section: "2. hold back (seal+open)",
        what: format!(
            "the same records as held tails: {:.0} MB sealed in {:.0} MB of envelopes",
            bytes as f64 / 1e6,
            sealed_bytes as f64 / 1e6 / repeat as f64
        ),
        figure: format!(
            "{} rec/s/core, {:.0} MB/s",
            si(n / hold_t.cpu),
            (bytes * repeat) as f64 / 1e6 / hold_t.cpu
        ),
        baseline: format!(
            "plan+serialise of the same records: {} rec/s",
            si(n / plan_t.cpu)
        ),
        ratio: plan_t.cpu / hold_t.cpu,
        target: None,
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Memory

/// Child mode: the select path over one file, streamed from disk in 64 KiB chunks; prints the
/// process's peak RSS in KiB. Messages are taken whenever [`SEND_EVERY_MESSAGES`] wait, as
/// functions/select sends them.
fn rss_child(path: &Path) {
    let matcher = TrailConfig::from_json(&std::fs::read_to_string(TRAIL_CONFIG).unwrap())
        .unwrap()
        .compile();
    let key = path.to_string_lossy().into_owned();
    let origin = Origin {
        bucket: Some("bench-trail-bucket"),
        key: &key,
        parsed: parse_object_key(&key),
    };
    let mut run = SelectRun::new(&matcher, DEFAULT_MESSAGE_BYTES);
    let mut sent = 0usize;
    let file = std::fs::File::open(path).expect("memory test file");
    read_log_file(file, LogFileLimits::default(), |item| {
        if let Ok(raw) = item.bytes {
            run.record(&origin, item.index, raw);
            if run.outbox_len() >= SEND_EVERY_MESSAGES {
                sent += run.take_outbox().len();
            }
        }
    })
    .expect("valid file");
    run.flush();
    sent += run.take_outbox().len();
    println!(
        "{} {} {}",
        peak_rss_kib(),
        run.counts().records_read,
        std::hint::black_box(sent)
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench_memory(dir: &Path, manifest: &serde_json::Value, table: &mut Table) {
    eprintln!("5. memory…");
    let exe = std::env::current_exe().unwrap();
    let mut peaks = Vec::new();
    for name in ["mem-large.json.gz", "mem-small.json.gz"] {
        let path = dir.join(name);
        let out = Command::new(&exe)
            .arg("--rss")
            .arg(&path)
            .stderr(Stdio::inherit())
            .output()
            .expect("memory child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let kib: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
        let records: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let info = &manifest["memory"][name];
        peaks.push((
            name,
            kib / 1024.0,
            records,
            info["compressed"].as_f64().unwrap_or(0.0) / 1e6,
            info["uncompressed"].as_f64().unwrap_or(0.0) / 1e6,
        ));
    }
    memory_rows(
        &peaks[0],
        &peaks[1],
        "messages sent as functions/select sends them",
        table,
    );
}

type Peak<'a> = (&'a str, f64, u64, f64, f64);

fn memory_rows(large: &Peak<'_>, small: &Peak<'_>, how: &str, table: &mut Table) {
    let describe = |p: &Peak<'_>| {
        format!(
            "{:.1} MB gzip / {:.0} MB / {} records: {:.1} MiB",
            p.3, p.4, p.2, p.1
        )
    };
    table.row(Row {
        section: "5. memory (peak RSS)",
        what: format!("select path, {how}, on {}", describe(large)),
        figure: format!("{:.1} MiB", large.1),
        baseline: "≤ 64 MiB absolute".into(),
        ratio: large.1 / 64.0,
        target: Some(-1.0), // lower is better: ratio ≤ 1
    });
    table.row(Row {
        section: "5. memory (peak RSS)",
        what: format!("vs {}", describe(small)),
        figure: format!("+{:.1} MiB", large.1 - small.1),
        baseline: format!("1 MB file: {:.1} MiB; same within 16 MiB", small.1),
        ratio: (large.1 - small.1) / 16.0,
        target: Some(-1.0),
    });
}

// ---------------------------------------------------------------------------------------------
// 6. Binary size and cold start

const FUNCTIONS: [&str; 3] = [
    "trailwatch-select",
    "trailwatch-deliver",
    "trailwatch-insights",
];

fn bench_functions(table: &mut Table) {
    eprintln!("6. binary size and cold start…");
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("release");
    for name in FUNCTIONS {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            eprintln!(
                "   {} missing: cargo build --release -p trailwatch-select-fn -p trailwatch-deliver-fn -p trailwatch-insights-fn",
                path.display()
            );
            continue;
        };
        // The issue's "8 MB" read strictly: 8,000,000 bytes, not 8 MiB.
        let mb = meta.len() as f64 / 1e6;
        let starts: Vec<f64> = (0..9).filter_map(|_| cold_start(&path)).collect();
        let mut sorted = starts.clone();
        sorted.sort_by(f64::total_cmp);
        table.row(Row {
            section: "6. binary size",
            what: format!("{name} (release, stripped)"),
            figure: format!("{mb:.2} MB"),
            baseline: "≤ 8 MB".into(),
            ratio: mb / 8.0,
            target: Some(-1.0),
        });
        if sorted.is_empty() {
            table.row(Row {
                section: "6. cold start",
                what: format!("{name}: never polled the runtime API"),
                figure: "—".into(),
                baseline: "≤ 30 ms".into(),
                ratio: f64::INFINITY,
                target: Some(-1.0),
            });
            continue;
        }
        let median = sorted[sorted.len() / 2];
        table.row(Row {
            section: "6. cold start",
            what: format!(
                "{name}: exec → first GET /runtime/invocation/next, median of {} (min {:.1}, max {:.1})",
                sorted.len(),
                sorted[0],
                sorted[sorted.len() - 1]
            ),
            figure: format!("{median:.1} ms"),
            baseline: "≤ 30 ms".into(),
            ratio: median / 30.0,
            target: Some(-1.0),
        });
    }
}

/// Milliseconds from spawning `binary` to its first poll of a fake Lambda runtime API.
fn cold_start(binary: &Path) -> Option<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = listener.local_addr().ok()?.port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            if seen.starts_with(b"GET /2018-06-01/runtime/invocation/next") {
                let _ = tx.send(Instant::now());
                // Hold the connection: the function waits here for an invocation.
                std::thread::sleep(Duration::from_secs(2));
                return;
            }
        }
    });
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env(
            "TRAILWATCH_DELIVERY_QUEUE_URL",
            "http://127.0.0.1:1/1/delivery",
        )
        .env(
            "TRAILWATCH_INSIGHTS_QUEUE_URL",
            "http://127.0.0.1:1/1/insights",
        )
        .env("TRAILWATCH_LOG_GROUP", "CloudTrail/trailwatch")
        .env("TRAILWATCH_EVENT_BUS", "trailwatch-insights")
        .env("TRAILWATCH_STATE_TABLE", "trailwatch-state")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = command.spawn().ok()?;
    let polled = rx.recv_timeout(Duration::from_secs(5)).ok();
    let _ = child.kill();
    let _ = child.wait();
    polled.map(|t| (t - start).as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------
// The table

struct Row {
    section: &'static str,
    what: String,
    figure: String,
    baseline: String,
    /// figure ÷ baseline (throughput), or figure ÷ limit (memory, size, time).
    ratio: f64,
    /// Some(t > 0): met when ratio ≥ t. Some(negative): met when ratio ≤ 1. None: no target.
    target: Option<f64>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn row(&mut self, row: Row) {
        eprintln!(
            "   {} | {} | {} | {:.2}",
            row.section, row.figure, row.baseline, row.ratio
        );
        self.rows.push(row);
    }

    fn print(&self, manifest: &serde_json::Value, rounds: usize) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!();
        println!(
            "machine: {cpu}, {cores} cores; load average at the end {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "corpus: {} files, {} records, {:.0} MB uncompressed, {:.0} MB gzip; fastest of {rounds} rounds, CPU time",
            manifest["files"].as_array().map_or(0, Vec::len),
            manifest["records"],
            manifest["uncompressed_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            manifest["compressed_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        );
        println!();
        println!("| # | measured | trailwatch | baseline / limit | ratio | target | met |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let (target, met) = match r.target {
                None => ("—".to_owned(), "—"),
                Some(t) if t > 0.0 => (format!("≥ {t}×"), if r.ratio >= t { "yes" } else { "NO" }),
                Some(_) => ("≤ 1".to_owned(), if r.ratio <= 1.0 { "yes" } else { "NO" }),
            };
            let ratio = match r.target {
                Some(t) if t < 0.0 => format!("{:.2} of limit", r.ratio),
                _ => format!("{:.2}×", r.ratio),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.section, r.what, r.figure, r.baseline, ratio, target, met
            );
        }
    }
}

/// 1234567 → "1.23 M".
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
