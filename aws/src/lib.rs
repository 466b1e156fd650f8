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
