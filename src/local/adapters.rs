//! Local adapters for the CLI: the same ports as in Lambda, reading and writing files instead
//! of calling AWS.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::deliver::limits::PUT_LOG_EVENTS_EVENT_OVERHEAD;
use crate::deliver::{LogEvent, LogSink, RejectedRanges, SinkError};
use crate::forward::{BusError, Entry, EntryOutcome, EventBus};
use crate::ingest::{FileError, LogFileDecoder, LogFileLimits, RawItem, READ_BYTES};
use crate::select::{LogObject, ObjectSource, Origin, ReadError};

/// The input name that means "a log file on standard input".
pub const STDIN: &str = "-";
/// How the standard input is named in problems and progress.
pub const STDIN_NAME: &str = "(stdin)";

/// A log file on disk or on the standard input, read as the select function reads an S3
/// object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::File(path) => path.to_string_lossy().into_owned(),
            Input::Stdin => STDIN_NAME.to_owned(),
        }
    }
}

/// Why a local log file could not be read. Reading it again would not help.
#[derive(Debug, thiserror::Error)]
pub enum LocalReadError {
    #[error("cannot open: {0}")]
    Open(io::Error),
    #[error("cannot read: {0}")]
    Io(io::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

impl ReadError for LocalReadError {
    fn is_retryable(&self) -> bool {
        false
    }
}

impl ObjectSource for Input {
    type Object = LocalObject;
    type Error = LocalReadError;

    /// Opens this input (the origin only names it).
    async fn open(&self, _origin: &Origin<'_>) -> Result<LocalObject, LocalReadError> {
        let reader: Box<dyn Read> = match self {
            Input::File(path) => Box::new(BufReader::new(
                File::open(path).map_err(LocalReadError::Open)?,
            )),
            Input::Stdin => Box::new(io::stdin().lock()),
        };
        Ok(LocalObject {
            reader,
            decoder: LogFileDecoder::new(LogFileLimits::default()),
            chunk: vec![0; READ_BYTES],
            finished: false,
        })
    }
}

/// A local log file being read one chunk at a time.
pub struct LocalObject {
    reader: Box<dyn Read>,
    decoder: LogFileDecoder,
    chunk: Vec<u8>,
    finished: bool,
}

impl LogObject for LocalObject {
    type Error = LocalReadError;

    async fn next_chunk(&mut self, mut each: impl FnMut(RawItem<'_>)) -> Result<bool, Self::Error> {
        if self.finished {
            return Ok(false);
        }
        loop {
            match self.reader.read(&mut self.chunk) {
                Ok(0) => {
                    self.finished = true;
                    self.decoder.finish(&mut each)?;
                    return Ok(false);
                }
                Ok(n) => {
                    self.decoder.feed(&self.chunk[..n], &mut each)?;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LocalReadError::Io(e)),
            }
        }
    }
}

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

/// A log group that counts what it ingests, as CloudWatch Logs bills it.
pub struct CountingLogGroup<'a> {
    group: &'a FileLogGroup,
    events: AtomicUsize,
    bytes: AtomicU64,
}

impl<'a> CountingLogGroup<'a> {
    pub fn new(group: &'a FileLogGroup) -> Self {
        CountingLogGroup {
            group,
            events: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Events accepted so far.
    pub fn events(&self) -> usize {
        self.events.load(Ordering::Relaxed)
    }

    /// Bytes ingested so far: message bytes plus the per-event overhead.
    pub fn ingested_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl LogSink for CountingLogGroup<'_> {
    async fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> Result<RejectedRanges, SinkError> {
        let ranges = self.group.put_batch(stream, events).await?;
        for (i, event) in events.iter().enumerate() {
            if ranges.of(i).is_none() {
                self.events.fetch_add(1, Ordering::Relaxed);
                let bytes = event.message.len() + PUT_LOG_EVENTS_EVENT_OVERHEAD;
                self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
        }
        Ok(ranges)
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
