//! Least privilege, tested: each function's code runs under a session of its own role (STS
//! AssumeRole, as Lambda does) against the deployed stack, with moto enforcing IAM on every
//! request so signed (scripts/moto_server.py: SQS and S3 by action and resource, CloudWatch Logs,
//! DynamoDB, EventBridge and SSM with the resource derived from the request, TransactWriteItems
//! per item). A call the role does not allow fails the function, and so the test; a
//! permission that no call uses — the code's, or Lambda's made with the role on the function's
//! behalf (the SQS poller, the function's own logs, the dead-letter queue), simulated here —
//! fails it too. What only another service uses with the role (S3 decrypting with KMS, S3
//! answering 404 for a missing key) is named below with the reason; condition keys
//! (dynamodb:LeadingKeys, kms:ViaService, s3:prefix) are checked in tests/aws/stack.rs.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Value};
use trailwatch::insights::InsightsConfig;
use trailwatch::select::TrailConfig;
use trailwatch::time::MS_PER_MINUTE;
use trailwatch_e2e::deployed::{contexts, notify_as_the_output_says};
use trailwatch_e2e::invocations::{logs_batch, schedule_event, subscription_payload};
use trailwatch_e2e::*;

/// Permissions no code of ours and no simulated Lambda call uses: another service uses them
/// with the role.
const USED_BY_OTHER_SERVICES: &[(&str, &str)] = &[
    (
        "kms:Decrypt",
        "S3 decrypts an SSE-KMS log file with the caller's permissions",
    ),
    (
        "s3:ListBucket",
        "S3 answers a GetObject of a missing key 404 (not 403) only with it",
    ),
];

/// One IAM decision moto made for a role session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    action: String,
    resource: String,
    allowed: bool,
}

fn calls_of(access_key: &str) -> Vec<Call> {
    let text = std::fs::read_to_string(calls_log()).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (is moto running from scripts/moto.sh?)",
            calls_log().display()
        )
    });
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["key"] == access_key)
        .map(|v| Call {
            action: v["action"].as_str().unwrap().to_owned(),
            resource: v["resource"].as_str().unwrap().to_owned(),
            allowed: v["allowed"].as_bool().unwrap(),
        })
        .collect()
}

/// IAM's wildcard match (`*` any run of characters), as moto and IAM apply it to resources.
fn matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || !value[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        other => panic!("{other}"),
    }
}

/// Every (action, resource pattern) a role's policies allow.
fn granted(stack: &DeployedStack, role: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for policy in &stack.roles[role].1 {
        for statement in policy["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow", "{role}: {statement}");
            for action in strings(&statement["Action"]) {
                for resource in strings(&statement["Resource"]) {
                    out.insert((action.clone(), resource));
                }
            }
        }
    }
    out
}

/// Fails on any call the role was denied, and on any permission of it that no call used.
fn assert_least_privilege(stack: &DeployedStack, role: &str) {
    let key = &stack.role_credentials[role][0];
    let calls = calls_of(key);
    assert!(!calls.is_empty(), "{role}: no call was made under the role");
    let denied: BTreeSet<&Call> = calls.iter().filter(|c| !c.allowed).collect();
    assert!(denied.is_empty(), "{role} was denied: {denied:#?}");
    let unused: Vec<(String, String)> = granted(stack, role)
        .into_iter()
        .filter(|(action, pattern)| {
            !calls
                .iter()
                .any(|c| &c.action == action && matches(pattern, &c.resource))
                && !USED_BY_OTHER_SERVICES.iter().any(|(a, _)| a == action)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "{role} grants what nothing uses: {unused:#?}"
    );
}

/// Lambda's SQS poller, with the function's role: reads the queue's attributes, receives a
/// batch (the test hands it to the function), and deletes what the function answered for.
async fn poll(sdk: &aws_config::SdkConfig, url: &str) -> aws_lambda_events::sqs::SqsEvent {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = receive(&sqs, url, 10, 30).await;
    event
}

async fn delete(sdk: &aws_config::SdkConfig, url: &str, event: &aws_lambda_events::sqs::SqsEvent) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let answered: Vec<_> = event.records.iter().collect();
    settle(&sqs, url, &answered, &[]).await;
}

