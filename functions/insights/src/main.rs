use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use trailwatch_insights_fn::{handle_with_state, InsightsContext, StateContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = trailwatch_aws::sdk_config().await;
    let context = InsightsContext::from_env(&sdk)?;
    let state = StateContext::from_env(&sdk, &context.source).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle_with_state(&context, Some(&state), event.payload)
    }))
    .await
}
