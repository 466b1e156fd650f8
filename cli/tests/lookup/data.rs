//! The data the tests look up in: the sample trail, the invictus-ir trail and a generated
//! multi-account trail, each replayed once per test binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::oracle::*;
use serde_json::Value;
use trailwatch::time::parse_event_time;

// ---------------------------------------------------------------------------------------
// The data: replayed once per test binary.

pub fn sample() -> &'static (PathBuf, Vec<Rec>) {
    static SAMPLE: OnceLock<(PathBuf, Vec<Rec>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let out = temp_dir("sample");
        replay(
            &root().join("events/sample-trail"),
            Some(&root().join("events/trail-config.json")),
            &out,
        );
        let records = jsonl_records(&out);
        (out, records)
    })
}

pub fn invictus() -> &'static (PathBuf, Vec<Rec>) {
    static INVICTUS: OnceLock<(PathBuf, Vec<Rec>)> = OnceLock::new();
    INVICTUS.get_or_init(|| {
        let out = temp_dir("invictus");
        replay(&shared_data().join("invictus-ir"), None, &out);
        let records = jsonl_records(&out);
        (out, records)
    })
}

/// A generated trail in CloudTrail's S3 layout (two accounts, two Regions, 5-minute gzip
/// files) from real records — invictus-ir, stratus-red-team and the panther test events that
/// carry an eventCategory (among them data and network-activity events) or a Root identity —
/// each with a fresh
/// eventID and a time inside its file's window, and a few duplicate deliveries. Built here
/// (scripts/gen-corpus.py always adds two large memory-test files, ~9 s and 50 MB).
pub struct Generated {
    pub logs: PathBuf,
    pub records: Vec<Rec>,
    pub replayed: PathBuf,
}

pub fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let dir = temp_dir("generated");
        let logs = dir.join("AWSLogs");
        let records = write_generated_trail(&logs);
        let replayed = dir.join("out");
        replay(&logs, None, &replayed);
        Generated {
            logs,
            records,
            replayed,
        }
    })
}

pub fn minify(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(text.len()), false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Replaces the string value of the first `"key":"…"` (keys at the top level of a record).
pub fn set_field(raw: &str, key: &str, value: &str) -> Option<String> {
    let from = format!("\"{key}\":\"");
    let start = raw.find(&from)? + from.len();
    let end = start + raw[start..].find('"')?;
    Some(format!("{}{value}{}", &raw[..start], &raw[end..]))
}

/// Long by design: the generated trail's layout, written in one place.
pub fn write_generated_trail(logs: &Path) -> Vec<Rec> {
    let data = shared_data();
    let mut pool: Vec<String> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(data.join("invictus-ir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Every third file: about a thousand records.
        if i % 3 == 0 {
            pool.extend(
                v["Records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Value::to_string),
            );
        }
    }
    let mut stratus: Vec<PathBuf> = std::fs::read_dir(data.join("stratus-red-team"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    stratus.sort();
    for path in stratus {
        let text = std::fs::read_to_string(&path).unwrap();
        #[derive(serde::Deserialize)]
        struct File<'a> {
            #[serde(rename = "Records", borrow)]
            records: Vec<&'a serde_json::value::RawValue>,
        }
        let records: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text)
            .or_else(|_| serde_json::from_str::<File>(&text).map(|f| f.records))
            .unwrap();
        pool.extend(records.iter().map(|r| minify(r.get())));
    }
    let panther =
        std::fs::read_to_string(data.join("panther-tests/panther-test-events.jsonl")).unwrap();
    for line in panther.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let object = v.as_object_mut().unwrap();
        // Panther adds p_* fields of its own; CloudTrail never writes them.
        object.retain(|k, _| !k.starts_with("p_"));
        let category = object.get("eventCategory").and_then(Value::as_str);
        let root = object
            .get("userIdentity")
            .is_some_and(|u| u["type"] == "Root");
        if category.is_some_and(|c| c != "Insight") || (root && category.is_none()) {
            pool.push(v.to_string());
        }
    }
    pool.retain(|r| r.contains("\"eventID\":\"") && r.contains("\"eventTime\":\""));

    let accounts = ["111122223333", "444455556666"];
    let regions = ["us-east-1", "eu-west-1"];
    let base = parse_event_time("2026-01-15T00:00:00Z").unwrap();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut written = Vec::new();
    let mut previous: Option<String> = None;
    for (file, chunk) in pool.chunks(31).enumerate() {
        let account = accounts[file % 2];
        let region = regions[(file / 2) % 2];
        let window = base + (file as i64) * 300_000;
        let mut records = Vec::new();
        for (i, template) in chunk.iter().enumerate() {
            if i > 0 && next() % 100 == 0 {
                if let Some(p) = &previous {
                    records.push(p.clone()); // a duplicate delivery
                }
            }
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                next(),
                file,
                i,
                next() % 4096,
                next()
            );
            let time = trailwatch::time::format_event_time(window + (next() % 300) as i64 * 1000);
            let mut raw = set_field(template, "eventID", &id).unwrap();
            raw = set_field(&raw, "eventTime", &time).unwrap();
            raw = set_field(&raw, "recipientAccountId", account).unwrap_or(raw);
            raw = set_field(&raw, "awsRegion", region).unwrap_or(raw);
            previous = Some(raw.clone());
            records.push(raw);
        }
        let (y, m, d) = ("2026", "01", "15");
        let folder = logs.join(format!("{account}/CloudTrail/{region}/{y}/{m}/{d}"));
        std::fs::create_dir_all(&folder).unwrap();
        let stamp = &trailwatch::time::format_event_time(window).replace(['-', ':'], "")[..13];
        let path = folder.join(format!(
            "{account}_CloudTrail_{region}_{stamp}Z_f{file:04}.json.gz"
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("{{\"Records\":[{}]}}", records.join(",")).as_bytes())
            .unwrap();
        std::fs::write(path, gz.finish().unwrap()).unwrap();
        written.extend(records.iter().map(|r| Rec::new(r)));
    }
    written
}