/// Lambda's runtime writing the function's own log, with the function's role.
async fn own_log(sdk: &aws_config::SdkConfig, group: &str) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let stream = "2026/01/01/[$LATEST]0123456789abcdef";
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        .unwrap();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(trailwatch_aws::metrics::now_ms())
                .message("START RequestId: 1")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_uses_exactly_the_permissions_its_role_grants() {
    let config = std::fs::read_to_string(repo_root().join("events/trail-config.json")).unwrap();
    // Adopting a group that is not there yet: deliver creates it (with the retention) on first
    // use, which its role allows for that group only.
    let group = unique("CloudTrail/adopted");
    let options = StackOptions {
        ssm_config: Some(config.clone()),
        ..StackOptions::default()
    }
    .with("LogGroupName", &group)
    .with("AdoptExistingLogGroup", "true");
    let stack = tokio::task::spawn_blocking(move || DeployedStack::deploy(&options))
        .await
        .unwrap();
    let admin = sdk().await;
    let s3 = s3_client(&admin);
    notify_as_the_output_says(&stack, &s3).await;
    drain_queue(
        &aws_sdk_sqs::Client::new(&admin),
        stack.output("IngestQueueUrl"),
    )
    .await;

    // The trail writes a log file and an Insights file, encrypted with its KMS key.
    let records = recent(&invictus_files()[0].1, 20);
    let insights_records: Vec<String> = std::fs::read_to_string(
        shared_data().join("insights-examples/awsdocs-cloudtrail-user-guide-2023.jsonl"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(str::to_owned)
    .collect();
    let prefix = stack.key_prefix();
    for (key, body) in [
        (
            "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/least.json.gz",
            gzip(&format!("{{\"Records\":[{}]}}", records.join(","))),
        ),
        (
            "AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2023/01/01/123456789012_CloudTrail-Insight_us-east-1_20230101T0000Z_least.json.gz",
            gzip(&format!("{{\"Records\":[{}]}}", insights_records.join(","))),
        ),
    ] {
        s3.put_object()
            .bucket(&stack.bucket)
            .key(format!("{prefix}{key}"))
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&stack.parameters["CloudTrailKmsKeyArn"])
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    // Select, under its role: configuration from SSM, files from S3, messages to SQS.
    let select_fn = stack.function("SelectFunction");
    let select_sdk = stack.role_sdk("SelectFunctionRole").await;
    own_log(
        &select_sdk,
        &format!("/aws/lambda/{}-SelectFunction", stack.name),
    )
    .await;
    let text = trailwatch_aws::ssm::parameter(
        &aws_sdk_ssm::Client::new(&select_sdk),
        &select_fn.required(trailwatch_aws::ssm::TRAIL_CONFIG_PARAMETER_ENV),
    )
    .await
    .unwrap();
    let select = contexts::select(
        select_fn,
        &select_sdk,
        &TrailConfig::from_json(&text).unwrap(),
    );
    let ingest = stack.output("IngestQueueUrl");
    let batch = poll(&select_sdk, ingest).await;
    assert_eq!(batch.records.len(), 2);
    let response = trailwatch_select_fn::handle(
        &select,
        trailwatch_select_fn::SelectInvocation::from_payload(serde_json::to_value(&batch).unwrap())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "select under its role"
    );
    delete(&select_sdk, ingest, &batch).await;

    // Deliver, under its role: a call that is not full is held back (claims released, the
    // tail sent to the hold queue); back alone it is kept; once waited out it is put, into the
    // group deliver creates.
    let deliver_fn = stack.function("DeliverFunction");
    let deliver_sdk = stack.role_sdk("DeliverFunctionRole").await;
    own_log(
        &deliver_sdk,
        &format!("/aws/lambda/{}-DeliverFunction", stack.name),
    )
    .await;
    let deliver = contexts::deliver(deliver_fn, &deliver_sdk);
    let ledger = contexts::ledger(deliver_fn, &deliver_sdk);
    let delivery = stack.output("DeliveryQueueUrl");
    let batch = poll(&deliver_sdk, delivery).await;
    assert!(!batch.records.is_empty());
    let done = trailwatch_deliver_fn::deliver(&deliver, &ledger, batch.clone()).await;
    assert!(
        done.response.batch_item_failures.is_empty(),
        "{:?}",
        done.report.set_aside
    );
    assert!(done.report.held_back > 0, "a few records: held back");
    delete(&deliver_sdk, delivery, &batch).await;
    let hold = stack.output("HoldQueueUrl");
    let held = poll(&deliver_sdk, hold).await;
    let done = trailwatch_deliver_fn::deliver(&deliver, &ledger, held.clone()).await;
    assert_eq!(
        done.report.kept.len(),
        held.records.len(),
        "back alone: kept"
    );
    // Time passes: the kept message comes back when its invisibility ends.
    let admin_sqs = aws_sdk_sqs::Client::new(&admin);
    let kept: Vec<_> = held.records.iter().collect();
    settle(&admin_sqs, hold, &[], &kept).await;
    let held = poll(&deliver_sdk, hold).await;
    assert!(!held.records.is_empty());
    let waited_out = trailwatch_deliver_fn::DeliverContext {
        hold: deliver.hold.map(|h| trailwatch_deliver_fn::HoldBack {
            max_wait_ms: 0,
            ..h
        }),
        ..contexts::deliver(deliver_fn, &deliver_sdk)
    };
    let done = trailwatch_deliver_fn::deliver(&waited_out, &ledger, held.clone()).await;
    assert!(
        done.response.batch_item_failures.is_empty(),
        "{:?}",
        done.report.set_aside
    );
    assert_eq!(done.report.delivered, records.len());
    delete(&deliver_sdk, hold, &held).await;

    // Insights, under its role: native Insights forwarded; the delivered records counted from
    // a subscription batch; the schedule evaluates; a failed invocation kept by Lambda.
    let insights_fn = stack.function("InsightsFunction");
    let insights_sdk = stack.role_sdk("InsightsFunctionRole").await;
    own_log(
        &insights_sdk,
        &format!("/aws/lambda/{}-InsightsFunction", stack.name),
    )
    .await;
    let text = trailwatch_aws::ssm::parameter(
        &aws_sdk_ssm::Client::new(&insights_sdk),
        &insights_fn.required(trailwatch_aws::ssm::TRAIL_CONFIG_PARAMETER_ENV),
    )
    .await
    .unwrap();
    let context = contexts::insights(insights_fn, &insights_sdk);
    let mut state = contexts::insights_state(
        insights_fn,
        &insights_sdk,
        InsightsConfig::from_json(&text).unwrap(),
        &context.source,
    );
    state.settings.first_run_lookback_minutes = 60;
    let queue = stack.output("InsightsQueueUrl");
    let batch = poll(&insights_sdk, queue).await;
    assert!(!batch.records.is_empty());
    let response = trailwatch_insights_fn::handle_with_state(
        &context,
        Some(&state),
        serde_json::to_value(&batch).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "forwarded under its role"
    );
    delete(&insights_sdk, queue, &batch).await;
    let subscription = subscription_payload(&logs_batch("least", &records));
    trailwatch_insights_fn::handle_with_state(&context, Some(&state), subscription.clone())
        .await
        .unwrap();
    let now = trailwatch_aws::metrics::now_ms();
    for (n, minutes) in [(0, 0), (1, 30)] {
        let tick = schedule_event(now + minutes * MS_PER_MINUTE, n);
        trailwatch_insights_fn::handle_with_state(&context, Some(&state), tick)
            .await
            .unwrap();
    }
    // Records of a minute the evaluator has closed arrive late: the fence is read back.
    let late = subscription_payload(&logs_batch("late", &records));
    trailwatch_insights_fn::handle_with_state(&context, Some(&state), late)
        .await
        .unwrap();
    aws_sdk_sqs::Client::new(&insights_sdk)
        .send_message()
        .queue_url(stack.output("InsightsFailedInvocationQueueUrl"))
        .message_body(subscription.to_string())
        .send()
        .await
        .unwrap();

    for role in [
        "SelectFunctionRole",
        "DeliverFunctionRole",
        "InsightsFunctionRole",
    ] {
        assert_least_privilege(&stack, role);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_role_does_not_allow_is_refused() {
    // The enforcement the test above relies on: the select role may not write the log group,
    // nor read outside the trail's prefix.
    let stack = tokio::task::spawn_blocking(|| DeployedStack::deploy(&StackOptions::default()))
        .await
        .unwrap();
    let select_sdk = stack.role_sdk("SelectFunctionRole").await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&select_sdk);
    let denied = logs
        .create_log_stream()
        .log_group_name(stack.output("TrailLogGroupName"))
        .log_stream_name("forged")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        denied.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{denied:?}"
    );
    let outside = s3_client(&select_sdk)
        .get_object()
        .bucket(&stack.bucket)
        .key("elsewhere/AWSLogs/x.json.gz")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        outside.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{outside:?}"
    );
    let key = &stack.role_credentials["SelectFunctionRole"][0];
    let refused: Vec<Call> = calls_of(key).into_iter().filter(|c| !c.allowed).collect();
    assert_eq!(
        refused
            .iter()
            .map(|c| c.action.as_str())
            .collect::<Vec<_>>(),
        ["logs:CreateLogStream", "s3:GetObject"]
    );
}
