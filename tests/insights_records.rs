//! Insights records: same shape as AWS's documented examples, deterministic ids, and engine
//! state that survives export/import (what the Lambda persists between invocations).

use std::path::PathBuf;

use serde_json::Value;
use trailwatch::insights::{InsightsConfig, InsightsEngine, KeyAttributions};
use trailwatch::record::Record;
use trailwatch::time::{format_event_time, MS_PER_DAY, MS_PER_MINUTE};

const T0: i64 = 1_709_683_200_000; // 2024-03-06T00:00:00Z

fn examples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/insights-examples");
    assert!(
        dir.is_dir(),
        "shared Insights examples missing at {}",
        dir.display()
    );
    dir
}

fn event(ms: i64, name: &str, error: Option<&str>, who: &str) -> String {
    let err = error.map_or(String::new(), |e| format!(r#","errorCode":"{e}""#));
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/{who}/s"}},"eventTime":"{}","eventSource":"autoscaling.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","userAgent":"codedeploy.amazonaws.com","readOnly":false,"managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"{err}}}"#,
        format_event_time(ms)
    )
}

/// Three quiet days (one call a day), then a burst with a few errors on day 3.
fn scenario() -> Vec<String> {
    let mut out = Vec::new();
    for d in 0..3 {
        out.push(event(
            T0 + d * MS_PER_DAY + 600 * MS_PER_MINUTE,
            "CompleteLifecycleAction",
            None,
            "CodeDeployRole1",
        ));
    }
    let at = T0 + 3 * MS_PER_DAY + 102 * MS_PER_MINUTE;
    for m in 0..6 {
        for i in 0..5 {
            let who = if i % 2 == 0 {
                "CodeDeployRole1"
            } else {
                "CodeDeployRole2"
            };
            let err = (m > 2 && i == 0).then_some("ValidationError");
            out.push(event(
                at + m * MS_PER_MINUTE + i * 1000,
                "CompleteLifecycleAction",
                err,
                who,
            ));
        }
    }
    out
}

fn run(engine: &mut InsightsEngine, texts: &[String]) -> Vec<String> {
    for t in texts {
        engine.observe(&Record::parse(t).unwrap());
    }
    engine.finish()
}

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `aws` exists in `ours` with the same JSON type, recursively (first array
/// element as the template). Returns the paths that differ.
fn shape_differences(aws: &Value, ours: &Value, path: &str, out: &mut Vec<String>) {
    if kind(aws) != kind(ours) {
        out.push(format!("{path}: AWS {} vs ours {}", kind(aws), kind(ours)));
        return;
    }
    match (aws, ours) {
        (Value::Object(a), Value::Object(o)) => {
            for (k, av) in a {
                match o.get(k) {
                    Some(ov) => shape_differences(av, ov, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing")),
                }
            }
            for k in o.keys() {
                if !a.contains_key(k)
                    && ![
                        "detectedAt",
                        "sourceEventCategory",
                        "baselineDuration",
                        "attributions",
                        "insightDuration",
                    ]
                    .contains(&k.as_str())
                {
                    out.push(format!("{path}.{k}: not in AWS's record"));
                }
            }
        }
        (Value::Array(a), Value::Array(o)) => {
            if let (Some(av), Some(ov)) = (a.first(), o.first()) {
                shape_differences(av, ov, &format!("{path}[0]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn start_and_end_have_the_shape_of_aws_records() {
    let ours = parsed(&run(
        &mut InsightsEngine::new(InsightsConfig::default()),
        &scenario(),
    ));
    let start = ours
        .iter()
        .find(|r| {
            r["insightDetails"]["state"] == "Start"
                && r["insightDetails"]["insightType"] == "ApiCallRateInsight"
        })
        .expect("the burst starts a call-rate Insight");
    let end = ours
        .iter()
        .find(|r| {
            r["insightDetails"]["state"] == "End" && r["sharedEventID"] == start["sharedEventID"]
        })
        .expect("and ends it");

    let dir = examples_dir();
    let aws_2024: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("awsdocs-2024-insight-start-with-attributions.json"))
            .unwrap(),
    )
    .unwrap();
    let aws_2023: Vec<Value> =
        std::fs::read_to_string(dir.join("awsdocs-cloudtrail-user-guide-2023.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut diffs = Vec::new();
    shape_differences(&aws_2024, start, "2024 Start", &mut diffs);
    for aws in &aws_2023 {
        let ours = if aws["insightDetails"]["state"] == "End" {
            end
        } else {
            start
        };
        if aws["insightDetails"]["insightType"] == "ApiCallRateInsight" {
            shape_differences(aws, ours, "2023", &mut diffs);
        }
    }
    assert!(diffs.is_empty(), "{diffs:#?}");

    // Values AWS fixes.
    assert_eq!(start["eventType"], "AwsCloudTrailInsight");
    assert_eq!(start["eventCategory"], "Insight");
    assert_eq!(
        start["eventTime"],
        format_event_time(T0 + 3 * MS_PER_DAY + 102 * MS_PER_MINUTE)
    );
    let stats = &start["insightDetails"]["insightContext"]["statistics"];
    // Baseline: from 00:00 seven days before the start day up to the start (AWS rounds to days).
    assert_eq!(stats["baselineDuration"], 7 * 1440 + 102);
    let attributes: Vec<&str> = start["insightDetails"]["insightContext"]["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert_eq!(attributes, ["userIdentityArn", "userAgent", "errorCode"]);
}

#[test]
fn ids_are_deterministic_and_shared_by_start_and_end() {
    let a = run(
        &mut InsightsEngine::new(InsightsConfig::default()),
        &scenario(),
    );
    let b = run(
        &mut InsightsEngine::new(InsightsConfig::default()),
        &scenario(),
    );
    assert!(a.len() >= 2);
    assert_eq!(a, b, "a retry must produce the same records and ids");
    let v = parsed(&a);
    let mut ids: Vec<&str> = v.iter().map(|r| r["eventID"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), v.len(), "eventIDs are unique");
    for r in &v {
        let shared = r["sharedEventID"].as_str().unwrap();
        assert_eq!(shared.len(), 36);
        let pair = v.iter().filter(|o| o["sharedEventID"] == shared).count();
        assert_eq!(pair, 2, "each Insight has exactly one Start and one End");
    }
}

#[test]
fn engine_state_survives_export_and_import() {
    let texts = scenario();
    let cut = T0 + 3 * MS_PER_DAY + 103 * MS_PER_MINUTE; // inside the burst, after its Start
    let (before, after): (Vec<String>, Vec<String>) = texts.iter().cloned().partition(|t| {
        let r = Record::parse(t).unwrap();
        r.event_time_ms().unwrap() < cut
    });
    let config = InsightsConfig::default();
    let mut a = InsightsEngine::new(config.clone());
    for t in &before {
        a.observe(&Record::parse(t).unwrap());
    }
    // Closes exactly the minutes before the cut (minute t closes at t + 1 + watermark).
    let now = cut + i64::from(config.watermark_minutes) * MS_PER_MINUTE;
    let mut first = a.advance_to(now);

    let mut b = InsightsEngine::new(config);
    b.set_origin_minute(a.origin_minute());
    b.set_closed_through(a.closed_through());
    let mut bytes = Vec::new();
    for key in a.keys().to_vec() {
        let state = a.export_key_state(&key).expect("known key");
        bytes.push(state.len());
        b.import_key_state(&key, &state).expect("state decodes");
        let json = serde_json::to_string(a.export_key_attributions(&key).unwrap()).unwrap();
        let attrs: KeyAttributions = serde_json::from_str(&json).unwrap();
        b.import_key_attributions(&key, attrs);
    }
    assert!(bytes.iter().all(|&n| n <= 2048), "{bytes:?}");

    let rest_a = run(&mut a, &after);
    let rest_b = run(&mut b, &after);
    assert!(!rest_a.is_empty(), "the End comes after the cut");
    assert_eq!(rest_a, rest_b);
    first.extend(rest_a);
    assert_eq!(
        first,
        run(&mut InsightsEngine::new(InsightsConfig::default()), &texts)
    );
}

#[test]
fn corrupt_state_is_refused_not_a_panic() {
    let mut e = InsightsEngine::new(InsightsConfig::default());
    run(&mut e, &scenario());
    let key = e.keys()[0].clone();
    let good = e.export_key_state(&key).unwrap();
    for bad in [
        &b""[..],
        &[1u8][..],
        &[2u8, 0, 0][..],
        &good[..good.len() - 1],
    ] {
        assert!(e.import_key_state(&key, bad).is_err());
    }
    assert!(e.import_key_state(&key, &good).is_ok());
}
