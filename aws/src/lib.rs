//! AWS adapters for trailwatch's ports: each wraps one SDK client behind the small trait the
//! core defines (`LogSink`, `EventBus`) or a narrow struct of its own (S3 object reading, SQS
//! sending, SSM). Clients are built once, at cold start, from one shared configuration.

#[cfg(feature = "cloudwatch-logs")]
pub mod cloudwatch_logs;
#[cfg(feature = "dynamodb")]
pub mod dedup;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "dynamodb")]
pub mod insights_state;
pub mod metrics;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "ssm")]
pub mod ssm;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::result::SdkError;

/// Attempts per AWS call, including the first: the SDK's standard mode retries throttling,
/// 5xx, timeouts and connection errors with exponential backoff and full jitter.
pub const MAX_ATTEMPTS: u32 = 6;
/// One attempt may take this long before it counts as a timeout and is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The shared SDK configuration: credentials and region from the environment (Lambda sets
/// them), `AWS_ENDPOINT_URL` honoured (tests point it at moto on loopback), a rustls + ring
/// HTTPS client (smaller and faster to build than the default), bounded retries and timeouts.
pub async fn sdk_config() -> SdkConfig {
    config_loader().load().await
}

/// The loader behind [`sdk_config`], for callers that set more (tests set the endpoint,
/// region and dummy credentials explicitly instead of through the environment).
pub fn config_loader() -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
}

/// Reads a required environment variable, naming it when missing (a cold-start failure).
pub fn required_env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("environment variable {name} must be set")),
    }
}

/// Whether an error the SDK gave up on is still worth another try later: throttling (the codes
/// the SDK itself treats as throttling), 5xx, timeouts, dropped connections and unreadable
/// responses. Client errors (validation, missing resources, access denied) are not.
pub fn is_transient<E>(error: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || service.err().code().is_some_and(|c| {
                    THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c)
                })
        }
        _ => false,
    }
}

/// The SDK's error as one line with its cause chain (the default Display hides the service
/// error's code and message).
pub fn describe<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service(status: u16, code: &str) -> SdkError<ErrorMetadata, Response> {
        SdkError::service_error(
            ErrorMetadata::builder().code(code).build(),
            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn throttling_5xx_and_network_faults_are_transient_client_errors_are_not() {
        assert!(is_transient(&service(400, "ThrottlingException")));
        assert!(is_transient(&service(400, "RequestThrottled")));
        assert!(is_transient(&service(503, "SlowDown")));
        assert!(is_transient(&service(500, "InternalFailure")));
        assert!(is_transient(
            &SdkError::<ErrorMetadata, Response>::timeout_error("attempt timed out")
        ));
        assert!(!is_transient(&service(400, "InvalidParameterValue")));
        assert!(!is_transient(&service(403, "AccessDenied")));
        assert!(!is_transient(&service(
            400,
            "AWS.SimpleQueueService.NonExistentQueue"
        )));
    }
}
