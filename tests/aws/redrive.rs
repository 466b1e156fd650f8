//! Dead-letter queues redriven, against moto with the DynamoDB ledger: a message whose
//! delivery keeps failing reaches its dead-letter queue, is moved back the way
//! `start-message-move-task` moves it — a new message with the same body (moto 5.2 has no
//! StartMessageMoveTask, so the test receives from the dead-letter queue and sends each body
//! to the source queue) — and every record then reaches the log group exactly once. For the
//! delivery queue, the hold queue and the ingest queue; and for a record whose owner died
//! while another copy waited.
//!
//! A delivery that "keeps failing" writes through a CloudWatch Logs client whose every call
//! is refused (a closed port on loopback): what the function sees when CloudWatch Logs is
//! unreachable. The test queues move a message to their dead-letter queue after
//! [`MAX_RECEIVES`] receives (the stack's are 5 and 50), and hand back a failed message at
//! once, where SQS would wait for the visibility timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName as A;
use trailwatch::deliver::ledger::DEFAULT_CLAIM_LEASE_MS;
use trailwatch::deliver::{DeliveryMessage, MessagePacker};
use trailwatch::select::TrailConfig;
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::dedup::DynamoDbLedger;
use trailwatch_aws::s3::S3Objects;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_deliver_fn::{DeliverContext, HoldBack};
use trailwatch_e2e::*;
use trailwatch_select_fn::{SelectContext, SelectInvocation};

/// The test queues' redrive policy: after this many receives a message goes to the DLQ.
const MAX_RECEIVES: i32 = 3;

struct World {
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    group: String,
    table: String,
}

impl World {
    async fn new() -> World {
        let sdk = sdk().await;
        let table = unique("state");
        create_state_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
        World {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            group: unique("CloudTrail/redrive"),
            table,
            sdk,
        }
    }

