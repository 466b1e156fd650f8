//! The replay a user runs, end to end, against three baselines run side by side in the same
//! run on the same files (issue 22): `trailwatch replay DIR --out OUT` (default trail) versus
//! `gzip -dc` of every file into one output file, a plain Python script doing the same job
//! (`scripts/bench_replay.py`: gzip + json, keep management events, one JSON line per record per
//! stream) and `gzip -dc | jq -c '.Records[]'`.
//!
//! Run it with `scripts/bench.sh replay` (which builds the release CLI and the corpus first);
//! alone: `cargo build --release -p trailwatch-cli && cargo bench -p trailwatch --bench replay`.
//! The replay against gzip is a wall-clock ratio (the replay may use every core, gzip uses
//! one), the others are CPU-time ratios (user + system of the child processes). gzip and the
//! replay are interleaved `TRAILWATCH_BENCH_ROUNDS` times (default 3) and the fastest round of
//! each kept; Python and jq, an order of magnitude slower, run once. Wall-clock figures need a
//! quiet machine: the table says what the load average was.
//!
//! `TRAILWATCH_BENCH_BEFORE="PATH [ARG...]"` names an earlier `trailwatch` binary, with
//! replay arguments of its own if any (`target/release/trailwatch --threads 1`): it runs
//! interleaved with the current one (a lever's before and after, side by side), its output
//! folder and JSON summary must be byte-identical to the current one's, and a row gives the
//! ratio.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{measure_child, Timing};

