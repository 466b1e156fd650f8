use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cannot_start, cold_start, serve, HandlerError};
use trailwatch_select_fn::{handle, SelectContext, SelectInvocation};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = match cold_start() {
        Ok(sdk) => SelectContext::from_env(&sdk).await,
        Err(why) => Err(why.into()),
    };
    let context = match started {
        Ok(context) => context,
        // Answered, not exited: an invoker hears why instead of waiting.
        Err(why) => return cannot_start("select", why).await,
    };
    serve(|event: LambdaEvent<SelectInvocation>| async {
        handle(&context, event.payload)
            .await
            .map_err(HandlerError::from)
    })
    .await
}
