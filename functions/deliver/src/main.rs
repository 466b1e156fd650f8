#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_deliver_fn::{deliver, DeliverContext, Ledger};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let sdk = trailwatch_aws::lambda_sdk_config()?;
    let context = DeliverContext::from_env(&sdk)?;
    let ledger = Ledger::from_env(&sdk);
    run(service_fn(
        |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async {
            Ok::<_, Error>(deliver(&context, &ledger, event.payload).await.response)
        },
    ))
    .await
}
