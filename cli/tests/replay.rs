//! `trailwatch replay` as a user runs it: the sample trail in, stream files and a summary out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Every record of every gzip file under `dir`, as exact JSON text.
fn records_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "gz") {
                let mut text = String::new();
                flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                #[derive(serde::Deserialize)]
                struct F<'a> {
                    #[serde(rename = "Records", borrow)]
                    records: Vec<&'a serde_json::value::RawValue>,
                }
                let f: F = serde_json::from_str(&text).unwrap();
                out.extend(f.records.iter().map(|r| r.get().to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_sample_trail_replays_to_one_stream_per_account_and_region() {
    let out = temp_dir("sample");
    let (code, stdout, stderr) = replay(&[
        root().join("events/sample-trail").to_str().unwrap(),
        "--config",
        root().join("events/trail-config.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // Expected independently: the config keeps management events except KMS; Insights
    // records go to insights.jsonl; the sample has no data events on the audit bucket.
    let all = records_under(&root().join("events/sample-trail"));
    let mut kept: Vec<String> = Vec::new();
    let mut insights: Vec<String> = Vec::new();
    for raw in &all {
        let v: Value = serde_json::from_str(raw).unwrap();
        if v["eventType"] == "AwsCloudTrailInsight" {
            insights.push(raw.clone());
        } else if v["eventCategory"] == "Management" && v["eventSource"] != "kms.amazonaws.com" {
            kept.push(raw.clone());
        }
    }
    assert!(kept.len() > 500 && kept.len() < all.len());
    let text =
        std::fs::read_to_string(out.join("123837392027_CloudTrail_us-east-1.jsonl")).unwrap();
    let mut got: Vec<String> = text.lines().map(str::to_owned).collect();
    got.sort();
    kept.sort();
    assert!(
        got == kept,
        "delivered records differ from the expected selection"
    );
    let text = std::fs::read_to_string(out.join("insights.jsonl")).unwrap();
    let mut got: Vec<String> = text.lines().map(str::to_owned).collect();
    got.sort();
    insights.sort();
    assert_eq!(got, insights);
    assert!(
        stdout.contains(&format!("kept         {}", kept.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains("123837392027_CloudTrail_us-east-1.jsonl"),
        "{stdout}"
    );
}

#[test]
fn a_broken_file_is_reported_by_path_and_the_replay_goes_on() {
    let input = temp_dir("broken-in");
    let good = r#"{"Records":[{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"a1","eventType":"AwsApiCall","eventCategory":"Management","readOnly":true,"recipientAccountId":"111122223333"}]}"#;
    let bad_record = r#"{"Records":[{"eventTime":"2024-01-01T00:00:01Z","eventID":"b1","readOnly":"perhaps","recipientAccountId":"111122223333","awsRegion":"us-east-1"},{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:02Z","eventSource":"iam.amazonaws.com","eventName":"GetUser","awsRegion":"us-east-1","eventID":"b2","eventCategory":"Management","recipientAccountId":"111122223333"}]}"#;
    std::fs::write(input.join("1-good.json"), good).unwrap();
    std::fs::write(input.join("2-bad-record.json"), bad_record).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(good.replace("a1", "c1").as_bytes()).unwrap();
    let mut truncated = gz.finish().unwrap();
    truncated.truncate(truncated.len() - 12);
    std::fs::write(input.join("3-truncated.json.gz"), truncated).unwrap();
    std::fs::write(input.join("4-good.json"), good.replace("a1", "d1")).unwrap();
    let out = temp_dir("broken-out");
    let (code, stdout, stderr) = replay(&[input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1, "problems make the exit code 1\n{stdout}\n{stderr}");
    assert!(stderr.contains("2-bad-record.json record 0"), "{stderr}");
    assert!(
        stderr.contains("readOnly") || stderr.contains("perhaps"),
        "{stderr}"
    );
    assert!(stderr.contains("3-truncated.json.gz"), "{stderr}");
    let text =
        std::fs::read_to_string(out.join("111122223333_CloudTrail_us-east-1.jsonl")).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["eventID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a1", "b2", "d1"],
        "the good records around the bad ones are delivered"
    );
}
