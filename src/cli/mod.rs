//! The `trailwatch` command line: one module per subcommand.

pub mod selectors;
