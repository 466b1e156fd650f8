use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cold_start, serve, HandlerError};
use trailwatch_select_fn::{handle, SelectContext, SelectInvocation};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = cold_start()?;
    let context = SelectContext::from_env(&sdk).await?;
    serve(|event: LambdaEvent<SelectInvocation>| async {
        handle(&context, event.payload)
            .await
            .map_err(HandlerError::from)
    })
    .await
}
