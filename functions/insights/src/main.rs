use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_insights_fn::{handle_with_state, InsightsContext, StateContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let started = match trailwatch_aws::lambda_sdk_config() {
        Ok(sdk) => match InsightsContext::from_env(&sdk) {
            Ok(context) => StateContext::from_env(&sdk, &context.source)
                .await
                .map(|state| (context, state)),
            Err(why) => Err(why),
        },
        Err(why) => Err(why.into()),
    };
    let (context, state) = match started {
        Ok(started) => started,
        // Answered, not exited: an invoker hears why instead of waiting.
        Err(why) => return trailwatch_aws::logging::cannot_start("insights", why).await,
    };
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle_with_state(&context, Some(&state), event.payload)
    }))
    .await
}
