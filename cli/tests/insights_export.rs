//! `trailwatch insights backtest --export`: the snapshot that seeds a new deployment.

use std::process::Command;

#[test]
fn backtest_exports_a_snapshot_of_every_key_it_learned() {
    let dir = std::env::temp_dir().join(format!("trailwatch-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, export) = (dir.join("insights.jsonl"), dir.join("snapshot.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["insights", "backtest"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/sample-trail"
        ))
        .arg("--out")
        .arg(&out)
        .arg("--export")
        .arg(&export)
        .status()
        .unwrap();
    assert!(status.success());
    let snapshot: trailwatch::insights::store::Snapshot =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert!(snapshot
        .origin_minute
        .is_some_and(|o| o <= snapshot.closed_through));
    assert!(!snapshot.keys.is_empty());
    for key in &snapshot.keys {
        assert!(
            key.key.event_source.ends_with(".amazonaws.com"),
            "{:?}",
            key.key
        );
        assert!(
            !key.state.is_empty() && key.state.len() <= 4096,
            "hex state within 2 KB"
        );
    }
}

fn trailwatch(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_trail() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/sample-trail"
    ))
}

#[test]
fn backtest_goes_on_past_a_damaged_file_and_exits_1() {
    use std::io::Write;
    let dir = temp_dir("backtest-damaged");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut copied = 0;
    let mut stack = vec![sample_trail()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains("_CloudTrail_") {
                std::fs::copy(&p, logs.join(p.file_name().unwrap())).unwrap();
                copied += 1;
            }
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"Records":[{"eventTime":"2023-07-10T12:00:00Z"}"#)
        .unwrap();
    let mut damaged = gz.finish().unwrap();
    damaged.truncate(damaged.len() - 8);
    let name = "123837392027_CloudTrail_us-east-1_20230710T1210Z_damaged0000000.json.gz";
    std::fs::write(logs.join(name), damaged).unwrap();
    let (out, export) = (dir.join("insights.jsonl"), dir.join("snapshot.json"));
    let (code, _, stderr) = trailwatch(
        &[
            "insights",
            "backtest",
            logs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--export",
            export.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(name), "the damaged file is named: {stderr}");
    assert!(
        stderr.contains(&format!("{} files (1 unreadable)", copied + 1)),
        "{stderr}"
    );
    let snapshot: trailwatch::insights::store::Snapshot =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert!(!snapshot.keys.is_empty(), "the good files were read");
}

#[test]
fn backfill_says_why_it_cannot_run_and_exits_2() {
    let dir = temp_dir("backfill-usage");
    let trail = sample_trail();
    let trail = trail.to_str().unwrap();
    // AWS pointed at a closed port, with credentials, so nothing reaches a real account.
    let env = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    // No --table.
    let (code, _, stderr) = trailwatch(&["insights", "backfill", trail], &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--table"), "{stderr}");
    // Logs missing.
    let missing = dir.join("missing");
    let (code, _, stderr) = trailwatch(
        &[
            "insights",
            "backfill",
            missing.to_str().unwrap(),
            "--table",
            "t",
        ],
        &env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    // A configuration that is not one.
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"InsightSelectors":[{"InsightType":"Nope"}]}"#).unwrap();
    let (code, _, stderr) = trailwatch(
        &[
            "insights",
            "backfill",
            trail,
            "--table",
            "t",
            "--config",
            config.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
    // Logs too short to close a minute: nothing to write, and the table is not asked.
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::write(
        one.join("111122223333_CloudTrail_us-east-1_20240101T0000Z_a.json"),
        r#"{"Records":[{"eventTime":"2024-01-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","readOnly":false,"eventCategory":"Management","awsRegion":"us-east-1","recipientAccountId":"111122223333"}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = trailwatch(
        &[
            "insights",
            "backfill",
            one.to_str().unwrap(),
            "--table",
            "t",
        ],
        &env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing to backfill"), "{stderr}");
    // A table that cannot be reached: named, exit 2, after the SDK's retries.
    let (code, stdout, stderr) = trailwatch(
        &[
            "insights",
            "backfill",
            trail,
            "--table",
            "unreachable-table",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.contains("unreachable-table"), "{stderr}");
}

#[test]
fn backfill_help_has_examples_and_exit_codes() {
    let (code, stdout, _) = trailwatch(&["insights", "backfill", "--help"], &[]);
    assert_eq!(code, 0);
    for text in [
        "--table",
        "--dry-run",
        "--force",
        "--region",
        "Examples:",
        "Exit codes",
    ] {
        assert!(stdout.contains(text), "{text}: {stdout}");
    }
}

/// One write management event of IAM `name` at `ms` (epoch milliseconds).
fn iam_record(name: &str, ms: i64, n: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ci","accountId":"111122223333"}},"eventTime":"{}","eventSource":"iam.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","eventID":"{name}-{ms}-{n}"}}"#,
        trailwatch::time::format_event_time(ms)
    )
}

#[test]
fn backtest_plot_draws_the_key_that_fired_and_the_key_asked_for() {
    let dir = temp_dir("backtest-plot");
    // A day and a half of one CreateAccessKey and one TagUser every 20 minutes, then 25
    // CreateAccessKey a minute for 8 minutes.
    const DAY0_MS: i64 = 1_772_409_600_000;
    const MIN: i64 = 60_000;
    let burst = DAY0_MS + 36 * 60 * MIN;
    let mut records = Vec::new();
    let mut t = DAY0_MS;
    while t < burst {
        records.push(iam_record("CreateAccessKey", t + 7_000, 0));
        records.push(iam_record("TagUser", t + 9_000, 0));
        t += 20 * MIN;
    }
    for minute in 0..8 {
        for n in 0..25 {
            records.push(iam_record(
                "CreateAccessKey",
                burst + minute * MIN + n * 2_000,
                n as usize,
            ));
        }
    }
    let logs = dir.join("burst.json");
    std::fs::write(&logs, format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
    let (out, svg) = (dir.join("insights.jsonl"), dir.join("insights.svg"));
    let quiet_key = "111122223333/us-east-1/ApiCallRateInsight/iam.amazonaws.com/TagUser";
    let plot = |keys: &[&str]| {
        let mut args = vec!["insights", "backtest", logs.to_str().unwrap()];
        args.extend([
            "--out",
            out.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ]);
        for key in keys {
            args.extend(["--plot-key", key]);
        }
        let (code, _, stderr) = trailwatch(&args, &[]);
        (code, stderr)
    };
    let (code, stderr) = plot(&[
        quiet_key,
        "111122223333/us-east-1/ApiCallRateInsight/iam.amazonaws.com/CreateAccessKey",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("2 key(s) drawn"), "{stderr}");
    let insights = std::fs::read_to_string(&out).unwrap();
    assert!(
        insights.contains(r#""state":"Start""#),
        "the burst fired: {insights}"
    );
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg"),
        "{}",
        &picture[..picture.len().min(200)]
    );
    assert!(picture.contains("iam.amazonaws.com/CreateAccessKey"));
    assert!(picture.contains(quiet_key));
    // The Start mark (red, 2 px) and the baseline band (green) are drawn.
    assert!(picture.contains("#FF0000"), "a Start mark");
    assert!(picture.contains("#00FF00"), "a baseline band");

    // Without --plot-key: the keys that fired only. An unknown key is a clear error.
    let (code, stderr) = plot(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 key(s) drawn"), "{stderr}");
    assert!(!std::fs::read_to_string(&svg).unwrap().contains("TagUser"));
    let (code, stderr) = plot(&["nope"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--plot-key nope: no such key"), "{stderr}");
}
