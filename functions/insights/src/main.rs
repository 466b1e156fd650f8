use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_insights_fn::{handle_with_state, InsightsContext, StateContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let sdk = trailwatch_aws::lambda_sdk_config()?;
    let context = InsightsContext::from_env(&sdk)?;
    let state = StateContext::from_env(&sdk, &context.source).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle_with_state(&context, Some(&state), event.payload)
    }))
    .await
}
