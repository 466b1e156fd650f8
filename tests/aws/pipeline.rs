//! End to end against moto: S3 → notification → select → SQS → deliver → CloudWatch Logs,
//! EventBridge → select → deliver, and native Insights records → bus → rule → SQS.
//! Every assertion reads back from moto what the functions wrote.
//!
//! Long by design: the end-to-end paths share one deployed stack and its drivers.

use std::collections::BTreeMap;

use serde_json::Value;
use trailwatch::select::TrailConfig;
use trailwatch_deliver_fn::DeliverContext;
use trailwatch_e2e::deployed::{contexts, notify_as_the_output_says, publish};
use trailwatch_e2e::*;
use trailwatch_select_fn::SelectContext;

/// template.yaml deployed in moto, with the trail bucket notifying its ingest queue as the
/// stack's output says; every queue, the table, bus and log group are the stack's.
struct Stack {
    deployed: DeployedStack,
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
    async fn new() -> Stack {
        Self::with(StackOptions::default()).await
    }

    /// With `sns_topic`, the trail's topic notifies the queue instead of the bucket.
    async fn with(options: StackOptions) -> Stack {
        let bucket_notifies = !options.sns_topic;
        let deployed = tokio::task::spawn_blocking(move || DeployedStack::deploy(&options))
            .await
            .unwrap();
        let sdk = sdk().await;
        if bucket_notifies {
            notify_as_the_output_says(&deployed, &s3_client(&sdk)).await;
        }
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        // S3 sends a test event when the notification is configured: the select function
        // acknowledges it; drop it here so that the tests see their own files only.
        let ingest = deployed.output("IngestQueueUrl").to_owned();
        drain_queue(&sqs, &ingest).await;
        Stack {
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            delivery: deployed.output("DeliveryQueueUrl").to_owned(),
            insights: deployed.output("InsightsQueueUrl").to_owned(),
            group: deployed.output("TrailLogGroupName").to_owned(),
            bucket: deployed.bucket.clone(),
            ingest,
            sqs,
            sdk,
            deployed,
        }
    }

    fn select(&self) -> SelectContext {
        let function = self.deployed.function("SelectFunction");
        contexts::select(function, &self.sdk, &TrailConfig::default())
    }

    /// The deliver function as deployed, but putting every call at once (no hold queue): the
    /// hold queue has its own test below.
    fn deliver(&self) -> DeliverContext {
        let function = self.deployed.function("DeliverFunction");
        DeliverContext {
            hold: None,
            ..contexts::deliver(function, &self.sdk)
        }
    }

