//! The Insights function's asynchronous invocations, as Lambda hands them over: CloudWatch
//! Logs subscription batches and schedule ticks.

use aws_lambda_events::cloudwatch_logs::{LogEntry, LogsEvent};
use serde_json::{json, Value};
use trailwatch::record::Record;
use trailwatch::time::format_event_time;

/// A CloudWatch Logs subscription batch of `records`; `tag` makes its event ids unique.
pub fn logs_batch(tag: &str, records: &[String]) -> LogsEvent {
    let mut event = LogsEvent::default();
    event.aws_logs.data.message_type = "DATA_MESSAGE".into();
    event.aws_logs.data.owner = "111122223333".into();
    event.aws_logs.data.log_group = "CloudTrail/trailwatch".into();
    event.aws_logs.data.log_stream = "111122223333_CloudTrail_us-east-1".into();
    event.aws_logs.data.subscription_filters = vec!["trailwatch-insights".into()];
    for (i, text) in records.iter().enumerate() {
        let mut entry = LogEntry::default();
        entry.id = format!("{tag}{i:06}");
        entry.timestamp = Record::parse(text).unwrap().event_time_ms().unwrap();
        entry.message = text.clone();
        event.aws_logs.data.log_events.push(entry);
    }
    event
}

/// The Lambda payload CloudWatch Logs sends: `{"awslogs":{"data":"<base64 of gzip>"}}`.
/// (`aws_lambda_events` serialises without base64 padding but decodes with it, as CloudWatch
/// Logs sends it: the padding is put back here.)
pub fn subscription_payload(event: &LogsEvent) -> Value {
    let mut payload = serde_json::to_value(event).unwrap();
    let data = payload["awslogs"]["data"].as_str().unwrap().to_owned();
    let padded = format!("{data}{}", "=".repeat((4 - data.len() % 4) % 4));
    payload["awslogs"]["data"] = Value::String(padded);
    payload
}

pub fn schedule_event(now_ms: i64, n: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("schedule-{n}"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": format_event_time(now_ms - now_ms % 1000),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/every-minute"],
        "detail": {}
    })
}
