//! The three functions' shared shell: the cold start (logs, SDK configuration), the runtime
//! loop, one handler error type mapped to the runtime's `Diagnostic` with a meaningful
//! `errorType`, SQS batch responses, and each invocation's metrics (EMF).
//!
//! A function's `main` is then:
//!
//! ```ignore
//! let sdk = function::cold_start()?;
//! let context = Context::from_env(&sdk)?;          // a bad configuration fails here, loudly
//! function::serve(|event| handle(&context, event)).await
//! ```

use std::future::Future;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metrics::{Emf, SdkCounts};
use crate::{describe, ConfigError};

/// Installs the log subscriber and reads the SDK configuration Lambda provides.
pub fn cold_start() -> Result<SdkConfig, ConfigError> {
    crate::logging::init();
    crate::lambda_sdk_config()
}

/// Runs `handler` for every invocation until the runtime stops.
pub async fn serve<P, R, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    P: DeserializeOwned + Send,
    R: Serialize,
    F: Fn(LambdaEvent<P>) -> Fut,
    Fut: Future<Output = Result<R, HandlerError>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(handler)).await
}

/// Serves a function that could not start (no region or credentials, a missing variable, an
/// invalid configuration): every invocation fails with the reason, logged once here, so that
/// an invoker — Lambda, `cargo lambda invoke`, `sam local invoke` — hears why at once instead
/// of waiting on a process that exited before the runtime API heard from it.
pub async fn cannot_start(
    function: &str,
    why: impl std::fmt::Display,
) -> Result<(), lambda_runtime::Error> {
    let why = format!("the {function} function cannot start: {why}");
    tracing::error!("{why}");
    serve(|_: LambdaEvent<serde_json::Value>| {
        let why = why.clone();
        async move { Err::<serde_json::Value, _>(HandlerError::not_started(why)) }
    })
    .await
}

/// Why an invocation failed; Lambda reports it with [`HandlerError::error_type`] as the
/// `errorType` and the whole cause chain as the `errorMessage`.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an invocation this function takes: invoking it again cannot help.
    #[error("the payload is not an invocation this function takes: {reason}")]
    Payload {
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The function is not configured for this kind of invocation.
    #[error(transparent)]
    Configuration(#[from] ConfigError),
    /// The work failed (named by `error_type`); invoked again, it may succeed.
    #[error("{message}")]
    Failed {
        error_type: &'static str,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

/// `errorType` of a payload the function does not take.
pub const INVALID_PAYLOAD: &str = "trailwatch.InvalidPayload";
/// `errorType` of an invocation the function is not configured for.
pub const CONFIGURATION: &str = "trailwatch.Configuration";
/// `errorType` of a failure nothing more specific names.
pub const FAILED: &str = "trailwatch.Failed";

impl HandlerError {
    /// A payload that is not an invocation this function takes.
    pub fn payload(reason: impl Into<String>) -> Self {
        HandlerError::Payload {
            reason: reason.into(),
            source: None,
        }
    }

    /// An invocation of a function that could not start; `why` says why (logged once at
    /// start).
    pub fn not_started(why: impl Into<String>) -> Self {
        HandlerError::Failed {
            error_type: CONFIGURATION,
            message: why.into(),
            source: None,
        }
    }

    /// Work that failed, named by `error_type` (`trailwatch.<What>`).
    pub fn failed(
        error_type: &'static str,
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        let source = error.into();
        HandlerError::Failed {
            error_type,
            message: describe(&*source),
            source: Some(source),
        }
    }

    /// The `errorType` Lambda reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Payload { .. } => INVALID_PAYLOAD,
            HandlerError::Configuration(_) => CONFIGURATION,
            HandlerError::Failed { error_type, .. } => error_type,
        }
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        HandlerError::Payload {
            reason: e.to_string(),
            source: Some(e),
        }
    }
}

/// A handler's untyped error, typed by what it turns out to be: a payload that does not
/// parse, a configuration error, or a failure.
impl From<lambda_runtime::Error> for HandlerError {
    fn from(error: lambda_runtime::Error) -> Self {
        let error = match error.downcast::<serde_json::Error>() {
            Ok(e) => return HandlerError::from(*e),
            Err(other) => other,
        };
        match error.downcast::<ConfigError>() {
            Ok(e) => HandlerError::Configuration(*e),
            Err(other) => HandlerError::failed(FAILED, other),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: describe(&error),
        }
    }
}

/// The answer to an SQS batch: the messages that must come back (batch-item failures; the
/// event source needs `FunctionResponseTypes: [ReportBatchItemFailures]`).
pub fn batch_response<I, S>(failed: I) -> SqsBatchResponse
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.into();
            failure
        })
        .collect();
    response
}

