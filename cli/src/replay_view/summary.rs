//! The replay's summary as the user reads it: the table (with what the AWS calls would cost)
//! and the JSON.

use serde_json::{json, Value};
use trailwatch::local::{ReplayOptions, ReplaySummary};
use trailwatch_aws::dedup::WCU_PER_ITEM;

use crate::selectors::{Prices, PRICES};

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the AWS calls of a replay cost at list price: one place for the arithmetic.
#[derive(Debug, Clone, Copy)]
pub struct CallCosts {
    pub s3: f64,
    pub sqs: f64,
    pub cwl: f64,
    pub dynamodb_write_units: u64,
    pub dynamodb: f64,
    pub eventbridge: f64,
}

impl CallCosts {
    pub fn of(s: &ReplaySummary, prices: &Prices) -> Self {
        let a = &s.aws;
        let dynamodb_write_units = a.dynamodb_put_item as u64 * WCU_PER_ITEM;
        CallCosts {
            s3: prices.s3_get_usd(a.s3_get_object as u64),
            sqs: prices.sqs_usd(a.sqs_billed_requests as u64),
            cwl: prices.cloudwatch_logs_ingestion_usd(a.cwl_ingested_bytes as f64),
            dynamodb_write_units,
            dynamodb: prices.dynamodb_writes_usd(dynamodb_write_units),
            eventbridge: prices.eventbridge_usd(a.put_events_billed as u64),
        }
    }

    pub fn total(&self) -> f64 {
        self.s3 + self.sqs + self.cwl + self.dynamodb + self.eventbridge
    }
}

/// Calls and services the figures leave out.
const NOT_COUNTED: &str = "Lambda requests and duration, SQS receives and deletes by the \
    event source mappings, the Insights function's state table (counting, evaluation), \
    CloudWatch Logs storage, CloudTrail's own charges";

fn usd(x: f64) -> String {
    format!("{x:.6}")
}

/// One line of the summary table.
enum Row {
    Section(String),
    /// A section title with the titles of the count and price columns.
    Columns {
        title: String,
        value: String,
        usd: String,
    },
    Item {
        label: String,
        value: String,
        usd: String,
        note: String,
    },
}

fn item(label: impl Into<String>, value: u64, note: impl Into<String>) -> Row {
    Row::Item {
        label: label.into(),
        value: thousands(value),
        usd: String::new(),
        note: note.into(),
    }
}

fn priced(label: &str, value: u64, cost: Option<f64>, note: impl Into<String>) -> Row {
    Row::Item {
        label: label.to_owned(),
        value: thousands(value),
        usd: cost.map_or_else(|| "-".to_owned(), usd),
        note: note.into(),
    }
}

/// The summary as an aligned table: label, count, list price in USD, note.
pub fn summary_table(options: &ReplayOptions, s: &ReplaySummary, prices: &Prices) -> String {
    let mut rows = record_rows(s);
    rows.extend(stream_rows(s));
    rows.extend(insights_rows(options, s));
    rows.extend(detection_rows(options, s));
    rows.extend(call_rows(s, prices));
    let mut out = render(&rows);
    out.push_str(&format!("prices: {}\n", prices.source));
    out.push_str(&format!("not counted: {NOT_COUNTED}\n"));
    out.push_str(&format!("output: {}\n", options.out.display()));
    out
}

/// Files and records: what was read and what became of it.
fn record_rows(s: &ReplaySummary) -> Vec<Row> {
    let c = &s.select;
    let mut rows = vec![
        Row::Section("files".into()),
        item("read", s.files_read() as u64, ""),
        item(
            "failed",
            s.files_failed() as u64,
            "unreadable or damaged; named on stderr",
        ),
        item("digests skipped", s.digests_skipped() as u64, ""),
        Row::Section("records".into()),
        item("read", c.records_read as u64, ""),
        item("kept", c.kept as u64, "selected for the log group"),
    ];
    for (reason, n) in &c.dropped {
        rows.push(item(
            format!("dropped: {}", reason.replace('_', " ")),
            *n as u64,
            "",
        ));
    }
    rows.push(item(
        "duplicates",
        s.duplicates() as u64,
        "same eventID seen before",
    ));
    rows.push(item(
        "rejected",
        c.rejected as u64,
        "unreadable records; named on stderr",
    ));
    rows.push(item(
        "stubbed",
        c.stubbed as u64,
        "over 256 KB: delivered as a stub",
    ));
    rows.push(item(
        "CloudTrail Insights",
        c.insights as u64,
        "CloudTrail's own Insights records",
    ));
    rows
}

