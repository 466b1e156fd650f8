//! `trailwatch replay` as a user runs it: log files (or stdin) in, stream files, a summary
//! table or JSON, and an exit code out. Expected figures are computed here from the input
//! records, not taken from the program.
//!
//! Long by design: one test per promise `replay` makes, sharing the helpers that compute expected figures.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn sample_trail() -> PathBuf {
    root().join("events/sample-trail")
}

fn trail_config() -> PathBuf {
    root().join("events/trail-config.json")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn trailwatch(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        // A child that stops before reading all of it (an argument error) closes the pipe.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    trailwatch(&all, None)
}

/// The records of a CloudTrail log file (gzip or not), as exact JSON texts.
fn records_of(bytes: &[u8]) -> Vec<String> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8(bytes.to_vec()).unwrap();
    }
    #[derive(serde::Deserialize)]
    struct F<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a serde_json::value::RawValue>,
    }
    let f: F = serde_json::from_str(&text).unwrap();
    f.records.iter().map(|r| r.get().to_owned()).collect()
}

/// Every log file under `dir` (`.json` and `.json.gz`), recursively.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".json.gz") || name.ends_with(".json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every record of every log file under `dir`, as exact JSON text.
fn records_under(dir: &Path) -> Vec<String> {
    log_files(dir)
        .iter()
        .flat_map(|p| records_of(&std::fs::read(p).unwrap()))
        .collect()
}

fn json(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

/// The count on the row `label` of the table's `section` (sections are the unindented lines).
fn row(table: &str, section: &str, label: &str) -> u64 {
    let mut in_section = false;
    for line in table.lines() {
        if !line.starts_with(' ') {
            in_section = line.starts_with(section);
            continue;
        }
        if let Some(rest) = line.strip_prefix("  ").and_then(|l| l.strip_prefix(label)) {
            if in_section && rest.starts_with("  ") {
                let value = rest.split_whitespace().next().unwrap();
                return value.replace(',', "").parse().unwrap();
            }
        }
    }
    panic!("no row {label:?} in section {section:?}:\n{table}")
}

/// The price column of the row `label` in the AWS calls section.
fn price(table: &str, label: &str) -> String {
    let line = table
        .lines()
        .find(|l| l.strip_prefix("  ").is_some_and(|l| l.starts_with(label)))
        .unwrap_or_else(|| panic!("no row {label:?}:\n{table}"));
    // Counts have no decimal point, prices always do ("-" when not charged).
    line[2 + label.len()..]
        .split_whitespace()
        .find(|t| t.contains('.') || *t == "-")
        .unwrap()
        .to_owned()
}

/// Lines of every `<stream>.jsonl` under `out`, by stream.
fn streams_in(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut streams = BTreeMap::new();
    for e in std::fs::read_dir(out).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bus = |s: &&str| *s == "insights" || *s == "detections";
        if let Some(stream) = name.strip_suffix(".jsonl").filter(|s| !bus(s)) {
            let text = std::fs::read_to_string(&path).unwrap();
            streams.insert(stream.to_owned(), text.lines().map(str::to_owned).collect());
        }
    }
    streams
}

/// What the sample trail should give under events/trail-config.json, computed from the
/// records: management events except KMS are kept, Insights records forwarded, the rest (data
/// events outside the audit bucket, KMS) dropped as not selected.
struct SampleExpectation {
    all: Vec<String>,
    kept: Vec<String>,
    insights: Vec<String>,
}

fn sample_expectation() -> SampleExpectation {
    let all = records_under(&sample_trail());
    let (mut kept, mut insights) = (Vec::new(), Vec::new());
    for raw in &all {
        let v = json(raw);
        if v["eventType"] == "AwsCloudTrailInsight" {
            insights.push(raw.clone());
        } else if v["eventCategory"] == "Management" && v["eventSource"] != "kms.amazonaws.com" {
            kept.push(raw.clone());
        }
    }
    assert!(kept.len() > 500 && kept.len() < all.len());
    SampleExpectation {
        all,
        kept,
        insights,
    }
}

