use lambda_runtime::{Error, LambdaEvent};
use trailwatch_aws::function::{cold_start, serve, HandlerError};
use trailwatch_select_fn::{handle, SelectContext, SelectInvocation};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = match cold_start() {
        Ok(sdk) => SelectContext::from_env(&sdk).await,
        Err(why) => Err(why.into()),
    };
    // A selector dry run carries its own selectors and needs no AWS: it is answered even when
    // the function's settings (region, queues, trail configuration) are missing; every other
    // invocation then fails with the reason, so an invoker hears why instead of waiting.
    let started = started.map_err(|why| {
        let why = format!(
            "the select function cannot start: {why} (only a selector dry run, a payload \
             with \"selectors\", is answered without the function's settings)"
        );
        tracing::error!("{why}");
        why
    });
    serve(|event: LambdaEvent<SelectInvocation>| async {
        match (&started, event.payload) {
            (_, SelectInvocation::DryRun(request)) => trailwatch_select_fn::dry_run(&request),
            (Ok(context), invocation) => handle(context, invocation).await,
            (Err(why), _) => return Err(HandlerError::not_started(why.clone())),
        }
        .map_err(HandlerError::from)
    })
    .await
}
