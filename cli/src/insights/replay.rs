//! The replay both commands share: log files (gzip or plain `{"Records":[...]}`; folders are
//! walked recursively) through [`InsightsEngine`] the way the Lambda would see them: files in
//! delivery order (the `YYYYMMDDTHHmmZ` stamp of CloudTrail's file name), the clock advanced
//! to each delivery time before the file is read, minutes closing after the watermark, so late
//! files only feed the baseline. Files without a stamp come last, with the clock at the latest
//! event time seen.

use std::fs::File;
use std::path::PathBuf;

use trailwatch::ingest::{read_log_file, LogFileLimits, ObjectKind};
use trailwatch::insights::{InsightsConfig, InsightsEngine, MinuteAggregator};
use trailwatch::local::{in_delivery_order, log_files};
use trailwatch::record::Record;

use super::{say, BacktestError};

struct LogFile {
    path: PathBuf,
    delivered_ms: Option<i64>,
}

/// Log files under the given paths (`trailwatch::local::files`' rule), in delivery order;
/// digests and CloudTrail's own Insights files are left out.
fn collect(paths: &[PathBuf]) -> Result<Vec<LogFile>, BacktestError> {
    let files = log_files(paths).map_err(|e| BacktestError::Input(e.into()))?;
    Ok(in_delivery_order(files)
        .into_iter()
        .filter(|f| f.kind == ObjectKind::LogFile)
        .map(|f| LogFile {
            delivered_ms: f.delivered_ms,
            path: f.path,
        })
        .collect())
}

/// The detector after a replay of log files, as a deployment would hold it after the last
/// one (before `finish`), with what the replay read.
pub struct Detection {
    pub engine: InsightsEngine,
    pub files: usize,
    pub bad_files: usize,
    pub bad_records: usize,
    /// Insights records the replay produced on the way.
    pub records_out: usize,
}

impl Detection {
    pub fn has_problems(&self) -> bool {
        self.bad_files > 0 || self.bad_records > 0
    }
}

/// Replays `logs` in delivery order through the detector (see the module documentation),
/// handing every Insights record it produces to `emit`, and every record counted to `counts`
/// if given (for the picture). Unreadable files and records are counted and named on stderr;
/// the rest is read.
pub fn detect(
    logs: &[PathBuf],
    config: InsightsConfig,
    mut counts: Option<&mut MinuteAggregator>,
    mut emit: impl FnMut(&str) -> Result<(), BacktestError>,
) -> Result<Detection, BacktestError> {
    let files = collect(logs)?;
    let mut engine = InsightsEngine::new(config);
    let mut latest_event_ms: Option<i64> = None;
    let (mut bad_records, mut bad_files, mut records_out) = (0usize, 0usize, 0usize);
    for file in &files {
        let now = file.delivered_ms.or(latest_event_ms);
        if let Some(now) = now {
            for line in engine.advance_to(now) {
                emit(&line)?;
                records_out += 1;
            }
        }
        let reader = File::open(&file.path).map_err(|source| BacktestError::Read {
            path: file.path.clone(),
            source,
        })?;
        let result = read_log_file(reader, LogFileLimits::default(), |item| {
            let Ok(text) = item.bytes else {
                bad_records += 1;
                say(&format!(
                    "warning: {} record {}: unreadable",
                    file.path.display(),
                    item.index
                ));
                return;
            };
            match Record::parse(text) {
                Ok(record) => {
                    if file.delivered_ms.is_none() {
                        if let Ok(ms) = record.event_time_ms() {
                            latest_event_ms = Some(latest_event_ms.map_or(ms, |l| l.max(ms)));
                        }
                    }
                    engine.observe(&record);
                    if let Some(counts) = counts.as_deref_mut() {
                        counts.observe(&record);
                    }
                }
                Err(e) => {
                    bad_records += 1;
                    say(&format!(
                        "warning: {} record {}: {e}",
                        file.path.display(),
                        item.index
                    ));
                }
            }
        });
        if let Err(e) = result {
            bad_files += 1;
            say(&format!("warning: {}: {e}", file.path.display()));
        }
    }
    Ok(Detection {
        engine,
        files: files.len(),
        bad_files,
        bad_records,
        records_out,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use trailwatch::local::delivery_time_ms;

    #[test]
    fn delivery_time_comes_from_the_cloudtrail_file_name() {
        let p = Path::new(
            "x/111122223333_CloudTrail_us-east-1_20240306T0105Z_abcdef0123456789.json.gz",
        );
        assert_eq!(
            delivery_time_ms(p),
            Some(trailwatch::time::parse_event_time("2024-03-06T01:05:00Z").unwrap())
        );
        assert_eq!(delivery_time_ms(Path::new("logs.json.gz")), None);
    }
}
