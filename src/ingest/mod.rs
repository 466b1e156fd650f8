//! Ingest: from what AWS sends (notifications, envelopes, log files) to records.

mod items;
pub mod log_file;
pub mod notification;
pub mod object_key;
mod splitter;

pub use items::{FileError, LogFileLimits, RawItem, RecordProblem};
pub use log_file::{read_log_file, LogFileDecoder, READ_BYTES};
pub use notification::{parse_message, NotificationError, WorkItem};
pub use object_key::{
    decode_notification_key, parse_object_key, KeyDecodeError, LogObjectKey, ObjectKind,
};
