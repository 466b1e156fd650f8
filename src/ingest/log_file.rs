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

/// Limits that protect a 128 MB Lambda from hostile or broken input.
#[derive(Debug, Clone, Copy)]
pub struct LogFileLimits {
    /// Decompressed bytes per file. CloudTrail objects are at most ~50 MB compressed and real
    /// files compress 5–9×, so 1 GiB leaves room for any real file and stops a gzip bomb.
    pub max_decompressed_bytes: u64,
    /// Bytes per record. CloudTrail caps an event at 256 KB (1 MB for opted-in Lake stores).
    pub max_record_bytes: usize,
    /// JSON nesting inside a record; deeper records are rejected instead of risking the stack.
    pub max_nesting: u32,
}

impl Default for LogFileLimits {
    fn default() -> Self {
        LogFileLimits {
            max_decompressed_bytes: 1 << 30,
            max_record_bytes: 1 << 20,
            max_nesting: 100,
        }
    }
}

/// Why the file as a whole could not be read (on from the point named).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("gzip stream is corrupt or truncated after {records} records: {source}")]
    Gzip { records: usize, source: io::Error },
    #[error("not a CloudTrail log file: {reason} (at byte {offset})")]
    NotCloudTrail { reason: &'static str, offset: u64 },
    #[error("log file JSON is malformed at byte {offset}, after record {records}: {reason}")]
    Malformed {
        reason: &'static str,
        offset: u64,
        records: usize,
    },
    #[error("log file is truncated: input ended inside {inside} after {records} records")]
    Truncated {
        inside: &'static str,
        records: usize,
    },
    #[error("decompressed size exceeds the limit of {limit} bytes (gzip bomb?)")]
    TooLarge { limit: u64 },
}

/// Why one record could not be taken (the file goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("record is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("record nests deeper than {limit} levels")]
    TooDeep { limit: u32 },
    #[error("record is not valid UTF-8 (byte {offset} of the record)")]
    NotUtf8 { offset: usize },
}

/// One element of the `Records` array, in file order.
#[derive(Debug)]
pub struct RawItem<'a> {
    /// Position in the `Records` array, from 0.
    pub index: usize,
    pub bytes: Result<&'a str, RecordProblem>,
}

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

    /// Pushes the next bytes of the object. Drain after each call to keep memory flat.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), FileError> {
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
            return self.push(&head);
        }
        self.push(chunk)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        match &mut self.mode {
            Mode::Plain(splitter) => splitter.push(bytes),
            Mode::Gzip(decoder) => {
                let result = decoder.write_all(bytes);
                let splitter = decoder.get_mut();
                splitter.take_error()?;
                result.map_err(|source| FileError::Gzip {
                    records: splitter.next_index,
                    source,
                })
            }
            Mode::Undecided(..) | Mode::Spent => Ok(()),
        }
    }

    /// Signals the end of the object; reports truncation.
    pub fn finish(&mut self) -> Result<(), FileError> {
        if let Mode::Undecided(..) = self.mode {
            let Mode::Undecided(splitter, head) = std::mem::replace(&mut self.mode, Mode::Spent)
            else {
                unreachable!("checked above")
            };
            self.mode = Mode::Plain(splitter);
            self.push(&head)?;
        }
        match &mut self.mode {
            Mode::Plain(splitter) => splitter.finish(),
            Mode::Gzip(decoder) => {
                let result = decoder.try_finish();
                let splitter = decoder.get_mut();
                splitter.take_error()?;
                result.map_err(|source| FileError::Gzip {
                    records: splitter.next_index,
                    source,
                })?;
                splitter.finish()
            }
            Mode::Undecided(..) | Mode::Spent => Ok(()),
        }
    }

    /// Hands every record completed so far to `each`, in file order, then forgets them.
    pub fn drain(&mut self, mut each: impl FnMut(RawItem<'_>)) {
        let splitter = match &mut self.mode {
            Mode::Plain(s) | Mode::Undecided(s, _) => s,
            Mode::Gzip(d) => d.get_mut(),
            Mode::Spent => return,
        };
        for item in &splitter.items {
            let bytes = match &item.problem {
                Some(problem) => Err(problem.clone()),
                None => {
                    let slice = &splitter.done[item.start..item.end];
                    std::str::from_utf8(slice).map_err(|e| RecordProblem::NotUtf8 {
                        offset: e.valid_up_to(),
                    })
                }
            };
            each(RawItem {
                index: item.index,
                bytes,
            });
        }
        splitter.items.clear();
        // Keep the bytes of a record still being read; everything before it was handed over.
        let partial_from = if splitter.state == State::Item {
            splitter.current_start
        } else {
            splitter.done.len()
        };
        splitter.done.drain(..partial_from);
        splitter.current_start = 0;
    }

    /// Decompressed bytes seen so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.mode {
            Mode::Plain(s) | Mode::Undecided(s, _) => s.offset,
            Mode::Gzip(d) => d.get_ref().offset,
            Mode::Spent => 0,
        }
    }
}

