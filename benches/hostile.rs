//! Peak memory of the select path on hostile input (issue 17): files that are tiny when
//! compressed and hold millions of elements nothing can take. Every problem must be counted
//! and memory must stay flat: the limit is 64 MiB, the smallest Lambda the stack allows leaving
//! room for the runtime.
//!
//! Each input is measured twice, each in a process of its own so nothing else counts: the
//! select path as the select function runs it (`select_object` into a `SelectRun`, the object
//! read from a file instead of S3), and `trailwatch replay` (the release CLI, when built). Run
//! with `scripts/bench.sh` or `cargo bench -p trailwatch --bench hostile`.
//!
//! Mode used internally: `--select FILE` runs the select path over one file and prints its
//! peak RSS in KiB and the records it read.

#[path = "../tests/support/hostile.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use trailwatch::deliver::message::DEFAULT_MESSAGE_BYTES;
use trailwatch::ingest::parse_object_key;
use trailwatch::local::{block_on, Input};
use trailwatch::select::{select_object, Origin, SelectRun, TrailConfig};

use hostile::{peak_rss_kib, Discard};

const LIMIT_MIB: f64 = 64.0;

/// The inputs of issue 17: (file name, what it is, its elements and how many).
const INPUTS: [(&str, &str, Element, usize); 6] = [
    (
        "ones-3m",
        "3 M-item {\"Records\":[1,1,…]}",
        Element::One,
        3_000_000,
    ),
    ("ones-10m", "10 M-item array of 1", Element::One, 10_000_000),
    ("empty-2m", "2 M {} records", Element::Empty, 2_000_000),
    ("empty-1m", "1 M {} records", Element::Empty, 1_000_000),
    (
        "long-100k",
        "100 k bad records with 1 KB values",
        Element::Long,
        100_000,
    ),
    (
        "valid-1m",
        "1 M valid records, all kept",
        Element::Valid,
        1_000_000,
    ),
];

#[derive(Clone, Copy)]
enum Element {
    One,
    Empty,
    /// A record whose `readOnly` is a 1000-character string: refused, its value quoted.
    Long,
    /// A valid record, kept and packed: what waits between two sends must stay small too.
    Valid,
}

impl Element {
    fn text(self) -> String {
        match self {
            Element::One => "1".into(),
            Element::Empty => "{}".into(),
            Element::Long => hostile::long_value_record(),
            Element::Valid => hostile::VALID_RECORD.into(),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--select") {
        return select_child(Path::new(&args[i + 1]));
    }
    let dir = PathBuf::from("target/bench-hostile");
    std::fs::create_dir_all(&dir).expect("target/bench-hostile");
    let cli = PathBuf::from("target/release/trailwatch");
    println!("| input | gzip | select path | trailwatch replay | limit | met |");
    println!("|---|---|---|---|---|---|");
    for (name, what, element, count) in INPUTS {
        let file = dir.join(format!("{name}.json.gz"));
        if !file.is_file() {
            hostile::write_gzip(&file, &element.text(), count);
        }
        let gzip_kb = std::fs::metadata(&file).map_or(0, |m| m.len()) as f64 / 1e3;
        let select = select_peak(&file);
        let replay = cli.is_file().then(|| cli_peak(&cli, &file, &dir));
        let worst = replay.map_or(select, |r| r.max(select));
        println!(
            "| {what} | {gzip_kb:.1} KB | {select:.1} MiB | {} | ≤ {LIMIT_MIB} MiB | {} |",
            replay.map_or("(release CLI not built)".into(), |r| format!("{r:.1} MiB")),
            if worst <= LIMIT_MIB { "yes" } else { "NO" }
        );
    }
}

/// The select path's peak RSS over `file`, in a child process, MiB.
fn select_peak(file: &Path) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--select")
        .arg(file)
        .stderr(Stdio::inherit())
        .output()
        .expect("the select child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: f64 = text
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn select_child(path: &Path) {
    let matcher = TrailConfig::default().compile();
    let mut run = SelectRun::new(&matcher, DEFAULT_MESSAGE_BYTES);
    let key = path.to_string_lossy().into_owned();
    let origin = Origin {
        bucket: Some("bench-trail-bucket"),
        key: &key,
        parsed: parse_object_key(&key),
    };
    let mut outbox = Discard::default();
    let input = Input::File(path.to_owned());
    let _ = block_on(select_object(&input, &origin, &mut run, &mut outbox));
    run.flush();
    println!(
        "{} {} {}",
        peak_rss_kib(std::process::id()).unwrap_or(0),
        run.counts().records_read,
        std::hint::black_box(outbox.messages + run.problems().len())
    );
}

/// `trailwatch replay FILE`'s peak RSS, MiB: the child's high-water mark, read until it exits.
fn cli_peak(cli: &Path, file: &Path, dir: &Path) -> f64 {
    let out = dir.join("replay-out");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(cli)
        .arg("replay")
        .arg(file)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release CLI runs");
    let mut peak = 0;
    while child.try_wait().expect("child state").is_none() {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(2));
    }
    peak as f64 / 1024.0
}
