//! The pipeline on one machine, for the CLI: which files are log files ([`files`]), the local
//! adapters behind the same ports as in Lambda ([`adapters`]), the local delivery queue
//! ([`queue`]), the detection stage ([`detections`]), the replay driver ([`replay`]) and the AWS calls it counts ([`cost`]).

pub mod adapters;
pub mod cost;
mod delivery;
pub mod detections;
pub mod files;
pub mod queue;
pub mod replay;
mod summary;

use std::future::Future;

pub use adapters::{FileBus, FileLogGroup, Input, STDIN, STDIN_NAME};
pub use cost::AwsCalls;
pub use detections::{DetectionOptions, DetectionTotals};
pub use files::{
    delivery_time_ms, in_delivery_order, is_log_file_name, log_files, FilesError, LogFile,
};
pub use replay::{
    collect_inputs, replay, replay_with_progress, DeliveryTotals, Progress, ReplayError,
    ReplayOptions, ReplaySummary, DETECTIONS_FILE, INSIGHTS_FILE,
};

/// Runs a future whose every await completes at once (the local adapters never wait).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}