/// Reads a whole log file from `reader` in 64 KiB chunks, handing each record to `each`.
/// Returns the decompressed size. Records before a file-level error have been handed over.
pub fn read_log_file(
    mut reader: impl io::Read,
    limits: LogFileLimits,
    mut each: impl FnMut(RawItem<'_>),
) -> Result<u64, FileError> {
    let mut decoder = LogFileDecoder::new(limits);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(FileError::Gzip { records: 0, source }),
        };
        let fed = decoder.feed(&chunk[..n]);
        decoder.drain(&mut each);
        fed?;
    }
    let finished = decoder.finish();
    decoder.drain(&mut each);
    finished?;
    Ok(decoder.bytes_read())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{` (a UTF-8 byte-order mark is tolerated).
    Start,
    /// Inside the top object, expecting a key or `}`.
    KeyOrEnd,
    /// Inside a top-level key string.
    Key { escape: bool },
    /// After a key, expecting `:`.
    Colon,
    /// Skipping the value of a key other than `Records`.
    SkipValue,
    /// After a top-level value, expecting `,` or `}`.
    AfterValue,
    /// After `"Records":`, expecting `[`.
    ArrayOpen,
    /// Inside `Records`, expecting a record or `]`.
    ItemOrEnd { after_comma: bool },
    /// Inside one record.
    Item,
    /// After a record, expecting `,` or `]`.
    AfterItem,
    /// After the top-level `}`; only whitespace may follow.
    Done,
}

/// A JSON value being scanned: nesting depth and string state; scalars end at a delimiter.
#[derive(Debug, Default, Clone, Copy)]
struct ValueScan {
    depth: u32,
    max_depth: u32,
    in_string: bool,
    escape: bool,
    scalar: bool,
    started: bool,
}

impl ValueScan {
    /// Consumes bytes of the value from `bytes`; returns how many belong to it and whether
    /// the value ended. A scalar ends *before* its delimiter, which is not consumed.
    fn scan(&mut self, bytes: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                if self.escape {
                    // The byte right after a backslash is escaped, whatever it is.
                    self.escape = false;
                    i += 1;
                    continue;
                }
                let Some(j) = find_quote_or_backslash(&bytes[i..]) else {
                    return (bytes.len(), false);
                };
                i += j;
                if bytes[i] == b'\\' {
                    self.escape = true;
                    i += 1;
                    continue;
                }
                self.in_string = false;
                i += 1;
                if self.depth == 0 && !self.scalar {
                    return (i, true);
                }
                continue;
            }
            let c = bytes[i];
            if !self.started {
                self.started = true;
                match c {
                    b'{' | b'[' => {}
                    b'"' => {
                        self.in_string = true;
                        i += 1;
                        continue;
                    }
                    _ => self.scalar = true,
                }
            }
            match c {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.max_depth = self.max_depth.max(self.depth);
                }
                b'}' | b']' if self.scalar => return (i, true),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return (i + 1, true);
                    }
                }
                b',' | b' ' | b'\t' | b'\n' | b'\r' if self.scalar => return (i, true),
                _ => {}
            }
            i += 1;
        }
        (bytes.len(), false)
    }
}

/// Position of the first `"` or `\\` in `bytes`. CloudTrail strings are short (keys, ids,
/// names), where a word-at-a-time scan beats memchr's setup; long ones go to memchr.
#[inline]
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        if i == 64 {
            return memchr::memchr2(b'"', b'\\', &bytes[i..]).map(|j| i + j);
        }
        let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let q = word ^ QUOTES;
        let b = word ^ BACKSLASHES;
        // A zero byte in q or b marks a match; borrows only flag bytes above a true match, so
        // the lowest flag is exact.
        let found = ((q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b)) & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|j| i + j)
}

