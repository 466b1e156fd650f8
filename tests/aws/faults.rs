//! Nothing lost, nothing doubled, with 30% of AWS calls failing.
//!
//! The real invictus-ir trail plus a generated stream (≥ 200,000 records resampled from it,
//! new eventIDs, ~1% repeated across files, four streams; each file holds 5 minutes of one
//! stream, whose files follow each other over 20 hours, or over 3 days for one stream) go
//! S3 → select → SQS → deliver → CloudWatch Logs, with the functions' clients behind a
//! fault-injecting proxy that fails 30% of S3, SQS, CloudWatch Logs and DynamoDB calls
//! (throttling, 500, 503, slow responses past the attempt timeout, dropped connections). The
//! deliver trigger polls the delivery queue while select fills it, as Lambda does (batches up
//! to the 6 MB payload, a batching window), and deliver holds calls that are not full back in
//! a FIFO hold queue, one message group per stream, received as Lambda receives it, as
//! deployed. Messages reported as batch-item failures are handed back as SQS would, at most
//! as often as the queues' redrive policy allows (`maxReceiveCount` 5; 50 for the hold queue,
//! whose messages come back on purpose). Then
//!
//! Long by design: one scenario (the stack, the proxy's faults, the drivers, the accounting of every record) read top to bottom.
//! the log group is read back from moto directly and compared record for record, and the
//! PutLogEvents calls that landed are compared with the fewest the whole input allows. The
//! bucket, queues, table and log group are those of template.yaml deployed in moto, as the
//! functions are configured there.
//!
//! `TRAILWATCH_FAULT_RECORDS` overrides the generated count (default 200,000);
//! `TRAILWATCH_FAULT_SEED` the seed of the data and of the faults;
//! `TRAILWATCH_FAULT_LEDGER_RECORDS` the generated count of the DynamoDB-ledger run (5,000);
//! `TRAILWATCH_FAULT_ATTEMPTS` the SDK's attempts per call (3);
//! `TRAILWATCH_FAULT_AMBIGUOUS_PUTS=1` lets slow and dropped PutLogEvents reach moto before
//! their answer is lost (the SDK then writes those batches twice: expect the duplicate
//! assertion to fail — it measures a window no client-side design closes).

#![recursion_limit = "256"]

mod fault_proxy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName;
use fault_proxy::{Fault, FaultPlan, FaultProxy, Service};
use tokio::task::JoinSet;
use trailwatch::deliver::ledger::DEFAULT_CLAIM_LEASE_MS;
use trailwatch::deliver::message::open_held;
use trailwatch::deliver::plan::minimum_batches;
use trailwatch::deliver::{
    stream_name, BatchLimits, DeliveredLedger, DeliveryMessage, LogEvent, MemoryLedger,
};
use trailwatch::record::Record;
use trailwatch::select::{Matcher, TrailConfig, Verdict};
use trailwatch::time::{format_event_time, MS_PER_HOUR, MS_PER_MINUTE};
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::dedup::{DynamoDbLedger, LedgerStats};
use trailwatch_aws::metrics::{CountAttempts, SdkCounts};
use trailwatch_aws::s3::S3Objects;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_deliver_fn::{self as deliver_env, DeliverContext, HoldBack};
use trailwatch_e2e::deployed::notify_as_the_output_says;
use trailwatch_e2e::*;
use trailwatch_select_fn::SelectContext;

const FAIL_RATE: f64 = 0.30;
/// PutLogEvents calls that landed, at most, against the fewest the whole input allows: the
/// issue's target, for the 200,000-record run (see the assertion for the small one).
const MAX_PUT_RATIO: f64 = 1.02;
/// The select trigger's batch size in the template.
const SELECT_BATCH: usize = 10;
/// The stack's queues' redrive policy (checked against the deployed queues): after this many
/// receives a message goes to the DLQ.
const MAX_RECEIVES: usize = 5;
/// Invocations running at once (Lambda would run more; moto is the bottleneck here).
const CONCURRENCY: usize = 4;
/// The clients' attempt timeout, short so that slow-response faults cost little time; slow
/// faults outlast it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const SLOW_FOR: Duration = Duration::from_millis(2_300);
/// CloudWatch Logs keeps the functions' own attempt timeout (10 s). With 2 s, on a loaded
/// machine (moto, the proxy and the functions sharing the cores), a full PutLogEvents (up to
/// 1 MB) that moto applied was not answered to the SDK within the attempt timeout and its
/// retry put the batch twice: a CI run failed with duplicates, and on one core 1,650 and
/// 2,447 of 202,900 records landed twice; with 10 s, none. Those duplicates are the
/// harness's, not the design's. Its slow faults outlast this timeout.
const LOGS_ATTEMPT_TIMEOUT: Duration = trailwatch_aws::ATTEMPT_TIMEOUT;
const LOGS_SLOW_FOR: Duration = Duration::from_millis(10_300);
const RECORDS_PER_FILE: usize = 1_000;
/// The minutes of calls one generated log file holds.
const FILE_MINUTES: i64 = 5;
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
const ACCOUNT: &str = "123837392027";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The SDK's standard retry quota (a token bucket per client: 5 tokens a retry, 10 a timeout,
/// 500 in all) is a circuit breaker that a *sustained* 30% failure rate drains within
/// seconds, after which no call is retried and a select message needing ~7 calls succeeds
/// 8% of the time — it would reach the DLQ. Real outages look like that only briefly; this
/// test is about what the pipeline does with the failures the SDK hands back, so its
/// clients retry without the quota (attempts, backoff and timeouts as in production).
fn unmetered_retries() -> aws_sdk_s3::config::retry::RetryPartition {
    use aws_sdk_s3::config::retry::{RetryPartition, TokenBucket};
    RetryPartition::custom("fault-test")
        .token_bucket(TokenBucket::unlimited())
        .build()
}

