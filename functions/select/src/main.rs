use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use trailwatch_select_fn::{handle, SelectContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = trailwatch_aws::sdk_config().await;
    let context = SelectContext::from_env(&sdk).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle(&context, event.payload)
    }))
    .await
}
