use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_select_fn::{handle, SelectContext, SelectInvocation};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let sdk = trailwatch_aws::lambda_sdk_config()?;
    let context = SelectContext::from_env(&sdk).await?;
    run(service_fn(|event: LambdaEvent<SelectInvocation>| {
        handle(&context, event.payload)
    }))
    .await
}