/// Production retries (standard mode, backoff and jitter) with fewer attempts — 3 instead of
/// 6 — so that about 3% of calls fail past the SDK and the functions' own handling (batch-item
/// failures, redelivery, the ledger) is exercised, not just the SDK's.
fn test_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(env_or("TRAILWATCH_FAULT_ATTEMPTS", 3))
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

/// splitmix64: the test's data are a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The log files to put in S3: (key, records), and how many records repeat another.
struct Corpus {
    files: Vec<(String, Vec<String>)>,
    repeats: usize,
}

impl Corpus {
    fn records(&self) -> usize {
        self.files.iter().map(|(_, r)| r.len()).sum()
    }
}

fn replace_field(record: &str, field: &str, value: &str) -> String {
    let start = record
        .find(&format!("\"{field}\":\""))
        .unwrap_or_else(|| panic!("compact {field} in {record}"))
        + field.len()
        + 4;
    let end = start + record[start..].find('"').unwrap();
    format!("{}{value}{}", &record[..start], &record[end..])
}

/// The real trail (times moved to the last hour), then `generated` records resampled from it.
fn corpus(generated: usize, seed: u64) -> Corpus {
    let real = invictus_files();
    let all: Vec<String> = real.iter().flat_map(|(_, r)| r.clone()).collect();
    let shifted = recent(&all, 30);
    let mut files = Vec::new();
    let mut offset = 0;
    for (name, records) in &real {
        let mine = shifted[offset..offset + records.len()].to_vec();
        offset += records.len();
        files.push((
            format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/07/10/{name}.gz"),
            mine,
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut rng = Rng(seed);
    let file_count = generated.div_ceil(RECORDS_PER_FILE);
    let first_generated = files.len();
    let per_stream = file_count.div_ceil(REGIONS.len()) as i64;
    for f in 0..file_count {
        let region = REGIONS[f % REGIONS.len()];
        // As CloudTrail writes them: each file holds a few minutes of one account and Region,
        // and a stream's files follow each other in time — over the last 20 hours for three
        // streams, over the last 3 days for the fourth, whose calls the 24-hour span rule cuts.
        let history = if f % REGIONS.len() == 3 { 72 } else { 20 } * MS_PER_HOUR;
        let ordinal = (f / REGIONS.len()) as i64;
        let file_age = 10 * MS_PER_MINUTE + history * (per_stream - 1 - ordinal) / per_stream;
        let count = RECORDS_PER_FILE.min(generated - f * RECORDS_PER_FILE);
        let records = (0..count)
            .map(|_| {
                let template = &shifted[rng.below(shifted.len())];
                let age =
                    file_age + rng.below(FILE_MINUTES as usize * MS_PER_MINUTE as usize) as i64;
                let at = (now - age) / 1000 * 1000;
                let record = replace_field(template, "eventID", &rng.uuid());
                let record = replace_field(&record, "eventTime", &format_event_time(at));
                replace_field(&record, "awsRegion", region)
            })
            .collect();
        files.push((
            format!(
                "AWSLogs/{ACCOUNT}/CloudTrail/{region}/generated/{ACCOUNT}_CloudTrail_{region}_{f:05}.json.gz"
            ),
            records,
        ));
    }
    // CloudTrail repeats some records in a later file, byte for byte.
    let repeats = generated / 100;
    for _ in 0..repeats {
        let from = first_generated + rng.below(file_count);
        let record = files[from].1[rng.below(files[from].1.len())].clone();
        let mut to = first_generated + rng.below(file_count);
        if to == from {
            to = first_generated + (to - first_generated + 1) % file_count;
        }
        files[to].1.push(record);
    }
    Corpus { files, repeats }
}

/// What the trail should hold: per stream, per eventID, the record's exact text.
fn expected(corpus: &Corpus, matcher: &Matcher) -> BTreeMap<String, HashMap<String, String>> {
    let mut want: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
    for (_, records) in &corpus.files {
        for text in records {
            let record = Record::parse(text).unwrap();
            if !matches!(matcher.evaluate(&record), Verdict::Keep { .. }) {
                continue;
            }
            let stream = stream_name(&record, None).unwrap();
            let id = record.event_id().unwrap().to_owned();
            want.entry(stream).or_default().insert(id, text.clone());
        }
    }
    want
}

/// How the messages of one queue were driven to completion.
#[derive(Debug, Default)]
struct Drive {
    invocations: usize,
    rounds: usize,
    received: usize,
    redelivered: usize,
    /// How long messages waited in the queue before their first receive, ms (sorted).
    queue_waits: Vec<i64>,
    /// The longest invocation (the functions' timeout is 60 s in the template).
    longest: Duration,
}

/// Hands `pending` to `invoke` in batches of `batch_size`, `CONCURRENCY` at a time, and hands
/// back the messages each invocation reports as failed, as SQS would, until none remain.
async fn drive<F, Fut>(mut pending: Vec<SqsMessage>, batch_size: usize, invoke: F) -> Drive
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = HashSet<String>> + Send + 'static,
{
    let mut drive = Drive::default();
    while !pending.is_empty() {
        assert!(
            drive.rounds < MAX_RECEIVES,
            "{} messages still failing after {MAX_RECEIVES} receives: they would be in the DLQ",
            pending.len()
        );
        drive.rounds += 1;
        let mut batches = pending.chunks(batch_size).map(<[_]>::to_vec);
        let mut tasks = JoinSet::new();
        let mut failed = Vec::new();
        loop {
            while tasks.len() < CONCURRENCY {
                let Some(batch) = batches.next() else { break };
                let mut event = SqsEvent::default();
                event.records = batch.clone();
                let run = invoke(event);
                tasks.spawn(async move { (batch, run.await) });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (batch, failures) = done.unwrap();
            drive.invocations += 1;
            failed.extend(
                batch
                    .into_iter()
                    .filter(|m| failures.contains(m.message_id.as_deref().unwrap_or(""))),
            );
        }
        drive.redelivered += failed.len();
        pending = failed;
    }
    drive
}

/// What the deliver triggers hand the function at most: Lambda's 6 MB invocation payload
/// (the event's JSON, bodies escaped inside it), and the triggers' BatchSize and batching
/// window in the template (a FIFO queue's trigger takes at most 10 and has no window).
const LAMBDA_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
const DELIVER_BATCH_SIZE: usize = 100;
const DELIVER_BATCHING_WINDOW: Duration = Duration::from_secs(5);
const HOLD_BATCH_SIZE: i32 = 10;
/// template.yaml's HoldQueue redrive policy: after this many receives a message goes to the
/// DLQ (a held message that comes back alone is received again after each keep).
const HOLD_MAX_RECEIVES: usize = 50;
/// The visibility each receive from the hold queue asks for here (the stack's queue default is
/// 360 s): how long a held message whose keep failed stays away.
const HOLD_VISIBILITY_SECONDS: i32 = 60;

/// What an invocation of the deliver function answered: the messages to retry, and which of
/// them it kept invisible in the hold queue.
type Answer = (HashSet<String>, HashSet<String>);

/// A finished invocation: its trigger, its batch, how long it ran, and its answer.
type Finished = (usize, Vec<SqsMessage>, Duration, Answer);

/// The deliver function's two triggers as Lambda runs them, `CONCURRENCY` invocations at a
/// time each, until select is done and both queues are empty, delayed and invisible messages
/// included:
/// - the delivery queue (moto) is drained while select fills it and handed over in batches
///   up to the payload limit or `DELIVER_BATCH_SIZE`, or what has gathered once the batching
///   window has passed; the messages an invocation reports as failed are visible again at
///   once;
/// - the FIFO hold queue is received from as Lambda does, leaving moto to hand a message group
///   to one invocation at a time; the messages an invocation answered for are deleted, those
///   it reports as failed are made visible again at once, except those it kept invisible
///   itself.
async fn poll_deliveries<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    delivery_url: &str,
    hold_url: &str,
    select_done: &std::sync::atomic::AtomicBool,
    invoke: F,
) -> Drive
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let mut drive = Drive::default();
    let mut visible: std::collections::VecDeque<(Instant, usize, SqsMessage)> = Default::default();
    let mut receives: HashMap<String, usize> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut running = [0, 0];
    let size = |m: &SqsMessage| serde_json::to_string(m).unwrap().len() + 1;
    let first_receive = |drive: &mut Drive, m: &SqsMessage, receives: usize| {
        if receives > 1 {
            drive.redelivered += 1;
        } else if let Some(sent) = m
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<i64>().ok())
        {
            drive
                .queue_waits
                .push(trailwatch_aws::metrics::now_ms() - sent);
        }
    };
    // Invokes the function with a batch of `trigger`'s queue (0: delivery, 1: hold).
    let start = |drive: &mut Drive,
                 tasks: &mut JoinSet<Finished>,
                 trigger: usize,
                 batch: Vec<SqsMessage>| {
        drive.received += batch.len();
        let mut event = SqsEvent::default();
        event.records = batch.clone();
        let run = invoke(event);
        tasks.spawn(async move {
            let started = Instant::now();
            let answer = run.await;
            (trigger, batch, started.elapsed(), answer)
        });
    };
    loop {
        let pulled = drain_queue(sqs, delivery_url).await.records;
        let pulled_any = !pulled.is_empty();
        visible.extend(pulled.into_iter().map(|m| (Instant::now(), size(&m), m)));
        while running[0] < CONCURRENCY {
            let (mut take, mut bytes) = (0, 0);
            while take < visible.len().min(DELIVER_BATCH_SIZE)
                && bytes + visible[take].1 <= LAMBDA_PAYLOAD_BYTES
            {
                bytes += visible[take].1;
                take += 1;
            }
            let ready = take > 0
                && (take < visible.len()
                    || take == DELIVER_BATCH_SIZE
                    || visible[0].0.elapsed() >= DELIVER_BATCHING_WINDOW);
            if !ready {
                break;
            }
            let batch: Vec<SqsMessage> = visible.drain(..take).map(|(_, _, m)| m).collect();
            for m in &batch {
                let n = receives
                    .entry(m.message_id.clone().unwrap_or_default())
                    .or_default();
                *n += 1;
                assert!(
                    *n <= MAX_RECEIVES,
                    "a message failed {MAX_RECEIVES} receives: it would be in the DLQ"
                );
                first_receive(&mut drive, m, *n);
            }
            running[0] += 1;
            start(&mut drive, &mut tasks, 0, batch);
        }
        let mut received_held = false;
        while running[1] < CONCURRENCY {
            let batch = receive(sqs, hold_url, HOLD_BATCH_SIZE, HOLD_VISIBILITY_SECONDS).await;
            if batch.is_empty() {
                break;
            }
            received_held = true;
            for m in &batch {
                let n: usize = m.attributes["ApproximateReceiveCount"].parse().unwrap();
                assert!(
                    n <= HOLD_MAX_RECEIVES,
                    "a held message was received {n} times: it would be in the DLQ"
                );
                first_receive(&mut drive, m, n);
            }
            running[1] += 1;
            start(&mut drive, &mut tasks, 1, batch);
        }
        if tasks.is_empty()
            && visible.is_empty()
            && !pulled_any
            && !received_held
            && select_done.load(Ordering::Relaxed)
        {
            let mut waiting = 0;
            for url in [delivery_url, hold_url] {
                let attributes = sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::All)
                    .send()
                    .await
                    .unwrap();
                waiting += [
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ]
                .iter()
                .filter_map(|a| attributes.attributes()?.get(a)?.parse::<usize>().ok())
                .sum::<usize>();
            }
            if waiting == 0 {
                drive.queue_waits.sort_unstable();
                return drive;
            }
        }
        let done = tokio::select! {
            done = tasks.join_next(), if !tasks.is_empty() => done,
            () = tokio::time::sleep(Duration::from_millis(200)) => None,
        };
        let Some(done) = done else { continue };
        let (trigger, batch, ran, (failures, kept)) = done.unwrap();
        drive.invocations += 1;
        drive.longest = drive.longest.max(ran);
        running[trigger] -= 1;
        let failed = |m: &&SqsMessage| failures.contains(m.message_id.as_deref().unwrap_or(""));
        if trigger == 0 {
            visible.extend(
                batch
                    .iter()
                    .filter(failed)
                    .map(|m| (Instant::now(), size(m), m.clone())),
            );
            continue;
        }
        let answered: Vec<&SqsMessage> = batch.iter().filter(|m| !failed(m)).collect();
        let again: Vec<&SqsMessage> = batch
            .iter()
            .filter(failed)
            .filter(|m| !kept.contains(m.message_id.as_deref().unwrap_or("")))
            .collect();
        settle(sqs, hold_url, &answered, &again).await;
    }
}

