//! `trailwatch lookup --log-group` against CloudWatch Logs on moto: a few hundred real
//! CloudTrail records (invictus-ir, times moved to the last hour) in two streams of a log
//! group, read back with FilterLogEvents over several pages, must give exactly what the same
//! lookup gives over the same records in a local folder — for every attribute key, a time
//! range, a stream prefix (which moto ignores: lookup checks it itself) and paged output.
//!
//! The command runs in this process (`trailwatch_cli::lookup::{parse_args, run_to}`; the
//! binary is not built for this crate), configured as a user would configure it: AWS_ENDPOINT_URL, dummy credentials and `--region`.

use std::path::{Path, PathBuf};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;
use trailwatch::time::parse_event_time;
use trailwatch_e2e::{cli_environment, invictus_files, recent, sdk, unique, REGION};
use trailwatch_e2e::{DeployedStack, StackOptions};

const ACCOUNT: &str = "123837392027";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `trailwatch lookup <args>`: exit code, stdout, stderr.
fn lookup(args: &[&str]) -> (u8, String, String) {
    let parsed = trailwatch_cli::lookup::parse_args(args).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = trailwatch_cli::lookup::run_to(parsed, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

struct Trail {
    group: String,
    /// stream name → its records, oldest first
    streams: Vec<(String, Vec<String>)>,
    local: PathBuf,
}

/// The stack's log group with two streams of real records, and the same records as a replay
/// folder.
fn trail() -> &'static Trail {
    static TRAIL: std::sync::OnceLock<Trail> = std::sync::OnceLock::new();
    TRAIL.get_or_init(|| {
        cli_environment();
        let records: Vec<String> = invictus_files()
            .into_iter()
            .flat_map(|(_, records)| records)
            .step_by(7)
            .collect();
        let records = recent(&records, 30);
        assert!(records.len() > 300, "{}", records.len());
        let time = |r: &String| {
            let v: Value = serde_json::from_str(r).unwrap();
            parse_event_time(v["eventTime"].as_str().unwrap()).unwrap()
        };
        let mut streams: Vec<(String, Vec<String>)> = vec![
            (format!("{ACCOUNT}_CloudTrail_{REGION}"), Vec::new()),
            (format!("{ACCOUNT}_CloudTrail_{REGION}_2"), Vec::new()),
        ];
        for (i, r) in records.into_iter().enumerate() {
            streams[usize::from(i % 3 == 0)].1.push(r);
        }
        for (_, records) in &mut streams {
            records.sort_by_key(time);
        }
        // The trail log group of template.yaml deployed in moto: what a user looks up.
        let group = DeployedStack::deploy(&StackOptions::default())
            .output("TrailLogGroupName")
            .to_owned();
        runtime().block_on(async {
            let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk().await);
            for (stream, records) in &streams {
                logs.create_log_stream()
                    .log_group_name(&group)
                    .log_stream_name(stream)
                    .send()
                    .await
                    .unwrap();
                for batch in records.chunks(100) {
                    let events = batch
                        .iter()
                        .map(|r| {
                            InputLogEvent::builder()
                                .timestamp(time(r))
                                .message(r)
                                .build()
                                .unwrap()
                        })
                        .collect();
                    let out = logs
                        .put_log_events()
                        .log_group_name(&group)
                        .log_stream_name(stream)
                        .set_log_events(Some(events))
                        .send()
                        .await
                        .unwrap();
                    assert!(out.rejected_log_events_info().is_none(), "{out:?}");
                }
            }
        });
        let local =
            std::env::temp_dir().join(format!("trailwatch-e2e-lookup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&local);
        std::fs::create_dir_all(&local).unwrap();
        for (stream, records) in &streams {
            std::fs::write(
                local.join(format!("{stream}.jsonl")),
                records.join("\n") + "\n",
            )
            .unwrap();
        }
        std::fs::write(local.join("insights.jsonl"), "").unwrap();
        Trail {
            group,
            streams,
            local,
        }
    })
}

/// Runs the same lookup over the log group (plus `group_only` arguments) and over `local`:
/// both succeed and print the same thing. Returns the log group's output and stderr.
fn same_both_ways(local: &Path, group_only: &[&str], args: &[&str]) -> (String, String) {
    let t = trail();
    let mut remote = vec![
        "--log-group",
        t.group.as_str(),
        "--region",
        REGION,
        "--log-page-limit",
        "100",
    ];
    remote.extend_from_slice(group_only);
    remote.extend_from_slice(args);
    let (code, from_group, err) = lookup(&remote);
    assert_eq!(code, 0, "{args:?}\n{err}");
    let mut here = vec![local.to_str().unwrap()];
    here.extend_from_slice(args);
    let (code, from_folder, local_err) = lookup(&here);
    assert_eq!(code, 0, "{args:?}\n{local_err}");
    assert!(
        from_group == from_folder,
        "{args:?}: the log group and the folder differ\n{err}\n{local_err}"
    );
    (from_group, err)
}

fn events(stdout: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(stdout).unwrap();
    v["Events"].as_array().unwrap().clone()
}

/// FilterLogEvents calls made, from the summary line.
fn calls(stderr: &str) -> usize {
    let at = stderr.find(" FilterLogEvents calls").expect(stderr);
    let digits: String = stderr[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn every_attribute_key_over_the_log_group_equals_the_local_lookup() {
    let t = trail();
    let all: Vec<&String> = t.streams.iter().flat_map(|(_, r)| r).collect();
    let total = all.len();

    // Everything, newest first, over several FilterLogEvents pages of 100.
    let (out, err) = same_both_ways(&t.local, &[], &[]);
    assert_eq!(events(&out).len(), total);
    assert!(calls(&err) >= total.div_ceil(100), "{err}");

    let values: Vec<Value> = all
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let first = |pointer: &str, pred: &dyn Fn(&Value) -> bool| -> String {
        values
            .iter()
            .filter(|v| pred(v))
            .find_map(|v| {
                v.pointer(pointer)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| panic!("no {pointer} in the records"))
            .to_owned()
    };
    let any = |_: &Value| true;
    let bucket = first("/requestParameters/bucketName", &|v| {
        v["eventSource"] == "s3.amazonaws.com"
    });
    let session = {
        let arn = first("/userIdentity/arn", &|v| {
            v["userIdentity"]["type"] == "AssumedRole"
        });
        arn.rsplit('/').next().unwrap().to_owned()
    };
    let cases = [
        ("EventId", first("/eventID", &any)),
        (
            "EventName",
            first("/eventName", &|v| v["readOnly"] == false),
        ),
        ("ReadOnly", "false".to_owned()),
        (
            "Username",
            first("/userIdentity/userName", &|v| {
                v["userIdentity"]["type"] == "IAMUser"
            }),
        ),
        ("Username", session),
        ("ResourceType", "AWS::S3::Bucket".to_owned()),
        ("ResourceName", bucket),
        ("ResourceName", first("/resources/0/ARN", &any)),
        ("EventSource", "iam.amazonaws.com".to_owned()),
        ("AccessKeyId", first("/userIdentity/accessKeyId", &any)),
    ];
    for (key, value) in cases {
        let attribute = format!("AttributeKey={key},AttributeValue={value}");
        let (out, err) = same_both_ways(&t.local, &[], &["--lookup-attributes", &attribute]);
        let found = events(&out);
        assert!(
            !found.is_empty() && found.len() < total,
            "{key}={value}: {} events\n{err}",
            found.len()
        );
    }
}

#[test]
fn time_ranges_stream_prefixes_and_pages_over_the_log_group() {
    let t = trail();
    let mut times: Vec<String> = t
        .streams
        .iter()
        .flat_map(|(_, r)| r)
        .map(|r| {
            serde_json::from_str::<Value>(r).unwrap()["eventTime"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    times.sort();
    let (start, end) = (&times[times.len() / 3], &times[2 * times.len() / 3]);
    let (out, _) = same_both_ways(&t.local, &[], &["--start-time", start, "--end-time", end]);
    let found = events(&out);
    assert!(found.len() > 50 && found.len() < times.len());
    assert_eq!(
        found.first().unwrap()["EventTime"],
        end.replace('Z', "+00:00")
    );
    assert_eq!(
        found.last().unwrap()["EventTime"],
        start.replace('Z', "+00:00")
    );

    // Only the second stream: moto ignores logStreamNamePrefix, lookup checks each event's
    // stream itself. Compared with the lookup over that stream's file alone.
    let (second, records) = &t.streams[1];
    let file = t.local.join(format!("{second}.jsonl"));
    let (out, _) = same_both_ways(&file, &["--log-stream-name-prefix", second], &[]);
    assert_eq!(events(&out).len(), records.len());

    // Pages of 10, walked with the NextToken, the same from both sources.
    let attribute = "AttributeKey=ReadOnly,AttributeValue=true";
    let mut token: Option<String> = None;
    let mut walked = 0;
    for _ in 0..4 {
        let mut args = vec!["--lookup-attributes", attribute, "--max-results", "10"];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let (out, _) = same_both_ways(&t.local, &[], &args);
        let v: Value = serde_json::from_str(&out).unwrap();
        walked += v["Events"].as_array().unwrap().len();
        token = Some(v["NextToken"].as_str().expect("more pages").to_owned());
    }
    assert_eq!(walked, 40);
}

#[test]
fn a_missing_log_group_exits_2_and_an_unreadable_message_exits_1() {
    cli_environment();
    let (code, out, err) = lookup(&[
        "--log-group",
        "/trailwatch/no-such-group",
        "--region",
        REGION,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("ResourceNotFound"), "{err}");

    let group = unique("/trailwatch/lookup-broken");
    let stream = format!("{ACCOUNT}_CloudTrail_{REGION}");
    let good = recent(&invictus_files()[0].1[..3], 10);
    runtime().block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk().await);
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        logs.create_log_stream()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .send()
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut events: Vec<InputLogEvent> = good
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(r).unwrap();
                let t = parse_event_time(v["eventTime"].as_str().unwrap()).unwrap();
                InputLogEvent::builder()
                    .timestamp(t)
                    .message(r)
                    .build()
                    .unwrap()
            })
            .collect();
        events.push(
            InputLogEvent::builder()
                .timestamp(now)
                .message("not a record")
                .build()
                .unwrap(),
        );
        events.sort_by_key(|e| e.timestamp);
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .set_log_events(Some(events))
            .send()
            .await
            .unwrap();
    });
    let (code, out, err) = lookup(&["--log-group", &group, "--region", REGION]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("stream {stream}, event ")), "{err}");
    assert_eq!(events(&out).len(), 3, "the readable records are listed");
}
