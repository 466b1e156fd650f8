//! Local sources: a `trailwatch replay --out` folder (one `<stream>.jsonl` per CloudWatch Logs
//! stream, one record per line, plus `insights.jsonl`; its `detections.jsonl` holds detections,
//! not events, and is not read), a single `.jsonl` file, or CloudTrail
//! log files (`.json` / `.json.gz`, a file or an `AWSLogs/…` folder).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use thiserror::Error;
use trailwatch::ingest::{read_log_file, LogFileLimits};
use trailwatch::local::{log_files, DETECTIONS_FILE};

use super::search::Searcher;

/// Why there is nothing to search at a path.
#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no stream files (*.jsonl, as trailwatch replay --out writes) and no CloudTrail log files (*.json, *.json.gz)", .0.display())]
    NothingToRead(PathBuf),
}

/// Reads everything under `path` into the searcher. `Err` when there is nothing to read (the
/// command cannot run); problems with single files or records go to the searcher.
pub fn search_path(path: &Path, searcher: &mut Searcher) -> Result<(), LocalError> {
    if !path.exists() {
        return Err(LocalError::NotFound(path.to_owned()));
    }
    let unreadable = |source| LocalError::Unreadable {
        path: path.to_owned(),
        source,
    };
    if path.is_file() {
        searcher.files += 1;
        if is_jsonl(path) {
            read_jsonl(path, searcher);
        } else {
            read_log(path, searcher);
        }
        return Ok(());
    }
    let streams = jsonl_files(path).map_err(unreadable)?;
    if !streams.is_empty() {
        for file in &streams {
            searcher.files += 1;
            read_jsonl(file, searcher);
        }
        return Ok(());
    }
    let logs: Vec<PathBuf> = log_files(&[path.to_owned()])
        .map_err(|e| unreadable(e.into()))?
        .into_iter()
        .filter(|f| f.has_records())
        .map(|f| f.path)
        .collect();
    if logs.is_empty() {
        return Err(LocalError::NothingToRead(path.to_owned()));
    }
    for file in &logs {
        searcher.files += 1;
        read_log(file, searcher);
    }
    Ok(())
}

fn is_jsonl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// The `.jsonl` files directly in `dir` but the replay's detections, in name order.
fn jsonl_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && is_jsonl(&path) && !path.ends_with(DETECTIONS_FILE) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One record per line; blank lines are skipped, a line that is not a record is reported
/// by file and line number and the rest of the file is read.
fn read_jsonl(path: &Path, searcher: &mut Searcher) {
    let name = path.display();
    let mut reader = match File::open(path) {
        Ok(f) => BufReader::with_capacity(1 << 16, f),
        Err(e) => return searcher.problem(format!("{name}: {e}")),
    };
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return searcher.problem(format!("{name}:{}: {e}", number + 1)),
        }
        number += 1;
        let text = match std::str::from_utf8(&line) {
            Ok(text) => text.trim_end_matches(['\n', '\r']),
            Err(e) => {
                searcher.problem(format!("{name}:{number}: line is not UTF-8 ({e})"));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        searcher.record(text, || format!("{name}:{number}"));
    }
}

fn read_log(path: &Path, searcher: &mut Searcher) {
    let name = path.display();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return searcher.problem(format!("{name}: {e}")),
    };
    let result = read_log_file(BufReader::new(file), LogFileLimits::default(), |item| {
        let index = item.index;
        match item.bytes {
            Ok(raw) => searcher.record(raw, || format!("{name}: record {index}")),
            Err(problem) => searcher.problem(format!("{name}: record {index}: {problem}")),
        }
    });
    if let Err(e) = result {
        searcher.problem(format!("{name}: {e}"));
    }
}