/// Sums of the deliver reports.
#[derive(Debug, Default)]
struct DeliverTotals {
    received: usize,
    delivered: usize,
    duplicates: usize,
    held_back: usize,
    held_back_messages: usize,
    hold_back_errors: usize,
    partial_calls: usize,
    waited_out: usize,
    kept: usize,
    released: usize,
    release_failures: usize,
    ledger_taken: usize,
    ledger_unavailable: usize,
    claimed: usize,
    confirmed: usize,
    confirm_failures: usize,
    /// Every ledger write: begins, claims, confirms, releases, finishes, lets go.
    ledger_writes: usize,
    /// Records of messages that were copies of a delivery done or in flight.
    copies: usize,
    /// Records that waited for another delivery's claim.
    waiting: usize,
    put_calls: usize,
    failed_puts: usize,
    set_aside: Vec<String>,
    rejected: BTreeMap<&'static str, usize>,
    /// Σ over invocations of the fewest PutLogEvents calls the records it put allow.
    invocation_minimum: usize,
}

/// The ledger a scenario runs with: in memory (shared by the invocations of the run, as the
/// table would be), or DynamoDB behind the fault proxy.
trait TestLedger: DeliveredLedger + Send + Sync + Sized + 'static {
    fn build(faulty: &aws_config::SdkConfig, table: &str) -> Self;
    fn stats(&self) -> Option<&LedgerStats>;
}

