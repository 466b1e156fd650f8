//! The functions' log subscriber: what `lambda_runtime::tracing::init_default_subscriber` does,
//! without `EnvFilter` and the regex engine it links into every function binary.
//!
//! - `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls: TRACE, DEBUG, INFO, WARN,
//!   ERROR, FATAL) wins when set; FATAL maps to ERROR, which `tracing` has no level above.
//! - Otherwise `RUST_LOG`, as `target=level` directives and a bare default level
//!   (`info,aws_smithy_runtime=debug`); span and field filters are not supported.
//! - Otherwise INFO. An unreadable value falls back to INFO with a warning, never a failed start.
//! - `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's `LoggingConfig`) gives JSON lines, each with
//!   the `Lambda runtime invoke` span that carries the request id; anything else, plain text.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, writing to stdout (Lambda sends it to CloudWatch Logs).
pub fn init() {
    let (filter, problem) = filter_from(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::stdout);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    if let Some(problem) = problem {
        tracing::warn!(problem = %problem, "log level not understood; logging at INFO");
    }
}

/// The filter, and what was wrong with the configuration when it could not be read.
fn filter_from(lambda_level: Option<&str>, rust_log: Option<&str>) -> (Targets, Option<String>) {
    let info = Targets::new().with_default(LevelFilter::INFO);
    if let Some(level) = lambda_level.map(str::trim).filter(|l| !l.is_empty()) {
        let level = if level.eq_ignore_ascii_case("fatal") {
            "error"
        } else {
            level
        };
        return match LevelFilter::from_str(level) {
            Ok(level) => (Targets::new().with_default(level), None),
            Err(_) => (info, Some(format!("AWS_LAMBDA_LOG_LEVEL={level:?}"))),
        };
    }
    match rust_log.map(str::trim).filter(|l| !l.is_empty()) {
        None => (info, None),
        Some(directives) => match Targets::from_str(directives) {
            // A list of `target=level` only: without a bare level, other targets log at INFO.
            Ok(targets) if targets.default_level().is_none() => {
                (targets.with_default(LevelFilter::INFO), None)
            }
            Ok(targets) => (targets, None),
            Err(_) => (info, Some(format!("RUST_LOG={directives:?}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(filter: &Targets, target: &str, level: Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn lambda_level_wins_and_fatal_means_error() {
        let (f, problem) = filter_from(Some("DEBUG"), Some("trace"));
        assert!(problem.is_none());
        assert!(enabled(&f, "trailwatch", Level::DEBUG));
        assert!(!enabled(&f, "trailwatch", Level::TRACE));
        let (f, _) = filter_from(Some("FATAL"), None);
        assert!(enabled(&f, "x", Level::ERROR));
        assert!(!enabled(&f, "x", Level::WARN));
    }

    #[test]
    fn rust_log_directives_and_bad_values() {
        let (f, problem) = filter_from(None, Some("warn,aws_smithy_runtime=debug"));
        assert!(problem.is_none());
        assert!(enabled(&f, "aws_smithy_runtime::client", Level::DEBUG));
        assert!(!enabled(&f, "trailwatch", Level::INFO));
        let (f, _) = filter_from(None, Some("aws_config=trace"));
        assert!(
            enabled(&f, "trailwatch", Level::INFO),
            "other targets stay at INFO"
        );
        assert!(!enabled(&f, "trailwatch", Level::DEBUG));
        let (f, problem) = filter_from(Some("LOUD"), None);
        assert!(problem.unwrap().contains("LOUD"));
        assert!(enabled(&f, "x", Level::INFO) && !enabled(&f, "x", Level::DEBUG));
        let (f, problem) = filter_from(None, Some("a=b=c"));
        assert!(problem.unwrap().contains("RUST_LOG"));
        assert!(enabled(&f, "x", Level::INFO));
        let (f, problem) = filter_from(None, None);
        assert!(problem.is_none() && enabled(&f, "x", Level::INFO));
    }
}
