#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cannot_start, cold_start, serve};
use trailwatch_deliver_fn::{handle, DeliverContext, DeliverPayload, Ledger};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = cold_start()
        .map_err(Error::from)
        .and_then(|sdk| Ok((DeliverContext::from_env(&sdk)?, Ledger::from_env(&sdk))));
    let (context, ledger) = match started {
        Ok(started) => started,
        // Answered, not exited: an invoker hears why instead of waiting.
        Err(why) => return cannot_start("deliver", why).await,
    };
    serve(|event: LambdaEvent<DeliverPayload>| handle(&context, &ledger, event)).await
}
