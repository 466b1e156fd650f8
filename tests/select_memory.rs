//! Memory stays bounded whatever the input: hostile files (millions of elements nothing can
//! take, in a few kilobytes of gzip) through the select path, each in a process of its own
//! whose peak RSS must stay under a generous 256 MB (the benchmark, `benches/hostile.rs`, holds
//! the select path to 64 MiB; before the bound, 3 M bad elements took 715 MB). Every problem is
//! still counted, and the first of each file are kept in full.

#[path = "support/hostile.rs"]
mod hostile;

use std::path::Path;
use std::process::Command;

use trailwatch::deliver::message::DEFAULT_MESSAGE_BYTES;
use trailwatch::ingest::parse_object_key;
use trailwatch::local::{block_on, Input};
use trailwatch::select::problems::PROBLEMS_KEPT_PER_OBJECT;
use trailwatch::select::{select_object, Origin, SelectRun, TrailConfig};

use hostile::{long_value_record, peak_rss_kib, write_gzip, Discard, VALID_RECORD};

const CHILD: &str = "TRAILWATCH_MEMORY_CHILD";
const BOUND_KIB: u64 = 256 * 1024;

/// In the child: selects the file and prints its peak RSS, records read, rejected and kept
/// problems.
fn select_and_report(path: &Path) {
    let matcher = TrailConfig::default().compile();
    let mut run = SelectRun::new(&matcher, DEFAULT_MESSAGE_BYTES);
    let key = path.to_string_lossy().into_owned();
    let origin = Origin {
        bucket: None,
        key: &key,
        parsed: parse_object_key(&key),
    };
    let _ = block_on(select_object(
        &Input::File(path.to_owned()),
        &origin,
        &mut run,
        &mut Discard::default(),
    ));
    run.flush();
    let peak = peak_rss_kib(std::process::id()).expect("/proc/self/status");
    println!(
        "measured {peak} {} {} {}",
        run.counts().records_read,
        run.counts().rejected,
        run.problems().len()
    );
}

/// Runs this test again in a child process on a file of `count` copies of `element`.
fn measure(name: &str, element: &str, count: usize) -> (u64, usize, usize, usize) {
    let dir = std::env::temp_dir().join(format!("trailwatch-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.json.gz"));
    write_gzip(&file, element, count);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile_inputs_are_counted_in_bounded_memory",
            "--nocapture",
        ])
        .env(CHILD, &file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("measured "))
        .unwrap_or_else(|| panic!("no measurement: {text}"));
    let v: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
    (v[0], v[1] as usize, v[2] as usize, v[3] as usize)
}

#[test]
fn hostile_inputs_are_counted_in_bounded_memory() {
    if let Ok(path) = std::env::var(CHILD) {
        return select_and_report(Path::new(&path));
    }
    let long = long_value_record();
    for (name, element, count, refused) in [
        ("ones", "1", 3_000_000, true),
        ("empty", "{}", 1_000_000, true),
        ("long", long.as_str(), 30_000, true),
        ("valid", VALID_RECORD, 1_000_000, false),
    ] {
        let (peak_kib, read, rejected, kept) = measure(name, element, count);
        assert!(
            peak_kib < BOUND_KIB,
            "{name}: peak RSS {peak_kib} KiB over {BOUND_KIB} KiB"
        );
        assert_eq!(read, count, "{name}: every element read");
        if refused {
            assert_eq!(rejected, count, "{name}: every problem counted");
            assert_eq!(
                kept,
                PROBLEMS_KEPT_PER_OBJECT + 1,
                "{name}: the first ones and a summary"
            );
        } else {
            assert_eq!((rejected, kept), (0, 0), "{name}: every record taken");
        }
    }
}