#[derive(Debug)]
struct Item {
    index: usize,
    start: usize,
    end: usize,
    problem: Option<RecordProblem>,
}

struct Splitter {
    limits: LogFileLimits,
    state: State,
    /// Decompressed bytes consumed so far (for error offsets and the bomb limit).
    offset: u64,
    key: Vec<u8>,
    value: ValueScan,
    /// Completed records, back to back; `items` index into it.
    done: Vec<u8>,
    items: Vec<Item>,
    /// Start in `done` of the record being read, and whether it is still being kept.
    current_start: usize,
    current_problem: Option<RecordProblem>,
    next_index: usize,
    saw_records: bool,
    error: Option<FileError>,
}

impl Splitter {
    fn new(limits: LogFileLimits) -> Self {
        Splitter {
            limits,
            state: State::Start,
            offset: 0,
            key: Vec::new(),
            value: ValueScan::default(),
            done: Vec::new(),
            items: Vec::new(),
            current_start: 0,
            current_problem: None,
            next_index: 0,
            saw_records: false,
            error: None,
        }
    }

    fn take_error(&mut self) -> Result<(), FileError> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn malformed(&self, reason: &'static str, at: usize) -> FileError {
        FileError::Malformed {
            reason,
            offset: self.offset + at as u64,
            records: self.next_index,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let result = self.step(bytes);
        self.offset += bytes.len() as u64;
        if self.offset > self.limits.max_decompressed_bytes {
            return Err(FileError::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            });
        }
        result
    }

