//! Support for the end-to-end tests: the moto server's SDK configuration, unique resource
//! names, real CloudTrail records with their times moved to now, and draining SQS queues
//! into the events Lambda would receive.
//!
//! The tests need a moto server on loopback: `scripts/test.sh` starts one and exports
//! `TRAILWATCH_TEST_ENDPOINT`; otherwise the endpoint in `target/moto.endpoint`
//! (written by `scripts/moto.sh start`) is used. Without either, the tests fail and say so.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde_json::value::RawValue;
use trailwatch::time::{format_event_time, parse_event_time, MS_PER_MINUTE};

pub mod deployed;
pub mod invocations;
pub use deployed::{DeployedFunction, DeployedStack, StackOptions};

pub const REGION: &str = "us-east-1";

/// The moto endpoint the tests talk to.
pub fn endpoint() -> String {
    if let Ok(ep) = std::env::var("TRAILWATCH_TEST_ENDPOINT") {
        return ep;
    }
    let file = repo_root().join("target/moto.endpoint");
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            panic!(
                "no moto server: run the tests with scripts/test.sh, or start one with \
                 scripts/moto.sh start (looked for TRAILWATCH_TEST_ENDPOINT and {})",
                file.display()
            )
        })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn shared_data() -> PathBuf {
    let dir = repo_root().join("../shared/data");
    assert!(dir.is_dir(), "shared data missing at {}", dir.display());
    dir
}

/// The environment a `trailwatch` command run in a test reads, as a user would set it:
/// AWS_ENDPOINT_URL at moto, dummy credentials, no instance metadata. Set once per process.
pub fn cli_environment() {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint());
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

/// The production SDK configuration, pointed at moto with dummy credentials.
pub async fn sdk() -> SdkConfig {
    sdk_with(aws_sdk_s3::config::Credentials::new(
        "testing", "testing", None, None, "moto",
    ))
    .await
}

/// The production SDK configuration, pointed at moto, signing with `credentials`.
pub async fn sdk_with(credentials: aws_sdk_s3::config::Credentials) -> SdkConfig {
    trailwatch_aws::config_loader()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await
}

/// What moto_server.py decided for each request signed with a role's session: one JSON object
/// a line (`key`, `action`, `resource`, `allowed`). `scripts/moto.sh` names the file.
pub fn calls_log() -> PathBuf {
    std::env::var_os("TRAILWATCH_TEST_CALLS_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/moto-calls.jsonl"))
}

/// S3 against moto needs path-style addressing (no bucket subdomains on 127.0.0.1).
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A name unique to this test process and call, for parallel tests on one moto server.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The records of a real CloudTrail log file, as exact JSON texts.
pub fn records_of(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct File<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a RawValue>,
    }
    let file: File = serde_json::from_str(text).expect("a CloudTrail log file");
    file.records.iter().map(|r| r.get().to_owned()).collect()
}

/// Moves every record's eventTime by the same offset so the newest is `newest_ago_min`
/// minutes before now (CloudWatch Logs refuses events older than 14 days). Only the time
/// text changes; every other byte of each record stays as recorded.
pub fn recent(records: &[String], newest_ago_min: i64) -> Vec<String> {
    let time_of = |r: &str| {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        v["eventTime"].as_str().unwrap().to_owned()
    };
    let newest = records
        .iter()
        .map(|r| parse_event_time(&time_of(r)).unwrap())
        .max()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let shift = now - newest_ago_min * MS_PER_MINUTE - newest;
    let shift = shift - shift % 1000;
    records
        .iter()
        .map(|r| {
            let old = time_of(r);
            let new = format_event_time(parse_event_time(&old).unwrap() + shift);
            let from = format!("\"eventTime\":\"{old}\"");
            assert!(r.contains(&from), "compact eventTime expected in {r}");
            r.replacen(&from, &format!("\"eventTime\":\"{new}\""), 1)
        })
        .collect()
}

/// A gzip CloudTrail log file of `records`, compact as CloudTrail writes it.
pub fn gzip_log_file(records: &[String]) -> Vec<u8> {
    let body = format!("{{\"Records\":[{}]}}", records.join(","));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    gz.finish().unwrap()
}

pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap()
        .clone()
}

/// Every message of a log stream, oldest first, following the forward token to the end.
pub async fn read_stream(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
) -> Vec<String> {
    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        let events = out.events();
        messages.extend(events.iter().filter_map(|e| e.message().map(str::to_owned)));
        let next = out.next_forward_token().map(str::to_owned);
        if events.is_empty() || next == token {
            break;
        }
        token = next;
    }
    messages
}

/// The production SDK configuration with dummy credentials, pointed at `endpoint` (a fault
/// proxy in front of moto) with `attempt_timeout` per attempt, so slow-response faults
/// time out quickly.
pub async fn sdk_at(endpoint: &str, attempt_timeout: std::time::Duration) -> SdkConfig {
    trailwatch_aws::config_loader()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(trailwatch_aws::CONNECT_TIMEOUT)
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .load()
        .await
}

/// Receives (and deletes, with DeleteMessageBatch) every message waiting in the queue, as the
/// SQS event Lambda's trigger would build from them.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> SqsEvent {
    let mut records = Vec::new();
    loop {
        let messages = receive(sqs, url, 10, 30).await;
        if messages.is_empty() {
            break;
        }
        let refs: Vec<&SqsMessage> = messages.iter().collect();
        settle(sqs, url, &refs, &[]).await;
        records.extend(messages);
    }
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// Receives up to `max` messages, as Lambda's SQS poller does (with their system attributes),
/// invisible for `visibility` seconds; an empty batch when none is visible.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
    visibility: i32,
) -> Vec<SqsMessage> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .visibility_timeout(visibility)
        .wait_time_seconds(0)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            serde_json::from_value(serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": m.attributes().map(|a| a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>()).unwrap_or_default(),
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": REGION,
            }))
            .unwrap()
        })
        .collect()
}

/// Ends received messages as Lambda's poller does: deletes those answered for, and makes
/// `again` visible at once (here, where SQS would wait for the visibility timeout).
pub async fn settle(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    answered: &[&SqsMessage],
    again: &[&SqsMessage],
) {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    for chunk in answered.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        let out = sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
    let receipts: Vec<(&str, i32)> = again
        .iter()
        .map(|m| (m.receipt_handle.as_deref().unwrap(), 0))
        .collect();
    let (failed, reason) = trailwatch_aws::sqs::SqsSender::new(sqs.clone())
        .hide(url, &receipts)
        .await;
    assert_eq!(failed, 0, "{reason:?}");
}

/// The invictus-ir trail: each file's name and its records as exact JSON texts, in name order.
pub fn invictus_files() -> Vec<(String, Vec<String>)> {
    let mut paths: Vec<_> = std::fs::read_dir(shared_data().join("invictus-ir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, records_of(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect()
}

/// A rule on `bus` (`None`: the default bus) with `pattern`, routing to the queue at
/// `queue_url` — how the tests read back what reached a bus.
pub async fn route_to_queue(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: Option<&str>,
    pattern: &str,
    queue_url: &str,
) {
    let rule = unique("rule");
    events
        .put_rule()
        .name(&rule)
        .set_event_bus_name(bus.map(str::to_owned))
        .event_pattern(pattern)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&rule)
        .set_event_bus_name(bus.map(str::to_owned))
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn(sqs, queue_url).await)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}
