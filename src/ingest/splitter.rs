//! The hand-written splitter of the log-file reader: a byte-level state machine over
//! `{"Records":[...]}` that cuts out the exact bytes of each record without building a JSON
//! tree. Kept by hand because it earns its place: it hands over the exact bytes of each element
//! of one nested array as chunks are pushed in, in bounded memory, near gunzip speed;
//! serde_json's `RawValue` needs the whole document and its `StreamDeserializer` reads only
//! top-level values, and token-streaming parsers would have to write each record out again.

use std::io::{self, Write};

use super::items::{FileError, LogFileLimits, RawItem, RecordProblem};

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
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

pub(super) struct Splitter {
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
    pub(super) fn new(limits: LogFileLimits) -> Self {
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

    pub(super) fn take_error(&mut self) -> Result<(), FileError> {
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

    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<(), FileError> {
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
            // Each state reads from byte `i` and says where the next byte to read is.
            i = match self.state {
                State::Start => self.start(bytes, i)?,
                State::KeyOrEnd => self.key_or_end(c, i)?,
                State::Key { escape } => self.key_byte(c, escape, i),
                State::Colon => self.colon(c, i)?,
                State::SkipValue => self.skip_value(bytes, i),
                State::AfterValue => self.after_value(c, i)?,
                State::ArrayOpen => self.array_open(c, i)?,
                State::ItemOrEnd { after_comma } => self.item_or_end(c, after_comma, i)?,
                State::Item => self.item(bytes, i),
                State::AfterItem => self.after_item(c, i)?,
                State::Done if is_whitespace(c) => i + 1,
                State::Done => return Err(self.malformed("data after the end of the log file", i)),
            };
        }
        Ok(())
    }

    fn start(&mut self, bytes: &[u8], i: usize) -> Result<usize, FileError> {
        // A UTF-8 byte-order mark is tolerated at the very start.
        if self.offset == 0 && i == 0 && bytes.starts_with(b"\xEF\xBB\xBF") {
            return Ok(3);
        }
        match bytes[i] {
            b'{' => self.state = State::KeyOrEnd,
            c if is_whitespace(c) => {}
            _ => {
                return Err(FileError::NotCloudTrail {
                    reason: "the file is not a JSON object",
                    offset: self.offset + i as u64,
                })
            }
        }
        Ok(i + 1)
    }

    fn key_or_end(&mut self, c: u8, i: usize) -> Result<usize, FileError> {
        match c {
            b'"' => {
                self.key.clear();
                self.state = State::Key { escape: false };
            }
            b'}' => self.state = State::Done,
            c if is_whitespace(c) => {}
            _ => return Err(self.malformed("expected a key", i)),
        }
        Ok(i + 1)
    }

    fn key_byte(&mut self, c: u8, escape: bool, i: usize) -> usize {
        if escape {
            self.state = State::Key { escape: false };
        } else if c == b'\\' {
            self.state = State::Key { escape: true };
        } else if c == b'"' {
            self.state = State::Colon;
            return i + 1;
        }
        // Only `Records` matters: longer keys need not be kept whole.
        if self.key.len() < 64 {
            self.key.push(c);
        }
        i + 1
    }

    fn colon(&mut self, c: u8, i: usize) -> Result<usize, FileError> {
        match c {
            b':' if self.key == b"Records" => self.state = State::ArrayOpen,
            b':' => {
                self.value = ValueScan::default();
                self.state = State::SkipValue;
            }
            c if is_whitespace(c) => {}
            _ => return Err(self.malformed("expected ':' after a key", i)),
        }
        Ok(i + 1)
    }

    fn skip_value(&mut self, bytes: &[u8], i: usize) -> usize {
        if !self.value.started && is_whitespace(bytes[i]) {
            return i + 1;
        }
        let (used, ended) = self.value.scan(&bytes[i..]);
        if ended {
            self.state = State::AfterValue;
        }
        i + used
    }

    fn after_value(&mut self, c: u8, i: usize) -> Result<usize, FileError> {
        match c {
            b',' => self.state = State::KeyOrEnd,
            b'}' => self.state = State::Done,
            c if is_whitespace(c) => {}
            _ => return Err(self.malformed("expected ',' or '}' in the top object", i)),
        }
        Ok(i + 1)
    }

    fn array_open(&mut self, c: u8, i: usize) -> Result<usize, FileError> {
        match c {
            b'[' => {
                self.saw_records = true;
                self.state = State::ItemOrEnd { after_comma: false };
            }
            c if is_whitespace(c) => {}
            _ => {
                return Err(FileError::NotCloudTrail {
                    reason: "Records is not an array",
                    offset: self.offset + i as u64,
                })
            }
        }
        Ok(i + 1)
    }

    fn item_or_end(&mut self, c: u8, after_comma: bool, i: usize) -> Result<usize, FileError> {
        match c {
            b']' if !after_comma => self.state = State::AfterValue,
            b']' | b',' => return Err(self.malformed("empty element in Records", i)),
            c if is_whitespace(c) => {}
            _ => {
                // The element starts here: this byte is its first.
                self.value = ValueScan::default();
                self.current_start = self.done.len();
                self.current_problem = (c != b'{').then_some(RecordProblem::NotAnObject);
                self.state = State::Item;
                return Ok(i);
            }
        }
        Ok(i + 1)
    }

    fn item(&mut self, bytes: &[u8], i: usize) -> usize {
        let (used, ended) = self.value.scan(&bytes[i..]);
        self.keep(&bytes[i..i + used]);
        if ended {
            self.close_item();
            self.state = State::AfterItem;
        }
        i + used
    }

    fn after_item(&mut self, c: u8, i: usize) -> Result<usize, FileError> {
        match c {
            b',' => self.state = State::ItemOrEnd { after_comma: true },
            b']' => self.state = State::AfterValue,
            c if is_whitespace(c) => {}
            _ => return Err(self.malformed("expected ',' or ']' after a record", i)),
        }
        Ok(i + 1)
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

    /// Hands every record completed so far to `each`, in file order, then forgets them.
    pub(super) fn drain(&mut self, mut each: impl FnMut(RawItem<'_>)) {
        for item in &self.items {
            let bytes = match &item.problem {
                Some(problem) => Err(problem.clone()),
                None => {
                    let slice = &self.done[item.start..item.end];
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
        self.items.clear();
        // Keep the bytes of a record still being read; everything before it was handed over.
        let partial_from = if self.state == State::Item {
            self.current_start
        } else {
            self.done.len()
        };
        self.done.drain(..partial_from);
        self.current_start = 0;
    }

    /// Decompressed bytes seen so far.
    pub(super) fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Elements of `Records` seen so far.
    pub(super) fn records_seen(&self) -> usize {
        self.next_index
    }

    pub(super) fn finish(&mut self) -> Result<(), FileError> {
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
                        if state.is_multiple_of(61) {
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
