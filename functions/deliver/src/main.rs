#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_deliver_fn::{deliver, DeliverContext, Ledger};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let context = trailwatch_aws::lambda_sdk_config()
        .map_err(Error::from)
        .and_then(|sdk| Ok((DeliverContext::from_env(&sdk)?, Ledger::from_env(&sdk))));
    let (context, ledger) = match context {
        Ok(started) => started,
        // Answered, not exited: an invoker hears why instead of waiting.
        Err(why) => return trailwatch_aws::logging::cannot_start("deliver", why).await,
    };
    run(service_fn(
        |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async {
            Ok::<_, Error>(deliver(&context, &ledger, event.payload).await.response)
        },
    ))
    .await
}
