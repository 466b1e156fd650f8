use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use trailwatch_insights_fn::{handle, InsightsContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = trailwatch_aws::sdk_config().await;
    let context = InsightsContext::from_env(&sdk)?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle(&context, event.payload)
    }))
    .await
}
