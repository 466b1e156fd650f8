//! `trailwatch redrive` against SQS and Lambda on moto, on the queues of template.yaml deployed
//! in moto: a source queue whose redrive policy names its dead-letter queue (5 receives; 50 and
//! FIFO for the hold queue), the dead-letter queue keeping messages 14 days. Messages
//! reach the dead-letter queue the way SQS puts them there (received and not deleted more
//! than maxReceiveCount times); the command then lists them, moves them back, or re-invokes
//! the Insights function with the failed invocations' payloads.
//!
//! The command runs in this process (`trailwatch_cli::redrive::{parse_args, run_to}`),
//! configured as a user would configure it: AWS_ENDPOINT_URL, dummy credentials, `--region`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use trailwatch_e2e::{cli_environment, endpoint, sdk, unique, DeployedStack, StackOptions, REGION};

/// Runs `trailwatch redrive <args> --region us-east-1`: exit code, stdout, stderr. On a
/// thread of its own, as the command starts its own runtime.
fn redrive(args: &[&str]) -> (u8, String, String) {
    cli_environment();
    let mut args = args.to_vec();
    args.extend(["--region", REGION]);
    let parsed = trailwatch_cli::redrive::parse_args(args).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = trailwatch_cli::redrive::run_to(&parsed, &mut out, &mut err);
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        })
        .join()
        .unwrap()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// template.yaml deployed in moto, and its delivery queue and dead-letter queue (`fifo`: its
/// hold queue and hold dead-letter queue).
fn queues(fifo: bool) -> (DeployedStack, String, String) {
    let stack = DeployedStack::deploy(&StackOptions::default());
    let name = if fifo { "Hold" } else { "Delivery" };
    let source = stack.output(&format!("{name}QueueUrl")).to_owned();
    let dlq = stack
        .output(&format!("{name}DeadLetterQueueUrl"))
        .to_owned();
    (stack, source, dlq)
}

/// Sends `bodies` (with a message attribute each; on a FIFO queue in group `g<i % 3>`), then
/// receives without deleting until SQS has moved them all to the dead-letter queue.
async fn fail_into_dlq(sqs: &aws_sdk_sqs::Client, source: &str, fifo: bool, bodies: &[String]) {
    for (i, body) in bodies.iter().enumerate() {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(format!("attempt-{i}"))
            .build()
            .unwrap();
        let mut send = sqs
            .send_message()
            .queue_url(source)
            .message_body(body)
            .message_attributes("origin", attribute);
        if fifo {
            send = send
                .message_group_id(format!("g{}", i % 3))
                .message_deduplication_id(format!("d{i}"));
        }
        send.send().await.unwrap();
    }
    for _ in 0..5000 {
        let got = sqs
            .receive_message()
            .queue_url(source)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() && visible(sqs, source).await == 0 {
            return;
        }
    }
    panic!("messages did not reach the dead-letter queue");
}

async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attrs.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

/// Every message in `url`, received and deleted: (group, body, `origin` attribute), in order.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return all;
        }
        for m in got.messages() {
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            let origin = m
                .message_attributes()
                .and_then(|a| a.get("origin"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            all.push((group, m.body().unwrap().to_owned(), origin));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"v":1,"stream":"123456789012_CloudTrail_us-east-1","records":[{{"n":{i}}}]}}"#
            )
        })
        .collect()
}

#[test]
fn a_dead_letter_queue_is_listed_then_moved_back_with_bodies_and_attributes() {
    runtime().block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&sdk().await);
        let (_stack, source, dlq) = queues(false);
        let sent = bodies(23);
        fail_into_dlq(&sqs, &source, false, &sent).await;

        let (code, out, err) = redrive(&[&dlq, "--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(": 23 messages listed"), "{out}");
        assert!(out.contains("leaves the queue in 13d 23h"), "{out}");
        assert!(
            out.contains("MessageId\tSent\tAge\tReceives\tGroup\tBytes"),
            "{out}"
        );
        let rows = out
            .lines()
            .skip_while(|l| !l.starts_with("MessageId"))
            .skip(1);
        assert_eq!(rows.count(), 23, "one line per message: {out}");
        assert_eq!(visible(&sqs, &dlq).await, 23, "a dry run changes nothing");

        // No --to: the source is the queue whose redrive policy names the DLQ.
        let (code, out, err) = redrive(&[&dlq, "--max-messages", "20"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("20 messages received, 20 given back"), "{out}");
        let (code, out, _) = redrive(&[&dlq]);
        assert_eq!(code, 0);
        assert!(out.contains("3 messages received, 3 given back"), "{out}");

        assert_eq!(visible(&sqs, &dlq).await, 0);
        let mut moved = drain(&sqs, &source).await;
        moved.sort_by(|a, b| a.2.cmp(&b.2));
        let mut expected: Vec<(String, String, String)> = sent
            .iter()
            .enumerate()
            .map(|(i, b)| (String::new(), b.clone(), format!("attempt-{i}")))
            .collect();
        expected.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(moved, expected, "same bodies and attributes, each once");
    });
}

