//! Local adapters for the CLI: the same ports as in Lambda, writing files instead of calling AWS.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::deliver::{LogEvent, LogSink, RejectedRanges, SinkError};
use crate::forward::{BusError, Entry, EntryOutcome, EventBus};

/// A log group as a folder: one `<stream>.jsonl` per stream, one event per line, as received.
pub struct FileLogGroup {
    dir: PathBuf,
    files: Mutex<HashMap<String, BufWriter<File>>>,
}

impl FileLogGroup {
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(FileLogGroup {
            dir: dir.to_owned(),
            files: Mutex::new(HashMap::new()),
        })
    }

    pub fn flush(&self) -> io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.values_mut().try_for_each(|f| f.flush())
    }

    fn write(&self, stream: &str, events: &[LogEvent<'_>]) -> io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let file = match files.get_mut(stream) {
            Some(file) => file,
            None => {
                let path = self.dir.join(format!("{stream}.jsonl"));
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                files
                    .entry(stream.to_owned())
                    .or_insert(BufWriter::new(file))
            }
        };
        for event in events {
            file.write_all(event.message.as_bytes())?;
            file.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl LogSink for FileLogGroup {
    fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> impl Future<Output = Result<RejectedRanges, SinkError>> + Send {
        let result = self
            .write(stream, events)
            .map(|()| RejectedRanges::default())
            .map_err(|e| {
                SinkError::new(false, format!("writing {stream}.jsonl: {e}")).caused_by(e)
            });
        std::future::ready(result)
    }
}

/// An event bus as a JSON-lines file of the entries' details (Insights records, one per line).
pub struct FileBus {
    file: Mutex<BufWriter<File>>,
}

impl FileBus {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(FileBus {
            file: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    pub fn flush(&self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl EventBus for FileBus {
    fn put_events(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, BusError>> + Send {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let outcomes = entries
            .iter()
            .map(|entry| {
                match file
                    .write_all(entry.detail.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                {
                    Ok(()) => EntryOutcome::Accepted {
                        event_id: String::new(),
                    },
                    Err(e) => EntryOutcome::Failed {
                        code: "LocalWriteFailed".into(),
                        message: e.to_string(),
                    },
                }
            })
            .collect();
        std::future::ready(Ok(outcomes))
    }
}

/// Runs a future whose every await completes at once (the local adapters never wait).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}