/// The streams written and what CloudWatch Logs would not accept.
fn stream_rows(s: &ReplaySummary) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(Row::Section(format!(
        "streams ({}, records delivered)",
        s.delivery.per_stream.len()
    )));
    for (stream, n) in &s.delivery.per_stream {
        rows.push(item(stream.clone(), *n as u64, ""));
    }
    for (reason, n) in &s.delivery.rejected {
        rows.push(item(
            format!("not accepted: {}", reason.replace('_', " ")),
            *n as u64,
            "by CloudWatch Logs at the delivery time",
        ));
    }
    rows
}

fn insights_rows(options: &ReplayOptions, s: &ReplaySummary) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(Row::Section("insights".into()));
    rows.push(item(
        "forwarded native",
        s.insights_forwarded_native as u64,
        "CloudTrail's own, to insights.jsonl",
    ));
    rows.push(item(
        "detected",
        s.insights_detected as u64,
        if options.insights.is_some() {
            "by trailwatch (Start and End), to insights.jsonl"
        } else {
            "off: the configuration has no InsightSelectors"
        },
    ));
    rows
}

fn detection_rows(options: &ReplayOptions, s: &ReplaySummary) -> Vec<Row> {
    let Some(detection) = &options.detection else {
        return vec![
            Row::Section("detections".into()),
            item("matched", 0, "off: --no-detections"),
        ];
    };
    let d = &s.detections;
    vec![
        Row::Section("detections".into()),
        item(
            "matched",
            s.select.detections as u64,
            format!(
                "{} rules on every record read",
                detection.detector.rules().len()
            ),
        ),
        item("reported", d.reported as u64, "to detections.jsonl"),
        item("held", d.held as u64, "repeats inside a suppression window"),
        item("excepted", d.excepted as u64, "covered by an exception"),
    ]
}

/// The AWS calls the deployment would have made, with their list price.
fn call_rows(s: &ReplaySummary, prices: &Prices) -> Vec<Row> {
    let a = &s.aws;
    let costs = CallCosts::of(s, prices);
    let mut rows = Vec::new();
    rows.push(Row::Columns {
        title: "AWS calls it would have made".into(),
        value: "count".into(),
        usd: "USD".into(),
    });
    rows.push(priced(
        "S3 GetObject",
        a.s3_get_object as u64,
        Some(costs.s3),
        "one per log file",
    ));
    rows.push(priced(
        "SQS SendMessageBatch",
        a.sqs_send_message_batch as u64,
        Some(costs.sqs),
        format!(
            "{} messages, {} requests billed (64 KB chunks)",
            thousands(a.sqs_messages as u64),
            thousands(a.sqs_billed_requests as u64)
        ),
    ));
    rows.push(priced(
        "CloudWatch Logs PutLogEvents",
        a.put_log_events as u64,
        None,
        "calls are not charged",
    ));
    rows.push(priced(
        "CloudWatch Logs bytes ingested",
        a.cwl_ingested_bytes,
        Some(costs.cwl),
        format!(
            "{} events, message bytes + 26 each",
            thousands(a.cwl_events as u64)
        ),
    ));
    rows.push(priced(
        "DynamoDB PutItem (dedup ledger)",
        a.dynamodb_put_item as u64,
        Some(costs.dynamodb),
        format!(
            "{} write request units",
            thousands(costs.dynamodb_write_units)
        ),
    ));
    rows.push(priced(
        "EventBridge PutEvents",
        a.put_events_calls as u64,
        Some(costs.eventbridge),
        format!(
            "{} entries, {} events billed",
            thousands(a.put_events_entries as u64),
            thousands(a.put_events_billed as u64)
        ),
    ));
    rows.push(Row::Item {
        label: "total".into(),
        value: String::new(),
        usd: usd(costs.total()),
        note: String::new(),
    });

    rows
}

