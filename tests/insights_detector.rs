//! Behaviour of the Insights engine on synthetic CloudTrail records (JSON strings).

use serde_json::Value;
use trailwatch::insights::{InsightsConfig, InsightsEngine};
use trailwatch::record::Record;
use trailwatch::time::{format_event_time, MS_PER_DAY, MS_PER_MINUTE};

/// 2024-03-06 00:00:00Z, a Wednesday.
const T0: i64 = 1_709_683_200_000;

fn minute(day: i64, hour: i64, min: i64) -> i64 {
    T0 + day * MS_PER_DAY + (hour * 60 + min) * MS_PER_MINUTE
}

fn event(
    ms: i64,
    source: &str,
    name: &str,
    read_only: bool,
    error: Option<&str>,
    who: &str,
) -> String {
    let err = error.map_or(String::new(), |e| {
        format!(r#","errorCode":"{e}","errorMessage":"no""#)
    });
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/{who}/s","accountId":"111122223333"}},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"agent-{who}","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"{err}}}"#,
        format_event_time(ms)
    )
}

/// A deterministic pseudo-random source (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Poisson draw (Knuth), fine for small means.
    fn poisson(&mut self, mean: f64) -> u32 {
        let l = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.next_f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// Steady background on an unrelated API so the account has history from day 0.
fn background(days: i64) -> Vec<String> {
    let mut rng = Lcg(7);
    let mut out = Vec::new();
    for m in 0..days * 1440 {
        for _ in 0..rng.poisson(0.5) {
            out.push(event(
                T0 + m * MS_PER_MINUTE + 1000,
                "ssm.amazonaws.com",
                "UpdateInstanceInformation",
                false,
                None,
                "ssm-agent",
            ));
        }
    }
    out
}

fn run(texts: &[String]) -> Vec<Value> {
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    for t in texts {
        engine.observe(&Record::parse(t).expect("test record parses"));
    }
    engine
        .finish()
        .iter()
        .map(|s| serde_json::from_str(s).expect("engine writes JSON"))
        .collect()
}

fn starts<'a>(out: &'a [Value], name: &str) -> Vec<&'a Value> {
    out.iter()
        .filter(|r| {
            r["insightDetails"]["state"] == "Start" && r["insightDetails"]["eventName"] == name
        })
        .collect()
}

fn ends<'a>(out: &'a [Value], name: &str) -> Vec<&'a Value> {
    out.iter()
        .filter(|r| {
            r["insightDetails"]["state"] == "End" && r["insightDetails"]["eventName"] == name
        })
        .collect()
}

fn burst(
    at: i64,
    minutes: i64,
    per_minute: usize,
    source: &str,
    name: &str,
    error: Option<&str>,
    read_only: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in 0..minutes {
        for i in 0..per_minute {
            out.push(event(
                at + m * MS_PER_MINUTE + i as i64 * 500,
                source,
                name,
                read_only,
                error,
                "intruder",
            ));
        }
    }
    out
}

#[test]
fn a_never_used_api_fires_on_a_small_burst() {
    let mut texts = background(4);
    let at = minute(3, 11, 5);
    texts.extend(burst(
        at,
        2,
        3,
        "iam.amazonaws.com",
        "PutUserPolicy",
        None,
        false,
    ));
    let out = run(&texts);
    let s = starts(&out, "PutUserPolicy");
    assert_eq!(s.len(), 1, "{out:#?}");
    assert_eq!(s[0]["eventTime"], format_event_time(at));
    assert_eq!(s[0]["insightDetails"]["insightType"], "ApiCallRateInsight");
    assert!(s[0]["insightDetails"].get("errorCode").is_none());
    assert!(
        starts(&out, "UpdateInstanceInformation").is_empty(),
        "steady background fired"
    );
}

#[test]
fn a_single_call_to_a_never_used_api_does_not_fire() {
    let mut texts = background(4);
    texts.push(event(
        minute(3, 14, 22),
        "kms.amazonaws.com",
        "ScheduleKeyDeletion",
        false,
        None,
        "alice",
    ));
    assert!(run(&texts).is_empty());
}

