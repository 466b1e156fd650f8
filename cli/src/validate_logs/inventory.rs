//! The files found in a copy of the bucket, sorted by what they are: digest files (each with
//! its signature sidecar, when there is one), signature files and log files. A second copy of
//! the same key is set aside.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::layout::{
    is_json_name, parse_day_folders, parse_digest_name, parse_log_name_time, place, without_gz,
    DigestName, LocalFile, Scope, DIGEST_AREA, LOG_AREA, SIGNATURE_SUFFIX,
};

/// A digest file found in the folder.
pub struct DigestFile<'a> {
    pub file: &'a LocalFile,
    pub scope: Scope,
    pub name: Option<DigestName>,
    pub signature_file: Option<&'a LocalFile>,
}

/// A log file found under `CloudTrail/`.
pub struct LogFile<'a> {
    pub file: &'a LocalFile,
    pub scope: Scope,
    /// Delivery minute from the file name.
    pub time: Option<i64>,
    /// Day from the `YYYY/MM/DD` folders.
    pub day: Option<i64>,
}

/// The files, indexed by tail and sorted by kind.
pub struct Inventory<'a> {
    by_tail: HashMap<&'a str, &'a LocalFile>,
    pub digests: Vec<DigestFile<'a>>,
    pub logs: Vec<LogFile<'a>>,
    /// Signature files by the tail of the digest they sign.
    pub signatures: HashMap<&'a str, &'a LocalFile>,
    /// Keys of [`Inventory::signatures`] that a present digest uses.
    pub signatures_used: HashSet<&'a str>,
}

impl<'a> Inventory<'a> {
    /// Sorts `files`; a second copy of a key goes to `errors`.
    pub fn new(files: &'a [LocalFile], errors: &mut Vec<(PathBuf, String)>) -> Self {
        let mut inventory = Inventory {
            by_tail: index_by_tail(files, errors),
            digests: Vec::new(),
            logs: Vec::new(),
            signatures: HashMap::new(),
            signatures_used: HashSet::new(),
        };
        for file in files {
            if inventory.is_first_copy(file) {
                inventory.sort(file);
            }
        }
        inventory.pair_signatures();
        inventory
    }

    /// The file at `tail`, or its decompressed copy.
    pub fn find(&self, tail: &str) -> Option<&'a LocalFile> {
        self.by_tail
            .get(tail)
            .or_else(|| self.by_tail.get(without_gz(tail)))
            .copied()
    }

    fn is_first_copy(&self, file: &LocalFile) -> bool {
        self.by_tail
            .get(file.tail.as_str())
            .is_some_and(|f| std::ptr::eq(*f, file))
    }

    fn sort(&mut self, file: &'a LocalFile) {
        let Some(placed) = place(&file.tail) else {
            return;
        };
        let name = placed.file_name();
        if placed.area == DIGEST_AREA {
            if let Some(digest_tail) = file.tail.strip_suffix(SIGNATURE_SUFFIX) {
                self.signatures.insert(digest_tail, file);
            } else if is_json_name(name) {
                self.digests.push(DigestFile {
                    file,
                    name: parse_digest_name(name, &placed.scope),
                    scope: placed.scope,
                    signature_file: None,
                });
            }
        } else if placed.area == LOG_AREA && is_json_name(name) {
            self.logs.push(LogFile {
                file,
                time: parse_log_name_time(name, &placed.scope),
                day: parse_day_folders(&placed.rest),
                scope: placed.scope,
            });
        }
    }

    /// A digest decompressed after download (`x.json`) may keep the sidecar `x.json.gz.sig`.
    fn pair_signatures(&mut self) {
        for d in &mut self.digests {
            let tail = d.file.tail.as_str();
            let with_gz = format!("{tail}.gz");
            d.signature_file = [tail, without_gz(tail), with_gz.as_str()]
                .into_iter()
                .find_map(|t| self.signatures.get_key_value(t))
                .map(|(k, f)| {
                    self.signatures_used.insert(*k);
                    *f
                });
        }
    }
}

/// Index by tail; a second copy of the same key is not read.
fn index_by_tail<'a>(
    files: &'a [LocalFile],
    errors: &mut Vec<(PathBuf, String)>,
) -> HashMap<&'a str, &'a LocalFile> {
    let mut by_tail: HashMap<&str, &LocalFile> = HashMap::new();
    for file in files {
        if let Some(first) = by_tail.get(file.tail.as_str()) {
            errors.push((
                file.path.clone(),
                format!(
                    "a second copy of {} (the first, at {}, is the one checked)",
                    file.tail,
                    first.path.display()
                ),
            ));
        } else {
            by_tail.insert(&file.tail, file);
        }
    }
    by_tail
}