impl TestLedger for MemoryLedger {
    fn build(_: &aws_config::SdkConfig, _: &str) -> Self {
        MemoryLedger::default()
    }
    fn stats(&self) -> Option<&LedgerStats> {
        None
    }
}

impl TestLedger for DynamoDbLedger {
    fn build(faulty: &aws_config::SdkConfig, table: &str) -> Self {
        let config = aws_sdk_dynamodb::config::Builder::from(faulty)
            .retry_partition(unmetered_retries())
            .retry_config(test_retries())
            .interceptor(CountAttempts)
            .build();
        DynamoDbLedger::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            table.to_owned(),
        )
    }
    fn stats(&self) -> Option<&LedgerStats> {
        Some(&self.stats)
    }
}

/// The real trail plus ≥ 200,000 generated records, 30% of S3, SQS and CloudWatch Logs calls
/// failing; the ledger's protocol runs in memory here (moto's DynamoDB cannot take 200,000
/// conditional writes in CI time; the next test runs the same protocol against it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_doubled_when_30_percent_of_calls_fail() {
    let generated = env_or("TRAILWATCH_FAULT_RECORDS", 200_000);
    scenario::<MemoryLedger>(generated).await;
}

/// The same with the DynamoDB ledger, its calls failing too (30%, including writes applied
/// whose answer is lost), on a smaller generated stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_ledger_keeps_records_once_when_30_percent_of_calls_fail() {
    let generated = env_or("TRAILWATCH_FAULT_LEDGER_RECORDS", 5_000);
    scenario::<DynamoDbLedger>(generated).await;
}