/// The rows aligned in columns.
fn render(rows: &[Row]) -> String {
    let (mut label_w, mut value_w, mut usd_w) = (0, 0, 0);
    for row in rows {
        if let Row::Item {
            label, value, usd, ..
        } = row
        {
            label_w = label_w.max(label.len());
            value_w = value_w.max(value.len());
            usd_w = usd_w.max(usd.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line = match row {
            Row::Section(title) => title.clone(),
            Row::Columns { title, value, usd } => {
                let title_w = label_w + 2;
                format!("{title:<title_w$}  {value:>value_w$}  {usd:>usd_w$}")
            }
            // Rows without a price leave the price column out: their notes follow the count.
            Row::Item {
                label,
                value,
                usd,
                note,
            } if usd.is_empty() => format!("  {label:<label_w$}  {value:>value_w$}  {note}"),
            Row::Item {
                label,
                value,
                usd,
                note,
            } => format!("  {label:<label_w$}  {value:>value_w$}  {usd:>usd_w$}  {note}"),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The summary as JSON (field names documented in `replay --help`).
pub fn summary_json(options: &ReplayOptions, s: &ReplaySummary, exit_code: u8) -> Value {
    let c = &s.select;
    let a = &s.aws;
    let costs = CallCosts::of(s, &PRICES);
    json!({
        "files": {
            "read": s.files_read(),
            "failed": s.files_failed(),
            "digestsSkipped": s.digests_skipped(),
        },
        "records": {
            "read": c.records_read,
            "kept": c.kept,
            "dropped": c.dropped,
            "duplicates": s.duplicates(),
            "rejected": c.rejected,
            "stubbed": c.stubbed,
            "insights": c.insights,
        },
        "streams": s.delivery.per_stream,
        "delivery": {
            "delivered": s.delivery.delivered,
            "notAccepted": s.delivery.rejected,
        },
        "insights": {
            "enabled": options.insights.is_some(),
            "forwardedNative": s.insights_forwarded_native,
            "detected": s.insights_detected,
            "forwardedDetected": s.insights_forwarded_detected,
        },
        "detections": {
            "enabled": options.detection.is_some(),
            "matched": s.select.detections,
            "reported": s.detections.reported,
            "held": s.detections.held,
            "excepted": s.detections.excepted,
        },
        "awsCalls": {
            "s3GetObject": {"calls": a.s3_get_object, "usd": costs.s3},
            "sqsSendMessageBatch": {
                "calls": a.sqs_send_message_batch,
                "messages": a.sqs_messages,
                "billedRequests": a.sqs_billed_requests,
                "usd": costs.sqs,
            },
            "cloudWatchLogs": {
                "putLogEventsCalls": a.put_log_events,
                "events": a.cwl_events,
                "ingestedBytes": a.cwl_ingested_bytes,
                "usd": costs.cwl,
            },
            "dynamoDbPutItem": {
                "calls": a.dynamodb_put_item,
                "writeRequestUnits": costs.dynamodb_write_units,
                "usd": costs.dynamodb,
            },
            "eventBridgePutEvents": {
                "calls": a.put_events_calls,
                "entries": a.put_events_entries,
                "billedEvents": a.put_events_billed,
                "usd": costs.eventbridge,
            },
            "totalUsd": costs.total(),
            "notCounted": NOT_COUNTED,
        },
        "prices": {
            "s3GetPer1k": PRICES.s3_get_requests_per_1k,
            "sqsRequestsPerMillion": PRICES.sqs_requests_per_million,
            "cloudWatchLogsIngestionPerGB": PRICES.cloudwatch_logs_ingestion_per_gb,
            "dynamoDbWriteRequestUnitsPerMillion": PRICES.dynamodb_write_request_units_per_million,
            "eventBridgeCustomEventsPerMillion": PRICES.eventbridge_custom_events_per_million,
            "source": PRICES.source,
        },
        "problems": s.problems,
        "problemCount": s.problem_count,
        "outputErrors": s.output_errors,
        "out": options.out,
        "exitCode": exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn costs_follow_the_price_table() {
        let mut s = ReplaySummary::default();
        s.aws.s3_get_object = 1_000;
        s.aws.sqs_billed_requests = 1_000_000;
        s.aws.cwl_ingested_bytes = 2_000_000_000;
        s.aws.dynamodb_put_item = 1_000_000;
        s.aws.put_events_billed = 1_000_000;
        let c = CallCosts::of(&s, &PRICES);
        assert!((c.s3 - 0.0004).abs() < 1e-12);
        assert!((c.sqs - 0.40).abs() < 1e-12);
        assert!((c.cwl - 1.00).abs() < 1e-12);
        assert!((c.dynamodb - 0.625).abs() < 1e-12);
        assert!((c.eventbridge - 1.00).abs() < 1e-12);
        assert!((c.total() - 3.0254).abs() < 1e-9);
    }
}
