//! What validation found: a verdict per digest and log file, counts by status, and the
//! errors and notes around them.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Digest,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Digest: readable, in its place, signature (when keys are given) and chain hold. Log
    /// file: hash as listed by a valid digest.
    Valid,
    /// Digest: anything else.
    Invalid,
    /// Named (by a digest) but not in the folder.
    Missing,
    /// Log file whose hash differs from the one its digest lists.
    Changed,
    /// Log file that could not be read (not gzip, truncated, I/O error).
    Unreadable,
    /// Log file whose hash matches a digest that is itself invalid, or with a hash algorithm
    /// other than SHA-256.
    Unverified,
    /// Log file in the range the digests cover that no digest lists.
    Extra,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid",
            Status::Missing => "missing",
            Status::Changed => "changed",
            Status::Unreadable => "unreadable",
            Status::Unverified => "unverified",
            Status::Extra => "extra",
        }
    }
}

/// The verdict on one digest or log file.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub status: Status,
    /// The local file; none when missing.
    pub path: Option<PathBuf>,
    /// `s3://bucket/key` as CloudTrail named it, when a digest names it.
    pub s3: Option<String>,
    /// The key from `AWSLogs/` on.
    pub key: String,
    /// What is wrong (empty when valid).
    pub problems: Vec<String>,
    /// For a log file: the key of the digest that lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl FileResult {
    /// The local path, or else the S3 location, or else the key.
    pub fn location(&self) -> String {
        match (&self.path, &self.s3) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(s3)) => s3.clone(),
            (None, None) => self.key.clone(),
        }
    }
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: usize,
    pub valid: usize,
    pub invalid: usize,
    pub missing: usize,
    pub changed: usize,
    pub unreadable: usize,
    pub unverified: usize,
}

impl Counts {
    /// Everything but valid.
    pub fn not_valid(&self) -> usize {
        self.total - self.valid
    }
}

/// The outcome of a validation.
#[derive(Debug, Default)]
pub struct Report {
    pub requested_start: Option<i64>,
    pub requested_end: Option<i64>,
    /// Earliest `digestStartTime` and latest `digestEndTime` of the digests read.
    pub found: Option<(i64, i64)>,
    /// Labels of the public keys used; empty: signatures not verified.
    pub keys: Vec<String>,
    /// Each digest (present or missing) followed by the log files it lists, chain by chain in
    /// time order; then the extra log files.
    pub files: Vec<FileResult>,
    /// Files or folders that could not be taken into account, with why.
    pub errors: Vec<(PathBuf, String)>,
    /// Facts worth knowing that are not failures (chain restarts, where a chain begins).
    pub notes: Vec<String>,
}

impl Report {
    pub fn digest_counts(&self) -> Counts {
        self.count(FileType::Digest)
    }

    /// Log files listed by the checked digests (extra files are counted by [`Report::extra`]).
    pub fn log_counts(&self) -> Counts {
        self.count(FileType::Log)
    }

    pub fn extra(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.status == Status::Extra)
            .count()
    }

    fn count(&self, file_type: FileType) -> Counts {
        let mut c = Counts::default();
        for f in self.files.iter().filter(|f| f.file_type == file_type) {
            let slot = match f.status {
                Status::Valid => &mut c.valid,
                Status::Invalid => &mut c.invalid,
                Status::Missing => &mut c.missing,
                Status::Changed => &mut c.changed,
                Status::Unreadable => &mut c.unreadable,
                Status::Unverified => &mut c.unverified,
                Status::Extra => continue,
            };
            *slot += 1;
            c.total += 1;
        }
        c
    }

    /// Everything checked is valid, nothing is extra, nothing was unreadable, and at least one
    /// digest was checked.
    pub fn ok(&self) -> bool {
        let digests = self.digest_counts();
        digests.total > 0
            && digests.not_valid() == 0
            && self.log_counts().not_valid() == 0
            && self.extra() == 0
            && self.errors.is_empty()
    }
}
