//! Where a record came from, for problems and logs.

use crate::ingest::LogObjectKey;

/// Where a record came from: an S3 object, a local file, or an inline event.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub bucket: Option<&'a str>,
    /// The object key, the file path, or a description of the inline source.
    pub key: &'a str,
    pub parsed: LogObjectKey<'a>,
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bucket {
            Some(bucket) => write!(f, "s3://{bucket}/{}", self.key),
            None => f.write_str(self.key),
        }
    }
}
