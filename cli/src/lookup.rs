//! Event history (LookupEvents) over a replay output folder or a trail log group.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::exit;

/// Event history (LookupEvents) over a replay output folder or a trail log group.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Folder to read.
    pub folder: PathBuf,
}

pub fn run(args: LookupArgs) -> ExitCode {
    eprintln!("trailwatch: {} is being built", args.folder.display());
    ExitCode::from(exit::USAGE)
}
