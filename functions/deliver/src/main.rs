#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use trailwatch_deliver_fn::{deliver, DeliverContext, Ledger};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let sdk = trailwatch_aws::sdk_config().await;
    let context = DeliverContext::from_env(&sdk)?;
    let ledger = Ledger::from_env(&sdk);
    run(service_fn(
        |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async {
            Ok::<_, Error>(deliver(&context, &ledger, event.payload).await.response)
        },
    ))
    .await
}
