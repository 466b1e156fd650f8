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