/// `maxReceiveCount` of a queue's redrive policy (a number or its text, as CloudFormation
/// passed it).
async fn max_receive_count(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(
        attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .unwrap_or_else(|| panic!("{url} has no redrive policy")),
    )
    .unwrap();
    match &policy["maxReceiveCount"] {
        serde_json::Value::String(n) => n.parse().unwrap(),
        n => n.as_u64().unwrap() as usize,
    }
}

async fn scenario<L: TestLedger>(generated: usize) {
    let started = Instant::now();
    let seed: u64 = env_or("TRAILWATCH_FAULT_SEED", 4);
    let direct = sdk().await;
    let s3 = s3_client(&direct);
    let sqs = aws_sdk_sqs::Client::new(&direct);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&direct);

    // template.yaml deployed in moto: its bucket notifies its ingest queue as the stack's
    // output says, and the functions get the queues, log group and table (and settings) the
    // stack configures them with.
    let stack = tokio::task::spawn_blocking(|| DeployedStack::deploy(&StackOptions::default()))
        .await
        .unwrap();
    notify_as_the_output_says(&stack, &s3).await;
    let (select_fn, deliver_fn) = (
        stack.function("SelectFunction"),
        stack.function("DeliverFunction"),
    );
    let bucket = stack.bucket.clone();
    let ingest = stack.output("IngestQueueUrl").to_owned();
    let delivery = select_fn.required(trailwatch_select_fn::DELIVERY_QUEUE_ENV);
    let insights = select_fn.required(trailwatch_select_fn::INSIGHTS_QUEUE_ENV);
    let hold = deliver_fn.required(deliver_env::HOLD_QUEUE_ENV);
    let group = deliver_fn.required(deliver_env::LOG_GROUP_ENV);
    let table = deliver_fn.required(deliver_env::DEDUP_TABLE_ENV);
    let retention: u32 = deliver_fn
        .required(deliver_env::RETENTION_ENV)
        .parse()
        .unwrap();
    let max_wait_s: i64 = deliver_fn
        .required(deliver_env::MAX_WAIT_ENV)
        .parse()
        .unwrap();
    assert!(
        max_wait_s > 0,
        "the stack holds records back (MaxWaitSeconds > 0)"
    );
    // The receive limits this harness hands messages back within are the stack's.
    for (url, limit) in [
        (&ingest, MAX_RECEIVES),
        (&delivery, MAX_RECEIVES),
        (&hold, HOLD_MAX_RECEIVES),
    ] {
        assert_eq!(max_receive_count(&sqs, url).await, limit, "{url}");
    }
    drain_queue(&sqs, &ingest).await; // moto's s3:TestEvent

    let corpus = corpus(generated, seed);
    let matcher = TrailConfig::default().compile();
    let want = expected(&corpus, &matcher);
    let selected: usize = want.values().map(HashMap::len).sum();
    let generated_in = started.elapsed();
    let mut uploads = JoinSet::new();
    for (key, records) in &corpus.files {
        let request = s3
            .put_object()
            .bucket(&bucket)
            .key(format!("{}{key}", stack.key_prefix()))
            .body(gzip_log_file(records).into());
        uploads.spawn(async move { request.send().await.unwrap() });
        if uploads.len() >= 8 {
            uploads.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = uploads.join_next().await {
        done.unwrap();
    }
    let setup = started.elapsed();

    // The functions, behind the proxy.
    let proxy = FaultProxy::start(
        &endpoint(),
        FaultPlan {
            seed,
            rate: FAIL_RATE,
            services: vec![
                Service::S3,
                Service::Sqs,
                Service::CloudWatchLogs,
                Service::DynamoDb,
            ],
            kinds: Fault::ALL.to_vec(),
            slow_for: SLOW_FOR,
            slow_for_service: [(Service::CloudWatchLogs, LOGS_SLOW_FOR)].into(),
            // A PutLogEvents applied but unanswered is retried by the SDK and lands twice;
            // nothing can tell, so that case is measured apart, not mixed into this count.
            // TRAILWATCH_FAULT_AMBIGUOUS_PUTS=1 adds it, to measure what it costs.
            ambiguous: if env_or("TRAILWATCH_FAULT_AMBIGUOUS_PUTS", 0) == 1 {
                vec![
                    Service::S3,
                    Service::Sqs,
                    Service::DynamoDb,
                    Service::CloudWatchLogs,
                ]
            } else {
                vec![Service::S3, Service::Sqs, Service::DynamoDb]
            },
        },
    )
    .await;
    let faulty = sdk_at(&proxy.endpoint, ATTEMPT_TIMEOUT).await;
    let s3_config = aws_sdk_s3::config::Builder::from(&faulty)
        .force_path_style(true)
        .retry_partition(unmetered_retries())
        .retry_config(test_retries())
        .interceptor(CountAttempts)
        .build();
    let sqs_config = aws_sdk_sqs::config::Builder::from(&faulty)
        .retry_partition(unmetered_retries())
        .retry_config(test_retries())
        .interceptor(CountAttempts)
        .build();
    let logs_config = aws_sdk_cloudwatchlogs::config::Builder::from(
        &sdk_at(&proxy.endpoint, LOGS_ATTEMPT_TIMEOUT).await,
    )
    .retry_partition(unmetered_retries())
    .retry_config(test_retries())
    .interceptor(CountAttempts)
    .build();
    let select = Arc::new(SelectContext {
        s3: S3Objects::new(aws_sdk_s3::Client::from_conf(s3_config)),
        sqs: SqsSender::new(aws_sdk_sqs::Client::from_conf(sqs_config.clone())),
        delivery_queue: delivery.clone(),
        insights_queue: insights.clone(),
        matcher: TrailConfig::default().compile(),
        accept_records: false,
        detector: None,
    });
    let deliver = Arc::new(DeliverContext {
        sink: CloudWatchLogs::new(
            aws_sdk_cloudwatchlogs::Client::from_conf(logs_config),
            group.clone(),
            Some(retention),
        ),
        retention_days: retention,
        // As deployed: calls that are not full wait in the hold queue, behind the proxy.
        hold: Some(HoldBack {
            sqs: SqsSender::new(aws_sdk_sqs::Client::from_conf(sqs_config)),
            queue_url: hold.clone(),
            max_wait_ms: max_wait_s * 1000,
        }),
        claim_lease_ms: DEFAULT_CLAIM_LEASE_MS,
    });
    let ledger = Arc::new(L::build(&faulty, &table));

    let notifications = drain_queue(&sqs, &ingest).await.records;
    assert_eq!(
        notifications.len(),
        corpus.files.len(),
        "one notification per file"
    );
    let sdk_before = SdkCounts::now();
    let started_pipeline = Instant::now();
    let select_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let selecting = async {
        let selecting = drive(notifications, SELECT_BATCH, |event| {
            let select = select.clone();
            async move {
                let payload = serde_json::to_value(&event).unwrap();
                let invocation =
                    trailwatch_select_fn::SelectInvocation::from_payload(payload).unwrap();
                match trailwatch_select_fn::handle(&select, invocation).await {
                    Ok(response) => response["batchItemFailures"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
                        .collect(),
                    // A function error fails the whole batch.
                    Err(_) => event
                        .records
                        .iter()
                        .filter_map(|m| m.message_id.clone())
                        .collect(),
                }
            }
        })
        .await;
        select_done.store(true, Ordering::Relaxed);
        (selecting, started_pipeline.elapsed())
    };
    let totals = Arc::new(Mutex::new(DeliverTotals::default()));
    // The deliver trigger polls the delivery queue while select fills it, as Lambda would.
    // Which delivery messages carried each eventID (held-back ones marked), to explain a loss.
    let carried_in: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let outcomes: Arc<Mutex<HashMap<String, &'static str>>> = Arc::default();
    let delivering = poll_deliveries(&sqs, &delivery, &hold, &select_done, |event| {
        let (deliver, ledger, totals) = (deliver.clone(), ledger.clone(), totals.clone());
        let (carried_in, outcomes) = (carried_in.clone(), outcomes.clone());
        async move {
            let mut labels = Vec::new();
            for m in &event.records {
                let body = m.body.as_deref().unwrap_or("");
                let Ok(opened) = open_held(body) else {
                    continue;
                };
                let label = format!(
                    "{}{}#{}",
                    if body != opened[0] { "held " } else { "" },
                    m.message_id.as_deref().unwrap_or(""),
                    m.attributes
                        .get("ApproximateReceiveCount")
                        .map_or("?", String::as_str)
                );
                labels.push((m.message_id.clone().unwrap_or_default(), label.clone()));
                let mut carried_in = carried_in.lock().unwrap();
                for inner in &opened {
                    let Ok(message) = DeliveryMessage::parse(inner) else {
                        continue;
                    };
                    for r in &message.records {
                        if let Some(id) = Record::parse(r.get())
                            .ok()
                            .and_then(|r| r.event_id().map(str::to_owned))
                        {
                            carried_in.entry(id).or_default().push(label.clone());
                        }
                    }
                }
            }
            let done = trailwatch_deliver_fn::deliver(&deliver, &*ledger, event).await;
            let mut t = totals.lock().unwrap();
            let r = &done.report;
            t.received += r.records_received;
            t.delivered += r.delivered;
            t.duplicates += r.duplicates;
            t.held_back += r.held_back;
            t.held_back_messages += r.held_back_messages;
            t.hold_back_errors += usize::from(r.hold_back_error.is_some());
            t.put_calls += r.put_calls;
            t.partial_calls += r.partial_calls;
            t.waited_out += r.waited_out;
            t.failed_puts += r.failed_calls;
            t.ledger_taken += done.ledger.taken;
            t.ledger_unavailable += done.ledger.unavailable;
            t.claimed += done.ledger.claimed;
            t.ledger_writes += done.ledger.writes();
            t.copies += done.ledger.copies;
            t.waiting += r.waiting;
            t.confirmed += done.ledger.confirmed;
            t.released += done.ledger.released;
            t.confirm_failures += done.ledger.confirm_failures;
            t.release_failures += done.ledger.release_failures;
            t.invocation_minimum += done.ledger.minimum_put_calls;
            for (reason, n) in &r.rejected {
                *t.rejected.entry(reason).or_default() += n;
            }
            t.kept += r.kept.len();
            {
                let mut outcomes = outcomes.lock().unwrap();
                for (id, label) in labels {
                    let outcome = if r.kept.contains_key(&id) {
                        "kept"
                    } else if r.retry.contains(&id) {
                        "retried"
                    } else {
                        "answered"
                    };
                    outcomes.insert(label, outcome);
                }
            }
            t.set_aside
                .extend(r.set_aside.iter().map(|s| format!("{s:?}")));
            let failures = done
                .response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            (failures, r.kept.keys().cloned().collect())
        }
    });
    let ((selecting, select_time), delivering) = tokio::join!(selecting, delivering);
    let deliver_time = started_pipeline.elapsed();
    let stats = proxy.stats();
    let sdk_after = SdkCounts::now();
    drop(proxy);

    // Read back from moto directly.
    let readback_started = Instant::now();
    let mut delivered_total = 0;
    let mut duplicates = 0;
    let mut missing = 0;
    let mut altered = 0;
    let mut unexpected = 0;
    let mut global_minimum = 0;
    for (stream, records) in &want {
        let got = read_stream(&logs, &group, stream).await;
        delivered_total += got.len();
        let mut seen: HashSet<String> = HashSet::new();
        for text in &got {
            let record = Record::parse(text).unwrap();
            let id = record.event_id().unwrap_or("").to_owned();
            match records.get(&id) {
                None => unexpected += 1,
                Some(expected) if expected != text => altered += 1,
                Some(_) => {}
            }
            if !seen.insert(id) {
                duplicates += 1;
            }
        }
        missing += records.keys().filter(|id| !seen.contains(*id)).count();
        let carried_in = carried_in.lock().unwrap();
        for id in records.keys().filter(|id| !seen.contains(*id)).take(10) {
            let outcomes = outcomes.lock().unwrap();
            let chain: Vec<String> = carried_in
                .get(id)
                .into_iter()
                .flatten()
                .map(|label| format!("{label} {}", outcomes.get(label).copied().unwrap_or("?")))
                .collect();
            println!("missing in {stream}: {id}, carried in {chain:?}");
        }
        let events: Vec<LogEvent<'_>> = records
            .values()
            .map(|m| LogEvent {
                timestamp_ms: Record::parse(m).unwrap().event_time_ms().unwrap(),
                message: m,
                event_id: None,
            })
            .collect();
        global_minimum += minimum_batches(&events, &BatchLimits::default());
    }
    let readback_time = readback_started.elapsed();

    let t = totals.lock().unwrap();
    let per_million = |calls: u64| calls as f64 * 1e6 / selected as f64;
    let op = |service: Service, name: &str| {
        stats
            .get(&(service, name.to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    let get_object = op(Service::S3, "GetObject");
    let sends = op(Service::Sqs, "SendMessageBatch");
    let puts = op(Service::CloudWatchLogs, "PutLogEvents");
    let ledger_puts = op(Service::DynamoDb, "PutItem");
    let requests: u64 = stats.values().map(|s| s.requests).sum();
    let faulted: u64 = stats.values().map(|s| s.faulted()).sum();
    let mut by_kind: BTreeMap<Fault, u64> = BTreeMap::new();
    for s in stats.values() {
        for (k, n) in &s.faults {
            *by_kind.entry(*k).or_default() += n;
        }
    }
    // One conditional write per claimed record, per confirm, per release, and per delivery
    // begun, finished or let go: what the DynamoDB ledger writes (before retries), whichever
    // ledger ran.
    let ledger_writes = t.ledger_writes as u64;
    let put_ratio = puts.forwarded as f64 / global_minimum as f64;
    println!(
        "== fault injection: {:.0}% of S3/SQS/CloudWatch Logs/DynamoDB calls failing (seed {seed})",
        FAIL_RATE * 100.0
    );
    println!(
        "records in:   {} in {} files ({} real + {generated} generated, {} repeated across files)",
        corpus.records(),
        corpus.files.len(),
        2_900,
        corpus.repeats
    );
    println!("selected:     {selected} unique in {} streams", want.len());
    println!("delivered:    {delivered_total} read back; missing {missing}, altered {altered}, unexpected {unexpected}");
    println!("duplicates:   {duplicates} in the log group ({:.3}%); repeated in the input {}; dropped by deliver {} ({} by the ledger)",
        100.0 * duplicates as f64 / selected as f64,
        corpus.records() - selected, t.duplicates, t.ledger_taken);
    println!("retries:      {} SDK retries of {} calls ({} attempts); {faulted} faulted requests of {requests} {by_kind:?}; select: {} invocations, {} rounds, {} messages redelivered; deliver: {} invocations (longest {:.1} s), {} messages redelivered, {} failed PutLogEvents, {} ledger-unavailable records, {} confirms ({} failed), {} releases ({} failed)",
        sdk_after.retries_since(&sdk_before), sdk_after.calls - sdk_before.calls, sdk_after.attempts - sdk_before.attempts,
        selecting.invocations, selecting.rounds, selecting.redelivered,
        delivering.invocations, delivering.longest.as_secs_f64(), delivering.redelivered,
        t.failed_puts, t.ledger_unavailable, t.confirmed, t.confirm_failures, t.released, t.release_failures);
    let wait = |q: f64| {
        delivering
            .queue_waits
            .get(((delivering.queue_waits.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!("delivery queue: waits before the first receive, median {} ms, 90th percentile {} ms, max {} ms",
        wait(0.5), wait(0.9), wait(1.0));
    println!("held back:    {} records in {} messages sent to the hold queue ({} holds failed); {} held messages came back alone and were kept; {} calls not full, {} of them records that had waited {max_wait_s} s",
        t.held_back, t.held_back_messages, t.hold_back_errors, t.kept, t.partial_calls, t.waited_out);
    println!(
        "set aside:    {} {:?}; rejected {:?}",
        t.set_aside.len(),
        t.set_aside.iter().take(3).collect::<Vec<_>>(),
        t.rejected
    );
    println!("calls (successful / attempted) per million selected records:");
    println!(
        "  S3 GetObject            {:>9.0} / {:>9.0}",
        per_million(get_object.forwarded),
        per_million(get_object.requests)
    );
    println!(
        "  SQS SendMessageBatch    {:>9.0} / {:>9.0}  ({} delivery messages received by deliver, {} of them held back)",
        per_million(sends.forwarded),
        per_million(sends.requests),
        delivering.received,
        t.held_back_messages
    );
    println!("  PutLogEvents            {:>9.0} / {:>9.0}  ({} landed = {put_ratio:.3}× the minimum for the whole input, {global_minimum} = {:.0}/M; deliver made {} calls)",
        per_million(puts.forwarded), per_million(puts.requests), puts.forwarded, per_million(global_minimum as u64), t.put_calls);
    println!("  ledger writes           {:>9.0} (= DynamoDB write calls and WCU; {} claims + {} confirms + {} releases + {} for deliveries begun, finished, let go; {} records of copies dropped, {} records waited for another delivery)",
        per_million(ledger_writes), t.claimed, t.confirmed, t.released,
        t.ledger_writes - t.claimed - t.confirmed - t.confirm_failures - t.released, t.copies, t.waiting);
    if let Some(stats) = ledger.stats() {
        println!("  DynamoDB PutItem        {:>9.0} / {:>9.0}  (ledger: {} answered writes = {:.0} WCU per million records, {} refused as duplicates, {} failed attempts)",
            per_million(ledger_puts.forwarded), per_million(ledger_puts.requests),
            stats.calls.load(Ordering::Relaxed), per_million(stats.write_units()),
            stats.taken.load(Ordering::Relaxed), stats.failed_calls.load(Ordering::Relaxed));
    }
    for ((service, operation), s) in &stats {
        println!(
            "    {service:?} {operation}: {} requests, {} forwarded, faults {:?}; {} unanswered (client gone before moto answered), slowest answer {:.1} s",
            s.requests, s.forwarded, s.faults, s.unanswered, s.slowest.as_secs_f64()
        );
    }
    println!(
        "wall time:    {:.1}s (setup {:.1}s of which generating {:.1}s; select done after {:.1}s, deliver after {:.1}s; read-back {:.1}s)",
        started.elapsed().as_secs_f64(),
        setup.as_secs_f64(),
        generated_in.as_secs_f64(),
        select_time.as_secs_f64(),
        deliver_time.as_secs_f64(),
        readback_time.as_secs_f64()
    );

    assert!(
        faulted as f64 > 0.2 * requests as f64,
        "the proxy failed {faulted} of {requests} calls"
    );
    assert!(
        t.set_aside.is_empty(),
        "records set aside: {:?}",
        t.set_aside
    );
    assert_eq!(missing, 0, "selected records missing from the log group");
    assert_eq!(altered, 0, "records altered on the way");
    assert_eq!(
        unexpected, 0,
        "records in the log group that were never selected"
    );
    assert!(
        duplicates as f64 <= 0.005 * selected as f64,
        "{duplicates} duplicates of {selected} records ({} PutLogEvents unanswered by moto within the attempt timeout, slowest answer {:.1} s)",
        puts.unanswered,
        puts.slowest.as_secs_f64()
    );
    // Without holding calls back this was 3.5×. A call put early because its records had
    // waited the stack's maximum wait keeps the wait's promise; it is not waste. Where this
    // harness keeps up (4 invocations at a time against moto) there are few and the run is
    // at 1.000×; on a slower machine delivery messages queue here for minutes before an
    // invocation takes them (Lambda would scale out), held records run out of wait, and those
    // calls alone take the run past the target (1.04–1.05× on one loaded core, 18–19 such
    // calls). The small DynamoDB-ledger run's deliver stage outlasts the wait (every record
    // claimed and released through the failing proxy): each time the wait runs out, each
    // stream may have a call put that is not full.
    let allowed = if generated >= 100_000 {
        (global_minimum as f64 * MAX_PUT_RATIO) as u64 + t.waited_out as u64
    } else {
        let waits = deliver_time.as_secs().div_ceil(max_wait_s.unsigned_abs());
        global_minimum as u64 + want.len() as u64 * waits
    };
    assert!(
        puts.forwarded <= allowed,
        "{} PutLogEvents landed where the whole input needs {global_minimum} ({allowed} allowed, {} calls put when their records' wait ran out): {put_ratio:.3}×",
        puts.forwarded,
        t.waited_out
    );
}
