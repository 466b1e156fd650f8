//! The `trailwatch` command line: one module per subcommand.

pub mod insights;
pub mod selectors;