fn main() {
    let corpus = PathBuf::from(
        std::env::var("TRAILWATCH_BENCH_CORPUS").unwrap_or_else(|_| "target/bench-corpus".into()),
    );
    let rounds: usize = std::env::var("TRAILWATCH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let target_dir =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let trailwatch = target_dir.join("release/trailwatch");
    let manifest: serde_json::Value = match std::fs::read(corpus.join("manifest.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("manifest.json is JSON"),
        Err(e) => {
            eprintln!(
                "no corpus at {} ({e}): run scripts/bench.sh",
                corpus.display()
            );
            std::process::exit(2);
        }
    };
    if !trailwatch.is_file() {
        eprintln!(
            "{} missing: cargo build --release -p trailwatch-cli",
            trailwatch.display()
        );
        std::process::exit(2);
    }
    let work = target_dir.join("bench-out/replay-tmp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("bench-out is writable");
    let list = work.join("files.txt");
    let files = manifest["files"].as_array().expect("files");
    let paths: String = files
        .iter()
        .map(|f| {
            format!(
                "{}\n",
                corpus.join(f["path"].as_str().expect("path")).display()
            )
        })
        .collect();
    std::fs::write(&list, paths).expect("bench-out is writable");
    let out = work.join("out");

    eprintln!(
        "replay end to end over {} files ({:.0} MB gzip)…",
        files.len(),
        manifest["compressed_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    let before = std::env::var("TRAILWATCH_BENCH_BEFORE").ok();
    let before: Option<Vec<&str>> = before.as_deref().map(|b| b.split_whitespace().collect());
    let out_before = work.join("out-before");
    let mut gzip = Best::default();
    let mut replay = Best::default();
    let mut earlier = Best::default();
    let mut summary = String::new();
    for round in 0..rounds.max(1) {
        let all = work.join("all.json");
        gzip.keep(
            run(
                shell(r#"xargs gzip -dc < "$1" > "$2""#, &[&list, &all]),
                &all,
                false,
            )
            .0,
        );
        let last = round + 1 == rounds.max(1);
        let (timing, stdout) = run(replay_command(&trailwatch, &corpus, &out), &out, last);
        eprintln!(
            "round {round}: replay wall {:.2} s, CPU {:.2} s",
            timing.wall, timing.cpu
        );
        replay.keep(timing);
        summary = stdout;
        if let Some(before) = &before {
            let mut command = replay_command(Path::new(before[0]), &corpus, &out_before);
            command.args(&before[1..]);
            let (timing, stdout) = run(command, &out_before, last);
            eprintln!(
                "round {round}: before wall {:.2} s, CPU {:.2} s",
                timing.wall, timing.cpu
            );
            earlier.keep(timing);
            if last {
                // The summaries name their output folders, which differ.
                let named = |folder: &Path| format!("\"out\": {:?}", folder.display().to_string());
                assert_eq!(
                    stdout.replace(&named(&out_before), &named(&out)),
                    summary,
                    "the summaries of {} and the current binary differ",
                    before.join(" ")
                );
                let diff = Command::new("diff")
                    .arg("-r")
                    .arg("-q")
                    .arg(&out_before)
                    .arg(&out)
                    .status();
                assert!(
                    diff.is_ok_and(|s| s.success()),
                    "the outputs of {} and the current binary differ",
                    before.join(" ")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&out_before);
    }
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("replay --json");
    let mut python = Command::new("python3");
    python
        .arg("scripts/bench_replay.py")
        .arg(&out)
        .arg(format!("@{}", list.display()));
    let (python, py_out) = run(python, &out, false);
    let jq_out = work.join("jq.jsonl");
    let (jq, _) = run(
        shell(
            r#"xargs gzip -dc < "$1" | jq -c '.Records[]' > "$2""#,
            &[&list, &jq_out],
        ),
        &jq_out,
        false,
    );
    let _ = std::fs::remove_dir_all(&work);

    let (gzip, replay) = (gzip.timing(), replay.timing());
    let kept = &summary["records"]["kept"];
    let py_kept = serde_json::from_str::<serde_json::Value>(py_out.trim())
        .map(|v| v["kept"].clone())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "replay end to end: {} files, {} records, {:.0} MB gzip, {:.0} MB of JSON; load average at the end {}",
        files.len(),
        manifest["records"],
        manifest["compressed_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        manifest["uncompressed_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| # | measured | trailwatch | baseline | ratio | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let replay_figure = format!(
        "wall {:.2} s, CPU {:.2} s ({:.2} cores)",
        replay.wall,
        replay.cpu,
        replay.cpu / replay.wall.max(1e-9)
    );
    row(
        "replay vs gzip",
        &format!("`trailwatch replay DIR --out OUT`, {kept} kept; fastest of {rounds}, wall clock"),
        &replay_figure,
        &format!(
            "`gzip -dc` of every file into one file: wall {:.2} s, CPU {:.2} s",
            gzip.wall, gzip.cpu
        ),
        gzip.wall / replay.wall,
        1.0,
    );
    row(
        "replay vs Python",
        &format!("same job in Python (kept: {py_kept}); CPU time"),
        &replay_figure,
        &format!(
            "`scripts/bench_replay.py`: wall {:.1} s, CPU {:.1} s",
            python.wall, python.cpu
        ),
        python.cpu / replay.cpu,
        10.0,
    );
    row(
        "replay vs jq",
        "every record out as a line; CPU time",
        &replay_figure,
        &format!(
            "`gzip -dc | jq -c '.Records[]'`: wall {:.1} s, CPU {:.1} s",
            jq.wall, jq.cpu
        ),
        jq.cpu / replay.cpu,
        30.0,
    );
    if let Some(before) = &before {
        let earlier = earlier.timing();
        row(
            "replay vs before",
            &format!(
                "the same replay by `{}`, output byte-identical; fastest of {rounds}, wall clock",
                before.join(" ")
            ),
            &replay_figure,
            &format!("wall {:.2} s, CPU {:.2} s", earlier.wall, earlier.cpu),
            earlier.wall / replay.wall,
            1.0,
        );
    }
}

fn replay_command(trailwatch: &Path, corpus: &Path, out: &Path) -> Command {
    let mut command = Command::new(trailwatch);
    command
        .arg("replay")
        .arg(corpus.join("AWSLogs"))
        .arg("--out")
        .arg(out)
        .arg("--json");
    command
}

/// The fastest of several rounds, by wall clock.
#[derive(Default)]
struct Best(Option<Timing>);

impl Best {
    fn keep(&mut self, t: Timing) {
        if self.0.is_none_or(|best| t.wall < best.wall) {
            self.0 = Some(t);
        }
    }

    fn timing(&self) -> Timing {
        self.0.expect("at least one round")
    }
}

fn shell(script: &str, args: &[&Path]) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg("sh").args(args);
    command
}

/// Runs `command` once: its wall clock, its CPU time (user + system of the waited-for
/// children) and its standard output. `out` (the command's output) is removed before, and
/// after unless `keep`.
fn run(command: Command, out: &Path, keep: bool) -> (Timing, String) {
    let remove = || {
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_file(out);
    };
    remove();
    let measured = measure_child(command);
    if !keep {
        remove();
    }
    measured
}

fn row(section: &str, what: &str, figure: &str, baseline: &str, ratio: f64, target: f64) {
    let met = if ratio >= target { "yes" } else { "NO" };
    println!("| {section} | {what} | {figure} | {baseline} | {ratio:.2}× | ≥ {target}× | {met} |");
}