    /// Puts a log file where the trail writes it: under the stack's key prefix.
    async fn put_object(&self, key: &str, body: Vec<u8>) {
        s3_client(&self.sdk)
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.deployed.key_prefix()))
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
        let ledger = contexts::ledger(self.deployed.function("DeliverFunction"), &self.sdk);
        let done = trailwatch_deliver_fn::deliver(&deliver, &ledger, messages).await;
        assert!(
            done.response.batch_item_failures.is_empty(),
            "deliver failures: {:?}",
            done.report.set_aside
        );
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
    // With IngestFromEventBridge the stack's own rule on the default bus feeds the ingest queue.
    let stack = Stack::with(StackOptions::default().with("IngestFromEventBridge", "true")).await;
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
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
    let insights_function = stack.deployed.function("InsightsFunction");
    let bus = stack.deployed.output("InsightsBusName").to_owned();
    let source = insights_function.required(trailwatch_insights_fn::EVENT_SOURCE_ENV);
    // A rule of the user's on the stack's bus, as the README shows.
    let alerts = create_queue(&stack.sqs, &unique("alerts")).await;
    route_to_queue(
        &events,
        &stack.sqs,
        Some(&bus),
        &format!(r#"{{"source":["{source}"],"detail-type":["AWS Insight via CloudTrail"]}}"#),
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
    let context = contexts::insights(insights_function, &stack.sdk);
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
    let stack = Stack::new().await;
    let hold = stack.deployed.output("HoldQueueUrl").to_owned();
    let deliver = contexts::deliver(stack.deployed.function("DeliverFunction"), &stack.sdk);
    assert_eq!(deliver.hold.as_ref().unwrap().queue_url, hold);
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
async fn the_trails_sns_notifications_reach_the_ingest_queue_and_their_files_are_delivered() {
    // The README's alternative to bucket notifications: the stack subscribes the ingest queue
    // to the trail's topic, and CloudTrail publishes one notification per file written.
    let stack = Stack::with(StackOptions {
        sns_topic: true,
        ..StackOptions::default()
    })
    .await;
    let good = recent(&invictus_files()[0].1, 10);
    let key = "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/via-sns.json.gz";
    stack.put_object(key, gzip_log_file(&good)).await;
    let notification = serde_json::json!({
        "s3Bucket": stack.bucket,
        "s3ObjectKey": [format!("{}{key}", stack.deployed.key_prefix())],
    });
    let topic = stack.deployed.parameters["CloudTrailSnsTopicArn"].clone();
    tokio::task::spawn_blocking(move || publish(&topic, &notification.to_string()))
        .await
        .unwrap();
    stack.run_select_and_deliver().await;
    let got = stack.stream(&stream_of(&good[0])).await;
    let mut want = good.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carried_in_a_message_are_refused_unless_the_stack_ingests_them() {
    // IngestFromEventBridge=false: every record must come from a file in the trail bucket. A
    // principal able to send to the queue (moto does not evaluate the queue policy that
    // denies it) cannot inject records.
    let stack = Stack::new().await;
    let record = recent(&invictus_files()[0].1[..1], 5).remove(0);
    let envelope = serde_json::json!({
        "version": "0", "id": "forged", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam", "account": "218007301253", "time": "2023-07-10T00:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": serde_json::from_str::<Value>(&record).unwrap(),
    });
    let inline = format!(r#"{{"Records":[{record}]}}"#);
    for body in [envelope.to_string(), inline] {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.ingest)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let batch = drain_queue(&stack.sqs, &stack.ingest).await;
    assert_eq!(batch.records.len(), 2);
    let response = trailwatch_select_fn::handle(&stack.select(), invocation(&batch))
        .await
        .unwrap();
    assert_eq!(
        response["batchItemFailures"].as_array().unwrap().len(),
        2,
        "both kept for the DLQ, where its alarm shows them: {response}"
    );
    assert!(drain_queue(&stack.sqs, &stack.delivery)
        .await
        .records
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_message_cannot_put_a_record_into_another_accounts_stream() {
    let stack = Stack::new().await;
    let record = recent(&invictus_files()[0].1[..1], 5).remove(0);
    let own = stream_of(&record);
    let other = "999988887777_CloudTrail_us-east-1";
    let mut message = aws_lambda_events::sqs::SqsMessage::default();
    message.message_id = Some("forged-1".into());
    message.body = Some(format!(
        r#"{{"v":1,"stream":"{other}","records":[{record}]}}"#
    ));
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![message];
    let ledger = contexts::ledger(stack.deployed.function("DeliverFunction"), &stack.sdk);
    let done = trailwatch_deliver_fn::deliver(&stack.deliver(), &ledger, event).await;
    assert_eq!(done.report.delivered, 0);
    assert_eq!(done.report.rejected.get("wrong_stream"), Some(&1));
    assert_eq!(done.report.set_aside.len(), 1);
    assert!(
        done.report.set_aside[0].reason.contains(other),
        "{:?}",
        done.report.set_aside
    );
    let streams = stack
        .logs
        .describe_log_streams()
        .log_group_name(&stack.group)
        .send()
        .await
        .unwrap();
    assert!(
        streams.log_streams().is_empty(),
        "nothing written to {other} or {own}"
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

/// A backfill: old log files copied into the trail bucket. CloudWatch Logs refuses events
/// more than 14 days old, so the deliver function sets those records aside — counted in its
/// metrics (`RejectedTooOld`), each logged with its reason — and delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_14_days_are_set_aside_counted_and_never_silently_dropped() {
    let stack = Stack::new().await;
    let all: Vec<String> = invictus_files().into_iter().flat_map(|(_, r)| r).collect();
    let recent_records = recent(&all, 30);
    let stream = stream_of(&recent_records[0]);
    let mine: Vec<String> = recent_records
        .into_iter()
        .filter(|r| stream_of(r) == stream)
        .take(4)
        .collect();
    // Two of them moved 20 days back.
    let old: Vec<String> = recent(&mine[..2], 20 * 24 * 60);
    let body = format!(
        r#"{{"v":1,"stream":"{stream}","records":[{}]}}"#,
        old.iter()
            .chain(&mine[2..])
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut message = aws_lambda_events::sqs::SqsMessage::default();
    message.message_id = Some("backfill-1".into());
    message.body = Some(body);
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![message];
    let done = trailwatch_deliver_fn::deliver(
        &stack.deliver(),
        &trailwatch::deliver::InvocationOnly,
        event,
    )
    .await;
    assert!(done.response.batch_item_failures.is_empty(), "not retried");
    assert_eq!(done.report.delivered, 2);
    assert_eq!(done.report.rejected.get("too_old"), Some(&2));
    assert_eq!(done.report.set_aside.len(), 2);
    for aside in &done.report.set_aside {
        assert!(
            aside.reason.contains("more than 14 days old"),
            "{}",
            aside.reason
        );
        assert!(aside.event_id.is_some() && aside.record_index.is_some());
    }
    let line: serde_json::Value =
        serde_json::from_str(&trailwatch_deliver_fn::emf(&done.report, &done.ledger).to_line(0))
            .unwrap();
    assert_eq!(
        (line["RejectedTooOld"].clone(), line["SetAside"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(stack.stream(&stream).await, mine[2..]);
}

/// CloudWatch Logs takes events up to 1 MB (CloudTrail itself never sends one over 256 KB):
/// a 300 KB record travels whole, alone in a delivery message of up to SQS's 1 MiB, and is
/// delivered as it is; one too large for that message (a few bytes short of 1 MiB: the log
/// file reader refuses records over 1 MiB) is delivered as a stub pointing at the full
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_between_256_kb_and_1_mb_is_delivered_whole() {
    use trailwatch::deliver::limits::{PACKED_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES};
    let stack = Stack::new().await;
    let all: Vec<String> = invictus_files().into_iter().flat_map(|(_, r)| r).collect();
    let records = recent(&all, 30);
    let stream = stream_of(&records[0]);
    let mine: Vec<String> = records
        .into_iter()
        .filter(|r| stream_of(r) == stream)
        .take(3)
        .collect();
    let pad = |record: &str, bytes: usize| {
        format!(
            r#"{},"trailwatchTestPadding":"{}"}}"#,
            &record[..record.len() - 1],
            "p".repeat(bytes)
        )
    };
    let big = pad(&mine[1], 300 * 1024);
    let huge = pad(&mine[2], 0);
    let huge = pad(&mine[2], (1 << 20) - 16 - huge.len());
    let file = vec![mine[0].clone(), big.clone(), huge];
    stack
        .put_object(
            "AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/123837392027_CloudTrail_us-east-1_20230710T1150Z_big.json.gz",
            gzip_log_file(&file),
        )
        .await;
    let select = stack.select();
    let notifications = drain_queue(&stack.sqs, &stack.ingest).await;
    trailwatch_select_fn::handle(&select, invocation(&notifications))
        .await
        .unwrap();
    let messages = drain_queue(&stack.sqs, &stack.delivery).await;
    let sizes: Vec<usize> = messages
        .records
        .iter()
        .map(|m| m.body.as_deref().unwrap().len())
        .collect();
    assert!(
        sizes.iter().all(|&n| n <= SQS_MAX_MESSAGE_BYTES),
        "{sizes:?}"
    );
    assert!(sizes.iter().any(|&n| n > PACKED_MESSAGE_BYTES), "{sizes:?}");
    let response = trailwatch_deliver_fn::handle_batch(&stack.deliver(), messages).await;
    assert!(response.batch_item_failures.is_empty());
    let delivered = stack.stream(&stream).await;
    assert_eq!(delivered.len(), 3);
    assert!(
        delivered.contains(&mine[0]) && delivered.contains(&big),
        "whole"
    );
    let stub = delivered
        .iter()
        .find(|m| m.contains("trailwatchTruncated"))
        .expect("the record beyond 1 MB as a stub");
    assert!(stub.len() < 4 * 1024);
}
