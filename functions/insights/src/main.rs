use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cannot_start, cold_start, serve, HandlerError, Invocation};
use trailwatch_aws::metrics::Emf;
use trailwatch_insights_fn::{handle_with_state, InsightsContext, StateContext};

/// Fields of the Insights reports that are minutes, not counts.
const NOT_COUNTS: &[&str] = &["closedAfter", "closedThrough"];

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = match cold_start() {
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
        Err(why) => return cannot_start("insights", why).await,
    };
    serve(|event: LambdaEvent<serde_json::Value>| async {
        let invocation = Invocation::start();
        let result = handle_with_state(&context, Some(&state), event.payload)
            .await
            .map_err(HandlerError::from);
        // Each invocation's report (a counted batch, an evaluation, a forwarded batch) as
        // metrics, with the invocation's SDK retries and whether it failed.
        let metrics = match &result {
            Ok(report) => Emf::new("insights").counts_of(report, NOT_COUNTS),
            Err(_) => Emf::new("insights"),
        };
        invocation.publish(metrics.count("Errors", usize::from(result.is_err())));
        result
    })
    .await
}
