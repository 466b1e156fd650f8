//! What the log-file reader works with, shared by the reader and its splitter: its limits,
//! the items it hands over, and why it refuses a record or a file.

use std::io;

/// Limits that protect a 128 MB Lambda from hostile or broken input.
#[derive(Debug, Clone, Copy)]
pub struct LogFileLimits {
    /// Decompressed bytes per file. CloudTrail objects are at most ~50 MB compressed and real
    /// files compress 5–9×, so 1 GiB leaves room for any real file and stops a gzip bomb.
    pub max_decompressed_bytes: u64,
    /// Bytes per record. CloudTrail caps an event at 256 KB (1 MB for opted-in Lake stores).
    pub max_record_bytes: usize,
    /// JSON nesting inside a record; deeper records are rejected instead of risking the stack.
    pub max_nesting: u32,
}

impl Default for LogFileLimits {
    fn default() -> Self {
        LogFileLimits {
            max_decompressed_bytes: 1 << 30,
            max_record_bytes: 1 << 20,
            max_nesting: 100,
        }
    }
}

/// Why the file as a whole could not be read (on from the point named).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("gzip stream is corrupt or truncated after {records} records: {source}")]
    Gzip { records: usize, source: io::Error },
    #[error("not a CloudTrail log file: {reason} (at byte {offset})")]
    NotCloudTrail { reason: &'static str, offset: u64 },
    #[error("log file JSON is malformed at byte {offset}, after record {records}: {reason}")]
    Malformed {
        reason: &'static str,
        offset: u64,
        records: usize,
    },
    #[error("log file is truncated: input ended inside {inside} after {records} records")]
    Truncated {
        inside: &'static str,
        records: usize,
    },
    #[error("decompressed size exceeds the limit of {limit} bytes (gzip bomb?)")]
    TooLarge { limit: u64 },
}

/// Why one record could not be taken (the file goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("record is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("record nests deeper than {limit} levels")]
    TooDeep { limit: u32 },
    #[error("record is not valid UTF-8 (byte {offset} of the record)")]
    NotUtf8 { offset: usize },
}

impl RecordProblem {
    /// What is wrong, in a few words without the particulars (for counts by kind).
    pub fn kind(&self) -> &'static str {
        match self {
            RecordProblem::NotAnObject => "not a JSON object",
            RecordProblem::TooLarge { .. } => "too large",
            RecordProblem::TooDeep { .. } => "nested too deep",
            RecordProblem::NotUtf8 { .. } => "not UTF-8",
        }
    }
}

/// One element of the `Records` array, in file order.
#[derive(Debug)]
pub struct RawItem<'a> {
    /// Position in the `Records` array, from 0.
    pub index: usize,
    pub bytes: Result<&'a str, RecordProblem>,
}
