//! Reading CloudTrail log objects from S3 as a stream.

use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::Client;
use trailwatch::ingest::{FileError, LogFileDecoder, LogFileLimits, RawItem};

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

impl ObjectError {
    pub fn is_retryable(&self) -> bool {
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

    /// Streams the object through the log-file decoder, handing each record to `each` as soon
    /// as it is complete; memory is one network chunk plus the records of that chunk.
    /// Returns the decompressed size.
    pub async fn read_records(
        &self,
        bucket: &str,
        key: &str,
        mut each: impl FnMut(RawItem<'_>),
    ) -> Result<u64, ObjectError> {
        let unavailable = |reason: String| ObjectError::Unavailable {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let unreadable = |source: FileError| ObjectError::Unreadable {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source,
        };
        let output = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                return Err(match e.as_service_error() {
                    Some(GetObjectError::NoSuchKey(_)) => ObjectError::Missing {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    },
                    _ => unavailable(describe(&e)),
                })
            }
        };
        let mut body = output.body;
        let mut decoder = LogFileDecoder::new(self.limits);
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    let fed = decoder.feed(&chunk);
                    decoder.drain(&mut each);
                    fed.map_err(unreadable)?;
                }
                Ok(None) => break,
                Err(e) => return Err(unavailable(format!("reading the body: {}", describe(&e)))),
            }
        }
        let finished = decoder.finish();
        decoder.drain(&mut each);
        finished.map_err(unreadable)?;
        Ok(decoder.bytes_read())
    }
}