#[test]
fn a_nightly_batch_does_not_fire() {
    let mut texts = background(10);
    for day in 0..10 {
        texts.extend(burst(
            minute(day, 2, 0),
            15,
            12,
            "ec2.amazonaws.com",
            "CreateSnapshot",
            None,
            false,
        ));
    }
    let out = run(&texts);
    assert!(starts(&out, "CreateSnapshot").is_empty(), "{out:#?}");
}

#[test]
fn a_slow_ramp_does_not_fire() {
    let mut rng = Lcg(99);
    let mut texts = Vec::new();
    // 7 flat days at 2/min, then x1 -> x2.5 over 3 days.
    for m in 0..10 * 1440i64 {
        let growth = if m < 7 * 1440 {
            1.0
        } else {
            1.0 + 1.5 * (m - 7 * 1440) as f64 / (3.0 * 1440.0)
        };
        for _ in 0..rng.poisson(2.0 * growth) {
            texts.push(event(
                T0 + m * MS_PER_MINUTE + 2000,
                "kms.amazonaws.com",
                "CreateGrant",
                false,
                None,
                "lambda",
            ));
        }
    }
    let out = run(&texts);
    assert!(starts(&out, "CreateGrant").is_empty(), "{out:#?}");
}

#[test]
fn an_error_spike_fires_an_error_rate_insight_with_its_code() {
    let mut texts = background(4);
    let at = minute(3, 9, 10);
    texts.extend(burst(
        at,
        10,
        15,
        "secretsmanager.amazonaws.com",
        "GetSecretValue",
        Some("AccessDeniedException"),
        true,
    ));
    let out = run(&texts);
    let s = starts(&out, "GetSecretValue");
    assert_eq!(s.len(), 1, "{out:#?}");
    let d = &s[0]["insightDetails"];
    assert_eq!(d["insightType"], "ApiErrorRateInsight");
    assert_eq!(d["errorCode"], "AccessDeniedException");
    assert_eq!(s[0]["eventTime"], format_event_time(at));
    // Reads are analysed for errors only: no call-rate Insight for a read API.
    assert!(out
        .iter()
        .all(|r| r["insightDetails"]["insightType"] == "ApiErrorRateInsight"));
    // Error-rate attributions name principals and user agents, not error codes.
    let attrs: Vec<&str> = d["insightContext"]["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert_eq!(attrs, ["userIdentityArn", "userAgent"]);
}

#[test]
fn the_end_follows_the_burst_and_shares_the_start_id() {
    let mut texts = background(4);
    let at = minute(3, 21, 0);
    texts.extend(burst(
        at,
        45,
        8,
        "ec2.amazonaws.com",
        "RunInstances",
        None,
        false,
    ));
    let out = run(&texts);
    let (s, e) = (starts(&out, "RunInstances"), ends(&out, "RunInstances"));
    assert_eq!((s.len(), e.len()), (1, 1), "{out:#?}");
    assert_eq!(s[0]["sharedEventID"], e[0]["sharedEventID"]);
    assert_ne!(s[0]["eventID"], e[0]["eventID"]);
    assert_eq!(
        e[0]["eventTime"],
        format_event_time(at + 45 * MS_PER_MINUTE)
    );
    let stats = &e[0]["insightDetails"]["insightContext"]["statistics"];
    assert_eq!(stats["insightDuration"], 45);
    assert_eq!(stats["insight"]["average"], 8.0);
    let top = &e[0]["insightDetails"]["insightContext"]["attributions"][0]["insight"][0];
    assert_eq!(
        top["value"],
        "arn:aws:sts::111122223333:assumed-role/intruder/s"
    );
}

#[test]
fn an_intermittent_burst_does_not_flap() {
    let mut texts = background(4);
    let at = minute(3, 10, 0);
    // 40 minutes alternating 10 calls / 0 calls / 3 calls.
    for m in 0..40 {
        let n = [10, 0, 3][m as usize % 3];
        texts.extend(burst(
            at + m * MS_PER_MINUTE,
            1,
            n,
            "iam.amazonaws.com",
            "AttachRolePolicy",
            None,
            false,
        ));
    }
    let out = run(&texts);
    assert_eq!(starts(&out, "AttachRolePolicy").len(), 1, "{out:#?}");
    assert_eq!(ends(&out, "AttachRolePolicy").len(), 1);
}

#[test]
fn nothing_fires_during_warm_up() {
    let mut texts = background(1);
    texts.extend(burst(
        minute(0, 12, 0),
        5,
        20,
        "iam.amazonaws.com",
        "CreateUser",
        None,
        false,
    ));
    assert!(run(&texts).is_empty());
}

#[test]
fn output_is_deterministic() {
    let mut texts = background(4);
    texts.extend(burst(
        minute(3, 11, 5),
        3,
        4,
        "iam.amazonaws.com",
        "CreateAccessKey",
        None,
        false,
    ));
    let a = run(&texts);
    assert!(!a.is_empty());
    texts.reverse();
    assert_eq!(a, run(&texts), "order of observation changed the output");
}

#[test]
fn streaming_with_a_watermark_treats_late_files_as_baseline_only() {
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    for t in background(4) {
        engine.observe(&Record::parse(&t).unwrap());
    }
    let at = minute(3, 11, 5);
    // The clock passes the burst minutes plus the watermark before the burst's file arrives.
    assert!(engine.advance_to(at + 30 * MS_PER_MINUTE).is_empty());
    for t in burst(at, 2, 5, "iam.amazonaws.com", "PutUserPolicy", None, false) {
        engine.observe(&Record::parse(&t).unwrap());
    }
    let out = engine.advance_to(at + 60 * MS_PER_MINUTE);
    assert!(out.is_empty(), "late data fired: {out:?}");
    assert!(engine.stats().late_minutes >= 2);

    // On time, the same burst fires as soon as its first minute closes (t + 1 + 15 min).
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    for t in background(4).iter().chain(&burst(
        at,
        2,
        5,
        "iam.amazonaws.com",
        "PutUserPolicy",
        None,
        false,
    )) {
        engine.observe(&Record::parse(t).unwrap());
    }
    assert!(engine.advance_to(at + 15 * MS_PER_MINUTE).is_empty());
    let out = engine.advance_to(at + 16 * MS_PER_MINUTE);
    assert_eq!(out.len(), 1, "{out:?}");
    let v: Value = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(v["detectedAt"], format_event_time(at + 16 * MS_PER_MINUTE));
}

/// Weekday deploys at irregular times by one CI role, three a day of 6 calls within a minute;
/// on day 8 deploys coincide (16 calls in a minute) by `who`.
fn deploys_then_a_double_one(who: &str) -> Vec<String> {
    let mut texts = background(9);
    let mut rng = Lcg(11);
    let call = |ms: i64, who: &str| {
        event(
            ms,
            "lambda.amazonaws.com",
            "UpdateFunctionCode20150331v2",
            false,
            None,
            who,
        )
    };
    for day in 0..8 {
        for _ in 0..3 {
            let at = minute(day, 14 + (rng.next_f64() * 8.0) as i64, 0)
                + (rng.next_f64() * 59.0) as i64 * MS_PER_MINUTE;
            texts.extend((0..6).map(|i| call(at + i * 5000, "ci-deploy")));
        }
    }
    let at = minute(8, 16, 31);
    texts.extend((0..16).map(|i| call(at + i * 3000, who)));
    texts
}

#[test]
fn recurring_deploy_bursts_by_the_same_role_do_not_fire_when_they_coincide() {
    let out = run(&deploys_then_a_double_one("ci-deploy"));
    assert!(
        starts(&out, "UpdateFunctionCode20150331v2").is_empty(),
        "{out:#?}"
    );
}

#[test]
fn the_same_burst_by_a_new_principal_fires() {
    let out = run(&deploys_then_a_double_one("intruder"));
    let s = starts(&out, "UpdateFunctionCode20150331v2");
    assert_eq!(s.len(), 1, "{out:#?}");
    assert_eq!(s[0]["eventTime"], format_event_time(minute(8, 16, 31)));
}
