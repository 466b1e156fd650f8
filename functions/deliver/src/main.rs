#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cold_start, serve};
use trailwatch_deliver_fn::{handle, DeliverContext, DeliverPayload, Ledger};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = cold_start()?;
    let context = DeliverContext::from_env(&sdk)?;
    let ledger = Ledger::from_env(&sdk);
    serve(|event: LambdaEvent<DeliverPayload>| handle(&context, &ledger, event)).await
}
