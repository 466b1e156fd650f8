//! The trail configuration from an SSM parameter (for configurations too large for an
//! environment variable, or shared between stacks).

use aws_sdk_ssm::Client;

use crate::describe;

pub async fn parameter(client: &Client, name: &str) -> Result<String, String> {
    let output = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| format!("SSM parameter {name}: {}", describe(&e)))?;
    output
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| format!("SSM parameter {name} has no value"))
}

/// The trail configuration inline (JSON).
pub const TRAIL_CONFIG_ENV: &str = "TRAILWATCH_TRAIL_CONFIG";
/// The name of an SSM parameter holding the trail configuration (takes precedence).
pub const TRAIL_CONFIG_PARAMETER_ENV: &str = "TRAILWATCH_TRAIL_CONFIG_PARAMETER";

/// The trail configuration's text, as the functions are configured: from the SSM parameter
/// named by `TRAILWATCH_TRAIL_CONFIG_PARAMETER` when set, else `TRAILWATCH_TRAIL_CONFIG`, else
/// `{}` (CloudTrail's default trail).
pub async fn trail_config_text(sdk: &aws_config::SdkConfig) -> Result<String, String> {
    match std::env::var(TRAIL_CONFIG_PARAMETER_ENV) {
        Ok(name) if !name.is_empty() => parameter(&Client::new(sdk), &name).await,
        _ => Ok(std::env::var(TRAIL_CONFIG_ENV).unwrap_or_else(|_| "{}".into())),
    }
}
