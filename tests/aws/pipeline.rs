//! End to end against moto: S3 → notification → select → SQS → deliver → CloudWatch Logs,
//! EventBridge → select → deliver, and native Insights records → bus → rule → SQS.
//! Every assertion reads back from moto what the functions wrote.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use serde_json::Value;
use trailwatch::select::TrailConfig;
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::eventbridge::EventBridgeBus;
use trailwatch_aws::s3::S3Objects;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_deliver_fn::DeliverContext;
use trailwatch_e2e::*;
use trailwatch_insights_fn::InsightsContext;
use trailwatch_select_fn::SelectContext;

struct Stack {
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    bucket: String,
    ingest: String,
    delivery: String,
    insights: String,
    group: String,
}

impl Stack {
    /// A trail bucket notifying an ingest queue, the two inter-stage queues and a log group
    /// name, all unique to the test.
    async fn new() -> Stack {
        let sdk = sdk().await;
        let s3 = s3_client(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let bucket = unique("trail");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let ingest = create_queue(&sqs, &unique("ingest")).await;
        let ingest_arn = queue_arn(&sqs, &ingest).await;
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(ingest_arn)
                            .events(Event::S3ObjectCreated)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        Stack {
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            delivery: create_queue(&sqs, &unique("delivery")).await,
            insights: create_queue(&sqs, &unique("insights")).await,
            group: unique("CloudTrail/trailwatch"),
            sqs,
            bucket,
            ingest,
            sdk,
        }
    }

    fn select(&self) -> SelectContext {
        SelectContext {
            s3: S3Objects::new(s3_client(&self.sdk)),
            sqs: SqsSender::new(self.sqs.clone()),
            delivery_queue: self.delivery.clone(),
            insights_queue: self.insights.clone(),
            matcher: TrailConfig::default().compile(),
        }
    }

    fn deliver(&self) -> DeliverContext {
        DeliverContext {
            sink: CloudWatchLogs::new(self.logs.clone(), self.group.clone(), Some(90)),
            retention_days: 90,
            hold: None,
        }
    }

    async fn put_object(&self, key: &str, body: Vec<u8>) {
        s3_client(&self.sdk)
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    /// Runs select over what waits in the ingest queue, then deliver over what select sent,
    /// as the SQS triggers would; asserts neither reports a failed message.
    async fn run_select_and_deliver(&self) {
        let select = self.select();
        let notifications = drain_queue(&self.sqs, &self.ingest).await;
        assert!(
            !notifications.records.is_empty(),
            "nothing reached the ingest queue"
        );
        let response = trailwatch_select_fn::handle(&select, invocation(&notifications))
            .await
            .unwrap();
        assert_eq!(
            response["batchItemFailures"],
            serde_json::json!([]),
            "select failures"
        );
        let deliver = self.deliver();
        let messages = drain_queue(&self.sqs, &self.delivery).await;
        assert!(
            !messages.records.is_empty(),
            "select sent nothing to the delivery queue"
        );
        for message in &messages.records {
            let body = message.body.as_deref().unwrap();
            assert!(
                body.len() <= 262_144,
                "a delivery message of {} bytes",
                body.len()
            );
        }
        let response = trailwatch_deliver_fn::handle_batch(&deliver, messages).await;
        assert!(response.batch_item_failures.is_empty(), "deliver failures");
    }

    async fn stream(&self, name: &str) -> Vec<String> {
        read_stream(&self.logs, &self.group, name).await
    }
}

fn stream_of(record: &str) -> String {
    let v: Value = serde_json::from_str(record).unwrap();
    format!(
        "{}_CloudTrail_{}",
        v["recipientAccountId"].as_str().unwrap(),
        v["awsRegion"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_of_a_real_trail_reaches_its_stream_once_and_unaltered() {
    let stack = Stack::new().await;
    let files = invictus_files();
    // One time shift for the whole trail, so records keep their real spacing.
    let all: Vec<String> = files.iter().flat_map(|(_, r)| r.clone()).collect();
    let shifted = recent(&all, 30);
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut offset = 0;
    for (name, records) in &files {
        let mine = &shifted[offset..offset + records.len()];
        offset += records.len();
        for r in mine {
            expected.entry(stream_of(r)).or_default().push(r.clone());
        }
        let key = format!("AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/{name}.gz");
        stack.put_object(&key, gzip_log_file(mine)).await;
    }
    stack.run_select_and_deliver().await;

    assert_eq!(expected.values().map(Vec::len).sum::<usize>(), 2_900);
    for (stream, mut want) in expected {
        let mut got = stack.stream(&stream).await;
        assert_eq!(got.len(), want.len(), "record count in {stream}");
        got.sort();
        want.sort();
        assert!(
            got == want,
            "records in {stream} differ from those put in S3"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_carried_by_eventbridge_is_delivered_as_received() {
    let stack = Stack::new().await;
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    route_to_queue(
        &events,
        &stack.sqs,
        None,
        r#"{"detail-type":["AWS API Call via CloudTrail","AWS Console Sign In via CloudTrail"]}"#,
        &stack.ingest,
    )
    .await;
    // moto sends S3's test event when the notification is configured: drop it first.
    drain_queue(&stack.sqs, &stack.ingest).await;
    let (_, records) = invictus_files().into_iter().next().unwrap();
    let record = recent(&records[..1], 5).remove(0);
    events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.health")
                .detail_type("AWS API Call via CloudTrail")
                .detail(&record)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let notifications = drain_queue(&stack.sqs, &stack.ingest).await;
    assert_eq!(notifications.records.len(), 1, "the rule routed the event");
    let envelope = notifications.records[0].body.clone().unwrap();
    // Put the envelope back for the pipeline run, and remember the detail as EventBridge sent it.
    stack
        .sqs
        .send_message()
        .queue_url(&stack.ingest)
        .message_body(&envelope)
        .send()
        .await
        .unwrap();
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        detail: &'a serde_json::value::RawValue,
    }
    let detail = serde_json::from_str::<Envelope>(&envelope)
        .unwrap()
        .detail
        .get()
        .to_owned();
    stack.run_select_and_deliver().await;

    let got = stack.stream(&stream_of(&record)).await;
    assert_eq!(
        got,
        vec![detail.clone()],
        "the detail, byte for byte as received"
    );
    let sent: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&got[0]).unwrap(),
        sent,
        "and the record sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_insights_records_reach_the_insights_bus() {
    let stack = Stack::new().await;
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    let bus = unique("insights-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let alerts = create_queue(&stack.sqs, &unique("alerts")).await;
    route_to_queue(
        &events,
        &stack.sqs,
        Some(&bus),
        r#"{"source":["trailwatch.cloudtrail"],"detail-type":["AWS Insight via CloudTrail"]}"#,
        &alerts,
    )
    .await;
    let examples = std::fs::read_to_string(
        shared_data().join("insights-examples/awsdocs-cloudtrail-user-guide-2023.jsonl"),
    )
    .unwrap();
    let records: Vec<String> = examples
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    stack
        .put_object(
            "AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2023/01/01/123456789012_CloudTrail-Insight_us-east-1_20230101T0000Z_abc.json.gz",
            gzip_log_file(&records),
        )
        .await;

    let select = stack.select();
    let notifications = drain_queue(&stack.sqs, &stack.ingest).await;
    let response = trailwatch_select_fn::handle(&select, invocation(&notifications))
        .await
        .unwrap();
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    assert!(
        drain_queue(&stack.sqs, &stack.delivery)
            .await
            .records
            .is_empty(),
        "Insights are not delivered as trail records"
    );
    let context = InsightsContext {
        bus: EventBridgeBus::new(events.clone(), bus.clone()),
        source: "trailwatch.cloudtrail".into(),
    };
    let batch = drain_queue(&stack.sqs, &stack.insights).await;
    let response = trailwatch_insights_fn::handle(&context, serde_json::to_value(&batch).unwrap())
        .await
        .unwrap();
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));

    let routed = drain_queue(&stack.sqs, &alerts).await;
    let mut details: Vec<Value> = routed
        .records
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            assert_eq!(envelope["detail-type"], "AWS Insight via CloudTrail");
            assert_eq!(envelope["source"], "trailwatch.cloudtrail");
            envelope["detail"].clone()
        })
        .collect();
    let mut want: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let key = |v: &Value| v["eventID"].as_str().unwrap_or("").to_owned();
    details.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(
        details, want,
        "every Insights record forwarded unchanged in detail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_corrupt_objects_are_set_aside_and_their_neighbours_delivered() {
    let stack = Stack::new().await;
    let files = invictus_files();
    let good = recent(&files[0].1, 10);
    let damaged = recent(&files[3].1, 10);
    let prefix = "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10";
    stack
        .put_object(&format!("{prefix}/good.json.gz"), gzip_log_file(&good))
        .await;
    let mut truncated = gzip_log_file(&damaged);
    truncated.truncate(truncated.len() / 2);
    stack
        .put_object(&format!("{prefix}/truncated.json.gz"), truncated)
        .await;
    let gone = format!("{prefix}/deleted-before-it-was-read.json.gz");
    stack.put_object(&gone, gzip_log_file(&good)).await;
    s3_client(&stack.sdk)
        .delete_object()
        .bucket(&stack.bucket)
        .key(&gone)
        .send()
        .await
        .unwrap();
    // Neither a missing object nor a corrupt one can be fixed by retrying: select reports no
    // failure (they are logged with bucket and key), and the rest is delivered.
    stack.run_select_and_deliver().await;

    let got = stack.stream(&stream_of(&good[0])).await;
    for record in &good {
        assert_eq!(
            got.iter().filter(|g| *g == record).count(),
            1,
            "every record of the good file, once"
        );
    }
    let from_damaged: Vec<&String> = got.iter().filter(|g| damaged.contains(g)).collect();
    assert_eq!(got.len(), good.len() + from_damaged.len());
    assert!(
        from_damaged.len() < damaged.len(),
        "the truncated file's records after the damage cannot be read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_files_are_skipped_and_counted_in_the_metrics() {
    let stack = Stack::new().await;
    let good = recent(&invictus_files()[0].1, 10);
    let account = "218007301253";
    stack
        .put_object(
            &format!("AWSLogs/{account}/CloudTrail/us-east-1/2023/07/10/good.json.gz"),
            gzip_log_file(&good),
        )
        .await;
    // A digest is JSON with a `logFiles` list, not `Records`: read as a log file it would be
    // an error; it must be recognised by its key and skipped.
    stack
        .put_object(
            &format!(
                "AWSLogs/{account}/CloudTrail-Digest/us-east-1/2023/07/10/\
                 {account}_CloudTrail-Digest_us-east-1_audit_us-east-1_20230710T120000Z.json.gz"
            ),
            gzip_log_file(&[]),
        )
        .await;
    let select = stack.select();
    let notifications = drain_queue(&stack.sqs, &stack.ingest).await;
    let mut totals = trailwatch_select_fn::SelectTotals::default();
    for message in &notifications.records {
        trailwatch_select_fn::process_counted(
            &select,
            message.body.as_deref().unwrap(),
            &mut totals,
        )
        .await
        .unwrap();
    }
    assert_eq!(totals.digests_skipped, 1);
    assert_eq!(totals.selected, good.len());
    assert_eq!(totals.unreadable, 0);
    let line: serde_json::Value = serde_json::from_str(&totals.emf().to_line(0)).unwrap();
    assert_eq!(line["DigestsSkipped"], 1, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_is_not_full_waits_in_its_streams_group_of_the_hold_queue() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    use trailwatch::deliver::message::open_held;
    use trailwatch::deliver::MemoryLedger;
    use trailwatch_deliver_fn::HoldBack;
    let stack = Stack::new().await;
    let hold = create_hold_queue(&stack.sqs, 30).await;
    let deliver = DeliverContext {
        hold: Some(HoldBack {
            sqs: SqsSender::new(stack.sqs.clone()),
            queue_url: hold.clone(),
            max_wait_ms: 120_000,
        }),
        ..stack.deliver()
    };
    let ledger = MemoryLedger::default();
    // A few records of one stream: far from a full call, so they are held back.
    let all: Vec<String> = invictus_files().into_iter().flat_map(|(_, r)| r).collect();
    let records = recent(&all, 30);
    let stream = stream_of(&records[0]);
    let mine: Vec<&String> = records
        .iter()
        .filter(|r| stream_of(r) == stream)
        .take(5)
        .collect();
    let body = format!(
        r#"{{"v":1,"stream":"{stream}","records":[{}]}}"#,
        mine.iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut fresh = aws_lambda_events::sqs::SqsMessage::default();
    fresh.message_id = Some("fresh-1".into());
    fresh.body = Some(body);
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![fresh];
    let done = trailwatch_deliver_fn::deliver(&deliver, &ledger, event).await;
    assert_eq!((done.report.put_calls, done.report.held_back), (0, 5));
    assert!(done.response.batch_item_failures.is_empty());
    assert!(ledger.is_empty(), "claims released before the send");

    // In the stream's group, one sealed message carrying the five records.
    let held = receive(&stack.sqs, &hold, 10, 30).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].attributes["MessageGroupId"], stream);
    let opened = open_held(held[0].body.as_deref().unwrap()).unwrap();
    let message = trailwatch::deliver::DeliveryMessage::parse(&opened[0]).unwrap();
    assert_eq!(message.records.len(), 5);

    // Back alone, it is kept: nothing put or claimed, invisible a while longer, not deleted.
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = held.clone();
    let done = trailwatch_deliver_fn::deliver(&deliver, &ledger, event).await;
    assert_eq!(done.report.put_calls, 0);
    assert_eq!(done.report.kept.len(), 1);
    assert_eq!(done.response.batch_item_failures.len(), 1);
    assert!(receive(&stack.sqs, &hold, 10, 30).await.is_empty());
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&hold)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes.attributes().unwrap()[&A::ApproximateNumberOfMessagesNotVisible],
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_message_invoked_directly_is_delivered_or_refused_with_an_error_type() {
    use lambda_runtime::{Context, Diagnostic, LambdaEvent};
    use trailwatch::deliver::InvocationOnly;
    use trailwatch_deliver_fn::{handle, DeliverPayload};
    let stack = Stack::new().await;
    let deliver = stack.deliver();
    let all: Vec<String> = invictus_files().into_iter().flat_map(|(_, r)| r).collect();
    let records = recent(&all, 30);
    let stream = stream_of(&records[0]);
    let mine: Vec<&str> = records
        .iter()
        .filter(|r| stream_of(r) == stream)
        .take(3)
        .map(String::as_str)
        .collect();
    let body = format!(
        r#"{{"v":1,"stream":"{stream}","records":[{}]}}"#,
        mine.join(",")
    );
    let invoke = |text: &str| {
        let mut context = Context::default();
        context.request_id = "request-1".into();
        let payload: DeliverPayload = serde_json::from_str(text).unwrap();
        handle(
            &deliver,
            &InvocationOnly,
            LambdaEvent::new(payload, context),
        )
    };
    let answer = invoke(&body).await.unwrap();
    assert_eq!(
        serde_json::to_value(answer).unwrap(),
        serde_json::json!({"recordsReceived": 3, "delivered": 3, "duplicates": 0, "setAside": 0})
    );
    assert_eq!(stack.stream(&stream).await, mine);

    let refused = invoke(r#"{"v":2,"stream":"s","records":[]}"#)
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(refused);
    assert_eq!(diagnostic.error_type, "trailwatch.InvalidPayload");
    assert!(
        diagnostic.error_message.contains("version 2"),
        "{}",
        diagnostic.error_message
    );
}

/// The select function's invocation for a batch from the ingest queue.
fn invocation(batch: &aws_lambda_events::sqs::SqsEvent) -> trailwatch_select_fn::SelectInvocation {
    trailwatch_select_fn::SelectInvocation::from_payload(serde_json::to_value(batch).unwrap())
        .unwrap()
}