/// One invocation, for its metrics: the SDK retries it took and how long it ran.
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    started_ms: i64,
    sdk_before: SdkCounts,
}

impl Invocation {
    pub fn start() -> Self {
        Invocation {
            started_ms: trailwatch::time::now_ms(),
            sdk_before: SdkCounts::now(),
        }
    }

    /// The SDK's retries (attempts beyond each call's first) since the invocation started.
    pub fn sdk_retries(&self) -> usize {
        SdkCounts::now().retries_since(&self.sdk_before)
    }

    /// `metrics` with the invocation's SDK retries and duration, as one EMF line.
    pub fn emf_line(&self, metrics: Emf) -> String {
        let now = trailwatch::time::now_ms();
        metrics
            .count("SdkRetries", self.sdk_retries())
            .millis("Duration", (now - self.started_ms) as f64)
            .to_line(now)
    }

    /// Prints [`Invocation::emf_line`] to stdout, where CloudWatch Logs turns it into metrics.
    pub fn publish(&self, metrics: Emf) {
        println!("{}", self.emf_line(metrics));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_a_type_naming_what_went_wrong_and_their_whole_cause() {
        let payload: HandlerError = serde_json::from_str::<u32>("{").unwrap_err().into();
        assert_eq!(payload.error_type(), INVALID_PAYLOAD);
        let config = HandlerError::from(ConfigError::Missing {
            name: "TRAILWATCH_STATE_TABLE".into(),
            hint: "",
        });
        let diagnostic = Diagnostic::from(config);
        assert_eq!(diagnostic.error_type, CONFIGURATION);
        assert!(diagnostic.error_message.contains("TRAILWATCH_STATE_TABLE"));

        #[derive(Debug, thiserror::Error)]
        #[error("PutLogEvents failed")]
        struct Outer(#[source] std::io::Error);
        let failed = HandlerError::failed(
            "trailwatch.NotDelivered",
            Outer(std::io::Error::other("throttled")),
        );
        let diagnostic = Diagnostic::from(failed);
        assert_eq!(diagnostic.error_type, "trailwatch.NotDelivered");
        assert!(
            diagnostic
                .error_message
                .contains("PutLogEvents failed: throttled"),
            "{}",
            diagnostic.error_message
        );
    }

    #[test]
    fn untyped_handler_errors_are_typed_by_what_they_are() {
        let boxed: lambda_runtime::Error = Box::new(serde_json::from_str::<u32>("x").unwrap_err());
        assert_eq!(HandlerError::from(boxed).error_type(), INVALID_PAYLOAD);
        let boxed: lambda_runtime::Error = Box::new(ConfigError::NoAsyncSleep);
        assert_eq!(HandlerError::from(boxed).error_type(), CONFIGURATION);
        let boxed: lambda_runtime::Error = "state table unreachable".into();
        let error = HandlerError::from(boxed);
        assert_eq!(error.error_type(), FAILED);
        assert_eq!(error.to_string(), "state table unreachable");
    }

    #[test]
    fn a_batch_response_lists_the_messages_to_bring_back() {
        let response = batch_response(["m1", "m2"]);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [
                {"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}
            ]})
        );
        assert!(batch_response(Vec::<String>::new())
            .batch_item_failures
            .is_empty());
    }

    #[test]
    fn an_invocation_line_adds_sdk_retries_and_duration() {
        let line = Invocation::start().emf_line(Emf::new("insights").count("Errors", 0));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "insights");
        assert_eq!(v["SdkRetries"], 0);
        assert!(v["Duration"].as_f64().unwrap() >= 0.0);
    }
}
