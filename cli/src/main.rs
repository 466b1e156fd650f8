//! The `trailwatch` command; see [`trailwatch_cli::Cli`].

fn main() -> std::process::ExitCode {
    trailwatch_cli::run(std::env::args_os())
}