#[test]
fn the_sample_trail_replays_to_one_stream_per_account_and_region() {
    let out = temp_dir("sample");
    let (code, stdout, stderr) = replay(&[
        p(&sample_trail()),
        "--config",
        p(&trail_config()),
        "--out",
        p(&out),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "a clean run says nothing on stderr");

    let SampleExpectation {
        all,
        mut kept,
        mut insights,
    } = sample_expectation();
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

    // The table, row by row.
    let files = log_files(&sample_trail()).len() as u64;
    let t = &stdout;
    assert_eq!(row(t, "files", "read"), files);
    assert_eq!(row(t, "files", "failed"), 0);
    assert_eq!(row(t, "files", "digests skipped"), 0);
    assert_eq!(row(t, "records", "read"), all.len() as u64);
    assert_eq!(row(t, "records", "kept"), kept.len() as u64);
    assert_eq!(
        row(t, "records", "dropped: not selected"),
        (all.len() - kept.len() - insights.len()) as u64
    );
    assert_eq!(row(t, "records", "duplicates"), 0);
    assert_eq!(row(t, "records", "rejected"), 0);
    assert_eq!(row(t, "records", "stubbed"), 0);
    assert_eq!(
        row(t, "records", "CloudTrail Insights"),
        insights.len() as u64
    );
    assert_eq!(
        row(t, "streams (1,", "123837392027_CloudTrail_us-east-1"),
        kept.len() as u64
    );
    assert_eq!(
        row(t, "insights", "forwarded native"),
        insights.len() as u64
    );
    let aws = "AWS calls";
    assert_eq!(row(t, aws, "S3 GetObject"), files);
    let bytes: usize = kept.iter().map(|r| r.len() + 26).sum();
    assert_eq!(row(t, aws, "CloudWatch Logs bytes ingested"), bytes as u64);
    assert_eq!(
        row(t, aws, "CloudWatch Logs PutLogEvents"),
        bytes.div_ceil(1_048_576) as u64,
        "under a megabyte a call: as few calls as the limit allows"
    );
    // One ledger claim per delivered record, and a begin and a finish per delivery message.
    let ledger_writes = row(t, aws, "DynamoDB PutItem (dedup ledger)");
    let messages = row(t, aws, "SQS SendMessageBatch");
    assert!(ledger_writes > kept.len() as u64, "{ledger_writes}");
    assert!(
        ledger_writes <= kept.len() as u64 + 2 * 10 * messages,
        "{ledger_writes}"
    );
    // One call for the Insights records, one for the few detections (one message of them).
    let detections = row(t, "detections", "reported");
    assert!(detections > 0 && detections <= 10, "{detections}");
    assert_eq!(row(t, aws, "EventBridge PutEvents"), 2);
    // Prices: the figures follow the table's list prices.
    assert_eq!(
        price(t, "CloudWatch Logs bytes ingested"),
        format!("{:.6}", bytes as f64 / 1e9 * 0.50)
    );
    assert_eq!(
        price(t, "S3 GetObject"),
        format!("{:.6}", files as f64 * 0.0004 / 1000.0)
    );
    assert_eq!(
        price(t, "DynamoDB PutItem (dedup ledger)"),
        format!("{:.6}", ledger_writes as f64 * 0.625 / 1e6)
    );
    assert_eq!(price(t, "CloudWatch Logs PutLogEvents"), "-");
    assert!(t.contains("as published in 2025"), "{t}");
    assert!(t.contains("verify"), "{t}");
}

#[test]
fn json_is_the_same_summary_and_the_only_thing_on_stdout() {
    let (out_table, out_json) = (temp_dir("json-table"), temp_dir("json"));
    let args = |out: &Path| {
        vec![
            p(&sample_trail()).to_owned(),
            "--config".into(),
            p(&trail_config()).to_owned(),
            "--out".into(),
            p(out).to_owned(),
        ]
    };
    let table_args = args(&out_table);
    let (_, table, _) = replay(&table_args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut json_args = args(&out_json);
    json_args.push("--json".into());
    let (code, stdout, stderr) = replay(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("stdout is one JSON value");

    let e = sample_expectation();
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["files"]["read"], log_files(&sample_trail()).len());
    assert_eq!(v["files"]["failed"], 0);
    assert_eq!(v["files"]["digestsSkipped"], 0);
    assert_eq!(v["records"]["read"], e.all.len());
    assert_eq!(v["records"]["kept"], e.kept.len());
    assert_eq!(
        v["records"]["dropped"]["not_selected"],
        e.all.len() - e.kept.len() - e.insights.len()
    );
    assert_eq!(v["records"]["duplicates"], 0);
    assert_eq!(v["records"]["rejected"], 0);
    assert_eq!(v["records"]["stubbed"], 0);
    assert_eq!(v["records"]["insights"], e.insights.len());
    assert_eq!(
        v["streams"],
        serde_json::json!({"123837392027_CloudTrail_us-east-1": e.kept.len()})
    );
    assert_eq!(v["delivery"]["delivered"], e.kept.len());
    assert_eq!(v["delivery"]["notAccepted"], serde_json::json!({}));
    assert_eq!(v["insights"]["enabled"], true);
    assert_eq!(v["insights"]["forwardedNative"], e.insights.len());
    let calls = &v["awsCalls"];
    let bytes: usize = e.kept.iter().map(|r| r.len() + 26).sum();
    assert_eq!(calls["cloudWatchLogs"]["ingestedBytes"], bytes);
    assert_eq!(calls["cloudWatchLogs"]["events"], e.kept.len());
    // One ledger claim per delivered record, and a begin and a finish per delivery message.
    let writes = calls["dynamoDbPutItem"]["calls"].as_u64().unwrap() as usize;
    let messages = calls["sqsSendMessageBatch"]["messages"].as_u64().unwrap() as usize;
    assert!(
        writes > e.kept.len() && writes <= e.kept.len() + 2 * messages,
        "{writes}"
    );
    assert_eq!(calls["dynamoDbPutItem"]["writeRequestUnits"], writes);
    let detections = v["detections"]["reported"].as_u64().unwrap() as usize;
    assert_eq!(
        calls["eventBridgePutEvents"]["entries"],
        e.insights.len() + detections
    );
    assert_eq!(calls["s3GetObject"]["calls"], v["files"]["read"]);
    // Each SQS message is at most 256 KiB, so it is at most 4 billed requests; the kept
    // records' bytes need at least this many 64 KB chunks.
    let sqs = &calls["sqsSendMessageBatch"];
    let (messages, billed) = (
        sqs["messages"].as_u64().unwrap(),
        sqs["billedRequests"].as_u64().unwrap(),
    );
    assert!(
        billed <= 4 * messages && billed * 65_536 >= bytes as u64,
        "{sqs}"
    );
    let parts = ["s3GetObject", "sqsSendMessageBatch", "cloudWatchLogs"]
        .iter()
        .chain(&["dynamoDbPutItem", "eventBridgePutEvents"])
        .map(|k| calls[*k]["usd"].as_f64().unwrap())
        .sum::<f64>();
    assert!((calls["totalUsd"].as_f64().unwrap() - parts).abs() < 1e-12);
    assert!(v["prices"]["source"]
        .as_str()
        .unwrap()
        .contains("as published in 2025"));
    assert_eq!(v["problems"], serde_json::json!([]));

    // The same numbers as the table.
    assert_eq!(row(&table, "records", "kept"), v["records"]["kept"]);
    assert_eq!(
        row(&table, "AWS calls", "SQS SendMessageBatch"),
        sqs["calls"]
    );
    assert_eq!(
        price(&table, "SQS SendMessageBatch"),
        format!("{:.6}", sqs["usd"].as_f64().unwrap())
    );
    assert_eq!(
        price(&table, "total"),
        format!("{:.6}", calls["totalUsd"].as_f64().unwrap())
    );
}

#[test]
fn a_log_file_on_stdin_gzip_or_not_is_replayed_like_the_file() {
    let file = log_files(&sample_trail())
        .into_iter()
        .find(|f| f.to_string_lossy().contains("_CloudTrail_"))
        .unwrap();
    let gz = std::fs::read(&file).unwrap();
    let records = records_of(&gz);
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    for (name, bytes) in [("gz", &gz), ("plain", &plain)] {
        let out = temp_dir(&format!("stdin-{name}"));
        let (code, stdout, stderr) = trailwatch(
            &["replay", "-", "--out", p(&out), "--json"],
            Some(bytes.as_slice()),
        );
        assert_eq!(code, 0, "{name}: {stderr}");
        let v = json(&stdout);
        assert_eq!(v["files"]["read"], 1);
        assert_eq!(v["records"]["read"], records.len());
        let streams = streams_in(&out);
        let delivered: Vec<&String> = streams.values().flatten().collect();
        let expected: Vec<&String> = records
            .iter()
            .filter(|r| json(r)["eventCategory"] == "Management")
            .collect();
        let (mut delivered, mut expected) = (delivered, expected);
        delivered.sort();
        expected.sort();
        assert_eq!(delivered, expected, "{name}");
    }
    // A file and stdin together; stdin twice is an error of the arguments.
    let out = temp_dir("stdin-and-file");
    let (code, stdout, _) = trailwatch(
        &["replay", "-", p(&file), "--out", p(&out), "--json"],
        Some(&gz),
    );
    assert_eq!(code, 0);
    let v = json(&stdout);
    assert_eq!(v["files"]["read"], 2);
    assert_eq!(v["records"]["read"], 2 * records.len());
    assert_eq!(
        v["records"]["duplicates"], v["records"]["kept"],
        "the same records twice: the second copy is all duplicates"
    );
    let (code, _, stderr) = trailwatch(&["replay", "-", "-", "--out", p(&out)], Some(&gz));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("once"), "{stderr}");
    // Garbage on stdin: processed with a problem, named "(stdin)".
    let (code, _, stderr) = trailwatch(&["replay", "-", "--out", p(&out)], Some(b"not a log file"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("(stdin)"), "{stderr}");
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
    std::fs::write(input.join("5-not-cloudtrail.json"), r#"{"hello":1}"#).unwrap();
    let out = temp_dir("broken-out");
    let (code, stdout, stderr) = replay(&[p(&input), "--out", p(&out)]);
    assert_eq!(code, 1, "problems make the exit code 1\n{stdout}\n{stderr}");
    assert!(stderr.contains("2-bad-record.json record 0"), "{stderr}");
    assert!(
        stderr.contains("readOnly") || stderr.contains("perhaps"),
        "{stderr}"
    );
    assert!(stderr.contains("3-truncated.json.gz"), "{stderr}");
    assert!(stderr.contains("5-not-cloudtrail.json"), "{stderr}");
    let text =
        std::fs::read_to_string(out.join("111122223333_CloudTrail_us-east-1.jsonl")).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| json(l)["eventID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a1", "b2", "d1"],
        "the good records around the bad ones are delivered"
    );
    assert_eq!(row(&stdout, "files", "read"), 5);
    assert_eq!(row(&stdout, "files", "failed"), 2);
    assert_eq!(row(&stdout, "records", "rejected"), 1);
    assert_eq!(row(&stdout, "records", "kept"), 3);

    // The same in JSON: the problems with their file and position, the exit code.
    let (code, stdout, _) = replay(&[p(&input), "--out", p(&out), "--json"]);
    assert_eq!(code, 1);
    let v = json(&stdout);
    assert_eq!(v["exitCode"], 1);
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("2-bad-record.json record 0"));
    assert!(problems[1].contains("3-truncated.json.gz") && problems[1].contains("truncated"));
}

#[test]
fn what_cannot_run_exits_2_and_says_why() {
    let tmp = temp_dir("usage");
    let out = tmp.join("out");
    let trail = sample_trail();
    // Missing input.
    let (code, stdout, stderr) = replay(&[p(&tmp.join("missing")), "--out", p(&out)]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(
        stderr.contains("missing: no such file or folder"),
        "{stderr}"
    );
    // Output folder under a regular file.
    std::fs::write(tmp.join("file"), "x").unwrap();
    let (code, _, stderr) = replay(&[p(&trail), "--out", p(&tmp.join("file/out"))]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("file/out"), "{stderr}");
    // Output "folder" that is a file.
    let (code, _, stderr) = replay(&[p(&trail), "--out", p(&tmp.join("file"))]);
    assert_eq!(code, 2, "{stderr}");
    // Configuration: unreadable, not JSON, invalid selectors.
    std::fs::write(tmp.join("not-json.json"), "{").unwrap();
    std::fs::write(
        tmp.join("invalid.json"),
        r#"{"AdvancedEventSelectors":[{"FieldSelectors":[{"Field":"eventCategory","Equals":["Nonsense"]}]}]}"#,
    )
    .unwrap();
    for config in ["missing.json", "not-json.json", "invalid.json"] {
        let (code, stdout, stderr) = replay(&[
            p(&trail),
            "--config",
            p(&tmp.join(config)),
            "--out",
            p(&out),
        ]);
        assert_eq!((code, stdout.as_str()), (2, ""), "{config}: {stderr}");
        assert!(stderr.contains(config), "{config}: {stderr}");
    }
    // Arguments: no input, a bad time, an unknown flag.
    for args in [
        vec!["--out", p(&out)],
        vec![p(&trail), "--out", p(&out), "--now", "yesterday"],
        vec![p(&trail), "--out", p(&out), "--frobnicate"],
    ] {
        let (code, _, stderr) = replay(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    assert!(
        !out.exists(),
        "nothing written when the run could not start"
    );
}

#[test]
fn records_cloudwatch_logs_would_refuse_are_counted_not_failed() {
    let out = temp_dir("too-old");
    let (code, stdout, stderr) = replay(&[
        p(&sample_trail()),
        "--config",
        p(&trail_config()),
        "--out",
        p(&out),
        "--now",
        "2030-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 0, "the input is fine: {stderr}");
    let kept = sample_expectation().kept.len() as u64;
    assert_eq!(row(&stdout, "streams", "not accepted: too old"), kept);
    assert_eq!(
        row(&stdout, "AWS calls", "CloudWatch Logs bytes ingested"),
        0
    );
    assert!(stderr.contains("would not be accepted"), "{stderr}");
    assert!(streams_in(&out).is_empty());
}

#[test]
fn real_records_from_shared_data_all_reach_their_stream() {
    let data = root().join("../shared/data/invictus-ir");
    assert!(data.is_dir(), "shared data missing at {}", data.display());
    let out = temp_dir("invictus");
    let (code, stdout, stderr) = replay(&[
        p(&data),
        "--config",
        p(&trail_config()),
        "--out",
        p(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let all = records_under(&data);
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut kms = 0;
    for raw in &all {
        let r = json(raw);
        assert_eq!(r["eventCategory"], "Management");
        if r["eventSource"] == "kms.amazonaws.com" {
            kms += 1;
            continue;
        }
        let stream = format!(
            "{}_CloudTrail_{}",
            r["recipientAccountId"].as_str().unwrap(),
            r["awsRegion"].as_str().unwrap()
        );
        expected.entry(stream).or_default().push(raw.clone());
    }
    let ids: BTreeSet<&str> = all
        .iter()
        .map(|r| {
            r.split("\"eventID\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), all.len(), "no repeated eventID in this trail");
    assert_eq!(v["files"]["read"], log_files(&data).len());
    assert_eq!(v["records"]["read"], all.len());
    assert_eq!(v["records"]["dropped"]["not_selected"], kms);
    let mut got = streams_in(&out);
    for (stream, records) in expected.iter_mut() {
        records.sort();
        let lines = got.get_mut(stream).expect(stream);
        lines.sort();
        assert!(lines == records, "stream {stream} differs");
        assert_eq!(v["streams"][stream], records.len());
    }
    assert_eq!(got.len(), expected.len());
}

/// A trail built by scripts/gen-corpus.py (real records resampled into the AWSLogs layout over
/// 48 hours, 8 accounts and several regions, 0.5% repeated deliveries), small.
#[test]
fn a_generated_awslogs_trail_replays_with_every_figure_accounted_for() {
    let corpus = temp_dir("gen-corpus");
    let status = Command::new("python3")
        .arg(root().join("scripts/gen-corpus.py"))
        .args(["--out", p(&corpus), "--size-mb", "2", "--subset-mb", "1"])
        .args(["--seed", "1"])
        .stderr(Stdio::null())
        .status()
        .expect("python3 runs scripts/gen-corpus.py");
    assert!(status.success());
    let manifest = json(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap());
    let trail = corpus.join("AWSLogs");
    let out = temp_dir("gen-out");
    let (code, stdout, stderr) = replay(&[p(&trail), "--out", p(&out), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    let records = records_under(&trail);
    assert_eq!(records.len() as u64, manifest["records"].as_u64().unwrap());
    assert_eq!(
        v["files"]["read"],
        manifest["files"].as_array().unwrap().len()
    );
    assert_eq!(v["records"]["read"], records.len());
    let r = &v["records"];
    let dropped: u64 = r["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        r["kept"].as_u64().unwrap() + dropped + r["duplicates"].as_u64().unwrap(),
        records.len() as u64,
        "every record is kept, dropped or a duplicate"
    );
    // Repeated deliveries: never more duplicates than repeated eventIDs in the input.
    let mut seen = BTreeSet::new();
    let repeats = records
        .iter()
        .filter(|raw| !seen.insert(json(raw)["eventID"].as_str().unwrap().to_owned()))
        .count();
    assert!(repeats > 0 && r["duplicates"].as_u64().unwrap() <= repeats as u64);

    // What was delivered: each stream holds its account's and region's records, each eventID
    // once, and the counts and bytes match the table.
    let streams = streams_in(&out);
    assert!(streams.len() > 5, "{:?}", streams.keys());
    let mut ids = BTreeSet::new();
    let mut bytes = 0;
    for (stream, lines) in &streams {
        assert_eq!(v["streams"][stream], lines.len());
        for line in lines {
            let rec = json(line);
            let expected = format!(
                "{}_CloudTrail_{}",
                rec["recipientAccountId"].as_str().unwrap(),
                rec["awsRegion"].as_str().unwrap()
            );
            assert_eq!(&expected, stream);
            assert!(ids.insert(rec["eventID"].as_str().unwrap().to_owned()));
            assert!(records.contains(line), "delivered exactly as read");
            bytes += line.len() + 26;
        }
    }
    assert_eq!(ids.len() as u64, r["kept"].as_u64().unwrap());
    let calls = &v["awsCalls"];
    assert_eq!(calls["cloudWatchLogs"]["ingestedBytes"], bytes);
    // One ledger claim per delivered record, and a begin and a finish per delivery message.
    let writes = calls["dynamoDbPutItem"]["calls"].as_u64().unwrap() as usize;
    let messages = calls["sqsSendMessageBatch"]["messages"].as_u64().unwrap() as usize;
    assert!(
        writes > ids.len() && writes <= ids.len() + 2 * messages,
        "{writes}"
    );
    assert_eq!(calls["s3GetObject"]["calls"], v["files"]["read"]);

    // The selection agrees with `selectors explain` over the same files (a separate reader).
    let config = corpus.join("trail.json");
    std::fs::write(&config, "{}").unwrap();
    let (code, explain, stderr) = trailwatch(
        &["selectors", "explain", p(&config), p(&trail), "--json"],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let explain = json(&explain);
    assert_eq!(
        explain["kept"]["records"].as_u64().unwrap(),
        r["kept"].as_u64().unwrap() + r["duplicates"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&corpus);
}

/// A log file of `n` management records with distinct eventIDs, gzip.
fn big_log_file(n: usize) -> Vec<u8> {
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"eventVersion":"1.08","eventTime":"2024-01-01T00:{:02}:{:02}Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","eventID":"id-{i}","eventType":"AwsApiCall","eventCategory":"Management","readOnly":true,"recipientAccountId":"111122223333","requestParameters":{{"padding":"{}"}}}}"#,
                (i / 60) % 60,
                i % 60,
                "x".repeat(200)
            )
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!(r#"{{"Records":[{}]}}"#, records.join(",")).as_bytes())
        .unwrap();
    gz.finish().unwrap()
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let input = temp_dir("progress-in");
    for f in 0..4 {
        std::fs::write(
            input.join(format!("part-{f}.json.gz")),
            big_log_file(40_000),
        )
        .unwrap();
    }
    // Not a terminal (a pipe): the summary, nothing on stderr.
    // (The input is large enough for the bar to show on a terminal: second half.)
    let out = temp_dir("progress-pipe");
    let (code, stdout, stderr) = replay(&[p(&input), "--out", p(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(row(&stdout, "records", "read"), 160_000);

    // On a terminal (script(1) gives the command a pseudo-terminal; stdout is discarded so
    // what comes back is stderr): the bar with files done and records per second.
    let out = temp_dir("progress-tty");
    let command = format!(
        "{} replay {} --out {} > /dev/null",
        env!("CARGO_BIN_EXE_trailwatch"),
        p(&input),
        p(&out)
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(text.contains("/4 files"), "{text:?}");
    assert!(text.contains("records") && text.contains("/s"), "{text:?}");
}

#[test]
fn help_shows_examples_json_fields_and_exit_codes() {
    let (code, stdout, _) = replay(&["--help"]);
    assert_eq!(code, 0);
    for text in [
        "Examples:",
        "replay - --out",
        "--json",
        "awsCalls",
        "totalUsd",
        "Exit codes: 0",
    ] {
        assert!(stdout.contains(text), "{text}: {stdout}");
    }
}

#[test]
fn a_folder_without_log_files_is_not_an_empty_success() {
    let dir = temp_dir("no-logs");
    std::fs::write(dir.join("notes.txt"), "not a log").unwrap();
    let (code, stdout, stderr) = replay(&[p(&dir), "--out", p(&dir.join("out"))]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.contains("no log files"), "{stderr}");
}

/// An archive of `days` days as CloudTrail lays it out: for each of three accounts and two
/// regions, one file every `every_days` days named with its delivery stamp, each holding
/// `per_file` management records of the minutes before it. Returns the folder and every record.
fn long_archive(days: i64, every_days: i64, per_file: usize) -> (PathBuf, Vec<Value>) {
    use trailwatch::time::{format_event_time, parse_event_time, MS_PER_DAY, MS_PER_MINUTE};
    let dir = temp_dir("long-archive");
    let start = parse_event_time("2024-01-01T00:00:00Z").unwrap();
    let mut records = Vec::new();
    for account in ["111111111111", "222222222222", "333333333333"] {
        for region in ["us-east-1", "eu-west-1"] {
            for day in (0..days).step_by(every_days as usize) {
                let delivered = start + day * MS_PER_DAY + 17 * MS_PER_MINUTE;
                let stamp: String = format_event_time(delivered)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(13)
                    .collect();
                let (date, _) = stamp.split_at(8);
                let folder = dir.join(format!(
                    "AWSLogs/{account}/CloudTrail/{region}/{}/{}/{}",
                    &date[..4],
                    &date[4..6],
                    &date[6..]
                ));
                std::fs::create_dir_all(&folder).unwrap();
                let file: Vec<Value> = (0..per_file)
                    .map(|i| {
                        serde_json::json!({
                            "eventVersion": "1.09",
                            "eventTime": format_event_time(delivered - (3 + i as i64) * MS_PER_MINUTE),
                            "eventSource": "ec2.amazonaws.com",
                            "eventName": "DescribeInstances",
                            "awsRegion": region,
                            "eventID": format!("{account}-{region}-{day}-{i}"),
                            "eventType": "AwsApiCall",
                            "eventCategory": "Management",
                            "managementEvent": true,
                            "readOnly": true,
                            "recipientAccountId": account,
                        })
                    })
                    .collect();
                let name =
                    format!("{account}_CloudTrail_{region}_{stamp}Z_abcdefghijklmnop.json.gz");
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(
                    serde_json::json!({ "Records": file })
                        .to_string()
                        .as_bytes(),
                )
                .unwrap();
                std::fs::write(folder.join(name), gz.finish().unwrap()).unwrap();
                records.extend(file);
            }
        }
    }
    (dir, records)
}

#[test]
fn a_120_day_archive_writes_every_selected_record_and_now_shows_what_a_backfill_loses() {
    use trailwatch::time::{parse_event_time, MS_PER_DAY};
    let (archive, records) = long_archive(120, 3, 5);
    let out = temp_dir("long-archive-out");
    let (code, stdout, stderr) = replay(&[p(&archive), "--out", p(&out), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v = json(&stdout);
    assert_eq!(v["records"]["read"], records.len());
    assert_eq!(v["records"]["kept"], records.len());
    assert_eq!(
        v["delivery"]["notAccepted"],
        serde_json::json!({}),
        "{stdout}"
    );
    assert_eq!(v["delivery"]["delivered"], records.len());
    let written: usize = streams_in(&out).values().map(Vec::len).sum();
    assert_eq!(
        written,
        records.len(),
        "every selected record is in the output"
    );
    assert_eq!(streams_in(&out).len(), 6, "three accounts by two regions");

    // Delivered at one time, the day after the archive ends: everything older than 14 days is
    // refused, as a late backfill would see it.
    let now = "2024-05-01T00:00:00Z";
    let oldest_allowed = parse_event_time(now).unwrap() - 14 * MS_PER_DAY;
    let too_old = records
        .iter()
        .filter(|r| parse_event_time(r["eventTime"].as_str().unwrap()).unwrap() < oldest_allowed)
        .count();
    assert!(too_old > records.len() / 2);
    let late = temp_dir("long-archive-now");
    let (code, stdout, stderr) = replay(&[p(&archive), "--out", p(&late), "--now", now, "--json"]);
    assert_eq!(code, 0, "refusals are not input problems: {stderr}");
    let v = json(&stdout);
    assert_eq!(v["delivery"]["notAccepted"]["too_old"], too_old);
    assert_eq!(v["delivery"]["delivered"], records.len() - too_old);
    let written: usize = streams_in(&late).values().map(Vec::len).sum();
    assert_eq!(written, records.len() - too_old);
    let (_, table, stderr) = replay(&[p(&archive), "--out", p(&late), "--now", now]);
    assert_eq!(
        row(&table, "streams", "not accepted: too old"),
        too_old as u64
    );
    assert!(stderr.contains("would not be accepted"), "{stderr}");
    for dir in [archive, out, late] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
