//! The Insights function's failed invocations, invoked again. Its failure queue holds either
//! the event as invoked (the function's dead-letter queue) or Lambda's invocation record
//! (an on-failure destination: `{"version":"1.0","timestamp",…,"requestContext":{…},
//! "requestPayload":<the event>,"responseContext":{…},"responsePayload":{…}}`, AWS Lambda
//! developer guide, "Capturing records of Lambda asynchronous invocations"); both are taken.

use std::io::Write;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::value::RawValue;

use super::sqs::{Queue, Queues, SqsError};
use super::Outcome;

/// The event a failure-queue message stands for: the invocation record's `requestPayload`, or
/// else the body itself.
pub fn payload_of(body: &str) -> &str {
    #[derive(serde::Deserialize)]
    struct InvocationRecord<'a> {
        #[serde(rename = "requestContext")]
        _request_context: &'a RawValue,
        #[serde(rename = "requestPayload", borrow)]
        request_payload: &'a RawValue,
    }
    match serde_json::from_str::<InvocationRecord<'_>>(body) {
        Ok(record) => record.request_payload.get(),
        Err(_) => body,
    }
}

/// Invokes `function` asynchronously (as CloudWatch Logs and EventBridge invoked it first, so
/// an invocation that fails again comes back to the failure queue) with the payload of up to
/// `limit` messages of `queue`, deleting each message Lambda accepted. A failed invocation is
/// reported on `err` and its message stays in the queue; `Err` is a queue that cannot be read.
pub async fn reinvoke(
    queues: &Queues,
    queue: &Queue,
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    limit: usize,
    err: &mut dyn Write,
) -> Result<Outcome, SqsError> {
    let mut outcome = Outcome::default();
    while outcome.received < limit {
        let batch = queues.receive(queue, limit - outcome.received).await?;
        if batch.is_empty() {
            break;
        }
        outcome.received += batch.len();
        let mut accepted = Vec::new();
        for message in &batch {
            let payload = payload_of(message.body().unwrap_or_default());
            let invoked = lambda
                .invoke()
                .function_name(function)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(payload.as_bytes()))
                .send()
                .await;
            match invoked {
                Ok(out) if out.status_code == 202 && out.function_error.is_none() => {
                    accepted.push(message)
                }
                Ok(out) => {
                    outcome.failed += 1;
                    let _ = writeln!(
                        err,
                        "trailwatch redrive: message {}: function {function} answered {} {}",
                        message.message_id().unwrap_or("?"),
                        out.status_code,
                        out.function_error.as_deref().unwrap_or("")
                    );
                }
                Err(e) => {
                    outcome.failed += 1;
                    let _ = writeln!(
                        err,
                        "trailwatch redrive: message {}: invoking function {function}: {}",
                        message.message_id().unwrap_or("?"),
                        trailwatch_aws::describe(&e)
                    );
                }
            }
        }
        outcome.redriven += accepted.len();
        queues.delete(queue, accepted.into_iter()).await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_record_gives_its_request_payload() {
        let record = r#"{"version":"1.0","timestamp":"2019-11-24T21:52:47.333Z","requestContext":{"requestId":"8ea123e4-1db7-4aca-ad10-d9ca1234c1fd","functionArn":"arn:aws:lambda:sa-east-1:123456678912:function:event-destinations:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},"requestPayload":{"awslogs":{"data":"H4sI"}},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"responsePayload":{"errorMessage":"boom"}}"#;
        assert_eq!(payload_of(record), r#"{"awslogs":{"data":"H4sI"}}"#);
    }

    #[test]
    fn an_event_as_invoked_is_its_own_payload() {
        let event = r#"{"awslogs":{"data":"H4sI"}}"#;
        assert_eq!(payload_of(event), event);
        let tick =
            r#"{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
        assert_eq!(payload_of(tick), tick);
        assert_eq!(payload_of("not json"), "not json");
    }
}