    fn ledger(&self) -> DynamoDbLedger {
        DynamoDbLedger::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.table.clone())
    }

    /// The deliver function writing to the test's log group, through `logs`.
    fn deliver(
        &self,
        logs: aws_sdk_cloudwatchlogs::Client,
        hold: Option<HoldBack>,
        claim_lease_ms: i64,
    ) -> DeliverContext {
        DeliverContext {
            sink: CloudWatchLogs::new(logs, self.group.clone(), Some(90)),
            retention_days: 90,
            hold,
            claim_lease_ms,
        }
    }

    fn hold(&self, queue_url: &str, max_wait_ms: i64) -> HoldBack {
        HoldBack {
            sqs: SqsSender::new(self.sqs.clone()),
            queue_url: queue_url.to_owned(),
            max_wait_ms,
        }
    }

    /// A queue (FIFO as the hold queue when `fifo`) whose messages go to a dead-letter queue
    /// after [`MAX_RECEIVES`] receives; returns (queue, dead-letter queue).
    async fn queue_with_dlq(&self, name: &str, fifo: bool) -> (String, String) {
        let suffix = if fifo { ".fifo" } else { "" };
        let create = |name: String| {
            let mut request = self.sqs.create_queue().queue_name(name);
            if fifo {
                request = request
                    .attributes(A::FifoQueue, "true")
                    .attributes(A::DeduplicationScope, "messageGroup")
                    .attributes(A::FifoThroughputLimit, "perMessageGroupId");
            }
            request
        };
        let dlq = create(format!("{}{suffix}", unique(&format!("{name}-dlq"))))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let policy = serde_json::json!({
            "deadLetterTargetArn": queue_arn(&self.sqs, &dlq).await,
            "maxReceiveCount": MAX_RECEIVES,
        });
        let queue = create(format!("{}{suffix}", unique(name)))
            .attributes(A::RedrivePolicy, policy.to_string())
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        (queue, dlq)
    }

    /// Moves every message of `dlq` back to `queue` as a redrive does: a new message (a new
    /// message id), the same body, in the same message group.
    async fn redrive(&self, dlq: &str, queue: &str) -> usize {
        let mut moved = 0;
        loop {
            let messages = receive(&self.sqs, dlq, 10, 30).await;
            if messages.is_empty() {
                return moved;
            }
            for m in &messages {
                let mut send = self
                    .sqs
                    .send_message()
                    .queue_url(queue)
                    .message_body(m.body.clone().unwrap());
                if let Some(group) = m.attributes.get("MessageGroupId") {
                    send = send
                        .message_group_id(group)
                        .message_deduplication_id(unique("redrive"));
                }
                send.send().await.unwrap();
                moved += 1;
            }
            let refs: Vec<&SqsMessage> = messages.iter().collect();
            settle(&self.sqs, dlq, &refs, &[]).await;
        }
    }

    async fn count(&self, queue: &str) -> usize {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().unwrap();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| attrs[a].parse::<usize>().unwrap())
        .sum()
    }

    /// What the log group holds, per eventID: how many times.
    async fn delivered(&self, stream: &str) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for message in read_stream(&self.logs, &self.group, stream).await {
            let v: serde_json::Value = serde_json::from_str(&message).unwrap();
            *seen
                .entry(v["eventID"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        seen
    }
}

/// A CloudWatch Logs client whose every call is refused: CloudWatch Logs unreachable.
async fn unreachable_logs() -> aws_sdk_cloudwatchlogs::Client {
    let config = sdk_at("http://127.0.0.1:9", Duration::from_secs(2)).await;
    aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::config::Builder::from(&config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build(),
    )
}

/// What the deliver invocations of a drive did, summed.
#[derive(Debug, Default)]
struct Drive {
    invocations: usize,
    delivered: usize,
    duplicates: usize,
    waiting: usize,
    held_back: usize,
    retried: usize,
}

/// Runs the deliver function over `queue` as its trigger would, until the queue is empty
/// (messages past [`MAX_RECEIVES`] move to the dead-letter queue): failed messages are handed
/// back at once, except those the function keeps invisible itself.
async fn drive_deliver(
    world: &World,
    queue: &str,
    context: &DeliverContext,
    ledger: &DynamoDbLedger,
) -> Drive {
    let mut drive = Drive::default();
    loop {
        let batch = receive(&world.sqs, queue, 10, 30).await;
        if batch.is_empty() {
            return drive;
        }
        let mut event = SqsEvent::default();
        event.records = batch.clone();
        let done = trailwatch_deliver_fn::deliver(context, ledger, event).await;
        drive.invocations += 1;
        drive.delivered += done.report.delivered;
        drive.duplicates += done.report.duplicates;
        drive.waiting += done.report.waiting;
        drive.held_back += done.report.held_back;
        drive.retried += done.report.retry.len();
        let failed = |m: &&SqsMessage| {
            done.report
                .retry
                .contains(m.message_id.as_deref().unwrap_or_default())
        };
        let kept = |m: &&SqsMessage| {
            done.report
                .kept
                .contains_key(m.message_id.as_deref().unwrap_or_default())
        };
        let answered: Vec<&SqsMessage> = batch.iter().filter(|m| !failed(m)).collect();
        let again: Vec<&SqsMessage> = batch.iter().filter(|m| failed(m) && !kept(m)).collect();
        settle(&world.sqs, queue, &answered, &again).await;
    }
}

/// Recent records of one stream of the real invictus-ir trail.
fn records(count: usize) -> (String, Vec<String>) {
    let all: Vec<String> = invictus_files().into_iter().flat_map(|(_, r)| r).collect();
    let records = recent(&all, 30);
    let stream_of = |r: &str| {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        format!(
            "{}_CloudTrail_{}",
            v["recipientAccountId"].as_str().unwrap(),
            v["awsRegion"].as_str().unwrap()
        )
    };
    let stream = stream_of(&records[0]);
    let mine = records
        .into_iter()
        .filter(|r| stream_of(r) == stream)
        .take(count)
        .collect();
    (stream, mine)
}

/// The records packed as select packs them, in messages of at most `max_bytes`, each a
/// delivery of its own.
fn packed(stream: &str, records: &[String], max_bytes: usize) -> Vec<String> {
    let mut packer = MessagePacker::new(stream, max_bytes);
    let mut bodies: Vec<String> = records.iter().filter_map(|r| packer.push(r)).collect();
    bodies.extend(packer.take());
    bodies
}

fn event_ids(records: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            v["eventID"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// Asserts every record reached the stream exactly once; returns (delivered, duplicates).
async fn assert_exactly_once(world: &World, stream: &str, records: &[String]) -> (usize, usize) {
    let delivered = world.delivered(stream).await;
    let want = event_ids(records);
    let got: Vec<String> = delivered.keys().cloned().collect();
    assert_eq!(got, want, "every record, none other");
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "{delivered:?}");
    (delivered.len(), duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_delivery_dead_letter_queue_delivers_every_record_once() {
    let world = World::new().await;
    let (delivery, dlq) = world.queue_with_dlq("delivery", false).await;
    let (stream, records) = records(60);
    let bodies = packed(&stream, &records, 8 * 1024);
    assert!(bodies.len() > 2, "several deliveries");
    SqsSender::new(world.sqs.clone())
        .send_all(&delivery, &bodies)
        .await
        .unwrap();
    let ledger = world.ledger();

    // CloudWatch Logs unreachable: every message claims its records, fails, comes back, and
    // after MAX_RECEIVES receives waits in the dead-letter queue.
    let failing = world.deliver(unreachable_logs().await, None, DEFAULT_CLAIM_LEASE_MS);
    let first = drive_deliver(&world, &delivery, &failing, &ledger).await;
    assert_eq!(first.delivered, 0);
    assert_eq!(world.count(&dlq).await, bodies.len(), "{first:?}");

    // Moved back (new message ids), CloudWatch Logs reachable again.
    let working = world.deliver(world.logs.clone(), None, DEFAULT_CLAIM_LEASE_MS);
    let queues = (dlq.as_str(), delivery.as_str());
    redrive_and_deliver(&world, queues, &working, &ledger, (&stream, &records)).await;
}

/// Moves the dead-letter queue's messages back to their queue, delivers them with `context`,
/// and asserts every record reached `stream` exactly once.
async fn redrive_and_deliver(
    world: &World,
    (dlq, queue): (&str, &str),
    context: &DeliverContext,
    ledger: &DynamoDbLedger,
    (stream, records): (&str, &[String]),
) {
    let moved = world.redrive(dlq, queue).await;
    let drive = drive_deliver(world, queue, context, ledger).await;
    assert_eq!(world.count(dlq).await + world.count(queue).await, 0);
    let (delivered, duplicates) = assert_exactly_once(world, stream, records).await;
    println!(
        "DLQ redrive ({queue}): {} records in, {moved} messages moved back, {delivered} \
         delivered, {duplicates} duplicates in the log group, {} dropped by deliver",
        records.len(),
        drive.duplicates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_hold_dead_letter_queue_delivers_every_record_once() {
    let world = World::new().await;
    let (hold, hold_dlq) = world.queue_with_dlq("hold", true).await;
    let (stream, records) = records(5);
    let body = packed(&stream, &records, 256 * 1024);
    assert_eq!(body.len(), 1);
    let ledger = world.ledger();
    let max_wait_ms = 1_000;

    // A call that is not full: held back, its records in a new delivery in the hold queue.
    let working = world.deliver(
        world.logs.clone(),
        Some(world.hold(&hold, max_wait_ms)),
        DEFAULT_CLAIM_LEASE_MS,
    );
    let mut event = SqsEvent::default();
    let mut message = SqsMessage::default();
    message.message_id = Some("fresh-1".into());
    message.body = Some(body[0].clone());
    event.records = vec![message];
    let done = trailwatch_deliver_fn::deliver(&working, &ledger, event).await;
    assert_eq!((done.report.held_back, done.report.put_calls), (5, 0));

    // Once its records have waited long enough it is put — and CloudWatch Logs is down:
    // after MAX_RECEIVES receives the held message waits in the hold dead-letter queue.
    tokio::time::sleep(Duration::from_millis(max_wait_ms as u64 + 200)).await;
    let failing = world.deliver(
        unreachable_logs().await,
        Some(world.hold(&hold, max_wait_ms)),
        DEFAULT_CLAIM_LEASE_MS,
    );
    let first = drive_deliver(&world, &hold, &failing, &ledger).await;
    assert_eq!(first.delivered, 0);
    assert_eq!(world.count(&hold_dlq).await, 1, "{first:?}");

    let queues = (hold_dlq.as_str(), hold.as_str());
    redrive_and_deliver(&world, queues, &working, &ledger, (&stream, &records)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_ingest_dead_letter_queue_delivers_every_record_once() {
    let world = World::new().await;
    let s3 = s3_client(&world.sdk);
    let bucket = unique("trail");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let (ingest, ingest_dlq) = world.queue_with_dlq("ingest", false).await;
    let delivery = create_queue(&world.sqs, &unique("delivery")).await;
    let insights = create_queue(&world.sqs, &unique("insights")).await;
    let (stream, records) = records(40);
    // The log file carries an Insights record too: select sends the trail's records to the
    // delivery queue first, then the Insights record to the Insights queue.
    let insight = std::fs::read_to_string(
        shared_data().join("insights-examples/awsdocs-cloudtrail-user-guide-2023.jsonl"),
    )
    .unwrap()
    .lines()
    .next()
    .unwrap()
    .to_owned();
    let mut file = records.clone();
    file.push(insight);
    let key = "AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/123837392027_CloudTrail_us-east-1_20230710T1150Z_redrive.json.gz";
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(gzip_log_file(&file).into())
        .send()
        .await
        .unwrap();
    let notification = serde_json::json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}}
    }]});
    world
        .sqs
        .send_message()
        .queue_url(&ingest)
        .message_body(notification.to_string())
        .send()
        .await
        .unwrap();
    let select = |insights_queue: &str| SelectContext {
        s3: S3Objects::new(s3_client(&world.sdk)),
        sqs: SqsSender::new(world.sqs.clone()),
        delivery_queue: delivery.clone(),
        insights_queue: insights_queue.to_owned(),
        matcher: TrailConfig::default().compile(),
        accept_records: false,
        detector: None,
    };
    // Select fails after it has sent the trail's records, on every receive: the Insights
    // queue it was given does not exist. Each attempt sends the records again, in new
    // deliveries; after MAX_RECEIVES the notification waits in the ingest dead-letter queue.
    let missing = format!("{}-missing", insights);
    let broken = select(&missing);
    let attempts = drive_select(&world, &ingest, &broken).await;
    assert_eq!(world.count(&ingest_dlq).await, 1);
    let ledger = world.ledger();
    let working = world.deliver(world.logs.clone(), None, DEFAULT_CLAIM_LEASE_MS);
    let first = drive_deliver(&world, &delivery, &working, &ledger).await;

    // Fixed and moved back: select reads the file again and sends its records once more.
    let moved = world.redrive(&ingest_dlq, &ingest).await;
    drive_select(&world, &ingest, &select(&insights)).await;
    let second = drive_deliver(&world, &delivery, &working, &ledger).await;
    assert_eq!(
        world.count(&ingest_dlq).await + world.count(&ingest).await,
        0
    );
    assert_eq!(world.count(&insights).await, 1, "the Insights record sent");
    let (delivered, duplicates) = assert_exactly_once(&world, &stream, &records).await;
    assert_eq!(second.delivered, 0, "every record was delivered before");
    println!(
        "ingest DLQ redrive: {} records in, read {} times ({attempts} failed selects, {moved} \
         notification moved back), {delivered} delivered, {duplicates} duplicates in the log \
         group, {} copies dropped by deliver",
        records.len(),
        attempts + 1,
        first.duplicates + second.duplicates
    );
}

/// Runs the select function over `queue` until it is empty; returns how many receives failed.
async fn drive_select(world: &World, queue: &str, select: &SelectContext) -> usize {
    let mut failed = 0;
    loop {
        let batch = receive(&world.sqs, queue, 10, 30).await;
        if batch.is_empty() {
            return failed;
        }
        let mut event = SqsEvent::default();
        event.records = batch.clone();
        let invocation =
            SelectInvocation::from_payload(serde_json::to_value(&event).unwrap()).unwrap();
        let response = trailwatch_select_fn::handle(select, invocation)
            .await
            .unwrap();
        let failures: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        failed += failures.len();
        let (again, answered): (Vec<&SqsMessage>, Vec<&SqsMessage>) = batch
            .iter()
            .partition(|m| failures.contains(&m.message_id.as_deref().unwrap()));
        settle(&world.sqs, queue, &answered, &again).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_owner_died_is_delivered_by_a_copy_that_waited() {
    let world = World::new().await;
    let (delivery, dlq) = world.queue_with_dlq("delivery", false).await;
    let (hold, _) = world.queue_with_dlq("hold", true).await;
    let (stream, records) = records(20);
    // The same records in two deliveries (a file notified twice, selected twice).
    let owner = packed(&stream, &records, 256 * 1024);
    let copy = packed(&stream, &records, 256 * 1024);
    let (owner_id, copy_id) = (
        DeliveryMessage::parse(&owner[0])
            .unwrap()
            .id
            .unwrap()
            .into_owned(),
        DeliveryMessage::parse(&copy[0])
            .unwrap()
            .id
            .unwrap()
            .into_owned(),
    );
    assert_ne!(owner_id, copy_id);
    let ledger = world.ledger();
    // A short claim lease, so that the test sees it end.
    let lease_ms = 3_000;
    let sender = SqsSender::new(world.sqs.clone());

    // The owner claims the records, cannot put them, ends in the dead-letter queue and expires
    // there: it never comes back.
    sender.send_all(&delivery, &owner).await.unwrap();
    let failing = world.deliver(unreachable_logs().await, None, lease_ms);
    drive_deliver(&world, &delivery, &failing, &ledger).await;
    world
        .sqs
        .purge_queue()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap();
    let died = Instant::now();

    // The copy finds the records claimed by a delivery that is not done: they wait, in the
    // hold queue, instead of being dropped as duplicates.
    sender.send_all(&delivery, &copy).await.unwrap();
    let max_wait_ms = 500;
    let working = world.deliver(
        world.logs.clone(),
        Some(world.hold(&hold, max_wait_ms)),
        lease_ms,
    );
    let waited = drive_deliver(&world, &delivery, &working, &ledger).await;
    assert_eq!(
        (waited.delivered, waited.waiting, waited.duplicates),
        (0, records.len(), 0)
    );
    // They come back from the hold queue, wait again while the owner's lease lasts, and are
    // delivered once it is over.
    let mut rounds = Drive::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rounds.delivered < records.len() {
        assert!(Instant::now() < deadline, "{rounds:?}");
        let round = drive_deliver(&world, &hold, &working, &ledger).await;
        rounds.waiting += round.waiting;
        rounds.delivered += round.delivered;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(died.elapsed() >= Duration::from_millis(lease_ms as u64));
    let (delivered, duplicates) = assert_exactly_once(&world, &stream, &records).await;
    println!(
        "owner died: {} records in, claimed by a delivery that never came back; its copy \
         waited {} times, then {delivered} delivered after the {lease_ms} ms lease, \
         {duplicates} duplicates",
        records.len(),
        rounds.waiting / records.len().max(1) + 1
    );
}
