//! The `trailwatch` command: the pipeline of the Lambda functions on one machine, with no AWS
//! account, plus the tools around a trail (Event history lookup, log file validation). One
//! module per command; [`run`] parses the command line and dispatches.

pub mod detect;
pub mod input;
pub mod insights;
pub mod lookup;
pub mod redrive;
pub mod replay_view;
mod sdk;
pub mod selectors;
pub mod validate_logs;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes shared by every command.
pub mod exit {
    /// Everything read and processed.
    pub const OK: u8 = 0;
    /// The command ran, but found problems in its input (bad records or files, an invalid
    /// configuration, failed validation) — reported on stderr; the rest was processed.
    pub const PROBLEMS: u8 = 1;
    /// The command could not run: wrong arguments, unreadable configuration, output not
    /// writable.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "trailwatch",
    version,
    about = "CloudTrail selection, delivery and Insights on one machine — the same pipeline as the Lambda functions",
    after_help = "Exit codes: 0 all processed; 1 processed, with problems in the input (reported on stderr); 2 could not run (arguments, configuration, output)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Replay(replay_view::ReplayArgs),
    Detect(detect::DetectArgs),
    #[command(subcommand)]
    Selectors(selectors::SelectorsCommand),
    #[command(subcommand)]
    Insights(insights::InsightsCommand),
    Lookup(lookup::LookupArgs),
    ValidateLogs(validate_logs::ValidateLogsArgs),
    Redrive(redrive::RedriveArgs),
}

/// Parses the arguments of one command (what follows its name on the command line), for callers
/// that run it in their own process (the moto tests).
pub fn parse_command_args<A, I, T>(name: &'static str, args: I) -> Result<A, clap::Error>
where
    A: clap::Args,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = A::augment_args(clap::Command::new(name));
    let argv = std::iter::once(OsString::from(name)).chain(args.into_iter().map(Into::into));
    A::from_arg_matches(&command.try_get_matches_from(argv)?)
}

/// Parses `args` (the first is the program name) and runs the command.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and exit 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        Command::Replay(args) => replay_view::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Selectors(command) => selectors::run(command),
        Command::Insights(command) => insights::run(command),
        Command::Lookup(args) => lookup::run(args),
        Command::ValidateLogs(args) => validate_logs::run(args),
        Command::Redrive(args) => redrive::run(args),
    }
}
