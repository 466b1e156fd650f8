//! The trail configuration from an SSM parameter (for configurations too large for an
//! environment variable, or shared between stacks).

use aws_sdk_ssm::Client;

use crate::{describe, ConfigError};

pub async fn parameter(client: &Client, name: &str) -> Result<String, ConfigError> {
    let output = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| ConfigError::Parameter {
            name: name.to_owned(),
            reason: describe(&e),
            source: Some(Box::new(e)),
        })?;
    output
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::Parameter {
            name: name.to_owned(),
            reason: "it has no value".to_owned(),
            source: None,
        })
}

/// The trail configuration inline (JSON).
pub const TRAIL_CONFIG_ENV: &str = "TRAILWATCH_TRAIL_CONFIG";
/// The name of an SSM parameter holding the trail configuration (takes precedence).
pub const TRAIL_CONFIG_PARAMETER_ENV: &str = "TRAILWATCH_TRAIL_CONFIG_PARAMETER";

/// The trail configuration's text, as the functions are configured: from the SSM parameter
/// named by `TRAILWATCH_TRAIL_CONFIG_PARAMETER` when set, else `TRAILWATCH_TRAIL_CONFIG`, else
/// `{}` (CloudTrail's default trail).
pub async fn trail_config_text(sdk: &aws_config::SdkConfig) -> Result<String, ConfigError> {
    match std::env::var(TRAIL_CONFIG_PARAMETER_ENV) {
        Ok(name) if !name.is_empty() => parameter(&crate::client(sdk), &name).await,
        _ => Ok(std::env::var(TRAIL_CONFIG_ENV).unwrap_or_else(|_| "{}".into())),
    }
}
