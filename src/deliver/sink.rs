//! Where delivered events go: the port the deliver stage writes through.

use std::future::Future;

use super::plan::{LogEvent, Rejection};

/// What CloudWatch Logs reported as not accepted in a successful call, with exclusive end
/// indices into the batch (`tooOldLogEventEndIndex` and `expiredLogEventEndIndex` are exclusive
/// ends, `tooNewLogEventStartIndex` an inclusive start). Adapters normalise to this.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectedRanges {
    pub too_new_start: Option<usize>,
    pub too_old_end: Option<usize>,
    pub expired_end: Option<usize>,
}

impl RejectedRanges {
    /// The rejection of the event at `index` of the batch, if any.
    pub fn of(&self, index: usize) -> Option<Rejection> {
        if self.too_old_end.is_some_and(|end| index < end) {
            Some(Rejection::TooOld)
        } else if self.expired_end.is_some_and(|end| index < end) {
            Some(Rejection::Expired)
        } else if self.too_new_start.is_some_and(|start| index >= start) {
            Some(Rejection::TooNew)
        } else {
            None
        }
    }
}

/// A failed write, and whether trying again could succeed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub retryable: bool,
    /// What failed and why, in one line (with the cause's own details, which the SDK's errors
    /// do not display).
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl SinkError {
    pub fn new(retryable: bool, message: impl Into<String>) -> Self {
        SinkError {
            retryable,
            message: message.into(),
            source: None,
        }
    }

    /// The error that caused this one.
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// Where delivered events go: CloudWatch Logs in Lambda, files in the local CLI.
pub trait LogSink {
    /// Writes one planned batch (sorted, within limits) to `stream`, creating the group and
    /// stream when missing.
    fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> impl Future<Output = Result<RejectedRanges, SinkError>> + Send;
}
