//! AWS adapters for trailwatch's ports: each wraps one SDK client behind the small trait the
//! core defines (`LogSink`, `EventBus`) or a narrow struct of its own (S3 object reading, SQS
//! sending, SSM). Clients are built once, at cold start, from one shared configuration.

#[cfg(feature = "cloudwatch-logs")]
pub mod cloudwatch_logs;
#[cfg(feature = "dynamodb")]
pub mod dedup;
#[cfg(feature = "dynamodb")]
pub mod detection_windows;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "function")]
pub mod function;
#[cfg(feature = "dynamodb")]
pub mod insights_state;
#[cfg(feature = "logging")]
pub mod logging;
pub mod metrics;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "ssm")]
pub mod ssm;

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;

/// Attempts per AWS call, including the first: the SDK's standard mode retries throttling,
/// 5xx, timeouts and connection errors with exponential backoff and full jitter.
pub const MAX_ATTEMPTS: u32 = 6;
/// One attempt may take this long before it counts as a timeout and is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The CLI's and the tests' SDK configuration: the SDK's whole default chain (profiles, SSO,
/// IMDS, …) for credentials and region, `AWS_ENDPOINT_URL` honoured, and trailwatch's HTTP
/// client, retries and timeouts.
pub fn config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
}

/// The functions' SDK configuration, from what Lambda puts in the environment and nothing
/// else: region (`AWS_REGION`, else `AWS_DEFAULT_REGION`), credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL` (tests point it at moto
/// on loopback). Leaving out the SDK's default chain (profile files, SSO, STS web identity,
/// container and IMDS credentials, with STS) takes 0.8 MB off the select binary;
/// run a function locally with exported credentials (`aws configure export-credentials
/// --format env`).
pub fn lambda_sdk_config() -> Result<SdkConfig, ConfigError> {
    lambda_sdk_config_from(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

fn lambda_sdk_config_from(env: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, ConfigError> {
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or(ConfigError::Missing {
            name: "AWS_REGION".into(),
            hint: " (Lambda sets it)",
        })?;
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if env(name).is_none() {
            return Err(ConfigError::Missing {
                name: name.into(),
                hint: " (Lambda sets it from the execution role)",
            });
        }
    }
    let credentials = EnvironmentVariableCredentialsProvider::new();
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .sleep_impl(default_async_sleep().ok_or(ConfigError::NoAsyncSleep)?)
        .time_source(SharedTimeSource::default());
    builder.set_endpoint_url(env("AWS_ENDPOINT_URL"));
    Ok(builder.build())
}

/// HTTPS through rustls + ring (smaller and faster to build than the default).
fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Standard mode: throttling, 5xx, timeouts and connection errors retried with exponential
/// backoff and full jitter, [`MAX_ATTEMPTS`] attempts in all.
fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// Why a function cannot start: its configuration, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} must be set{hint}")]
    Missing { name: String, hint: &'static str },
    #[error("environment variable {name}={value} is not {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("no async sleep (tokio) available")]
    NoAsyncSleep,
    #[error("SSM parameter {name}: {reason}")]
    Parameter {
        name: String,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Reads a required environment variable, naming it when missing (a cold-start failure).
pub fn required_env(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(ConfigError::Missing {
            name: name.to_owned(),
            hint: "",
        }),
    }
}

/// An SDK client built from the shared configuration with [`metrics::CountAttempts`], so that
/// every call's retries show in the invocation's `SdkRetries` metric.
pub fn client<C: SdkClient>(sdk: &SdkConfig) -> C {
    C::counting_attempts(sdk)
}

/// A service client [`client`] can build.
pub trait SdkClient {
    fn counting_attempts(sdk: &SdkConfig) -> Self;
}

macro_rules! sdk_client {
    ($feature:literal, $sdk:ident) => {
        #[cfg(feature = $feature)]
        impl SdkClient for $sdk::Client {
            fn counting_attempts(sdk: &SdkConfig) -> Self {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(sdk)
                        .interceptor(metrics::CountAttempts)
                        .build(),
                )
            }
        }
    };
}

sdk_client!("s3", aws_sdk_s3);
sdk_client!("sqs", aws_sdk_sqs);
sdk_client!("cloudwatch-logs", aws_sdk_cloudwatchlogs);
sdk_client!("eventbridge", aws_sdk_eventbridge);
sdk_client!("dynamodb", aws_sdk_dynamodb);
sdk_client!("ssm", aws_sdk_ssm);

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
pub fn describe<E: std::error::Error + ?Sized>(error: &E) -> String {
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
    fn lambda_config_comes_from_the_environment_and_names_what_is_missing() {
        fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        let lambda = [
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ];
        let sdk = lambda_sdk_config_from(env(&lambda)).unwrap();
        assert_eq!(sdk.region().unwrap().as_ref(), "eu-west-3");
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(sdk.credentials_provider().is_some() && sdk.sleep_impl().is_some());
        assert_eq!(sdk.retry_config().unwrap().max_attempts(), MAX_ATTEMPTS);

        let no_endpoint = lambda_sdk_config_from(env(&lambda[..3])).unwrap();
        assert_eq!(no_endpoint.endpoint_url(), None);
        let error = lambda_sdk_config_from(env(&lambda[1..])).unwrap_err();
        assert!(error.to_string().contains("AWS_REGION"), "{error}");
        let error =
            lambda_sdk_config_from(env(&[("AWS_DEFAULT_REGION", "us-east-1")])).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Missing { name, .. } if name == "AWS_ACCESS_KEY_ID"),
            "{error}"
        );
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
