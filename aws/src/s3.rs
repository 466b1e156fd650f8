//! Reading CloudTrail log objects from S3 as a stream.

use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use trailwatch::ingest::{FileError, LogFileDecoder, LogFileLimits, RawItem, READ_BYTES};
use trailwatch::select::{ObjectSource, Origin, ReadError};

use crate::describe;

/// Why an object could not be read, and whether trying again could help.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object is gone (deleted, lifecycle-expired): retrying cannot help.
    #[error("s3://{bucket}/{key} no longer exists")]
    Missing { bucket: String, key: String },
    /// Denied, throttled, a network fault: retrying may help (a fixed policy, a calmer S3),
    /// so the message goes back to SQS and, after the redrive limit, to the dead-letter queue.
    #[error("s3://{bucket}/{key} could not be read: {reason}")]
    Unavailable {
        bucket: String,
        key: String,
        reason: String,
    },
    /// The bytes are not a readable CloudTrail log file: retrying cannot help.
    #[error("s3://{bucket}/{key}: {source}")]
    Unreadable {
        bucket: String,
        key: String,
        source: FileError,
    },
}

impl ReadError for ObjectError {
    fn is_retryable(&self) -> bool {
        matches!(self, ObjectError::Unavailable { .. })
    }
}

pub struct S3Objects {
    client: Client,
    limits: LogFileLimits,
}

impl S3Objects {
    pub fn new(client: Client) -> Self {
        S3Objects {
            client,
            limits: LogFileLimits::default(),
        }
    }

    /// Opens the object for reading as a stream of records (see [`LogObject::next_chunk`]).
    pub async fn open(&self, bucket: &str, key: &str) -> Result<LogObject, ObjectError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(LogObject {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                body: output.body,
                pending: Vec::new(),
                taken: 0,
                decoder: LogFileDecoder::new(self.limits),
                finished: false,
            }),
            Err(e) => Err(match e.as_service_error() {
                Some(GetObjectError::NoSuchKey(_)) => ObjectError::Missing {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                },
                _ => ObjectError::Unavailable {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    reason: describe(&e),
                },
            }),
        }
    }
}

impl ObjectSource for S3Objects {
    type Object = LogObject;
    type Error = ObjectError;

    async fn open(&self, origin: &Origin<'_>) -> Result<LogObject, ObjectError> {
        S3Objects::open(self, origin.bucket.unwrap_or_default(), origin.key).await
    }
}

impl trailwatch::select::LogObject for LogObject {
    type Error = ObjectError;

    async fn next_chunk(&mut self, each: impl FnMut(RawItem<'_>)) -> Result<bool, ObjectError> {
        LogObject::next_chunk(self, each).await
    }
}

/// A CloudTrail log object being read: one network chunk at a time through the log-file
/// decoder, so memory is a chunk plus its records, and the caller can act (send what it packed)
/// between chunks.
pub struct LogObject {
    bucket: String,
    key: String,
    body: ByteStream,
    /// The network chunk being fed, `READ_BYTES` at a time from `taken` on.
    pending: Vec<u8>,
    taken: usize,
    decoder: LogFileDecoder,
    finished: bool,
}

impl LogObject {
    /// Reads the next chunk (at most [`READ_BYTES`] of the body) and hands each record
    /// completed by it to `each`. Returns `false` once the object has been read to its end.
    pub async fn next_chunk(
        &mut self,
        mut each: impl FnMut(RawItem<'_>),
    ) -> Result<bool, ObjectError> {
        if self.finished {
            return Ok(false);
        }
        if self.taken == self.pending.len() {
            match self.body.try_next().await {
                Ok(Some(chunk)) => {
                    self.pending.clear();
                    self.pending.extend_from_slice(&chunk);
                    self.taken = 0;
                }
                Ok(None) => {
                    self.finished = true;
                    let finished = self.decoder.finish(&mut each);
                    finished.map_err(|source| self.unreadable(source))?;
                    return Ok(false);
                }
                Err(e) => {
                    return Err(ObjectError::Unavailable {
                        bucket: self.bucket.clone(),
                        key: self.key.clone(),
                        reason: format!("reading the body: {}", describe(&e)),
                    })
                }
            }
        }
        let end = self.pending.len().min(self.taken + READ_BYTES);
        let fed = self.decoder.feed(&self.pending[self.taken..end], &mut each);
        self.taken = end;
        fed.map_err(|source| self.unreadable(source))?;
        Ok(true)
    }

    fn unreadable(&self, source: FileError) -> ObjectError {
        ObjectError::Unreadable {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            source,
        }
    }
}