    fn step(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let whitespace = matches!(c, b' ' | b'\t' | b'\n' | b'\r');
            match self.state {
                State::Start => {
                    if bytes[i..].starts_with(b"\xEF\xBB\xBF") && self.offset == 0 && i == 0 {
                        i += 3;
                        continue;
                    }
                    if whitespace {
                    } else if c == b'{' {
                        self.state = State::KeyOrEnd;
                    } else {
                        return Err(FileError::NotCloudTrail {
                            reason: "the file is not a JSON object",
                            offset: self.offset + i as u64,
                        });
                    }
                }
                State::KeyOrEnd => {
                    if whitespace {
                    } else if c == b'"' {
                        self.key.clear();
                        self.state = State::Key { escape: false };
                    } else if c == b'}' {
                        self.state = State::Done;
                    } else {
                        return Err(self.malformed("expected a key", i));
                    }
                }
                State::Key { escape } => {
                    if escape {
                        self.state = State::Key { escape: false };
                    } else if c == b'\\' {
                        self.state = State::Key { escape: true };
                    } else if c == b'"' {
                        self.state = State::Colon;
                        i += 1;
                        continue;
                    }
                    if self.key.len() < 64 {
                        self.key.push(c);
                    }
                }
                State::Colon => {
                    if whitespace {
                    } else if c == b':' {
                        if self.key == b"Records" {
                            self.state = State::ArrayOpen;
                        } else {
                            self.value = ValueScan::default();
                            self.state = State::SkipValue;
                        }
                    } else {
                        return Err(self.malformed("expected ':' after a key", i));
                    }
                }
                State::SkipValue => {
                    if !self.value.started && whitespace {
                        i += 1;
                        continue;
                    }
                    let (used, ended) = self.value.scan(&bytes[i..]);
                    i += used;
                    if ended {
                        self.state = State::AfterValue;
                    }
                    continue;
                }
                State::AfterValue => {
                    if whitespace {
                    } else if c == b',' {
                        self.state = State::KeyOrEnd;
                    } else if c == b'}' {
                        self.state = State::Done;
                    } else {
                        return Err(self.malformed("expected ',' or '}' in the top object", i));
                    }
                }
                State::ArrayOpen => {
                    if whitespace {
                    } else if c == b'[' {
                        self.saw_records = true;
                        self.state = State::ItemOrEnd { after_comma: false };
                    } else {
                        return Err(FileError::NotCloudTrail {
                            reason: "Records is not an array",
                            offset: self.offset + i as u64,
                        });
                    }
                }
                State::ItemOrEnd { after_comma } => {
                    if whitespace {
                    } else if c == b']' && !after_comma {
                        self.state = State::AfterValue;
                    } else if c == b']' || c == b',' {
                        return Err(self.malformed("empty element in Records", i));
                    } else {
                        self.value = ValueScan::default();
                        self.current_start = self.done.len();
                        self.current_problem = (c != b'{').then_some(RecordProblem::NotAnObject);
                        self.state = State::Item;
                        continue;
                    }
                }
                State::Item => {
                    let (used, ended) = self.value.scan(&bytes[i..]);
                    self.keep(&bytes[i..i + used]);
                    i += used;
                    if ended {
                        self.close_item();
                        self.state = State::AfterItem;
                    }
                    continue;
                }
                State::AfterItem => {
                    if whitespace {
                    } else if c == b',' {
                        self.state = State::ItemOrEnd { after_comma: true };
                    } else if c == b']' {
                        self.state = State::AfterValue;
                    } else {
                        return Err(self.malformed("expected ',' or ']' after a record", i));
                    }
                }
                State::Done => {
                    if !whitespace {
                        return Err(self.malformed("data after the end of the log file", i));
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Appends bytes of the current record unless it has already been given up.
    fn keep(&mut self, bytes: &[u8]) {
        if self.current_problem.is_some() {
            return;
        }
        if self.value.max_depth > self.limits.max_nesting {
            self.current_problem = Some(RecordProblem::TooDeep {
                limit: self.limits.max_nesting,
            });
        } else if self.done.len() - self.current_start + bytes.len() > self.limits.max_record_bytes
        {
            self.current_problem = Some(RecordProblem::TooLarge {
                limit: self.limits.max_record_bytes,
            });
        } else {
            self.done.extend_from_slice(bytes);
            return;
        }
        self.done.truncate(self.current_start);
    }

    fn close_item(&mut self) {
        if self.current_problem.is_none() && self.value.max_depth > self.limits.max_nesting {
            self.current_problem = Some(RecordProblem::TooDeep {
                limit: self.limits.max_nesting,
            });
            self.done.truncate(self.current_start);
        }
        self.items.push(Item {
            index: self.next_index,
            start: self.current_start,
            end: self.done.len(),
            problem: self.current_problem.take(),
        });
        self.next_index += 1;
    }

    fn finish(&mut self) -> Result<(), FileError> {
        let records = self.next_index;
        let inside = match self.state {
            State::Done if self.saw_records => return Ok(()),
            State::Done => {
                return Err(FileError::NotCloudTrail {
                    reason: "the object has no Records array",
                    offset: self.offset,
                })
            }
            State::Start => {
                return Err(FileError::NotCloudTrail {
                    reason: "the file is empty",
                    offset: self.offset,
                })
            }
            State::Item => "a record",
            State::ItemOrEnd { .. } | State::AfterItem | State::ArrayOpen => "the Records array",
            _ => "the top-level object",
        };
        Err(FileError::Truncated { inside, records })
    }
}

impl Write for Splitter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("log file rejected"));
        }
        match self.push(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.error = Some(e);
                Err(io::Error::other("log file rejected"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::find_quote_or_backslash;

    #[test]
    fn word_scan_finds_the_first_quote_or_backslash_like_a_byte_scan() {
        let alphabet = [
            b'a', b'"', b'\\', 0x00, 0x80, 0xff, b'!', b'#', b']', 0x21, 0x23,
        ];
        let mut state = 0x9e37_79b9_u32;
        for len in 0..200 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        // Mostly plain bytes, so matches land anywhere, including past 64.
                        if state % 61 == 0 {
                            alphabet[(state as usize / 61) % 3 + 1]
                        } else {
                            alphabet[(state as usize) % alphabet.len()].max(b'$')
                        }
                    })
                    .collect();
                let expected = bytes.iter().position(|&c| c == b'"' || c == b'\\');
                assert_eq!(find_quote_or_backslash(&bytes), expected, "{bytes:?}");
            }
        }
    }
}
