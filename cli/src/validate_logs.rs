//! Validates CloudTrail log files against their digest files (the offline part of aws cloudtrail validate-logs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::exit;

/// Validates CloudTrail log files against their digest files (the offline part of aws cloudtrail validate-logs).
#[derive(Debug, Args)]
pub struct ValidateLogsArgs {
    /// Folder to read.
    pub folder: PathBuf,
}

pub fn run(args: ValidateLogsArgs) -> ExitCode {
    eprintln!("trailwatch: {} is being built", args.folder.display());
    ExitCode::from(exit::USAGE)
}
