//! `trailwatch selectors check|explain`, driven through `cli::selectors::run` and
//! `explain_report`, over the real data.

#[path = "../../tests/support/select_data.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;
use trailwatch::select::TrailConfig;
use trailwatch_cli::selectors::explain_report;

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-select-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file");
    path
}

/// `trailwatch selectors <list...>`.
fn args(list: &[&str]) -> Vec<String> {
    ["trailwatch", "selectors"]
        .iter()
        .chain(list)
        .map(|s| s.to_string())
        .collect()
}

fn run(args: &[String]) -> ExitCode {
    trailwatch_cli::run(args)
}

#[test]
fn check_accepts_a_valid_configuration() {
    let path = temp_file(
        "valid.json",
        r#"{"EventSelectors":[{"ReadWriteType":"WriteOnly"}]}"#,
    );
    assert_eq!(
        run(&args(&["check", path.to_str().expect("utf-8 path")])),
        ExitCode::SUCCESS
    );
}

#[test]
fn check_fails_on_an_invalid_configuration() {
    let path = temp_file(
        "invalid.json",
        r#"{"EventSelectors":[{"ReadWriteType":"read-only","DataResources":[{"Type":"AWS::S3::Object","Values":["arn:aws:s3:::*"]}]}]}"#,
    );
    assert_eq!(
        run(&args(&["check", path.to_str().expect("utf-8 path")])),
        ExitCode::from(1)
    );
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(run(&args(&[])), ExitCode::from(2));
    assert_eq!(run(&args(&["frobnicate"])), ExitCode::from(2));
    assert_eq!(
        run(&args(&["explain", "only-a-config.json"])),
        ExitCode::from(2)
    );
}

#[test]
fn explain_reads_every_format_in_the_data_folder_and_accounts_for_every_record() {
    let data = support::data_dir();
    // Folders are read by the log-file rule (`.json`, `.json.gz`); a `.jsonl` file is read when
    // named.
    let folders: Vec<PathBuf> = [
        "invictus-ir",
        "stratus-red-team",
        "panther-tests/panther-test-events.jsonl",
    ]
    .iter()
    .map(|f| data.join(f))
    .collect();
    let expected_records = support::real_records().len() as u64;
    let config = TrailConfig::from_json(r#"{"EventSelectors":[{"ReadWriteType":"WriteOnly"}]}"#)
        .expect("valid");
    let report = explain_report(&config, &folders).expect("report");
    let number = |v: &Value| v.as_u64().expect("a count");
    assert_eq!(number(&report["records"]), expected_records, "{report:#}");
    assert_eq!(number(&report["unreadable"]), 0);
    // LICENSE files in the folders are not read (not records by name).
    assert_eq!(report["fileErrors"], serde_json::json!([]), "{report:#}");
    let kept = number(&report["kept"]["records"]);
    let dropped: u64 = report["dropped"]
        .as_object()
        .expect("map")
        .values()
        .map(|c| number(&c["records"]))
        .sum();
    assert_eq!(kept + dropped, expected_records);
    let by_selector: u64 = report["selectors"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| number(&s["records"]))
        .sum();
    assert_eq!(by_selector, kept);
    let unselected: u64 = report["notSelected"]
        .as_array()
        .expect("list")
        .iter()
        .map(|g| number(&g["records"]))
        .sum();
    assert_eq!(
        unselected,
        number(&report["dropped"]["not_selected"]["records"])
    );
    let estimate = &report["monthlyEstimate"];
    assert!(
        estimate["cloudWatchLogsIngestionUSD"]
            .as_f64()
            .expect("usd")
            > 0.0,
        "{estimate:#}"
    );
    assert!(estimate["basis"]
        .as_str()
        .expect("basis")
        .starts_with("linear"));
}

#[test]
fn explain_exit_code_reflects_unreadable_files() {
    let config = temp_file("default.json", "{}");
    let data = support::data_dir();
    // In a folder, files that are not records by name (LICENSE) are not read; named
    // explicitly, a file that is not a log fails.
    let invictus = data.join("invictus-ir");
    let folder = run(&args(&[
        "explain",
        config.to_str().expect("utf-8 path"),
        invictus.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(folder, ExitCode::SUCCESS);
    let license = invictus.join("LICENSE");
    if license.is_file() {
        let code = run(&args(&[
            "explain",
            config.to_str().expect("utf-8 path"),
            license.to_str().expect("utf-8 path"),
        ]));
        assert_eq!(code, ExitCode::from(1));
    }
    let mut logs: Vec<String> = std::fs::read_dir(&invictus)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    logs.sort();
    let mut call = args(&["explain", config.to_str().expect("utf-8 path")]);
    call.extend(logs);
    call.push("--json".to_string());
    let code = run(&call);
    assert_eq!(code, ExitCode::SUCCESS);
    let not_a_log = temp_file("not-a-log.json", "this is not JSON");
    let code = run(&args(&[
        "explain",
        config.to_str().expect("utf-8 path"),
        not_a_log.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(code, ExitCode::from(1));
}

#[test]
fn the_estimate_of_the_sample_trail_comes_from_its_delivery_stamps_not_an_old_record() {
    // The sample trail covers 12:00 to 12:35 of one day; its Insights records are years older.
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let config = TrailConfig::from_json(
        &std::fs::read_to_string(root.join("events/trail-config.json")).expect("readable"),
    )
    .expect("valid");
    let report = explain_report(&config, &[root.join("events/sample-trail")]).expect("report");
    let estimate = &report["monthlyEstimate"];
    let basis = estimate["basis"].as_str().expect("basis");
    assert!(basis.contains("delivery stamps"), "{basis}");
    assert!(basis.contains("55 min"), "{basis}");
    // 15 files over 55 minutes: a month is 785.45 times as long.
    let factor = estimate["factor"].as_f64().expect("factor");
    assert!(
        (factor - 30.0 * 24.0 * 60.0 / 55.0).abs() < 1e-6,
        "{factor}"
    );
    assert!(
        estimate["cloudWatchLogsIngestionUSD"]
            .as_f64()
            .expect("usd")
            > 0.1
    );
}
