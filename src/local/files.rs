//! Which files are CloudTrail log files: one rule for every command that reads them.
//!
//! The rule follows what CloudTrail writes. A trail delivers gzip JSON objects named
//! `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz` under
//! `AWSLogs/[<org>/]<account>/CloudTrail/<region>/<YYYY>/<MM>/<DD>/`, Insights files
//! (`_CloudTrail-Insight_`, `CloudTrail-Insight/`) the same way, and digest files
//! (`_CloudTrail-Digest_`, `CloudTrail-Digest/`) beside them (fact sheet 2.1, 2.3, 2.4). A copy
//! on disk keeps that name, or loses the `.gz` when it is gunzipped. So, in a folder:
//! - a file whose name ends in `.json.gz` or `.json` is a log file, whatever the rest of its
//!   name (copies get renamed, exports and test sets keep the extension); its kind — records,
//!   Insights records, digest — comes from its key as CloudTrail lays it out
//!   ([`parse_object_key`]), and a digest is found but holds no records;
//! - nothing else is: not `.jsonl` (one record per line: `replay --out` writes those, so reading
//!   them as input would deliver the records twice), not a bare `.gz`, not README or LICENSE,
//!   not hidden files or anything in hidden folders.
//!
//! A file named explicitly on the command line is read whatever its name: the user said so.
//! Folders are walked recursively, following symbolic links, in name order.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::ingest::{parse_object_key, ObjectKind};

/// Whether a file found in a folder is a CloudTrail log file by its name (see the module
/// documentation).
pub fn is_log_file_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".json.gz") || name.ends_with(".json"))
}

/// A log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// What its name says it holds.
    pub kind: ObjectKind,
    /// CloudTrail's delivery stamp in its name ([`delivery_time_ms`]).
    pub delivered_ms: Option<i64>,
}

impl LogFile {
    pub fn new(path: PathBuf) -> Self {
        LogFile {
            kind: parse_object_key(&path.to_string_lossy()).kind,
            delivered_ms: delivery_time_ms(&path),
            path,
        }
    }

    /// Digest files hold hashes and signatures, not records.
    pub fn has_records(&self) -> bool {
        self.kind != ObjectKind::Digest
    }
}

/// Why the inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{0}")]
    Walk(#[from] walkdir::Error),
}

impl From<FilesError> for std::io::Error {
    fn from(e: FilesError) -> Self {
        let kind = match &e {
            FilesError::NotFound(_) => std::io::ErrorKind::NotFound,
            FilesError::Walk(w) => w.io_error().map_or(std::io::ErrorKind::Other, |e| e.kind()),
        };
        std::io::Error::new(kind, e)
    }
}

/// The log files of `inputs`, digests included (see [`LogFile::has_records`]): files as given
/// (they must exist), and the log files of folders, walked recursively in name order.
pub fn log_files(inputs: &[PathBuf]) -> Result<Vec<LogFile>, FilesError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let walk = WalkDir::new(input)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walk {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_file() && is_log_file_name(&name) {
                    files.push(LogFile::new(entry.into_path()));
                }
            }
        } else if input.exists() {
            files.push(LogFile::new(input.clone()));
        } else {
            return Err(FilesError::NotFound(input.clone()));
        }
    }
    Ok(files)
}

/// The delivery time in CloudTrail's log file name
/// (`<acct>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<unique>.json.gz`), epoch milliseconds.
pub fn delivery_time_ms(path: &Path) -> Option<i64> {
    parse_object_key(path.file_name()?.to_str()?).delivered_ms
}

/// The files in delivery order, as S3 notifications would announce them: by the stamp in
/// their names, then files without a stamp in name order.
pub fn in_delivery_order(mut files: Vec<LogFile>) -> Vec<LogFile> {
    files.sort_by(|a, b| {
        (a.delivered_ms.is_none(), a.delivered_ms, &a.path).cmp(&(
            b.delivered_ms.is_none(),
            b.delivered_ms,
            &b.path,
        ))
    });
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trailwatch-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const LOG: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01/111122223333_CloudTrail_us-east-1_20240101T0005Z_a.json.gz";
    const INSIGHT: &str = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/01/01/111122223333_CloudTrail-Insight_us-east-1_20240101T0000Z_i.json.gz";
    const DIGEST: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240101T010000Z.json.gz";

    #[test]
    fn the_names_cloudtrail_writes_are_log_files_and_nothing_else_is() {
        for name in [
            "111122223333_CloudTrail_us-east-1_20240101T0005Z_a.json.gz",
            "111122223333_CloudTrail_us-east-1_20240101T0005Z_a.json",
            "export.json",
            "attack.json.gz",
        ] {
            assert!(is_log_file_name(name), "{name}");
        }
        for name in [
            "111122223333_CloudTrail.jsonl",
            "insights.jsonl",
            "logs.gz",
            "README.md",
            "LICENSE",
            ".hidden.json",
            "a.json.gz.part",
        ] {
            assert!(!is_log_file_name(name), "{name}");
        }
    }

    #[test]
    fn folders_are_walked_by_the_rule_and_kinds_come_from_the_layout() {
        let dir = temp_dir("walk");
        for path in [
            LOG,
            INSIGHT,
            DIGEST,
            "notes/README.md",
            "out/111122223333_CloudTrail_us-east-1.jsonl",
            ".cache/x.json",
            "plain.json",
            "zipped.gz",
        ] {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}").unwrap();
        }
        let found: Vec<(String, ObjectKind)> = log_files(std::slice::from_ref(&dir))
            .unwrap()
            .into_iter()
            .map(|f| {
                let relative = f
                    .path
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (relative, f.kind)
            })
            .collect();
        assert_eq!(
            found,
            [
                (LOG.to_owned(), ObjectKind::LogFile),
                (DIGEST.to_owned(), ObjectKind::Digest),
                (INSIGHT.to_owned(), ObjectKind::Insight),
                ("plain.json".to_owned(), ObjectKind::LogFile),
            ]
        );
        // Named explicitly, any file is read.
        let named = log_files(&[dir.join("zipped.gz")]).unwrap();
        assert_eq!(named.len(), 1);
        assert!(matches!(
            log_files(&[dir.join("missing")]),
            Err(FilesError::NotFound(_))
        ));
    }

    #[test]
    fn delivery_order_is_the_stamp_then_the_name() {
        let files = [
            "zz-no-stamp.json",
            "111122223333_CloudTrail_us-west-2_20240101T0010Z_b.json",
            "111122223333_CloudTrail_us-east-1_20240101T0005Z_a.json.gz",
            "aa-no-stamp.json",
        ]
        .map(|n| LogFile::new(PathBuf::from(n)));
        let order: Vec<PathBuf> = in_delivery_order(files.to_vec())
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            order,
            [&files[2], &files[1], &files[3], &files[0]].map(|f| f.path.clone())
        );
        assert_eq!(delivery_time_ms(Path::new("logs.json.gz")), None);
    }
}
