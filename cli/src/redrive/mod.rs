//! `trailwatch redrive`: gives what a dead-letter queue holds back to the stage that failed it.
//! A queue's messages are moved to the queue they came from as `start-message-move-task`
//! moves them (a new message with the same body and message attributes; on a FIFO queue the
//! same message group); the Insights function's failed invocations are invoked again with
//! their payloads. `--dry-run` lists what is there, with counts and ages, and changes nothing.

mod invoke;
mod listing;
mod sqs;

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use thiserror::Error;

use crate::exit;

const LONG_ABOUT: &str = "\
Gives what a trailwatch dead-letter queue holds back to the stage that failed it.

  IngestDeadLetterQueue    S3 notifications / EventBridge events select failed 5 times
                           -> moved back to IngestQueue
  DeliveryDeadLetterQueue  delivery messages deliver failed 5 times -> DeliveryQueue
  HoldDeadLetterQueue      held-back records (FIFO) -> HoldQueue, each in its message group
  InsightsDeadLetterQueue  native Insights records -> InsightsQueue
  InsightsFailedInvocationQueue
                           log batches or schedule ticks the Insights function failed
                           -> the function is invoked again (--function) with each payload

A message is moved as start-message-move-task moves it: a new message with the same body
and message attributes (on a FIFO queue the same message group, and a deduplication id made
from the dead-letter message's id, so a redrive repeated within 5 minutes sends it once); it
is deleted from the dead-letter queue only once the source queue has taken it. Without --to,
the source is the one queue whose redrive policy names the dead-letter queue.

Redrive before it is too late: dead-letter queues keep messages 14 days, and CloudWatch Logs
refuses events older than 14 days, so a delivery message redriven late delivers nothing.
--dry-run shows each message's age and when it expires.";

/// Gives what a dead-letter queue holds back: moves its messages to their source queue, or
/// re-invokes the Insights function with its failed invocations' payloads.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT, after_help = "Examples:
  trailwatch redrive DeliveryDeadLetterQueue-URL --dry-run
  trailwatch redrive https://sqs.us-east-1.amazonaws.com/123456789012/trailwatch-DeliveryDeadLetterQueue-abc
  trailwatch redrive my-hold-dlq.fifo --to my-hold-queue.fifo --max-messages 100
  trailwatch redrive trailwatch-InsightsFailedInvocationQueue-abc --function trailwatch-InsightsFunction-abc

Exit codes: 0 everything taken back (or listed); 1 some messages could not be moved or
invoked (they stay in the dead-letter queue); 2 could not run (arguments, queue, credentials).")]
pub struct RedriveArgs {
    /// The dead-letter queue: its URL or its name.
    #[arg(value_name = "QUEUE")]
    pub queue: String,

    /// Move the messages to this queue (URL or name). Default: the queue whose redrive policy
    /// names QUEUE.
    #[arg(long, value_name = "QUEUE", conflicts_with = "function")]
    pub to: Option<String>,

    /// Invoke this Lambda function (name or ARN) with each message's payload, asynchronously
    /// as it was invoked first: for InsightsFailedInvocationQueue.
    #[arg(long, value_name = "FUNCTION")]
    pub function: Option<String>,

    /// List the messages (count, age, expiry, receive count, message group) and change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Take at most N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_messages: Option<u32>,

    /// The queues' AWS Region (default: from the environment).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// The AWS CLI profile to use.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// Why a redrive could not run.
#[derive(Debug, Error)]
pub enum RedriveError {
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("no AWS Region: give --region or set AWS_REGION")]
    NoRegion,
    #[error(transparent)]
    Sqs(#[from] sqs::SqsError),
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

/// What a redrive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received from the dead-letter queue.
    pub received: usize,
    /// Messages moved, or payloads invoked (and deleted from the dead-letter queue).
    pub redriven: usize,
    /// Messages left in the dead-letter queue because the move or invocation failed.
    pub failed: usize,
}

/// Parses the arguments of `trailwatch redrive` (what follows `redrive`), for callers that run
/// it in their own process with [`run_to`].
pub fn parse_args<I, T>(args: I) -> Result<RedriveArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::parse_command_args("trailwatch redrive", args)
}

pub fn run(args: RedriveArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(run_to(&args, &mut stdout.lock(), &mut stderr.lock()))
}

/// Runs the redrive, the listing or summary on `out` and problems on `err`; returns the exit
/// code.
pub fn run_to(args: &RedriveArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RedriveError::Runtime)
        .and_then(|runtime| runtime.block_on(redrive(args, out, err)));
    match result {
        Ok(outcome) if outcome.failed > 0 => exit::PROBLEMS,
        Ok(_) => exit::OK,
        Err(e) => {
            let _ = writeln!(err, "trailwatch redrive: {}", trailwatch_aws::describe(&e));
            exit::USAGE
        }
    }
}

async fn redrive(
    args: &RedriveArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, RedriveError> {
    let sdk = crate::sdk::load(args.region.as_deref(), args.profile.as_deref())
        .await
        .ok_or(RedriveError::NoRegion)?;
    let queues = sqs::Queues::new(aws_sdk_sqs::Client::new(&sdk));
    let dlq = queues.describe(&args.queue).await?;
    let limit = args.max_messages.map_or(usize::MAX, |n| n as usize);
    if args.dry_run {
        let messages = queues.peek(&dlq, limit).await?;
        listing::write(out, &dlq, &messages, trailwatch::time::now_ms())
            .map_err(RedriveError::Output)?;
        return Ok(Outcome {
            received: messages.len(),
            ..Outcome::default()
        });
    }
    let outcome = match &args.function {
        Some(function) => {
            let lambda = aws_sdk_lambda::Client::new(&sdk);
            invoke::reinvoke(&queues, &dlq, &lambda, function, limit, err).await?
        }
        None => {
            let target = match &args.to {
                Some(to) => queues.describe(to).await?,
                None => queues.source_of(&dlq).await?,
            };
            queues.move_messages(&dlq, &target, limit, err).await?
        }
    };
    let target = args.function.as_deref().map_or_else(
        || "its source queue".to_owned(),
        |f| format!("function {f}"),
    );
    writeln!(
        out,
        "{}: {} messages received, {} given back to {target}, {} left in the queue (failed)",
        dlq.name, outcome.received, outcome.redriven, outcome.failed
    )
    .map_err(RedriveError::Output)?;
    Ok(outcome)
}
