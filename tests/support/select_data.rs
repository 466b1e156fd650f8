//! Shared by the `select_*` tests: the real records of `../shared/data`, each as its exact text
//! and as a `serde_json::Value` for expectations written independently of the matcher.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub struct RealRecord {
    pub origin: String,
    pub text: String,
    pub value: Value,
}

pub fn data_dir() -> PathBuf {
    // `shared/` sits beside the repository; this file serves crates at any depth in it.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "real CloudTrail data expected in shared/data beside the repository (looked above {})",
                manifest.display()
            )
        })
}

fn files_in(folder: &str, extension: &str) -> Vec<PathBuf> {
    let dir = data_dir().join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn push(out: &mut Vec<RealRecord>, origin: String, value: Value) {
    out.push(RealRecord {
        origin,
        text: value.to_string(),
        value,
    });
}

/// Every record of invictus-ir (`{"Records": [...]}`), stratus-red-team (JSON arrays) and
/// panther-tests (one record per line).
pub fn real_records() -> Vec<RealRecord> {
    let mut out = Vec::new();
    for path in files_in("invictus-ir", "json") {
        let text = std::fs::read_to_string(&path).expect("readable");
        let file: Value = serde_json::from_str(&text).expect("invictus file is JSON");
        for (i, record) in file["Records"]
            .as_array()
            .expect("Records array")
            .iter()
            .enumerate()
        {
            push(&mut out, format!("{}#{i}", path.display()), record.clone());
        }
    }
    for path in files_in("stratus-red-team", "json") {
        let text = std::fs::read_to_string(&path).expect("readable");
        let records: Vec<Value> =
            serde_json::from_str(&text).expect("stratus file is a JSON array");
        for (i, record) in records.into_iter().enumerate() {
            push(&mut out, format!("{}#{i}", path.display()), record);
        }
    }
    for path in files_in("panther-tests", "jsonl") {
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let record: Value = serde_json::from_str(line).expect("panther line is JSON");
            push(&mut out, format!("{}:{}", path.display(), i + 1), record);
        }
    }
    assert!(out.len() > 3000, "only {} real records found", out.len());
    out
}
