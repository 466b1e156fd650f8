//! `trailwatch detect` as a user runs it: the binary on the sample trail and on real log files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trailwatch::detect::Detection;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn trailwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("trailwatch runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trailwatch-detect-cli-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const INVICTUS_STOP: &str =
    "../shared/data/invictus-ir/218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json";

#[test]
fn the_table_names_each_rule_that_matched_with_times_and_principals() {
    let out = trailwatch(&["detect", "../shared/data/invictus-ir"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("AWS CloudTrail Important Change"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("2023-07-10T11:59:02Z"), "{row}");
    assert!(
        row.contains("arn:aws:iam::123837392027:user/bert-jan"),
        "{row}"
    );
    assert!(stdout.contains("55 files, 2900 records"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rules: 77 on, 1 off, 0 not loaded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("905d389b-b853-46d0-9d3d-dea0d3a3cd49"),
        "{stderr}"
    );
}

#[test]
fn json_lines_are_the_reported_detections() {
    let out = trailwatch(&["detect", INVICTUS_STOP, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let detections: Vec<Detection> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let stop = detections
        .iter()
        .find(|d| d.event_name.as_deref() == Some("StopLogging"))
        .expect("StopLogging detected");
    assert_eq!(stop.rule_id, "4db60cc0-36fb-42b7-9b58-a5b53019fb74");
    assert_eq!(stop.author.as_deref(), Some("vitaliy0x1"));
    assert_eq!(stop.attack.techniques, ["T1685.002"]);
    let record: serde_json::Value = serde_json::from_str(stop.record.get()).unwrap();
    assert_eq!(record["eventID"], stop.event_id.clone().unwrap().as_str());
}

#[test]
fn suppression_and_exceptions_come_from_the_noise_file() {
    let dir = scratch("noise");
    let noise = dir.join("noise.json");
    std::fs::write(
        &noise,
        r#"{"suppressMinutes": 0, "exceptions": [{"principalArn": "arn:aws:sts::*:assumed-role/stratus-red-team-get-usr-data-role/*"}]}"#,
    )
    .unwrap();
    let out = trailwatch(&[
        "detect",
        "../shared/data/invictus-ir",
        "--noise",
        noise.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("AWS EC2 Instance User Data Read"))
        .unwrap_or_else(|| panic!("{stdout}"));
    // 19 matches: none held (no window), those of the excepted role not reported.
    let numbers: Vec<usize> = row
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(&numbers[..4], [19, 4, 0, 15], "{row}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"exceptions": [{"reason": "everything"}]}"#).unwrap();
    let out = trailwatch(&["detect", INVICTUS_STOP, "--noise", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("exception 0 has no condition"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_rule_file_that_cannot_be_loaded_is_named_with_its_reason_and_the_rest_run() {
    let dir = scratch("rules");
    std::fs::write(dir.join("broken.yml"), "title: [unclosed").unwrap();
    std::fs::write(
        dir.join("mine.yaml"),
        "title: Any StopLogging\nid: mine-1\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    s:\n        eventName: StopLogging\n    condition: s\nlevel: critical\n",
    )
    .unwrap();
    let rules = dir.to_str().unwrap();
    let out = trailwatch(&["detect", INVICTUS_STOP, "--rules", rules, "--no-embedded"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rules: 1 on, 0 off, 1 not loaded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.yml: a document of the file is not a Sigma rule: YAML parse error"),
        "{stderr}"
    );
    assert!(text(&out.stdout)
        .lines()
        .any(|l| l.starts_with("Any StopLogging")));
    let listing = trailwatch(&["detect", "--list-rules", "--rules", rules, "--no-embedded"]);
    assert!(
        text(&listing.stdout).contains("not loaded"),
        "{}",
        text(&listing.stdout)
    );
}

#[test]
fn help_gives_the_state_of_the_embedded_rules() {
    let out = trailwatch(&["detect", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("not loaded: 0"), "{help}");
    assert!(
        help.contains("off: 905d389b-b853-46d0-9d3d-dea0d3a3cd49"),
        "{help}"
    );
    for (id, _) in trailwatch::detect::rules::RULE_NOTES {
        assert!(help.contains(id), "{id} missing from --help");
    }
}

/// The Stratus Red Team records of every technique, each technique as one log file in the shape
/// CloudTrail writes (`{"Records":[...]}`), and the records themselves.
fn stratus_log_files(dir: &Path) -> Vec<String> {
    let data = repo().join("../shared/data/stratus-red-team");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut all = Vec::new();
    for path in names {
        let records: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = serde_json::json!({ "Records": records });
        std::fs::write(dir.join(path.file_name().unwrap()), file.to_string()).unwrap();
        all.extend(records.iter().map(|r| r.to_string()));
    }
    all
}

#[test]
fn replay_writes_the_detections_of_every_record_read_not_only_those_the_trail_keeps() {
    use trailwatch::detect::{Detector, RuleOptions, RuleSet, Scratch};
    use trailwatch::record::Record;

    let dir = scratch("replay");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let records = stratus_log_files(&logs);
    // A trail that keeps write management events only: GetPasswordData (a read) is dropped.
    let config = dir.join("write-only.json");
    std::fs::write(
        &config,
        r#"{"EventSelectors":[{"ReadWriteType":"WriteOnly","IncludeManagementEvents":true}]}"#,
    )
    .unwrap();
    let detector = Detector::new(
        RuleSet::load(&RuleOptions {
            embedded: true,
            ..RuleOptions::default()
        })
        .rules,
    );
    let mut expected = 0;
    let mut scratch = Scratch::default();
    for raw in &records {
        if let Ok(record) = Record::parse(raw) {
            detector.evaluate(&record, &mut scratch, |_, _| expected += 1);
        }
    }
    let out_dir = dir.join("out");
    let args = [
        "replay",
        logs.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ];
    let out = trailwatch(&args);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let d = &summary["detections"];
    assert_eq!(d["enabled"], true);
    assert_eq!(d["matched"], expected, "{summary}");
    assert!(expected > 30, "the Stratus records match many rules");
    let reported = d["reported"].as_u64().unwrap();
    let (held, excepted) = (d["held"].as_u64().unwrap(), d["excepted"].as_u64().unwrap());
    assert_eq!(reported + held + excepted, expected);
    assert_eq!(excepted, 0, "no exceptions configured");
    let lines = std::fs::read_to_string(out_dir.join("detections.jsonl")).unwrap();
    let detections: Vec<Detection> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(detections.len() as u64, reported);
    // Detected though the trail does not keep it: no stream holds a GetPasswordData record.
    let password = detections
        .iter()
        .find(|d| d.event_name.as_deref() == Some("GetPasswordData"))
        .expect("GetPasswordData detected");
    assert_eq!(password.title, "AWS EC2 Windows Password Data Retrieved");
    let delivered: String = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("detections.jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!delivered.contains("\"GetPasswordData\""));
    // Every reported detection carries its suppression key; repeats are held, not lost.
    assert!(detections.iter().all(|d| d.suppression.is_some()));

    let out = trailwatch(&[&args[..], &["--no-detections"]].concat());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["detections"]["enabled"], false);
    assert_eq!(summary["detections"]["matched"], 0);
}
