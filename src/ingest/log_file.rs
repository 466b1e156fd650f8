//! Streaming reader of CloudTrail log files: `{"Records":[ {...}, {...} ]}`, gzip or not.
//!
//! Bytes are pushed in as they arrive (an S3 body, a file read in chunks), decompressed when the
//! first bytes are the gzip magic (`1f 8b`, multi-member aware), and split into the exact bytes
//! of each record without building a JSON tree. Memory is one chunk plus the records not yet
//! drained, whatever the file size. A record that is malformed inside (bad token, wrong types,
//! non-UTF-8, too deep, too large) is reported by its index and the records after it are still
//! read; damage to the file's structure (truncation, a broken array) ends the file with an error
//! naming the byte offset and the record index.

use std::io::{self, Write};

use flate2::write::MultiGzDecoder;

use super::items::{FileError, LogFileLimits, RawItem};
use super::splitter::Splitter;

/// Bytes of a log object read (or taken from a network chunk) at a time: at most about 8 MB of
/// JSON at deflate's best ratio, so what a reader packs between two points where it can send
/// stays small however well the input compresses.
pub const READ_BYTES: usize = 8 * 1024;

/// Compressed bytes decompressed at a time before the records they hold are handed over:
/// deflate expands at most about 1032:1, so a slice is at most about 528 KB of JSON (260,000
/// one-byte elements), whatever the file.
pub const GZIP_SLICE_BYTES: usize = 512;

/// Push decoder for one log file.
pub struct LogFileDecoder {
    mode: Mode,
}

enum Mode {
    /// No byte seen yet: the first two decide gzip or plain.
    Undecided(Splitter, Vec<u8>),
    Plain(Splitter),
    Gzip(Box<MultiGzDecoder<Splitter>>),
    Spent,
}

impl LogFileDecoder {
    pub fn new(limits: LogFileLimits) -> Self {
        LogFileDecoder {
            mode: Mode::Undecided(Splitter::new(limits), Vec::new()),
        }
    }

    /// Pushes the next bytes of the object and hands every element of `Records` they complete
    /// to `each`, in file order. Compressed bytes go in by slices of [`GZIP_SLICE_BYTES`],
    /// each slice's elements handed over before the next is decompressed, so what is held at
    /// once is bounded however well the input compresses.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(RawItem<'_>),
    ) -> Result<(), FileError> {
        if let Mode::Undecided(_, head) = &mut self.mode {
            head.extend_from_slice(chunk);
            if head.len() < 2 {
                return Ok(());
            }
            let Mode::Undecided(splitter, head) = std::mem::replace(&mut self.mode, Mode::Spent)
            else {
                unreachable!("checked above")
            };
            self.mode = if head.starts_with(&[0x1f, 0x8b]) {
                Mode::Gzip(Box::new(MultiGzDecoder::new(splitter)))
            } else {
                Mode::Plain(splitter)
            };
            return self.push_sliced(&head, &mut each);
        }
        self.push_sliced(chunk, &mut each)
    }

    fn push_sliced(
        &mut self,
        bytes: &[u8],
        each: &mut impl FnMut(RawItem<'_>),
    ) -> Result<(), FileError> {
        let slice = match self.mode {
            Mode::Gzip(_) => GZIP_SLICE_BYTES,
            _ => bytes.len().max(1),
        };
        for part in bytes.chunks(slice) {
            let pushed = self.push(part);
            self.drain(&mut *each);
            pushed?;
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        match &mut self.mode {
            Mode::Plain(splitter) => splitter.push(bytes),
            Mode::Gzip(decoder) => {
                let result = decoder.write_all(bytes);
                let splitter = decoder.get_mut();
                splitter.take_error()?;
                result.map_err(|source| FileError::Gzip {
                    records: splitter.records_seen(),
                    source,
                })
            }
            Mode::Undecided(..) | Mode::Spent => Ok(()),
        }
    }

    /// Signals the end of the object, hands the last elements to `each`, and reports
    /// truncation.
    pub fn finish(&mut self, mut each: impl FnMut(RawItem<'_>)) -> Result<(), FileError> {
        if let Mode::Undecided(..) = self.mode {
            let Mode::Undecided(splitter, head) = std::mem::replace(&mut self.mode, Mode::Spent)
            else {
                unreachable!("checked above")
            };
            self.mode = Mode::Plain(splitter);
            self.push_sliced(&head, &mut each)?;
        }
        let finished = self.end();
        self.drain(&mut each);
        finished
    }

    fn end(&mut self) -> Result<(), FileError> {
        match &mut self.mode {
            Mode::Plain(splitter) => splitter.finish(),
            Mode::Gzip(decoder) => {
                let result = decoder.try_finish();
                let splitter = decoder.get_mut();
                splitter.take_error()?;
                result.map_err(|source| FileError::Gzip {
                    records: splitter.records_seen(),
                    source,
                })?;
                splitter.finish()
            }
            Mode::Undecided(..) | Mode::Spent => Ok(()),
        }
    }

    /// Hands every element completed so far to `each`, in file order, then forgets them.
    fn drain(&mut self, each: impl FnMut(RawItem<'_>)) {
        match &mut self.mode {
            Mode::Plain(s) | Mode::Undecided(s, _) => s.drain(each),
            Mode::Gzip(d) => d.get_mut().drain(each),
            Mode::Spent => {}
        }
    }

    /// Decompressed bytes seen so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.mode {
            Mode::Plain(s) | Mode::Undecided(s, _) => s.bytes_read(),
            Mode::Gzip(d) => d.get_ref().bytes_read(),
            Mode::Spent => 0,
        }
    }
}

/// Reads a whole log file from `reader` in chunks of [`READ_BYTES`], handing each record to
/// `each`.
/// Returns the decompressed size. Records before a file-level error have been handed over.
pub fn read_log_file(
    mut reader: impl io::Read,
    limits: LogFileLimits,
    mut each: impl FnMut(RawItem<'_>),
) -> Result<u64, FileError> {
    let mut decoder = LogFileDecoder::new(limits);
    let mut chunk = vec![0u8; READ_BYTES];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(FileError::Gzip { records: 0, source }),
        };
        decoder.feed(&chunk[..n], &mut each)?;
    }
    decoder.finish(&mut each)?;
    Ok(decoder.bytes_read())
}
