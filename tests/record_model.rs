//! The record model over every real record in ../shared/data: all parse, and every record
//! read from a log file is byte-for-byte the JSON in the file.

use std::path::PathBuf;

use serde_json::value::RawValue;
use trailwatch::ingest::{read_log_file, LogFileLimits};
use trailwatch::record::{EventCategory, Record};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        dir.is_dir(),
        "shared data folder missing at {}",
        dir.display()
    );
    dir
}

fn files(sub: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {suffix} files in {sub}");
    files
}

/// Every record of every dataset, as its exact JSON text.
fn all_records() -> Vec<String> {
    let mut records = Vec::new();
    for path in files("invictus-ir", ".json") {
        let text = std::fs::read_to_string(&path).unwrap();
        #[derive(serde::Deserialize)]
        struct File<'a> {
            #[serde(rename = "Records", borrow)]
            records: Vec<&'a RawValue>,
        }
        let file: File = serde_json::from_str(&text).unwrap();
        records.extend(file.records.iter().map(|r| r.get().to_owned()));
    }
    for path in files("stratus-red-team", ".json") {
        let text = std::fs::read_to_string(&path).unwrap();
        let array: Vec<&RawValue> = serde_json::from_str(&text).unwrap();
        records.extend(array.iter().map(|r| r.get().to_owned()));
    }
    let jsonl = std::fs::read_to_string(data_dir().join("panther-tests/panther-test-events.jsonl"))
        .unwrap();
    records.extend(
        jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned),
    );
    for line in std::fs::read_to_string(
        data_dir().join("insights-examples/awsdocs-cloudtrail-user-guide-2023.jsonl"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty())
    {
        records.push(line.to_owned());
    }
    records
}

#[test]
fn every_real_record_parses() {
    let records = all_records();
    assert!(
        records.len() >= 3_600,
        "only {} records found",
        records.len()
    );
    for (i, raw) in records.iter().enumerate() {
        let record = Record::parse(raw).unwrap_or_else(|e| panic!("record {i}: {e}\n{raw}"));
        assert_eq!(record.raw(), raw.as_str());
    }
}

#[test]
fn every_real_record_has_a_readable_event_time_or_a_clear_error() {
    for raw in all_records() {
        let record = Record::parse(&raw).unwrap();
        let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let text = value["eventTime"].as_str().unwrap();
        if !text.starts_with("20") {
            // Redacted test fixtures ("redacted", "..."): the error names the bad value.
            let err = record.event_time_ms().unwrap_err().to_string();
            assert!(err.contains(text), "{err}");
            continue;
        }
        let ms = record
            .event_time_ms()
            .unwrap_or_else(|e| panic!("{e}: {raw}"));
        // 2013 (CloudTrail's launch) to 2030.
        assert!(
            (1_356_998_400_000..1_893_456_000_000).contains(&ms),
            "{raw}"
        );
    }
}

#[test]
fn records_read_from_log_files_are_the_exact_bytes_of_the_file() {
    for path in files("invictus-ir", ".json") {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut read = Vec::new();
        read_log_file(text.as_bytes(), LogFileLimits::default(), |item| {
            read.push(item.bytes.unwrap().to_owned())
        })
        .unwrap();
        #[derive(serde::Deserialize)]
        struct File<'a> {
            #[serde(rename = "Records", borrow)]
            records: Vec<&'a RawValue>,
        }
        let file: File = serde_json::from_str(&text).unwrap();
        let expected: Vec<&str> = file.records.iter().map(|r| r.get()).collect();
        assert_eq!(read, expected, "{}", path.display());
        for raw in &read {
            // Byte-identical, and therefore the same JSON value.
            let a: serde_json::Value = serde_json::from_str(raw).unwrap();
            let b: serde_json::Value =
                serde_json::from_str(Record::parse(raw).unwrap().raw()).unwrap();
            assert_eq!(a, b);
        }
    }
}

#[test]
fn categories_follow_event_category_or_the_documented_derivation() {
    let mut derived = 0;
    for raw in all_records() {
        let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let record = Record::parse(&raw).unwrap();
        let expected = match value["eventCategory"].as_str() {
            Some("Management") => EventCategory::Management,
            Some("Data") => EventCategory::Data,
            Some("NetworkActivity") => EventCategory::NetworkActivity,
            Some("Insight") => EventCategory::Insight,
            Some(_) => EventCategory::Other,
            None => {
                derived += 1;
                match (
                    value["eventType"].as_str(),
                    value["managementEvent"].as_bool(),
                ) {
                    (Some("AwsCloudTrailInsight"), _) => EventCategory::Insight,
                    (Some("AwsVpceEvent"), _) => EventCategory::NetworkActivity,
                    (_, Some(false)) => EventCategory::Data,
                    (_, Some(true)) => EventCategory::Management,
                    _ => record.category(),
                }
            }
        };
        assert_eq!(record.category(), expected, "{raw}");
    }
    assert!(
        derived > 100,
        "the datasets exercise the derivation ({derived})"
    );
}

#[test]
fn records_with_wrong_types_are_errors_naming_the_field() {
    let lenient = Record::parse(r#"{"eventTime":"2024-01-01T00:00:00Z","readOnly":"True"}"#);
    assert_eq!(
        lenient.unwrap().fields.read_only,
        Some(true),
        "exports spell booleans as strings"
    );
    let err = Record::parse(r#"{"eventTime":"2024-01-01T00:00:00Z","readOnly":"maybe"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a boolean"), "{err}");
    let err = Record::parse(r#"{"eventID":7}"#).unwrap_err().to_string();
    assert!(
        err.contains("expected a borrowed string") || err.contains("string"),
        "{err}"
    );
    assert!(Record::parse("[1,2]").is_err());
}
