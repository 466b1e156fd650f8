use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use trailwatch_select_fn::{handle, SelectContext, SelectInvocation};

/// A function that cannot start (no region or credentials, a missing queue URL, an invalid
/// trail configuration) still answers: a selector dry run needs none of it, and every other
/// invocation fails with the reason, logged at start and returned to the invoker, instead of
/// a process that exits before the runtime API hears from it (an invoker then waits).
#[tokio::main]
async fn main() -> Result<(), Error> {
    trailwatch_aws::logging::init();
    let context = match trailwatch_aws::lambda_sdk_config() {
        Ok(sdk) => SelectContext::from_env(&sdk).await,
        Err(why) => Err(why.into()),
    };
    match context {
        Ok(context) => {
            run(service_fn(|event: LambdaEvent<serde_json::Value>| {
                handle(&context, event.payload)
            }))
            .await
        }
        Err(why) => {
            let why = format!("the select function cannot start: {why}");
            tracing::error!("{why}; only selector dry runs are answered");
            run(service_fn(|event: LambdaEvent<serde_json::Value>| {
                let why = why.clone();
                async move {
                    match SelectInvocation::from_payload(event.payload)? {
                        SelectInvocation::DryRun(request) => {
                            Ok(trailwatch::select::dry_run(&request)?)
                        }
                        _ => Err(Error::from(why)),
                    }
                }
            }))
            .await
        }
    }
}