#[test]
fn the_hold_dead_letter_queue_goes_back_in_its_message_groups() {
    runtime().block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&sdk().await);
        let (_stack, source, dlq) = queues(true);
        let sent = bodies(14);
        fail_into_dlq(&sqs, &source, true, &sent).await;

        // A FIFO queue shows a group's next message only once the one before it is deleted:
        // a listing sees the first batch.
        let (code, out, err) = redrive(&[&dlq, "--dry-run", "--max-messages", "9"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("9 messages listed (the queue reports about 14 visible"),
            "{out}"
        );
        assert!(out.contains("by message group: g0 3, g1 3, g2 3"), "{out}");

        let (code, out, err) = redrive(&[&dlq, "--to", &source]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("14 messages received, 14 given back"), "{out}");
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, body, _) in drain(&sqs, &source).await {
            by_group.entry(group).or_default().push(body);
        }
        // Each in its group (the order SQS moved them into the dead-letter queue in is
        // SQS's: deliver orders records by time whatever the order of its messages).
        for (g, bodies_of_group) in &mut by_group {
            let i: usize = g[1..].parse().unwrap();
            let mut expected: Vec<String> = sent.iter().skip(i).step_by(3).cloned().collect();
            expected.sort();
            bodies_of_group.sort();
            assert_eq!(bodies_of_group, &expected, "group {g}");
        }
        assert_eq!(by_group.len(), 3);
    });
}

#[test]
fn a_queue_of_another_kind_or_none_is_a_usage_error() {
    runtime().block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&sdk().await);
        let (_, _, fifo_dlq) = queues(true);
        let plain = trailwatch_e2e::create_queue(&sqs, &unique("plain")).await;
        let (code, _, err) = redrive(&[&fifo_dlq, "--to", &plain]);
        assert_eq!(code, 2);
        assert!(err.contains("a message group cannot be kept"), "{err}");
        let (code, _, err) = redrive(&[&plain]);
        assert_eq!(code, 2);
        assert!(
            err.contains("is the dead-letter queue of no queue"),
            "{err}"
        );
        let (code, _, err) = redrive(&["no-such-queue-anywhere"]);
        assert_eq!(code, 2);
        assert!(err.contains("GetQueueUrl"), "{err}");
    });
}

/// A POST to moto with a made-up AWS signature naming `service` (moto routes by it).
fn moto_post(path: &str, service: &str, body: &str) -> String {
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
    answer
}

/// moto's Lambda invoking without Docker: it then accepts every invocation, of any function
/// name, so a failed invocation cannot be tested here: the command's handling of one (message
/// kept, exit 1) is the same path as a failed move.
fn invoke_without_docker() {
    moto_post(
        "/moto-api/config",
        "lambda",
        r#"{"lambda":{"use_docker":false}}"#,
    );
}

#[test]
fn failed_insights_invocations_are_invoked_again_and_leave_the_queue() {
    runtime().block_on(async {
        let sdk = sdk().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        // The stack's Insights function and the queue its failed invocations go to.
        let stack = DeployedStack::deploy(&StackOptions::default());
        let failures = stack.output("InsightsFailedInvocationQueueUrl").to_owned();
        let function = stack.output("InsightsFunctionName").to_owned();
        invoke_without_docker();
        // Both shapes: the event as invoked (a dead-letter queue) and Lambda's invocation
        // record (an on-failure destination).
        let events: Vec<String> = (0..7)
            .map(|i| format!(r#"{{"awslogs":{{"data":"H4sI{i}"}}}}"#))
            .collect();
        for (i, event) in events.iter().enumerate() {
            let body = if i % 2 == 0 {
                event.clone()
            } else {
                format!(
                    r#"{{"version":"1.0","timestamp":"2024-03-06T01:05:00.000Z","requestContext":{{"requestId":"r{i}","functionArn":"arn:aws:lambda:{REGION}:123456789012:function:{function}:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3}},"requestPayload":{event},"responseContext":{{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"}},"responsePayload":{{"errorMessage":"boom"}}}}"#
                )
            };
            sqs.send_message()
                .queue_url(&failures)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        let (code, out, err) = redrive(&[&failures, "--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(": 7 messages listed"), "{out}");

        let (code, out, err) = redrive(&[&failures, "--function", &function]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!("7 messages received, 7 given back to function {function}, 0 left")),
            "{out}"
        );
        assert_eq!(visible(&sqs, &failures).await, 0);
    });
}
